"""The search job: `python jobs/search.py --config jobs/configs/smoke.yaml` (or `ray job submit`).

    python jobs/search.py --config jobs/configs/cifar10.yaml [--set key=value ...] [--out DIR]
    ray job submit --working-dir . -- python jobs/search.py --config jobs/configs/cifar10.yaml \\
        --set ray.address=auto --set storage_path=/shared/hgnas

Stages (`hgnas_ray.search.pipeline`): corpus (Ray Data) -> cell generator and sequence
generator (Ray Train; or the artifacts the config names) -> conditional generation ranked by the
proxy on the task's images (Ray Tune) -> optional HL-Evo refinement -> training of the top
candidates with ASHA (Ray Tune) -> export -> report. Each stage is skipped when its output
exists and matches the config, so re-running the same command after a kill continues where it
stopped. The run folder is `<storage_path>/<run_name>` (or --out).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from hgnas_ray.cli import OneLineParser, run_reporting_errors
from hgnas_ray.cli.log import configure_logging

SMOKE_CONFIG = "jobs/configs/smoke.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="search.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (see jobs/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.top_k=8")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="data root holding the task's folder (overrides data.root; "
                             "default: HGNAS_DATA)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="run folder (overrides storage_path and run_name: its parent and "
                             "its name)")
    parser.add_argument("--smoke-test", action="store_true",
                        help=f"the whole pipeline, small (--config {SMOKE_CONFIG} unless "
                             "--config is given)")
    parser.add_argument("--force", action="store_true",
                        help="reuse a run folder made with another config, rerunning the "
                             "stages the change affects")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_reporting_errors("search.py", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from hgnas_ray.distributed.runtime import quiet_ray_libraries

    quiet_ray_libraries()  # before ray.data and ray.tune load
    # after configure_logging: torch_geometric's import-time warnings stay hidden
    from hgnas_ray.config import load_config
    from hgnas_ray.distributed.search_job import RayExecutors
    from hgnas_ray.search.config import SearchConfig
    from hgnas_ray.search.pipeline import run_pipeline

    path = args.config
    if path is None and args.smoke_test:
        path = Path(__file__).resolve().parent / "configs" / "smoke.yaml"
    config = load_config(SearchConfig, path, args.set)
    if args.data is not None:
        config = replace(config, data=replace(config.data, root=args.data))
    if args.out is not None:
        out = Path(args.out).expanduser().resolve()
        config = replace(config, storage_path=str(out.parent), run_name=out.name)
    result = run_pipeline(config, RayExecutors(config.ray), force=args.force)
    print(summary(result))
    return 0


def summary(result) -> str:
    """What the job prints at the end: where the results are and the best candidate."""
    lines = [f"\nrun folder: {result.run_dir}",
             f"  {len(result.candidates)} candidates scored, {len(result.trained)} trained"]
    best = result.best
    if best is None:
        lines.append("  no candidate finished training: nothing exported")
    else:
        accuracy = best.get("accuracy")
        lines.append(f"  best: {best.get('hash', '?')[:12]}  test accuracy "
                     f"{accuracy if accuracy is None else f'{accuracy:.2f}%'}  "
                     f"params={best['params']:,}  MACs={best['macs']:,} "
                     f"(FLOPs = 2 x MACs = {best['flops']:,})")
        lines.append(f"  exported to {result.run_dir / 'export'}")
    if result.report is not None:
        lines.append(f"  report: {result.report}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
