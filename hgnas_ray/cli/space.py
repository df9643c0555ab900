"""`hgnas space sample` and `hgnas space describe`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

import numpy as np

from hgnas_ray.cli.options import bounded_int, seed
from hgnas_ray.errors import BudgetError, ConfigError, HgnasError
from hgnas_ray.nn.budget import Budget, sample_within_budget
from hgnas_ray.nn.builder import SkeletonSize, TaskShape, genotype_cost
from hgnas_ray.nn.cost import Cost
from hgnas_ray.space import (
    SPACES,
    CellGenotype,
    Genotype,
    MacroGenotype,
    Nb201Genotype,
    format_genotype,
    genotype_hash,
    nb201_to_cell,
    parse_genotype,
    sample_genotype,
)

MAX_CLASSES, MAX_INPUT_SIZE = 1_000_000, 4096
MAX_SKELETON_CHANNELS, MAX_SKELETON_CELLS = 4096, 64
MAC_UNITS = "multiply-accumulates of conv+linear layers, per sample"
FLOP_UNITS = "2 x macs"


def register(sub: argparse._SubParsersAction) -> None:
    space = sub.add_parser("space", help="sample and describe genotypes")
    commands = space.add_subparsers(dest="space_command", required=True,
                                    parser_class=type(space))
    sample = commands.add_parser("sample", help="print random genotypes, one per line")
    sample.add_argument("--space", choices=SPACES, required=True)
    sample.add_argument("-n", type=int, default=1, help="how many (default 1)")
    sample.add_argument("--seed", type=seed, default=0, help="an integer >= 0 (default 0)")
    _add_budget_args(sample)
    _add_task_args(sample)
    sample.set_defaults(run=run_sample)

    describe = commands.add_parser("describe", help="params, MACs, FLOPs and a drawing of cells")
    describe.add_argument("genotype", help="a JSON genotype, a NAS-Bench-201 arch string, or - "
                                           "to read one per line from stdin")
    describe.add_argument("--json", action="store_true", help="one JSON object per genotype")
    _add_task_args(describe)
    describe.set_defaults(run=run_describe)


def _add_budget_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-params", type=float, default=None,
                        help="macro only: parameter budget (count, e.g. 1e6)")
    parser.add_argument("--max-macs", type=float, default=None,
                        help="macro only: MAC budget per sample (count; FLOPs = 2 x MACs)")


def _add_task_args(parser: argparse.ArgumentParser) -> None:
    # upper bounds keep the network countable: past them torch's size arithmetic overflows or
    # building the skeleton takes minutes
    parser.add_argument("--num-classes", type=bounded_int(1, MAX_CLASSES), default=10)
    parser.add_argument("--input-size", type=bounded_int(1, MAX_INPUT_SIZE), default=32,
                        help="input height = width")
    parser.add_argument("--skeleton-channels", type=bounded_int(1, MAX_SKELETON_CHANNELS),
                        default=16, help="cells are costed inside the scoring skeleton of this "
                                         "width")
    parser.add_argument("--skeleton-cells", type=bounded_int(1, MAX_SKELETON_CELLS), default=5,
                        help="cells per skeleton stage")


def _task(args: argparse.Namespace) -> tuple[TaskShape, SkeletonSize]:
    return (TaskShape(args.num_classes, args.input_size),
            SkeletonSize(args.skeleton_channels, args.skeleton_cells))


def run_sample(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise HgnasError(f"-n must be >= 0; got {args.n}")
    rng = np.random.default_rng(args.seed)
    budget = Budget.from_floats(args.max_params, args.max_macs)
    if budget.is_limited and args.space != "macro":
        raise BudgetError(f"--max-params/--max-macs apply to --space macro only; got --space "
                          f"{args.space}")
    task, _ = _task(args)
    for _ in range(args.n):
        if budget.is_limited:
            genotype = sample_within_budget(rng, budget, task)
        else:
            genotype = sample_genotype(args.space, rng)
        print(format_genotype(genotype), flush=True)
    return 0


def run_describe(args: argparse.Namespace) -> int:
    task, skeleton = _task(args)
    failures = 0
    for line_no, text in genotype_lines(args.genotype):
        try:
            genotype = parse_genotype(text)
            cost = _cost(genotype, task, skeleton)
        except HgnasError as err:
            where = f"line {line_no}: " if args.genotype == "-" else ""
            print(f"hgnas: error: {where}{err}", file=sys.stderr)
            failures += 1
            continue
        if args.json:
            print(json.dumps(describe_dict(genotype, cost, task, skeleton)), flush=True)
        else:
            print(describe_text(genotype, cost, task, skeleton), flush=True)
    return 2 if failures else 0


def _cost(genotype: Genotype, task: TaskShape, skeleton: SkeletonSize) -> Cost:
    try:
        return genotype_cost(genotype, task, skeleton)
    except RuntimeError as err:  # torch: a layer's output shrinks to nothing or shapes clash
        detail = (str(err).splitlines() or ["shape error"])[0]
        raise ConfigError(f"{_network_name(genotype, task, skeleton)} cannot be built for a "
                          f"{task.input_size}x{task.input_size} input ({detail[:160]}); try "
                          f"--input-size 32") from None


def genotype_lines(source: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of the genotype `source`, or of each non-blank stdin line for "-".

    Stdin is decoded line by line, bytes that are not UTF-8 becoming U+FFFD: such a line then
    fails to parse on its own instead of ending the stream."""
    if source != "-":
        yield 1, source
        return
    binary = getattr(sys.stdin, "buffer", None)  # absent when a test replaces stdin with text
    lines = (raw.decode("utf-8", "replace") for raw in binary) if binary else sys.stdin
    for line_no, line in enumerate(lines, start=1):
        if line.strip():
            yield line_no, line


