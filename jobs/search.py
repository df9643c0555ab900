"""The search job: `python jobs/search.py --config jobs/configs/demo.yaml` (or `ray job submit`).

The entry point only: options, config, logging, the one-line error. The loop is
`hgnas_ray.search.job` (current stage: sample macro networks within the budget and evaluate
each as a Ray task - build, exact params/MACs, a forward pass on a real probe batch, zero-cost
proxies; results stream into `<storage_path>/<run_name>/candidates.jsonl`, and a re-run skips
candidates already there). The generative stages (cell generator, sequence generator, HL-Evo,
candidate training) replace the random sampler in later milestones.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from hgnas_ray.cli import OneLineParser, run_reporting_errors
from hgnas_ray.cli.log import configure_logging
from hgnas_ray.config import load_config
from hgnas_ray.search.config import SearchConfig
from hgnas_ray.search.job import format_ranking, run_search_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="search.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (see jobs/configs/demo.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set sample.num_candidates=8")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="data root holding the task's folder (overrides data.root; "
                             "default: HGNAS_DATA)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="4 candidates, small probe batch: a quick end-to-end check")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_reporting_errors("search.py", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    overrides = list(args.set)
    if args.smoke_test:
        overrides += ["sample.num_candidates=4", "data.probe_size=16"]
    config = load_config(SearchConfig, args.config, overrides)
    if args.data is not None:
        config = replace(config, data=replace(config.data, root=args.data))
    ranking = run_search_job(config, _evaluate_on_ray(config))
    print(format_ranking(ranking, config.sample.rank_by))
    return 0


def _evaluate_on_ray(config: SearchConfig):
    """The loop's `EvaluateMany`: Ray is imported (and started) only when there is work."""

    def evaluate(genotypes, evaluator, on_result) -> None:
        from hgnas_ray.distributed.candidates import ray_evaluate_many

        ray_evaluate_many(config.ray)(genotypes, evaluator, on_result)

    return evaluate


if __name__ == "__main__":
    sys.exit(main())
