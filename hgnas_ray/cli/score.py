"""`hgnas score`: zero-cost proxies for genotypes read one per line."""

from __future__ import annotations

import argparse
import json
import math
import sys

from hgnas_ray.cli.space import genotype_lines
from hgnas_ray.errors import GenotypeError, HgnasError
from hgnas_ray.evaluation import Evaluator, check_proxy_names, default_setup, load_probe
from hgnas_ray.nn.builder import SkeletonSize
from hgnas_ray.space import SPACES, CellGenotype, MacroGenotype, Nb201Genotype, parse_genotype

SPACE_TYPES = {"cell": CellGenotype, "macro": MacroGenotype, "nb201": Nb201Genotype}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score", help="zero-cost proxies of genotypes (one per line) on real images",
        description="Reads genotypes one per line (as `hgnas space sample` prints them) and "
                    "prints one JSON line each: the genotype, then each proxy's value and status. "
                    "Cells are scored inside the fixed skeleton (DESIGN 3); its default size is "
                    "the paper's on a GPU (16 channels, 5 cells/stage, batch 64) and a CPU size "
                    "elsewhere (8 channels, 1 cell/stage, batch 32).")
    parser.add_argument("genotypes", nargs="?", default="-",
                        help="a genotype, or - (default) to read one per line from stdin")
    parser.add_argument("--space", choices=SPACES, required=True)
    parser.add_argument("--proxies", required=True, help="comma-separated, e.g. snip_snr,nwot")
    parser.add_argument("--data", default=None, help="data root (default: HGNAS_DATA)")
    parser.add_argument("--task", default="cifar10", help="task name or dataset path")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skeleton-channels", type=int, default=None)
    parser.add_argument("--skeleton-cells", type=int, default=None)
    parser.add_argument("--class-balanced", action="store_true")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.set_defaults(run=run_score)


def run_score(args: argparse.Namespace) -> int:
    proxies = check_proxy_names([p for p in args.proxies.split(",") if p])
    setup = default_setup(args.device)
    skeleton = SkeletonSize(args.skeleton_channels or setup.skeleton.channels,
                            args.skeleton_cells or setup.skeleton.cells_per_stage)
    batch_size = args.batch_size or setup.batch_size
    if batch_size < 2:
        raise HgnasError(f"--batch-size must be >= 2; got {batch_size}")
    batches, task = load_probe(args.task, args.data, batch_size, 2, args.seed,
                               args.class_balanced)
    device = args.device or ("cuda" if setup.batch_size == 64 else "cpu")
    scorer = Evaluator(proxies, batches, task, skeleton, args.seed, device)
    failures = 0
    for line_no, text in genotype_lines(args.genotypes):
        try:
            genotype = parse_genotype(text)
            if not isinstance(genotype, SPACE_TYPES[args.space]):
                raise GenotypeError(f"genotype is not from the {args.space!r} space")
        except HgnasError as err:
            print(f"hgnas: error: line {line_no}: {err}", file=sys.stderr)
            failures += 1
            continue
        record = scorer(genotype)
        failures += record["status"] == "error"
        print(json.dumps(_jsonable(record)), flush=True)
    return 2 if failures else 0


def _jsonable(record: dict) -> dict:
    """NaN is not JSON: print it as null (the status says why)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
