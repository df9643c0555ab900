"""`hgnas bench nb201`: random, evolution and the generative pipeline head to head on
NAS-Bench-201, each with the same proxy and the same evaluation budget."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from hgnas_ray.errors import ConfigError

log = logging.getLogger("hgnas_ray.bench")


def register_nb201(commands: argparse._SubParsersAction) -> None:
    nb = commands.add_parser(
        "nb201", help="search strategies head to head on NAS-Bench-201 (ground-truth scored)",
        description="Per seed, runs each method (random sampling, regularised evolution, the "
                    "generative pipeline) with the same proxy fitness and the same budget of "
                    "proxy evaluations on CIFAR-10 probe images, then scores each choice with "
                    "the NAS-Bench-201 accuracy table (read only after every search has "
                    "chosen). Resumable: re-running the same command continues.")
    nb.add_argument("--data", default=None, help="data root holding cifar10/ (and nb201/ for "
                                                 "the table); default: HGNAS_DATA")
    nb.add_argument("--out", required=True, help="result JSON; the plot goes beside it (.png)")
    nb.add_argument("--seeds", type=int, default=10)
    nb.add_argument("--first-seed", type=int, default=0)
    nb.add_argument("--evals", type=int, default=1000,
                    help="proxy evaluations per search, the generator's corpus included")
    nb.add_argument("--proxy", default="tcet",
                    help="fitness: a proxy or a rank aggregate such as synflow+nwot+macs")
    nb.add_argument("--methods", default="random,evolution,generative")
    nb.add_argument("--corpus-size", type=int, default=300,
                    help="cells the generative method scores to pretrain its generator")
    nb.add_argument("--artifact", default=None,
                    help="a pretrained NAS-Bench-201 cell generator: the generative method "
                         "uses it with no corpus of its own (the amortised variant)")
    nb.add_argument("--batch-size", type=int, default=16, help="genotypes per ask")
    nb.add_argument("--workers", type=int, default=0,
                    help="Ray scoring actors (0: score in this process)")
    nb.add_argument("--address", default=None, help="join this Ray cluster (default: start "
                                                    "Ray in-process when --workers > 0)")
    nb.add_argument("--device", default="cpu", help="cpu or cuda")
    nb.add_argument("--channels", type=int, default=None,
                    help="network channels (default: 8 on CPU, 16 on CUDA: the benchmark's)")
    nb.add_argument("--cells-per-stage", type=int, default=None, help="(1 on CPU, 5 on CUDA)")
    nb.add_argument("--probe-batch", type=int, default=None, help="(32 on CPU, 64 on CUDA)")
    _add_training_options(nb)
    nb.add_argument("--table", default=None,
                    help="nb201_cifar10.csv (default: DATA/nb201/); read only to score")
    nb.add_argument("--work-dir", default=None,
                    help="the search runs (default: OUT without .json + '_runs')")
    nb.add_argument("--cache", default=None,
                    help="cache of proxy scores and pretrained generators, shared across runs "
                         "(default: HGNAS_CACHE/nb201_search)")
    nb.add_argument("--import-scores", default=None, metavar="CORPUS",
                    help="first fill the cache from a corpus scored with the same settings by "
                         "`hgnas corpus score` (Ray Data)")
    nb.set_defaults(run=run_nb201)


def _add_training_options(nb: argparse.ArgumentParser) -> None:
    group = nb.add_argument_group(
        "short training", "with --train-budget-s S > 0, each search's top cells by its fitness "
        "are trained on CIFAR-10 for at most S seconds each (Ray Tune trials, ASHA on "
        "validation accuracy; the validation split is taken from the training set) and the "
        "method's final choice is the best by validation accuracy")
    group.add_argument("--train-budget-s", type=float, default=0.0,
                       help="wall seconds of training per shortlisted cell (0: no training)")
    group.add_argument("--train-top", type=int, default=8, help="shortlist size per search")
    group.add_argument("--train-concurrency", type=int, default=2,
                       help="trials at a time (one CPU each)")
    group.add_argument("--train-channels", type=int, default=None,
                       help="network channels for training (default: --channels' value)")
    group.add_argument("--train-cells-per-stage", type=int, default=None,
                       help="(default: --cells-per-stage's value)")
    group.add_argument("--train-batch-size", type=int, default=64)
    group.add_argument("--train-lr", type=float, default=0.05)
    group.add_argument("--train-batches-per-epoch", type=int, default=40,
                       help="an epoch (one report, checkpoint and ASHA decision) is this many "
                            "batches")
    group.add_argument("--train-val-images", type=int, default=2000,
                       help="validate on this many of the 5,000 held-out training images")
    group.add_argument("--train-epochs", type=int, default=None,
                       help="train every shortlisted cell this many epochs (the same work for "
                            "each; the cosine runs over the steps, --train-budget-s is a cap); "
                            "default: as many as its --train-budget-s seconds allow, so cheaper "
                            "cells train more steps")
    group.add_argument("--train-grace", type=int, default=2,
                       help="ASHA grace period, in epochs")


def run_nb201(args: argparse.Namespace) -> int:
    from hgnas_ray.bench.nb201_report import format_summary, plot_anytime
    from hgnas_ray.bench.nb201_search import (
        Nb201BenchConfig,
        load_nb201_artifact,
        run_benchmark,
        score_choices,
        summarize,
        to_json,
    )
    from hgnas_ray.data.locations import resolve_cache_dir, resolve_data_root

    config = Nb201BenchConfig(
        seeds=args.seeds, first_seed=args.first_seed, evals=args.evals, fitness=args.proxy,
        methods=tuple(m for m in args.methods.split(",") if m), batch_size=args.batch_size,
        corpus_size=args.corpus_size, artifact=args.artifact,
        train_top=args.train_top).validate()
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; pass a file path such as {out}/nb201.json")
    scoring = _scoring(args, config)
    pretrained = load_nb201_artifact(args.artifact) if args.artifact else None
    work_dir = Path(args.work_dir) if args.work_dir else out.with_name(out.stem + "_runs")
    cache_dir = Path(args.cache) if args.cache else resolve_cache_dir() / "nb201_search"
    if not args.verbose:
        logging.getLogger("hgnas_ray.generator").setLevel(logging.WARNING)
    if args.import_scores:
        from hgnas_ray.search.cache import ProxyCache, scoring_setting

        cache = ProxyCache(cache_dir, scoring_setting(scoring, "nb201"))
        added = cache.add_corpus_scores(args.import_scores)
        log.info("imported %d scored cells from %s into the cache", added, args.import_scores)
    evaluate = _evaluate(args, scoring)
    start = time.perf_counter()

    def on_run(run) -> None:
        log.info("%s seed %d: chose %s (fitness %.4g) after %d evaluations, %.0fs", run.method,
                 run.seed, run.chosen, run.fitness, run.evaluations, run.wall_seconds)

    training = _short_training(args, scoring, work_dir)
    runs = run_benchmark(config, scoring, work_dir, cache_dir, evaluate, on_run, pretrained,
                         training)
    data_root = resolve_data_root(args.data)
    table = Path(args.table) if args.table else (data_root / "nb201" if data_root else None)
    scored = score_choices(runs, table)
    if not scored:
        where = f"looked at {table}" if table else "no --table, --data or HGNAS_DATA"
        log.warning("no NAS-Bench-201 table found (%s): the choices are not scored; pass "
                    "--table PATH/nb201_cifar10.csv", where)
    result = to_json(runs, config, scoring, summarize(runs, config),
                     {"wall_seconds": time.perf_counter() - start, "scored": scored,
                      "training": dict(training.settings) if training else None})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot = plot_anytime(result, out.with_suffix(".png"))
    print(format_summary(result))
    print(f"\nresults: {out}" + (f", plot: {plot}" if plot else ""))
    return 0


def _scoring(args: argparse.Namespace, config):
    from hgnas_ray.corpus.scoring import ScoringConfig

    gpu = args.device.startswith("cuda")
    if gpu:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {args.device}: CUDA is not available on this machine; "
                              "use --device cpu")
    elif args.device != "cpu":
        raise ConfigError(f"--device must be cpu or cuda[:N]; got {args.device!r}")
    return ScoringConfig(
        config.proxies, "cifar10", args.data,
        args.probe_batch or (64 if gpu else 32), 2, True,
        args.channels or (16 if gpu else 8), args.cells_per_stage or (5 if gpu else 1),
        0, args.device).validate()


def _evaluate(args: argparse.Namespace, scoring):
    from hgnas_ray.bench.nb201_search import local_evaluate

    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0; got {args.workers}")
    if args.workers == 0:
        return local_evaluate(scoring)
    from hgnas_ray.distributed.search import actor_pool_evaluate
    from hgnas_ray.search.spaces import GenotypeSpace

    _init_ray(args)
    space = GenotypeSpace("nb201")
    gpus = 1.0 / args.workers if args.device.startswith("cuda") else 0.0
    return actor_pool_evaluate(scoring.to_dict(), args.workers, space.key, space.to_text,
                               num_gpus=gpus)


def _init_ray(args: argparse.Namespace) -> None:
    """Start Ray in-process (or join --address) with a logical CPU for each scoring actor and
    each training trial: the actors stay alive, idle, while the shortlists train."""
    from hgnas_ray.config import RayConfig
    from hgnas_ray.distributed.runtime import init_ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    trials = args.train_concurrency if args.train_budget_s > 0 else 0
    init_ray(replace(RayConfig(), address=args.address,
                     num_cpus=None if args.address else max(args.workers + trials, 1)))


def _short_training(args: argparse.Namespace, scoring, work_dir: Path):
    """The shortlists' training as Ray Tune trials, or None without --train-budget-s."""
    if args.train_budget_s < 0 or args.train_concurrency < 1:
        raise ConfigError(f"--train-budget-s must be >= 0 and --train-concurrency >= 1; got "
                          f"{args.train_budget_s} and {args.train_concurrency}")
    if args.train_budget_s == 0:
        return None
    from hgnas_ray.bench.nb201_search import ShortTraining
    from hgnas_ray.training.candidates import CandidateTrainConfig, TaskConfig

    gpu = args.device.startswith("cuda")
    train = CandidateTrainConfig(
        epochs=10_000 if args.train_epochs is None else args.train_epochs,
        batch_size=args.train_batch_size, lr=args.train_lr,
        val_limit=args.train_val_images, max_batches_per_epoch=args.train_batches_per_epoch,
        budget_s=args.train_budget_s,
        channels=args.train_channels or scoring.skeleton_channels,
        cells_per_stage=args.train_cells_per_stage or scoring.skeleton_cells).validate()
    task = TaskConfig("cifar10", args.data)
    settings = {"budget_s": args.train_budget_s, "epochs": args.train_epochs,
                "train": train.to_dict(),
                "task": {"task": task.task}, "max_concurrent": args.train_concurrency,
                "grace_period": args.train_grace, "reduction_factor": 2.0,
                "gpus_per_trial": 1.0 / args.train_concurrency if gpu else 0.0}

    def train_shortlist(archs, name):
        from hgnas_ray.distributed.tune_train import train_candidates
        from hgnas_ray.space.nb201 import Nb201Genotype

        _init_ray(args)
        return train_candidates(
            [Nb201Genotype.from_string(a) for a in archs], task, train, work_dir / "training",
            name, max_concurrent=args.train_concurrency, num_cpus=1.0,
            num_gpus=settings["gpus_per_trial"], grace_period=args.train_grace,
            reduction_factor=settings["reduction_factor"])

    return ShortTraining(settings, train_shortlist)
