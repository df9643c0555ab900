"""`hgnas bench ...`: measurements against external ground truth."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hgnas_ray.bench.proxy_validation import (
    DEFAULT_PROXIES,
    ValidationSetup,
    build_report,
    format_report,
    read_reference,
    read_results,
    run_validation,
)
from hgnas_ray.errors import ConfigError
from hgnas_ray.search.scorer import check_proxy_names
from hgnas_ray.space import Nb201Table


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks against external ground truth")
    commands = bench.add_subparsers(dest="bench_command", required=True,
                                    parser_class=type(bench))
    proxies = commands.add_parser(
        "proxies", help="proxies on NAS-Bench-201 vs NAS-Bench-Suite-Zero and vs accuracy",
        description="Scores the reference cells with the exact NAS-Bench-201 network on real "
                    "CIFAR-10 probe batches (resumable JSON lines in --out), then reports rank "
                    "correlations against the reference values and the test accuracy.")
    proxies.add_argument("--space", choices=["nb201"], default="nb201")
    proxies.add_argument("--cells", required=True, help="zc_reference_cifar10_1000.csv")
    proxies.add_argument("--table", default=None,
                         help="nb201_cifar10.csv (default: next to --cells)")
    proxies.add_argument("--data", default=None, help="data root holding cifar10/ "
                                                      "(default: HGNAS_DATA)")
    proxies.add_argument("--out", required=True, help="results file (JSON lines), resumable")
    proxies.add_argument("--proxies", default=",".join(DEFAULT_PROXIES))
    proxies.add_argument("--batch-size", type=int, default=64)
    proxies.add_argument("--seed", type=int, default=0)
    proxies.add_argument("--limit", type=int, default=None, help="only the first N cells")
    proxies.add_argument("--workers", type=int, default=1, help="parallel processes")
    proxies.add_argument("--report-only", action="store_true",
                         help="do not score; report on what --out holds")
    proxies.add_argument("--json", action="store_true", help="print the report as JSON")
    proxies.set_defaults(run=run_proxies)


def run_proxies(args: argparse.Namespace) -> int:
    names = check_proxy_names([p for p in args.proxies.split(",") if p])
    reference = read_reference(args.cells)[: args.limit]
    table = Nb201Table.load(args.table or Path(args.cells).parent)
    if args.batch_size < 2 or args.workers < 1:
        raise ConfigError("--batch-size must be >= 2 and --workers >= 1")
    out = Path(args.out)
    start = time.perf_counter()
    if not args.report_only:
        setup = ValidationSetup(args.data, batch_size=args.batch_size, seed=args.seed,
                                proxies=names)

        def progress(count: int, total: int, record: dict) -> None:
            if count % 10 == 0 or count == total:
                print(f"[{count}/{total}] {time.perf_counter() - start:.0f}s", file=sys.stderr,
                      flush=True)

        run_validation(setup, [row["arch_str"] for row in reference], out, args.workers,
                       progress)
    accuracy = {row["arch_str"]: table.test_accuracy(row["arch_str"]) for row in reference}
    report = build_report(read_results(out), reference, accuracy, names)
    report["seconds"] = time.perf_counter() - start
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
