"""The analytic cost model (hgnas_ray.nn.cost_model): exact against traced counts, and the budget
bounds of partial networks against brute force and random completions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hgnas_ray.errors import GenotypeError
from hgnas_ray.nn import (
    Budget,
    CellModule,
    Cost,
    PartialMacro,
    PartialStage,
    TaskShape,
    build_network,
    cell_cost,
    genotype_cost,
    head_cost,
    macro_cost,
    minimum_cost,
    network_cost,
    reachable_cost,
    smallest_cost,
    stage_cost,
    stem_cost,
)
from hgnas_ray.nn.ops import OPS
from hgnas_ray.space import MacroGenotype, Stage, sample_cell, sample_macro
from hgnas_ray.space.cell import INPUT, OUTPUT, cell_from_edges
from hgnas_ray.space.macro import MAX_CELLS, MAX_CHANNELS
from hgnas_ray.space.vocab import get_vocabulary

TASKS = [TaskShape(classes, size, channels)
         for classes in (10, 100, 1000) for size in (32, 64, 224) for channels in (1, 3)]
CIFAR, IMAGENET = TaskShape(), TaskShape(1000, 224, 3)
WIDTH_GRID = tuple(range(8, MAX_CHANNELS + 1, 8))


def _traced(genotype: MacroGenotype, task: TaskShape) -> Cost:
    return network_cost(lambda: build_network(genotype, task), task.input_shape)


def _chain(op: str, kernel: int):
    """input -> op -> avg_pool -> output: the cheapest cell with that op reading the input."""
    return cell_from_edges({1: (op, kernel), 2: ("avg_pool", 3)}, [(0, 1), (1, 2), (2, 7)]
                           ).validate()


CHAINS = [_chain(op, k) for op, k in get_vocabulary("cell").choices]
AVG = _chain("avg_pool", 1)
# the costliest cell shape: six direct mbconv_e6 5x5 nodes and a residual (input projection)
HEAVY = cell_from_edges({n: ("mbconv_e6", 5) for n in range(1, 7)},
                        [(0, n) for n in range(1, 7)] + [(n, 7) for n in range(1, 7)] + [(0, 7)]
                        ).validate()


# ---------------------------------------------------------------------- exact costs
def _check_random_networks(seeds: range) -> None:
    for seed in seeds:
        rng = np.random.default_rng(seed)
        task = TASKS[seed % len(TASKS)]
        genotype = sample_macro(rng, max_width=(64, 256, 1024)[seed % 3])
        assert macro_cost(genotype, task) == _traced(genotype, task), f"seed {seed}, {task}"


def test_macro_cost_equals_traced_on_36_networks() -> None:
    """Seeds 0..35: each of the 18 tasks (10/100/1000 classes, input 32/64/224, 1/3 channels)
    twice, with its width cap (the seed picks both). Tracing takes 0.1-0.3 s a network on the
    2-core dev machine, so the full 1,000 run under -m slow."""
    _check_random_networks(range(36))


@pytest.mark.slow
def test_macro_cost_equals_traced_on_1000_networks() -> None:
    """Seeds 0..999 (the default test runs the first 36); a few minutes on 2 cores."""
    _check_random_networks(range(1000))


def test_genotype_cost_of_a_macro_network_is_the_analytic_one() -> None:
    rng = np.random.default_rng(5)
    for task in (CIFAR, IMAGENET):
        genotype = sample_macro(rng)
        assert genotype_cost(genotype, task) == macro_cost(genotype, task) \
            == _traced(genotype, task)


def _traced_cell(cell, c_in: int, c_out: int, stride: int, size: int) -> Cost:
    return network_cost(lambda: CellModule(cell, c_in, c_out, stride), (c_in, size, size))


CELL_SHAPES = [(8, 8, 1, 8), (8, 16, 2, 7), (12, 4, 1, 15), (16, 16, 2, 15), (5, 7, 2, 1),
               (24, 8, 2, 9), (32, 32, 1, 3)]  # (c_in, c_out, stride, side); odd sides round up


@pytest.mark.parametrize("op", sorted(OPS))
def test_cell_cost_of_every_registered_op(op: str) -> None:
    """Parametrized over the op registry: an op added there without a formula here fails."""
    space = "nb201" if op in get_vocabulary("nb201").ops else "cell"
    for kernel, (c_in, c_out, stride, size) in itertools.product((1, 3, 5), CELL_SHAPES):
        cell = cell_from_edges({1: (op, kernel)}, [(0, 1), (1, 7)], space)
        assert cell_cost(cell, c_in, c_out, stride, size) == \
            _traced_cell(cell, c_in, c_out, stride, size), (kernel, c_in, c_out, stride, size)


def test_cell_cost_equals_traced_on_random_cells() -> None:
    rng = np.random.default_rng(3)
    projected = mixed = 0
    for index in range(150):
        cell = sample_cell(rng, "nb201" if index % 5 == 4 else "cell")
        c_in, c_out = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        if index % 3 == 0:
            c_out = c_in
        stride, size = int(rng.integers(1, 3)), int(rng.choice([1, 2, 7, 8, 15, 16]))
        parents = cell.parents()
        projected += INPUT in parents[OUTPUT]
        mixed += any(INPUT in parents[n] and parents[n] != [INPUT] for n in cell.used_nodes())
        assert cell_cost(cell, c_in, c_out, stride, size) == \
            _traced_cell(cell, c_in, c_out, stride, size), (cell.to_json(), c_in, c_out, stride)
    assert projected > 10 and mixed > 10  # the input projection was exercised both ways


def test_cell_cost_of_a_disconnected_cell() -> None:
    """NAS-Bench-201 allows an output with no parent: the ops still run, the output is zeros."""
    cell = cell_from_edges({1: ("nor_conv_3x3", 3), 2: ("nor_conv_1x1", 1)}, [(0, 1), (1, 2)],
                           "nb201")
    assert cell_cost(cell, 8, 16, 2, 7) == _traced_cell(cell, 8, 16, 2, 7)
    assert cell_cost(cell, 8, 16, 2, 7).macs == 8 * 16 * 9 * 16 + 16 * 16 * 16


def test_cell_cost_rejects_bad_shapes() -> None:
    with pytest.raises(GenotypeError, match="positive int c_out"):
        cell_cost(AVG, 8, 0, 1, 8)
    with pytest.raises(GenotypeError, match="size"):
        cell_cost(AVG, 8, 8, 1, 2.5)


def test_parts_add_up_to_the_network() -> None:
    genotype = sample_macro(np.random.default_rng(11))
    total, side = stem_cost(IMAGENET, genotype.stem_channels)
    assert side == 112  # stride-2 stem above 64 pixels
    width = genotype.stem_channels
    for stage in genotype.stages:
        cost, side = stage_cost(stage, width, side)
        total, width = total + cost, stage.channels
    total = total + head_cost(width, genotype.final_channels, 1000, side)
    assert total == macro_cost(genotype, IMAGENET) == _traced(genotype, IMAGENET)


def test_cost_addition() -> None:
    assert Cost(1, 2) + Cost(30, 40) == Cost(31, 42)
    with pytest.raises(TypeError):
        Cost(1, 2) + 3


# ---------------------------------------------------------------------- budget bounds
def _prefixes(genotype: MacroGenotype):
    """Every state a stage-by-stage decoder passes through while writing `genotype`."""
    stem, stages = genotype.stem_channels, genotype.stages
    for index, stage in enumerate(stages):
        done = stages[:index]
        yield PartialMacro(stem, done)
        for current in (PartialStage(None), PartialStage(stage.cell),
                        PartialStage(stage.cell, stage.channels),
                        PartialStage(stage.cell, stage.channels, stage.stride),
                        PartialStage(None, stage.channels, stage.stride, stage.repeats),
                        PartialStage(stage.cell, stage.channels, stage.stride, stage.repeats)):
            yield PartialMacro(stem, done, current)
    yield PartialMacro(stem, stages)
    yield PartialMacro(stem, stages, closed=True)


def test_every_prefix_of_a_network_bounds_its_cost() -> None:
    rng = np.random.default_rng(0)
    for index in range(60):
        task = (CIFAR, IMAGENET)[index % 2]
        genotype = sample_macro(rng, max_width=(256, 1024)[index % 2])
        cost = macro_cost(genotype, task)
        for prefix in _prefixes(genotype):
            lo, hi = reachable_cost(task, prefix)
            assert lo.params <= cost.params <= hi.params, prefix
            assert lo.macs <= cost.macs <= hi.macs, prefix
        whole = PartialMacro(genotype.stem_channels, genotype.stages, closed=True,
                             final_channels=genotype.final_channels)
        assert reachable_cost(task, whole) == (cost, cost)
        if index < 6:  # the final width fixed before the stages close (a table per width)
            lo, hi = reachable_cost(task, PartialMacro(genotype.stem_channels, genotype.stages[:1],
                                                       final_channels=genotype.final_channels))
            assert lo.params <= cost.params <= hi.params and lo.macs <= cost.macs <= hi.macs


def _filler(cells: int, downsamples: int) -> tuple[Stage, ...]:
    """Finished stages using `cells` cells and `downsamples` stride-2 stages, cheap cells."""
    stages, cell_pool = [], [CHAINS[5], CHAINS[13], AVG, CHAINS[24]]
    widths = (16, 24, 32, 48, 64)
    for index in range(-(-cells // 4)):
        repeats = min(4, cells - 4 * index)
        stride = 2 if index < downsamples else 1
        stages.append(Stage(cell_pool[index % 4], widths[index], stride, repeats))
    assert sum(s.stride == 2 for s in stages) == downsamples
    return tuple(stages)


def _brute_force(task, prefix: PartialMacro, max_downsamples: int, pool) -> tuple[Cost, Cost]:
    """Component-wise min and max over completions of `prefix` whose unknown cells come from
    `pool`, with final widths 8 and 16 (every head term grows with the final width)."""
    known, side = stem_cost(task, prefix.stem_channels)
    width = prefix.stem_channels
    for stage in prefix.stages:
        cost, side = stage_cost(stage, width, side)
        known, width = known + cost, stage.channels
    used = sum(s.repeats for s in prefix.stages)
    level = sum(s.stride == 2 for s in prefix.stages)
    costs = []
    for body, end_width, end_side, cells, downs in _stage_options(
            task, prefix.current, width, side, used, level, max_downsamples, pool):
        for rest, last, last_side in _tails(width=end_width, side=end_side, cells=cells,
                                            downs=downs, max_downsamples=max_downsamples,
                                            pool=pool, must=body is None and not prefix.stages):
            for final in (prefix.final_channels,) if prefix.final_channels else (8, 16):
                head = head_cost(last, final, task.num_classes, last_side)
                costs.append(known + (body or Cost(0, 0)) + rest + head)
    return (Cost(min(c.params for c in costs), min(c.macs for c in costs)),
            Cost(max(c.params for c in costs), max(c.macs for c in costs)))


def _stage_options(task, current, width, side, used, level, max_downsamples, pool):
    if current is None:
        yield None, width, side, used, level
        return
    for cell, channels, stride, repeats in itertools.product(
            [current.cell] if current.cell else pool,
            [current.channels] if current.channels else WIDTH_GRID,
            [current.stride] if current.stride else (1, 2) if level < max_downsamples else (1,),
            [current.repeats] if current.repeats else range(1, MAX_CELLS - used + 1)):
        if repeats <= 4 and used + repeats <= MAX_CELLS:
            cost, out = stage_cost(Stage(cell, channels, stride, repeats), width, side)
            yield cost, channels, out, used + repeats, level + (stride == 2)


def _tails(width, side, cells, downs, max_downsamples, pool, must):
    """No more stages, or (when a cell is left) one more single-cell stage: the brute-force cases
    leave at most one cell after the current stage."""
    assert MAX_CELLS - cells <= 1
    if not must:
        yield Cost(0, 0), width, side
    if cells < MAX_CELLS:
        for cell, channels, stride in itertools.product(
                pool, WIDTH_GRID, (1, 2) if downs < max_downsamples else (1,)):
            cost, out = stage_cost(Stage(cell, channels, stride, 1), width, side)
            yield cost, channels, out


POOL = [*CHAINS, HEAVY, *(sample_cell(np.random.default_rng(seed)) for seed in range(6))]


@pytest.mark.parametrize("case", [
    # (task, cells in finished stages, their downsamples, max_downsamples, current stage)
    (CIFAR, 18, 1, 3, None),  # one optional stage of an unknown cell
    (IMAGENET, 18, 3, 3, None),  # ... that can no longer downsample
    (CIFAR, 18, 2, 3, PartialStage(CHAINS[20])),  # open width and stride, repeats forced to 1
    (IMAGENET, 18, 0, 1, PartialStage(POOL[-1], None, None, 1)),
    (TaskShape(100, 64, 1), 17, 1, 2, PartialStage(POOL[-2], 64)),  # r=2, or r=1 + a stage
    (CIFAR, 18, 1, 3, PartialStage(None)),  # unknown cell, open width and stride
    (IMAGENET, 15, 2, 3, PartialStage(None, 128, 2, 4)),  # unknown cell repeated
])
def test_lower_bound_is_the_brute_force_minimum(case) -> None:
    """The brute force draws unknown cells from the 27 chain cells, the heaviest cell and random
    cells: its minimum equals the bound, so the bound is attained (and the next test shows no
    cell goes below it)."""
    task, cells, downs, max_downsamples, current = case
    prefix = PartialMacro(16, _filler(cells, downs), current)
    lo, hi = reachable_cost(task, prefix, max_downsamples)
    brute_lo, brute_hi = _brute_force(task, prefix, max_downsamples, POOL)
    assert lo == brute_lo
    assert hi.params >= brute_hi.params and hi.macs >= brute_hi.macs


def test_no_cell_makes_a_cheaper_stage_than_the_best_chain() -> None:
    """The lemma behind the exact lower bound: no cell's stage (first cell at (c_in, c_out,
    stride), r - 1 more at (c_out, c_out, 1)) costs less, in params or in MACs, than the best
    single-op chain's (the brute-force test shows the bound equals that minimum)."""
    rng = np.random.default_rng(2)
    for index in range(250):
        cell = HEAVY if index == 0 else sample_cell(rng)
        c_in, c_out = (int(rng.choice(WIDTH_GRID[:32])) for _ in range(2))
        c_out = c_in if index % 4 == 0 else c_out
        stride, repeats, side = int(rng.integers(1, 3)), int(rng.integers(1, 5)), 15
        mine = stage_cost(Stage(cell, c_out, stride, repeats), c_in, side)[0]
        chains = [stage_cost(Stage(chain, c_out, stride, repeats), c_in, side)[0]
                  for chain in CHAINS]
        assert mine.params >= min(c.params for c in chains), (cell.to_json(), c_in, c_out)
        assert mine.macs >= min(c.macs for c in chains), (cell.to_json(), c_in, c_out)


