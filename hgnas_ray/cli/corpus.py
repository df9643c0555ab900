"""`hgnas corpus build | score | check`: the cell corpus and its zero-cost scores.

`score` runs on Ray Data (imported only when it runs: the rest of the CLI never loads Ray).
`jobs/score_corpus.py` takes the same options, for `ray job submit`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from hgnas_ray.cli.options import check_out_dir, seed
from hgnas_ray.cli.score import add_network_arguments, network_setup
from hgnas_ray.corpus import (
    CORPUS_SPACES,
    DEFAULT_SHARD_SIZE,
    CorpusSpec,
    ScoringConfig,
    build_corpus,
    cell_shards,
    default_scores_dir,
)
from hgnas_ray.corpus.shards import check_corpus
from hgnas_ray.errors import ConfigError, HgnasError

DEFAULT_PROXIES = "snip_snr,nwot,params"  # the cell ZC vector of DESIGN 3
logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    corpus = sub.add_parser("corpus", help="build a cell corpus and score it on Ray Data")
    commands = corpus.add_subparsers(dest="corpus_command", required=True,
                                     parser_class=type(corpus))
    build = commands.add_parser(
        "build", help="sample distinct cells into Parquet shards",
        description="Writes distinct cells (by isomorphism-invariant hash) to "
                    "DIR/cells/part-NNNNN.parquet and DIR/manifest.json. Re-running with the same "
                    "arguments resumes a killed build.")
    build.add_argument("--space", choices=CORPUS_SPACES, required=True)
    build.add_argument("--n", type=int, default=None, help="number of distinct cells")
    build.add_argument("--all", action="store_true",
                       help="nb201: every distinct cell (also the default when --n >= 15625)")
    build.add_argument("--seed", type=seed, default=0)
    build.add_argument("--out", required=True, help="corpus folder")
    build.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(run=run_build)

    score = commands.add_parser(
        "score", help="zero-cost proxies of every corpus cell, on Ray Data",
        description="Scores each cell shard into OUT/part-NNNNN.parquet (default OUT: "
                    "CORPUS/scores), each written as soon as its cells are scored; shards "
                    "already scored are skipped, so a killed run resumes. OUT/scoring.json "
                    "names the settings and the network the proxies ran on (--network). The "
                    "params column is the cost of the network a cell names: for nb201 the "
                    "benchmark's network, for a cell of the general space the scoring skeleton.")
    add_score_arguments(score)
    score.set_defaults(run=run_score)

    check = commands.add_parser("check", help="read every shard and compare it with the manifest")
    check.add_argument("--corpus", required=True)
    check.set_defaults(run=run_check)


def add_score_arguments(parser: argparse.ArgumentParser, corpus_required: bool = True) -> None:
    """The options of `hgnas corpus score`, shared with jobs/score_corpus.py."""
    parser.add_argument("--corpus", required=corpus_required,
                        help="corpus folder (holding cells/)")
    parser.add_argument("--proxies", default=DEFAULT_PROXIES,
                        help=f"comma-separated (default {DEFAULT_PROXIES})")
    parser.add_argument("--data", default=None, help="data root (default: HGNAS_DATA)")
    parser.add_argument("--task", default="cifar10", help="task name or dataset path")
    add_network_arguments(parser)  # --network full|reduced, as `hgnas score`
    parser.add_argument("--class-balanced", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1, help="scoring workers (actors)")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per worker")
    parser.add_argument("--num-gpus", type=float, default=0.0,
                        help="GPUs per worker; fractions share a GPU, e.g. 0.25")
    parser.add_argument("--rows-per-batch", type=int, default=16,
                        help="at most this many cells per Ray Data batch (a batch never spans "
                             "two shards, so each shard is written once its cells are scored)")
    parser.add_argument("--out", default=None, help="scores folder (default: CORPUS/scores)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: RAY_ADDRESS, else start Ray here)")
    parser.add_argument("--ray-cpus", type=int, default=None,
                        help="CPUs of a Ray started here (default: all)")
    parser.add_argument("--no-progress", action="store_true")


def run_build(args: argparse.Namespace) -> int:
    if args.n is None and not args.all:
        raise ConfigError("pass --n N (distinct cells) or, for --space nb201, --all")
    spec = CorpusSpec(args.space, args.n or 0, args.seed, args.shard_size, args.all)
    report = build_corpus(check_out_dir(args.out), spec, progress=not args.no_progress)
    rate = (f"; sampling {report.sampling_seconds:.1f} s = {report.cells_per_second:.0f} "
            "cells/s" if report.sampling_seconds > 0 else "")
    print(f"{report.rows} distinct cells ({args.space} space) in {args.out} "
          f"({report.shards_written} shard(s) written, {report.shards_kept} kept){rate}")
    return 0


def scoring_config(args: argparse.Namespace) -> ScoringConfig:
    """The validated scoring config of the parsed options (paths made absolute for workers)."""
    from hgnas_ray.data import resolve_data_root
    from hgnas_ray.evaluation import check_seed

    device = "cuda" if args.num_gpus > 0 else "cpu"  # the workers' GPUs, not the driver's
    setup = network_setup(args)
    check_seed(args.seed)
    root = resolve_data_root(args.data)
    task = args.task
    if Path(task).expanduser().exists():
        task = str(Path(task).expanduser().resolve())
    return ScoringConfig(
        proxies=tuple(p for p in args.proxies.split(",") if p), task=task,
        data_root=str(root.resolve()) if root is not None else None,
        batch_size=setup.batch_size, skeleton_channels=setup.skeleton.channels,
        skeleton_cells=setup.skeleton.cells_per_stage,
        class_balanced=args.class_balanced, seed=args.seed, device=device).validate()


def run_score(args: argparse.Namespace) -> int:
    config = scoring_config(args)  # bad proxy names etc. fail here, before Ray starts
    corpus = Path(args.corpus).expanduser().resolve()
    shards = cell_shards(corpus)  # an empty corpus fails here too
    out = Path(args.out).expanduser().resolve() if args.out else default_scores_dir(corpus)
    _check_task(config)
    from hgnas_ray.config import RayConfig
    from hgnas_ray.distributed.corpus_scoring import score_corpus
    from hgnas_ray.distributed.runtime import init_ray

    address = args.address or os.environ.get("RAY_ADDRESS")  # set under `ray job submit`
    init_ray(RayConfig(address=address, num_cpus=None if address else args.ray_cpus))
    logger.info("scoring %d shard(s) of %s with %s on %s (%d worker(s) x %g CPU, %g GPU) -> %s",
                len(shards), corpus, ",".join(config.proxies), config.task, args.concurrency,
                args.num_cpus, args.num_gpus, out)
    report = score_corpus(corpus, config, out, args.concurrency, args.num_cpus, args.num_gpus,
                          args.rows_per_batch, progress=not args.no_progress)
    print(f"{report.cells} cells scored ({report.cell_errors} failed) into "
          f"{len(report.scored)} shard(s), {len(report.skipped)} already done, in "
          f"{report.seconds:.1f} s; scores in {report.out_dir}")
    if report.failed:
        for name, message in report.failed.items():
            print(f"hgnas: error: {name}: {message}", file=sys.stderr)
        print(f"hgnas: error: {len(report.failed)} shard(s) not scored: "
              f"{', '.join(report.failed)}; fix or remove them and re-run (scored shards are "
              "kept)", file=sys.stderr)
        return 2
    return 0


def _check_task(config: ScoringConfig) -> None:
    """Load the probe batches once here, so a missing dataset is one clear line, not N failed
    actors."""
    from hgnas_ray.evaluation import load_probe

    load_probe(config.task, config.data_root, config.batch_size, config.probe_batches,
               config.seed, config.class_balanced)


def run_check(args: argparse.Namespace) -> int:
    rows, problems = check_corpus(args.corpus)
    for problem in problems:
        print(f"hgnas: error: {problem}", file=sys.stderr)
    if problems:
        raise HgnasError(f"{len(problems)} problem(s) in corpus {args.corpus}")
    print(f"corpus {args.corpus}: {rows} distinct cells, every shard readable and as built")
    return 0
