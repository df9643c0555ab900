"""Score a cell corpus with zero-cost proxies on Ray Data (the `hgnas corpus score` job).

    python jobs/score_corpus.py --corpus DIR --proxies snip_snr,nwot,params --task cifar10 \\
        --concurrency 4 --num-cpus 1
    ray job submit --working-dir . -- python jobs/score_corpus.py --corpus DIR --num-gpus 0.25 \\
        --concurrency 8
    python jobs/score_corpus.py --smoke-test      # 24 cells on digits, a tiny skeleton

Options are those of `hgnas corpus score` (see --help). Under `ray job submit` it joins the
cluster (RAY_ADDRESS); otherwise it starts Ray here. Re-running skips shards already scored.
Exit code 0 when every shard is scored, 2 when some could not be (they are named).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from hgnas_ray.cli import OneLineParser, run_reporting_errors
from hgnas_ray.cli.corpus import add_score_arguments, run_score
from hgnas_ray.cli.log import configure_logging
from hgnas_ray.corpus import CorpusSpec, build_corpus

SMOKE_CELLS, SMOKE_SHARD = 24, 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="score_corpus.py", description=__doc__.splitlines()[0])
    add_score_arguments(parser, corpus_required=False)
    parser.add_argument("--smoke-test", action="store_true",
                        help=f"{SMOKE_CELLS} cells (built in a temporary folder unless --corpus "
                             "is given) on the digits task with a 4-channel skeleton")
    args = parser.parse_args(argv)
    if args.corpus is None and not args.smoke_test:
        parser.error("--corpus is required (or pass --smoke-test)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_reporting_errors("score_corpus.py", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if not args.smoke_test:
        return run_score(args)
    with tempfile.TemporaryDirectory(prefix="hgnas_smoke_") as tmp:
        return _smoke_test(args, tmp)


def _smoke_test(args: argparse.Namespace, tmp: str) -> int:
    if args.corpus is None:
        args.corpus = tmp
        build_corpus(tmp, CorpusSpec("cell", SMOKE_CELLS, seed=args.seed,
                                     shard_size=SMOKE_SHARD), progress=False)
    args.task, args.data = "digits", None
    args.batch_size, args.skeleton_channels, args.skeleton_cells = 16, 4, 1
    args.rows_per_batch = 4
    return run_score(args)


if __name__ == "__main__":
    sys.exit(main())