def test_upper_bound_holds_for_heavy_and_random_completions() -> None:
    rng = np.random.default_rng(8)
    heaviest = MacroGenotype(1024, tuple(Stage(HEAVY, 1024, 1, 4) for _ in range(4))
                             + (Stage(HEAVY, 1024, 1, 3),), 1024)
    for task in (CIFAR, IMAGENET):
        cost = macro_cost(heaviest, task)
        for prefix in itertools.islice(_prefixes(heaviest), 0, None, 3):
            _, hi = reachable_cost(task, prefix)
            assert hi.params >= cost.params and hi.macs >= cost.macs
        for _ in range(40):
            genotype = sample_macro(rng, max_width=1024)
            genotype = MacroGenotype(genotype.stem_channels, tuple(
                Stage(HEAVY if rng.random() < 0.5 else s.cell, s.channels, s.stride, s.repeats)
                for s in genotype.stages), genotype.final_channels)
            cost = macro_cost(genotype, task)
            for prefix in _prefixes(genotype):
                lo, hi = reachable_cost(task, prefix)
                assert lo.params <= cost.params <= hi.params and lo.macs <= cost.macs <= hi.macs


def _wide(op: str, kernel: int):
    """Six direct copies of one op and a residual: the costliest cell when it narrows."""
    return cell_from_edges({n: (op, kernel) for n in range(1, 7)},
                           [(0, n) for n in range(1, 7)] + [(n, 7) for n in range(1, 7)]
                           + [(0, 7)]).validate()