def _network_name(genotype: Genotype, task: TaskShape, skeleton: SkeletonSize) -> str:
    if isinstance(genotype, MacroGenotype):
        return f"macro network, {task.num_classes} classes, {task.input_size}x{task.input_size}"
    if isinstance(genotype, Nb201Genotype):
        return (f"NAS-Bench-201 network (C={skeleton.channels}, N={skeleton.cells_per_stage}), "
                f"{task.num_classes} classes, {task.input_size}x{task.input_size}")
    return (f"cell-scoring skeleton (C={skeleton.channels}, N={skeleton.cells_per_stage}), "
            f"{task.num_classes} classes, {task.input_size}x{task.input_size}")


def _cells(genotype: Genotype) -> list[tuple[str, CellGenotype]]:
    if isinstance(genotype, MacroGenotype):
        return [(f"stage {i} ({s.channels} ch, stride {s.stride}, x{s.repeats})", s.cell)
                for i, s in enumerate(genotype.stages)]
    if isinstance(genotype, Nb201Genotype):
        return [("cell (8-node form)", nb201_to_cell(genotype))]
    return [("cell", genotype)]


def describe_dict(genotype: Genotype, cost: Cost, task: TaskShape,
                  skeleton: SkeletonSize) -> dict:
    cells = _cells(genotype)
    return {"genotype": format_genotype(genotype), "hash": genotype_hash(genotype),
            "network": _network_name(genotype, task, skeleton), **cost.to_dict(),
            "units": {"params": "count", "macs": MAC_UNITS, "flops": FLOP_UNITS},
            "cells": len(cells), "cell_depths": [c.depth() for _, c in cells],
            **({"num_cells": genotype.num_cells} if isinstance(genotype, MacroGenotype) else {})}


def describe_text(genotype: Genotype, cost: Cost, task: TaskShape,
                  skeleton: SkeletonSize) -> str:
    lines = [f"{genotype_hash(genotype)}  {_network_name(genotype, task, skeleton)}",
             f"  params {cost.params:,}   MACs {cost.macs:,}   FLOPs {cost.flops:,} "
             f"(FLOPs = 2 x MACs; conv+linear, per sample)"]
    if isinstance(genotype, Nb201Genotype):
        lines.append(f"  arch {genotype.to_string()}")
    if isinstance(genotype, MacroGenotype):
        lines.append(f"  stem {genotype.stem_channels} ch, {genotype.num_cells} cells, "
                     f"head {genotype.final_channels} ch")
    for title, cell in _cells(genotype):
        lines.append(f"  {title}: {len(cell.used_nodes())} op nodes, {len(cell.edges)} edges, "
                     f"depth {cell.depth()}")
        lines.extend("    " + row for row in draw_cell(cell))
    return "\n".join(lines)


def draw_cell(cell: CellGenotype) -> list[str]:
    """One row per node: its label and where its inputs come from."""
    parents = cell.parents()
    name = {0: "in", 7: "out", **{n: f"n{n}" for n in cell.used_nodes()}}
    rows = []
    for node in (*cell.used_nodes(), 7):
        label = "sum" if node == 7 else cell.label(node).replace(":", " k")
        sources = ", ".join(name[p] for p in parents[node]) or "(nothing: outputs zeros)"
        rows.append(f"{name[node]:>3} = {label:<16} <- {sources}")
    return rows
