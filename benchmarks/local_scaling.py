"""Corpus scoring throughput on 1, 2 and 3 local Ray nodes (cluster/local_cluster.sh).

    HGNAS_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/local_scaling.py --n 96

For each node count k: start a head (+ k-1 worker nodes), 1 CPU each, on this machine; run
`jobs/score_corpus.py --address <head> --concurrency k --num-cpus 1` on the same corpus into a
fresh scores folder (the driver joins the cluster, as under `ray job submit`); read its wall
time (planning, actor start-up with the probe batches, scoring, writing; not Ray's start) and
its per-node cell counts; stop the cluster. All nodes share this machine's cores, so the table
reports efficiency = throughput(k) / (k x throughput(1)), not speed-up, with the load average
before and after each run. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster" / "local_cluster.sh"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="cells in the corpus")
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--rows-per-batch", type=int, default=4)
    parser.add_argument("--network", default="reduced", choices=("reduced", "full"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hgnas_scaling_"))
    corpus = work / "corpus"
    hgnas = [sys.executable, "-c", "import sys; from hgnas_ray.cli import main; sys.exit(main())"]
    subprocess.run([*hgnas, "corpus", "build", "--space", "cell",
                    "--n", str(args.n), "--seed", "0", "--out", str(corpus), "--shard-size",
                    str(args.shard_size), "--no-progress"], check=True, cwd=REPO)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "HGNAS_LOCAL_CLUSTER_DIR": "/tmp/hgnas_lc_scaling"}
    rows = []
    for k in (int(x) for x in args.nodes.split(",")):
        start = subprocess.run(["bash", str(SCRIPT), "start", str(k - 1)], env=env, text=True,
                               capture_output=True, check=True)
        address = re.search(r"^address: (\S+)", start.stdout, re.M).group(1)
        try:
            load_before = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, str(REPO / "jobs" / "score_corpus.py"), "--corpus", str(corpus),
                 "--out", str(work / f"scores{k}"), "--network", args.network, "--address",
                 address, "--concurrency", str(k), "--num-cpus", "1", "--rows-per-batch",
                 str(args.rows_per_batch), "--no-progress"],
                env=env, text=True, capture_output=True, cwd=REPO)
            load_after = os.getloadavg()[0]
        finally:
            subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True)
        log = out.stdout + out.stderr
        if out.returncode != 0:
            print(log[-3000:], file=sys.stderr)
            return 1
        seconds = float(re.search(r"cells scored \(\d+ failed\) .* in ([0-9.]+) s", log).group(1))
        nodes = re.search(r"cells scored per node \(\d+ node\(s\)\): (.*)", log).group(1)
        rows.append((k, seconds, args.n / seconds, nodes, load_before, load_after))
    base = rows[0][2]
    print("| nodes (1 CPU each) | wall s | cells/s | efficiency | cells per node | "
          "load avg before / after |\n|---|---|---|---|---|---|")
    for k, seconds, rate, nodes, before, after in rows:
        print(f"| {k} | {seconds:.1f} | {rate:.2f} | {rate / (k * base):.2f} | {nodes} | "
              f"{before:.1f} / {after:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