@pytest.mark.parametrize("c_in, c_out, stride", [(256, 64, 2), (512, 512, 2), (1024, 8, 1)])
def test_one_unknown_cell_is_bounded_tightly_when_it_narrows(c_in: int, c_out: int,
                                                             stride: int) -> None:
    """With only the cell open, the bounds are the cheapest chain and, when the op reading the
    input costs at least any op at (c_out, c_out, 1) (a narrowing or downsampling cell), six
    direct copies of the costliest op plus the residual's projection: both attained."""
    stages = tuple(Stage(AVG, c_in, 1, r) for r in (4, 4, 4, 4, 2))
    prefix = PartialMacro(c_in, stages, PartialStage(None, c_out, stride, 1), final_channels=8)
    lo, hi = reachable_cost(IMAGENET, prefix)
    costs = [macro_cost(MacroGenotype(c_in, (*stages, Stage(cell, c_out, stride, 1)), 8),
                        IMAGENET) for cell in CHAINS + [_wide(op, k) for op, k in
                                                        get_vocabulary("cell").choices]]
    assert lo == Cost(min(c.params for c in costs), min(c.macs for c in costs))
    assert hi == Cost(max(c.params for c in costs), max(c.macs for c in costs))


@pytest.mark.parametrize("task", [CIFAR, IMAGENET, TaskShape(100, 64, 1)])
def test_the_smallest_budget_is_reachable(task: TaskShape) -> None:
    """8-channel stem, three free stride-2 average-pool cells at 8 channels, 8-channel head."""
    smallest = smallest_cost(task)
    network = MacroGenotype(8, tuple(Stage(AVG, 8, 2, 1) for _ in range(3)), 8).validate()
    assert macro_cost(network, task) == smallest == _traced(network, task)
    assert minimum_cost(task) == (smallest.params, smallest.macs)
    assert Budget(smallest.params, smallest.macs).allows(macro_cost(network, task))
    assert reachable_cost(task, PartialMacro(8))[0] == smallest
    with_one = smallest_cost(task, max_downsamples=1)
    assert with_one.params == smallest.params and with_one.macs > smallest.macs
    # stem 9 * 8 * in + 16; head BN 16, conv 64, BN 16, linear 9 * classes
    assert smallest.params == 72 * task.in_channels + 112 + 9 * task.num_classes


