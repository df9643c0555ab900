"""`hgnas score`: zero-cost proxies for genotypes read one per line."""

from __future__ import annotations

import argparse
import json
import math
import sys

from hgnas_ray.cli.space import genotype_lines
from hgnas_ray.errors import GenotypeError, HgnasError
from hgnas_ray.evaluation import (
    NETWORK_SIZES,
    Evaluator,
    ScoringSetup,
    check_device,
    check_proxy_names,
    check_seed,
    load_probe,
    scoring_setup,
)
from hgnas_ray.space import SPACES, CellGenotype, MacroGenotype, Nb201Genotype, parse_genotype

SPACE_TYPES = {"cell": CellGenotype, "macro": MacroGenotype, "nb201": Nb201Genotype}


NETWORK_HELP = (
    "network the proxies run on. full (default): the network you asked about - for nb201 the "
    "benchmark's network (16 channels, 5 cells per stage), for a cell the paper's scoring "
    "skeleton (16 channels, 5 cells per stage) - with a probe batch of 64. reduced: 8 "
    "channels, 1 cell per stage, batch 32; about 13x cheaper on a CPU, but a different network, "
    "on which some proxies rank cells differently (on NAS-Bench-201, snip and grad_norm). "
    "--skeleton-channels, --skeleton-cells and --batch-size override one value of it; a macro "
    "genotype is its own network (only the batch size applies)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score", help="zero-cost proxies of genotypes (one per line) on real images",
        description="Reads genotypes one per line (as `hgnas space sample` prints them) and "
                    "prints one JSON line each: the genotype, its params/macs/flops, the network "
                    "the proxies ran on (network_channels, network_cells_per_stage, "
                    "probe_batch_size, device), then each proxy's value and status. "
                    "params and macs are those of the network the genotype names: for nb201 the "
                    "benchmark's network, whatever --network; for a macro network itself; a "
                    "bare cell has no network of its own, so its cost is that of the scoring "
                    "skeleton it ran in (DESIGN 3).")
    parser.add_argument("genotypes", nargs="?", default="-",
                        help="a genotype, or - (default) to read one per line from stdin")
    parser.add_argument("--space", choices=SPACES, required=True)
    parser.add_argument("--proxies", required=True, help="comma-separated, e.g. snip_snr,nwot")
    parser.add_argument("--data", default=None, help="data root (default: HGNAS_DATA)")
    parser.add_argument("--task", default="cifar10", help="task name or dataset path")
    add_network_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class-balanced", action="store_true")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda if this machine has a GPU, "
                             "else cpu)")
    parser.set_defaults(run=run_score)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """--network and its overrides (shared with `hgnas corpus score`)."""
    parser.add_argument("--network", choices=tuple(NETWORK_SIZES), default="full",
                        help=NETWORK_HELP)
    parser.add_argument("--skeleton-channels", type=int, default=None,
                        help="width of the first stage (1..256; default: from --network)")
    parser.add_argument("--skeleton-cells", type=int, default=None,
                        help="cells per stage (1..6; default: from --network)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="probe images per batch (2..1024; default: from --network)")


def network_setup(args: argparse.Namespace) -> ScoringSetup:
    """The checked network size and probe batch of the parsed options."""
    return scoring_setup(args.network, args.skeleton_channels, args.skeleton_cells,
                         args.batch_size)


def run_score(args: argparse.Namespace) -> int:
    proxies = check_proxy_names([p for p in args.proxies.split(",") if p])
    setup = network_setup(args)
    device = check_device(args.device)
    check_seed(args.seed)
    batches, task = load_probe(args.task, args.data, setup.batch_size, 2, args.seed,
                               args.class_balanced)
    scorer = Evaluator(proxies, batches, task, setup.skeleton, args.seed, device)
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
