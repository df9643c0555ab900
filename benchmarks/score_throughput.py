"""Corpus scoring throughput: a serial in-process loop vs Ray Data with 1 and 2 workers.

    HGNAS_DATA=/work/shared/data HGNAS_CACHE=/tmp/hgnas_cache \\
        python benchmarks/score_throughput.py --n 400

Same cells (a corpus of --n distinct cells, seed 0), same probe batches (real task images),
same proxies and skeleton in every mode. The serial loop runs `Evaluator` over the rows with
torch threads = 1; each Ray worker is an actor with num_cpus=1 and torch threads = 1, so the
modes compare like with like. Wall times are end to end: the serial time includes building the
scorer (loading the task and probe batches), a Ray time includes starting the actors (each
loads the task), reading the shards and writing the scores; starting Ray itself is excluded.
The Ray scores are checked against the serial ones. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hgnas_ray.corpus import (
    CorpusScorer,
    CorpusSpec,
    ScoringConfig,
    build_corpus,
    cell_shards,
    list_shards,
    read_cell_shard,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="cells (default 400)")
    parser.add_argument("--proxies", default="snip_snr,nwot,params")
    parser.add_argument("--task", default="cifar10")
    parser.add_argument("--data", default=None, help="data root (default: HGNAS_DATA)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skeleton-channels", type=int, default=8)
    parser.add_argument("--skeleton-cells", type=int, default=1)
    parser.add_argument("--rows-per-batch", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to run")
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = ScoringConfig(tuple(args.proxies.split(",")), task=args.task, data_root=args.data,
                           batch_size=args.batch_size, skeleton_channels=args.skeleton_channels,
                           skeleton_cells=args.skeleton_cells).validate()
    with tempfile.TemporaryDirectory(prefix="hgnas_bench_") as tmp:
        work = Path(args.work_dir or tmp)
        corpus = work / "corpus"
        build_corpus(corpus, CorpusSpec("cell", args.n, seed=0), progress=False)
        load_before = os.getloadavg()
        rows = [("serial (in-process loop)", 1, *serial(corpus, config))]
        import ray

        ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                 log_to_driver=False)
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append((f"Ray Data, {workers} worker(s)", workers,
                         *with_ray(corpus, work / f"scores_{workers}", config, workers,
                                   args.rows_per_batch)))
        ray.shutdown()
        load_after = os.getloadavg()
    print(report(args, rows, load_before, load_after))
    return 0


def serial(corpus: Path, config: ScoringConfig) -> tuple[float, dict[str, list[float]]]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    scorer = CorpusScorer(config.to_dict())
    table = pa.concat_tables(read_cell_shard(p, ["hash", "genotype"]) for p in cell_shards(corpus))
    scores = {h: _values(scorer.evaluator(g), (*config.proxies, "seconds"))
              for h, g in zip(table["hash"].to_pylist(), table["genotype"].to_pylist(),
                              strict=True)}
    return time.perf_counter() - start, scores


def with_ray(corpus: Path, out: Path, config: ScoringConfig, workers: int,
             rows_per_batch: int) -> tuple[float, dict[str, list[float]]]:
    from hgnas_ray.distributed.corpus_scoring import score_corpus

    start = time.perf_counter()
    result = score_corpus(corpus, config, out, concurrency=workers, num_cpus=1.0,
                          rows_per_batch=rows_per_batch, progress=False)
    seconds = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"Ray run failed: {result.failed}")
    table = pa.concat_tables(pq.read_table(p) for p in list_shards(out))
    return seconds, {r["hash"]: _values(r, (*config.proxies, "seconds"))
                     for r in table.to_pylist()}


def _values(record: dict, proxies: tuple[str, ...]) -> list[float]:
    return [record[p] for p in proxies]


def report(args: argparse.Namespace, rows: list, load_before: tuple, load_after: tuple) -> str:
    serial_seconds, reference = rows[0][2], rows[0][3]
    lines = ["| mode | workers | wall s | cells/s | vs serial | sum of per-cell s | "
             "max abs score diff vs serial |", "|---|---|---|---|---|---|---|"]
    for name, workers, seconds, scores in rows:
        diff = max((abs(a - b) for h, v in scores.items()
                    for a, b in zip(v[:-1], reference[h][:-1], strict=True)
                    if not (math.isnan(a) and math.isnan(b))), default=0.0)
        cell_seconds = sum(v[-1] for v in scores.values() if not math.isnan(v[-1]))
        same = "" if set(scores) == set(reference) else " (CELLS DIFFER)"
        lines.append(f"| {name} | {workers} | {seconds:.1f} | {args.n / seconds:.2f} | "
                     f"{serial_seconds / seconds:.2f}x | {cell_seconds:.1f} | {diff:.2g}{same} |")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("HGNAS_DATA", "HGNAS_CACHE")
                   if k in os.environ)
    return "\n".join([
        f"command: `{env} {command}`".replace("`  ", "`"),
        f"machine: {os.cpu_count()} CPUs ({_cpu_model()}), {platform.platform()}; torch "
        f"{torch.__version__}, torch threads 1 in every mode; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after",
        f"cells: {args.n}, proxies {args.proxies}, task {args.task}, probe batch "
        f"{args.batch_size}, skeleton {args.skeleton_channels} ch x {args.skeleton_cells} "
        f"cell/stage, {args.rows_per_batch} cells per Ray Data batch, num_cpus=1 per worker",
        "", *lines])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
