"""`hgnas prepare-data`: image files -> cached uint8 arrays that load in about a second."""

from __future__ import annotations

import argparse

from hgnas_ray.cli.options import check_out_dir
from hgnas_ray.config import plain_folder_name
from hgnas_ray.data import prepare_data


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "prepare-data", help="cache an ImageFolder tree or the CIFAR-10 JPEG tarballs as arrays",
        description="Turn an ImageFolder tree, a tarball of one, a folder of such tarballs, or a "
                    "task name found under --data / HGNAS_DATA (e.g. cifar10) into "
                    "<cache>/<task>/<split>.npz (cache: --cache-dir, HGNAS_CACHE or "
                    "~/.cache/hgnas_ray). Later loads of the task find it automatically.")
    parser.add_argument("source", help="task name (e.g. cifar10), folder or tarball")
    parser.add_argument("--data", default=None,
                        help="data root holding <task>/ (default: HGNAS_DATA)")
    parser.add_argument("--out", default=None, help="output folder (default: <cache>/<task>)")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: HGNAS_CACHE)")
    parser.add_argument("--task", default=None, help="task name for the output folder")
    parser.add_argument("--splits", default=None, help="comma-separated, e.g. train,test")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip undecodable images (counted) instead of failing")
    parser.set_defaults(run=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    splits = None if args.splits is None else [s for s in args.splits.split(",") if s]
    if args.task is not None:
        plain_folder_name(args.task, "--task", "the cache folder")
    out = None if args.out is None else check_out_dir(args.out)
    cache_dir = None if args.cache_dir is None else check_out_dir(args.cache_dir, "--cache-dir")
    written = prepare_data(args.source, out, task=args.task, splits=splits, root=args.data,
                           cache_dir=cache_dir, skip_corrupt=args.skip_corrupt)
    for split, path in written.items():
        print(f"{split}: {path}")
    return 0