@pytest.mark.parametrize("prefix, match", [
    (PartialMacro(12), "stem channels is 12"),
    (PartialMacro(8, (Stage(AVG, 8, 3, 1),)), "stride is 3"),
    (PartialMacro(8, current=PartialStage(AVG, repeats=5)), "repeats is 5"),
    (PartialMacro(8, closed=True), "closed prefix"),
    (PartialMacro(8, (Stage(AVG, 8, 1, 1),), PartialStage(AVG), closed=True), "closed prefix"),
    (PartialMacro(8, tuple(Stage(AVG, 8, 2, 1) for _ in range(4))), "4 stride-2 stages"),
    (PartialMacro(8, tuple(Stage(AVG, 8, 1, 4) for _ in range(4)) + (Stage(AVG, 8, 1, 3),),
                  PartialStage(AVG)), "20 cells"),
    (PartialMacro(8, final_channels=2000), "final channels is 2000"),
    (PartialMacro(8, (Stage(cell_from_edges({1: ("nor_conv_1x1", 1)}, [(0, 1), (1, 7)],
                                            "nb201"), 8, 1, 1),)), "'nb201' space"),
])
def test_reachable_cost_rejects_prefixes_nothing_completes(prefix, match: str) -> None:
    with pytest.raises(GenotypeError, match=match):
        reachable_cost(CIFAR, prefix)
