"""Pretrain the cell generator on Ray Train (the `hgnas pretrain cells` job).

    python jobs/pretrain.py --corpus DIR --out DIR --workers 2 --max-epochs 20
    ray job submit --working-dir . -- python jobs/pretrain.py --corpus /shared/corpus \\
        --out /shared/generator --workers 4 --gpu --storage /shared/runs
    python jobs/pretrain.py --smoke-test      # 60 cells, synthetic ZC, tiny models, 2 workers

Options are those of `hgnas pretrain cells` (see --help). Under `ray job submit` it joins the
cluster (RAY_ADDRESS); otherwise it starts Ray here. Re-running with the same --out (or --storage)
resumes both training runs from their latest checkpoints. The smoke test trains on synthetic
scores (no proxy is computed), then loads the artifact and prints a few sampled cells.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from hgnas_ray.cli import OneLineParser, run_reporting_errors
from hgnas_ray.cli.generate import add_pretrain_arguments, run_pretrain
from hgnas_ray.cli.log import configure_logging

SMOKE_CELLS, SMOKE_SHARD, SMOKE_SAMPLES = 60, 32, 5
SMOKE_MODEL = {"hidden": 16, "gvae_layers": 2, "latent": 8, "decoder_hidden": 32,
               "ccnf_hidden": 16, "ccnf_layers": 2, "ccnf_method": "rk4", "ccnf_step_size": 0.5,
               "batch_size": 16, "max_epochs": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="pretrain.py", description=__doc__.splitlines()[0])
    add_pretrain_arguments(parser, corpus_required=False)
    parser.add_argument("--smoke-test", action="store_true",
                        help=f"{SMOKE_CELLS} cells with synthetic ZC scores (in a temporary "
                             "folder unless --corpus/--out are given), tiny models, 1 epoch")
    args = parser.parse_args(argv)
    if not args.smoke_test and (args.corpus is None or args.out is None):
        parser.error("--corpus and --out are required (or pass --smoke-test)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_reporting_errors("pretrain.py", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if not args.smoke_test:
        return run_pretrain(args)
    with tempfile.TemporaryDirectory(prefix="hgnas_smoke_") as tmp:
        return _smoke_test(args, Path(tmp))


def _smoke_test(args: argparse.Namespace, tmp: Path) -> int:
    from hgnas_ray.corpus import CorpusSpec, build_corpus
    from hgnas_ray.generator import CellGenerator, write_synthetic_scores
    from hgnas_ray.space import format_genotype

    if args.corpus is None:
        args.corpus = str(tmp / "corpus")
        build_corpus(args.corpus, CorpusSpec(args.space or "cell", SMOKE_CELLS, seed=0,
                                             shard_size=SMOKE_SHARD), progress=False)
        write_synthetic_scores(args.corpus, nan_every=10)
    args.out = args.out or str(tmp / "generator")
    for name, value in SMOKE_MODEL.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.workers == 1:  # the default: the smoke test exercises DDP
        args.workers = 2
    code = run_pretrain(args)
    generator = CellGenerator.load(args.out)
    for cell in generator.sample(SMOKE_SAMPLES, cluster=generator.best_cluster(), seed=0):
        print(format_genotype(cell))
    return code


if __name__ == "__main__":
    sys.exit(main())
