"""`hgnas bench ...`: measurements against external ground truth."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from hgnas_ray.bench import Nb201Table
from hgnas_ray.bench.proxy_validation import (
    DEFAULT_PROXIES,
    ValidationSetup,
    build_report,
    format_report,
    read_reference,
    read_results,
    run_validation,
)
from hgnas_ray.cli.bench_nb201 import register_nb201
from hgnas_ray.errors import ConfigError
from hgnas_ray.evaluation import check_proxy_names

logger = logging.getLogger(__name__)


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
    _register_generator(commands)
    register_nb201(commands)


def _register_generator(commands: argparse._SubParsersAction) -> None:
    gen = commands.add_parser(
        "generator", help="quality of a cell-generator artifact on its held-out corpus cells",
        description="Reconstruction and condition-head R^2 on the artifact's held-out cells; "
                    "validity, uniqueness and novelty of samples per temperature; condition "
                    "fidelity with generated cells scored exactly as the corpus was "
                    "(scores/scoring.json); for NAS-Bench-201 artifacts with --table, true "
                    "accuracy of best-cluster cells vs random cells. Timings per stage.")
    gen.add_argument("--artifact", required=True, help="cell-generator artifact folder")
    gen.add_argument("--corpus", required=True, help="the scored corpus it was trained on")
    gen.add_argument("--data", default=None, help="data root for the corpus's task "
                                                  "(default: HGNAS_DATA)")
    gen.add_argument("--samples", type=int, default=1000, help="draws per temperature")
    gen.add_argument("--temperatures", default="0.4,1.0")
    gen.add_argument("--per-cluster", type=int, default=8,
                     help="cells scored per cluster for condition fidelity")
    gen.add_argument("--random", type=int, default=100,
                     help="best-cluster cells and random cells scored for the comparison")
    gen.add_argument("--no-fidelity", action="store_true",
                     help="skip the condition-fidelity stage (the only one that scores cells)")
    gen.add_argument("--table", default=None,
                     help="nb201_cifar10.csv: NAS-Bench-201 artifacts only, used only to score")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: torch's); use 1 while other jobs share "
                          "the CPUs: oversubscribed scoring runs ~20x slower")
    gen.add_argument("--json", action="store_true", help="print the report as JSON")
    gen.set_defaults(run=run_generator)


def run_generator(args: argparse.Namespace) -> int:
    from hgnas_ray.bench.generator_quality import (
        GeneratorBenchConfig,
        corpus_score_fn,
        format_generator_report,
        run_generator_bench,
    )
    from hgnas_ray.generator import CellGenerator, load_scored_corpus

    try:
        temperatures = tuple(float(t) for t in args.temperatures.split(",") if t)
    except ValueError:
        raise ConfigError(f"--temperatures must be comma-separated numbers; got "
                          f"{args.temperatures!r}") from None
    config = GeneratorBenchConfig(args.samples, temperatures, args.per_cluster, args.random,
                                  seed=args.seed).validate()
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1; got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    generator = CellGenerator.load(args.artifact)
    corpus = load_scored_corpus(args.corpus, generator.proxies)
    score = None if args.no_fidelity else corpus_score_fn(args.corpus, args.data)
    table = Nb201Table.load(args.table) if args.table else None
    report = run_generator_bench(generator, corpus, score, config, table)
    print(json.dumps(report, indent=1) if args.json else format_generator_report(report))
    return 0


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
                logger.info("[%d/%d] %.0fs", count, total, time.perf_counter() - start)

        run_validation(setup, [row["arch_str"] for row in reference], out, args.workers,
                       progress)
    accuracy = {row["arch_str"]: table.test_accuracy(row["arch_str"]) for row in reference}
    report = build_report(read_results(out), reference, accuracy, names)
    report["seconds"] = time.perf_counter() - start
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
