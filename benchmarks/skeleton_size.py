"""Does the CPU-sized scoring skeleton rank cells like the paper-sized one?

Scores the same random cells of the general space with the paper's skeleton (16 channels,
5 cells per stage, batch 64) and the CPU default (8 channels, 1 cell per stage, batch 32) on
real CIFAR-10 probe batches, and reports, per proxy, the Spearman correlation between the two
settings and the time per cell of each.

    HGNAS_DATA=../shared/data python benchmarks/skeleton_size.py --n 200 --out /tmp/skeleton.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from hgnas_ray.evaluation import Evaluator, load_probe
from hgnas_ray.nn.builder import SkeletonSize
from hgnas_ray.space import sample_cell

SETTINGS = {"paper": (SkeletonSize(16, 5), 64), "cpu": (SkeletonSize(8, 1), 32)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxies", default="snip_snr,nwot,params")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", required=True, help="JSON lines, resumable")
    args = parser.parse_args()
    proxies = args.proxies.split(",")
    rng = np.random.default_rng(args.seed)
    cells = [sample_cell(rng) for _ in range(args.n)]
    out = Path(args.out)
    done = {json.loads(x)["hash"] for x in out.read_text().splitlines()} if out.exists() else set()
    scorers = {}
    for name, (skeleton, batch) in SETTINGS.items():
        batches, task = load_probe("cifar10", args.data, batch, 1, args.seed)
        scorers[name] = Evaluator(proxies, batches, task, skeleton, args.seed, "cpu")
    with out.open("a") as sink:
        for index, cell in enumerate(cells):
            if cell.hash in done:
                continue
            row = {"hash": cell.hash}
            for name, scorer in scorers.items():
                start = time.perf_counter()
                record = scorer(cell)
                row[name] = {p: record[p] for p in proxies}
                row[f"{name}_seconds"] = time.perf_counter() - start
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(f"[{index + 1}/{len(cells)}]", file=sys.stderr, flush=True)
    report(out, proxies, args)
    return 0


def report(out: Path, proxies: list[str], args: argparse.Namespace) -> None:
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    print(f"command: python benchmarks/skeleton_size.py --n {args.n} --seed {args.seed} "
          f"--proxies {args.proxies}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}; cells: {len(rows)}\n")
    print("| proxy | Spearman paper vs CPU skeleton | cells |")
    print("|---|---|---|")
    for proxy in proxies:
        a = np.array([r["paper"][proxy] for r in rows], dtype=float)
        b = np.array([r["cpu"][proxy] for r in rows], dtype=float)
        keep = np.isfinite(a) & np.isfinite(b)
        rho = stats.spearmanr(a[keep], b[keep]).statistic
        print(f"| {proxy} | {rho:.3f} | {int(keep.sum())} |")
    paper = np.median([r["paper_seconds"] for r in rows])
    cpu = np.median([r["cpu_seconds"] for r in rows])
    print(f"\nmedian seconds per cell: paper {paper:.3f}, CPU {cpu:.3f} "
          f"(ratio {paper / cpu:.1f}x)")


if __name__ == "__main__":
    sys.exit(main())
