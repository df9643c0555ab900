"""Exact params and MACs of macro networks from formulas, and budget bounds for decoding.

Counts what `network_cost` reads off a traced `MacroNetwork`, in the same convention (see
`hgnas_ray.nn.cost`: params are trainable parameters including BatchNorm weight and bias; MACs are
the conv + linear multiply-accumulates of one sample; FLOPs = 2 x MACs), without building
anything: tens of microseconds per network instead of a tenth of a second or more.

Every module of DESIGN 2.1-2.2 is made of bias-free convolutions (full, depthwise, 1x1), each
followed by BatchNorm except the depthwise stage of `sep_conv`/`dil_conv`, and one linear layer.
All convolutions pad k // 2 (dilated: 2 * (k // 2)) with odd k, so a stride-s layer maps side n
to floor((n + 2p - d(k - 1) - 1) / s) + 1 = ceil(n / s); average pooling likewise. A cell is
reduced once (cached) to a *form*: per op family, the node count and the sum of k^2, separately
for the nodes whose only parent is the input (c_in -> c_out, stride s, reading the input area)
and the others (c_out -> c_out, stride 1), and whether the input is projected. Its cost at any
widths is then a few multiplications, and works on numpy width grids as well as on ints.

`reachable_cost` bounds the cost of every valid completion of a network written stage by stage
(the sequence generator's budget-aware decoding): see its docstring for which bound is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

import numpy as np

from hgnas_ray.errors import GenotypeError, unknown_name
from hgnas_ray.nn.cost import Cost
from hgnas_ray.nn.macro import LARGE_INPUT
from hgnas_ray.space.cell import INPUT, OUTPUT, CellGenotype
from hgnas_ray.space.macro import (
    CHANNEL_STEP,
    MAX_CELLS,
    MAX_CHANNELS,
    MAX_REPEATS,
    MIN_CHANNELS,
    MacroGenotype,
    Stage,
)
from hgnas_ray.space.vocab import get_vocabulary

WIDTHS = np.arange(MIN_CHANNELS, MAX_CHANNELS + 1, CHANNEL_STEP, dtype=np.int64)  # 128 widths
_NO_PATH = np.int64(2) ** 62  # "no completion" marker in the min tables; never added to a cost

# op name -> (family, expansion e, fixed kernel or 0); must cover every op of nn/ops.py's OPS
_FAMILIES: dict[str, tuple[str, float, int]] = {
    "avg_pool": ("pool", 0.0, 0), "conv": ("conv", 0.0, 0),
    "sep_conv": ("sep", 0.0, 0), "dil_conv": ("sep", 0.0, 0),
    "mbconv_e2": ("mbconv", 2.0, 0), "mbconv_e3": ("mbconv", 3.0, 0),
    "mbconv_e6": ("mbconv", 6.0, 0), "bconv_e0.5": ("bconv", 0.5, 0),
    "bconv_e0.25": ("bconv", 0.25, 0),
    "nor_conv_1x1": ("conv", 0.0, 1), "nor_conv_3x3": ("conv", 0.0, 3),
    "avg_pool_3x3": ("pool", 0.0, 3),
}


class TaskLike(Protocol):
    """What a cost needs of a task (`hgnas_ray.nn.builder.TaskShape` is one; builder imports
    this module, so it is not imported here)."""

    @property
    def num_classes(self) -> int: ...

    @property
    def input_size(self) -> int: ...

    @property
    def in_channels(self) -> int: ...


# ---------------------------------------------------------------------- cell forms
@dataclass(frozen=True)
class _OpGroup:
    """A set of op nodes at the same widths, summed: their cost is linear in these numbers."""

    conv_k2: int = 0  # sum of k*k over full convolutions
    conv_n: int = 0
    sep_k2: int = 0  # sum of k*k over the depthwise stages of sep_conv / dil_conv
    sep_n: int = 0
    pool_n: int = 0  # average pools: a 1x1 projection (+BN) only when the widths differ
    expand: tuple[tuple[float, bool, int, int], ...] = ()  # (e, full mid conv, count, sum k*k)


def _group(choices: Iterable[tuple[str, int]]) -> _OpGroup:
    conv_k2 = conv_n = sep_k2 = sep_n = pool_n = 0
    expand: dict[tuple[float, bool], list[int]] = {}
    for op, kernel in choices:
        if op not in _FAMILIES:
            raise unknown_name("op", op, tuple(_FAMILIES))
        family, e, fixed = _FAMILIES[op]
        k2 = (fixed or kernel) ** 2
        if family == "conv":
            conv_k2, conv_n = conv_k2 + k2, conv_n + 1
        elif family == "sep":
            sep_k2, sep_n = sep_k2 + k2, sep_n + 1
        elif family == "pool":
            pool_n += 1
        else:
            slot = expand.setdefault((e, family == "bconv"), [0, 0])
            slot[0], slot[1] = slot[0] + 1, slot[1] + k2
    return _OpGroup(conv_k2, conv_n, sep_k2, sep_n, pool_n,
                    tuple((e, full, n, k2) for (e, full), (n, k2) in sorted(expand.items())))


def _mid(e: float, width):
    """`max(1, round(e * width))` as in nn/ops.py, for an int or a numpy array (both round half
    to even)."""
    if isinstance(width, np.ndarray):
        return np.maximum(1, np.rint(e * width)).astype(np.int64)
    return max(1, round(e * width))


def _group_cost(g: _OpGroup, c_in, c_out, in_area, out_area):
    """(params, MACs) of a group mapping c_in -> c_out from `in_area` to `out_area` pixels.

    Ints or numpy arrays (broadcast); only the mbconv/bconv expansion 1x1 runs on the input area.
    """
    conv = g.conv_k2 * c_in * c_out
    sep = g.sep_k2 * c_in + g.sep_n * c_in * c_out  # depthwise (no BN), then pointwise
    params = conv + sep + 2 * c_out * (g.conv_n + g.sep_n)
    macs = (conv + sep) * out_area
    if g.pool_n:
        pool = g.pool_n * (c_in != c_out) * c_in * c_out
        params = params + pool + 2 * c_out * g.pool_n * (c_in != c_out)
        macs = macs + pool * out_area
    for e, full, n, k2 in g.expand:
        mid = _mid(e, c_out)
        spatial = k2 * (mid * mid if full else mid)  # full k x k (bconv) or depthwise (mbconv)
        params = params + n * (c_in * mid + 4 * mid + mid * c_out + 2 * c_out) + spatial
        macs = macs + n * c_in * mid * in_area + (spatial + n * mid * c_out) * out_area
    return params, macs


@dataclass(frozen=True)
class _CellForm:
    direct: _OpGroup  # nodes whose only parent is the input: (c_in -> c_out, stride s)
    inner: _OpGroup  # every other node: (c_out -> c_out, stride 1)
    projects: bool  # the input is summed with c_out tensors somewhere


@lru_cache(maxsize=8192)
def _cell_form(cell: CellGenotype) -> _CellForm:
    """Mirrors `CellModule.__init__`: which nodes are direct, and whether the input is projected
    (every used node runs in `forward`, also in a cell whose output is disconnected)."""
    parents = cell.parents()
    direct, inner = [], []
    projects = INPUT in parents[OUTPUT]
    for node in cell.used_nodes():
        choice = (cell.ops[node - 1], cell.kernels[node - 1])
        if parents[node] == [INPUT]:
            direct.append(choice)
        else:
            inner.append(choice)
            projects |= INPUT in parents[node]
    return _CellForm(_group(direct), _group(inner), projects)


def _cell_terms(form: _CellForm, c_in, c_out, stride: int, size: int):
    """(params, MACs) of one cell; c_in and c_out may be ints or broadcastable arrays."""
    out = -(-size // stride)
    p_direct, m_direct = _group_cost(form.direct, c_in, c_out, size * size, out * out)
    p_inner, m_inner = _group_cost(form.inner, c_out, c_out, out * out, out * out)
    params, macs = p_direct + p_inner, m_direct + m_inner
    if form.projects:  # ReLU, 1x1 conv with stride, BN, unless the shapes already match
        reshaped = (c_in != c_out) | (stride != 1)
        params = params + reshaped * (c_in * c_out + 2 * c_out)
        macs = macs + reshaped * c_in * c_out * out * out
    return params, macs


def cell_cost(cell: CellGenotype, c_in: int, c_out: int, stride: int, size: int) -> Cost:
    """Exact cost of `CellModule(cell, c_in, c_out, stride)` on a `size` x `size` input."""
    for name, value in (("c_in", c_in), ("c_out", c_out), ("stride", stride), ("size", size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise GenotypeError(f"cell_cost needs a positive int {name}; got {value!r}")
    params, macs = _cell_terms(_cell_form(cell), int(c_in), int(c_out), int(stride), int(size))
    return Cost(int(params), int(macs))


# ---------------------------------------------------------------------- whole networks
def stem_cost(task: TaskLike, stem_channels: int) -> tuple[Cost, int]:
    """The stem (3x3 conv + BN; stride 2 above `LARGE_INPUT`) and the side it outputs."""
    stride = 2 if task.input_size > LARGE_INPUT else 1
    side = -(-task.input_size // stride)
    weights = task.in_channels * stem_channels * 9
    return Cost(weights + 2 * stem_channels, weights * side * side), side


def head_cost(c_in: int, final_channels: int, num_classes: int, size: int) -> Cost:
    """BN, ReLU, 1x1 conv + BN to `final_channels` on a `size` x `size` map, pool, linear."""
    conv = c_in * final_channels
    params = 2 * c_in + conv + 2 * final_channels + (final_channels + 1) * num_classes
    return Cost(params, conv * size * size + final_channels * num_classes)


def stage_cost(stage: Stage, c_in: int, size: int) -> tuple[Cost, int]:
    """A stage's cells on a `size` x `size` input of `c_in` channels, and the side it outputs."""
    form = _cell_form(stage.cell)
    params, macs = _cell_terms(form, c_in, stage.channels, stage.stride, size)
    out = -(-size // stage.stride)
    if stage.repeats > 1:
        p_rep, m_rep = _cell_terms(form, stage.channels, stage.channels, 1, out)
        params, macs = params + (stage.repeats - 1) * p_rep, macs + (stage.repeats - 1) * m_rep
    return Cost(int(params), int(macs)), out


def macro_cost(genotype: MacroGenotype, task: TaskLike) -> Cost:
    """Exact cost of `MacroNetwork(genotype, ...)` for `task`; equals the traced count."""
    total, side = stem_cost(task, genotype.stem_channels)
    width = genotype.stem_channels
    for stage in genotype.stages:
        cost, side = stage_cost(stage, width, side)
        total, width = total + cost, stage.channels
    return total + head_cost(width, genotype.final_channels, task.num_classes, side)


# ---------------------------------------------------------------------- budget bounds
@dataclass(frozen=True)
class PartialStage:
    """The stage being written: its cell (None: not chosen yet, any cell of the 'cell' space),
    and channels, stride and repeats, each None until chosen."""

    cell: CellGenotype | None
    channels: int | None = None
    stride: int | None = None
    repeats: int | None = None


@dataclass(frozen=True)
class PartialMacro:
    """A macro network written so far, in decoding order: stem, stages, `closed` (no more
    stages), then the head's width. `final_channels` may also be fixed before the stages close.
    """

    stem_channels: int
    stages: tuple[Stage, ...] = ()
    current: PartialStage | None = None
    closed: bool = False
    final_channels: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))


def reachable_cost(task: TaskLike, prefix: PartialMacro,
                   max_downsamples: int = 3) -> tuple[Cost, Cost]:
    """(lowest, highest) cost, component by component, of any valid completion of `prefix`.

    A valid completion obeys DESIGN 2.2 (MacroGenotype.validate): widths multiples of 8 in
    [8, 1024], stride 1 or 2, 1..4 repeats, at most `MAX_CELLS` cells, at least one stage, and at
    most `max_downsamples` stride-2 stages (3, as `sample_macro` and `mutate_macro`). Future
    stages (and a current stage whose cell is None) may hold any cell of the 'cell' space.

    Lower bound: EXACT. Params and MACs are minimised separately (the two minima may come from
    different completions: e.g. a stride-2 or width-changing cell pays an input projection, and a
    bottleneck cell can have fewer params but more MACs than a 1x1 path), over every remaining
    choice of the current stage and every continuation, including adding narrow or stride-2
    stages that make the head cheaper. It relies on a proof, checked by brute force in the tests:
    the cheapest cell at (c_in, c_out, stride) is a chain input -> op -> avg_pool -> output, so
    the cheapest stage with r repeats costs min over (op, kernel) of op(c_in, c_out, stride) +
    (r - 1) op(c_out, c_out, 1) (zero for avg_pool at equal widths).

    Upper bound: exact when no cell of the completion is unknown and no stage can still be added
    (a closed prefix, or a current stage with a known cell that reaches the cell cap); otherwise
    a true but loose bound: an unknown cell is bounded by D + 5 max(D, N) + P, where D is the
    costliest op reading the input, N the costliest op at (c_out, c_out, 1), P the projection
    (a valid cell has at most 6 op nodes, and its lowest used node reads the input only).

    Speed (2 shared cores, BENCHMARKS.md): the continuation tables of a (task, final width,
    `max_downsamples`) take 0.1-0.3 s once; a prefix asked again costs tens to a couple of
    hundred microseconds; the first ask with a new cell builds that cell's stage table for every
    width and stride (under 1 ms of CPU). Everything is cached.
    """
    done = _check_prefix(task, prefix, max_downsamples)
    known, width, side, level, cells = done.cost, done.width, done.side, done.level, done.cells
    if prefix.closed:
        low = prefix.final_channels or MIN_CHANNELS
        high = prefix.final_channels or MAX_CHANNELS
        return (known + head_cost(width, low, task.num_classes, side),
                known + head_cost(width, high, task.num_classes, side))
    tables = _bounds(done.stem_side, task.num_classes, prefix.final_channels, max_downsamples)
    left, column = MAX_CELLS - cells, _width_index(width)
    if prefix.current is None:
        lo, hi = (tables.lo, tables.hi) if prefix.stages else (tables.lo_go, tables.hi_go)
        return known + _cost(lo[left, level, :, column]), known + _cost(hi[left, level, :, column])
    lo, hi = _current_stage_range(tables, prefix.current, width, level, left, max_downsamples)
    return known + _cost(lo), known + _cost(hi)


def smallest_cost(task: TaskLike, max_downsamples: int = 3) -> Cost:
    """Exact component-wise minimum cost of any valid macro network for `task` (any stem)."""
    if max_downsamples < 0:
        raise GenotypeError(f"max_downsamples must be >= 0; got {max_downsamples}")
    _, side = stem_cost(task, MIN_CHANNELS)
    tables = _bounds(side, task.num_classes, None, max_downsamples)
    weights = task.in_channels * WIDTHS * 9
    stem = np.stack([weights + 2 * WIDTHS, weights * side * side])
    return _cost((stem + tables.lo_go[MAX_CELLS, 0]).min(axis=-1))


def _cost(pair: np.ndarray) -> Cost:
    return Cost(int(pair[0]), int(pair[1]))


def _width_index(width: int) -> int:
    return (width - MIN_CHANNELS) // CHANNEL_STEP


class _TaskKey(NamedTuple):
    num_classes: int
    input_size: int
    in_channels: int


class _Finished(NamedTuple):
    """The stem and the finished stages: their cost, and the width, side, stride-2 stages and
    cells after them."""

    cost: Cost
    width: int
    side: int
    level: int
    cells: int
    stem_side: int


@lru_cache(maxsize=4096)  # a decoder asks about one prefix once per candidate token
def _finished_part(input_size: int, in_channels: int, stem_channels: int,
                   stages: tuple[Stage, ...]) -> _Finished:
    _check_choices("stem", stem_channels)
    for index, stage in enumerate(stages):
        _check_choices(f"stage {index}", stage.channels, stage.stride, stage.repeats, stage.cell)
    known, side = stem_cost(_TaskKey(0, input_size, in_channels), stem_channels)
    stem_side, width = side, stem_channels
    for stage in stages:
        cost, side = stage_cost(stage, width, side)
        known, width = known + cost, stage.channels
    return _Finished(known, width, side, sum(stage.stride == 2 for stage in stages),
                     sum(stage.repeats for stage in stages), stem_side)


def _current_stage_range(tables: _Bounds, current: PartialStage, width: int, level: int,
                         left: int, max_downsamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max over the current stage's open choices of (stage + best/worst continuation).

    Shapes: (params, MACs) first, then the width: a table row is (2, len(WIDTHS)) and the
    result a pair (2,).
    """
    column = None if current.channels is None else _width_index(current.channels)
    columns = slice(None) if column is None else slice(column, column + 1)  # views, not copies
    strides = (current.stride,) if current.stride is not None else \
        ((1, 2) if level < max_downsamples else (1,))
    repeats = np.array([current.repeats] if current.repeats is not None else
                       range(1, min(MAX_REPEATS, left) + 1))
    lo = np.full(2, _NO_PATH)
    hi = np.full(2, -1, dtype=np.int64)
    for stride in strides:
        after = level + (stride == 2)
        stage_lo, stage_hi = _stage_table(current.cell, width, stride, tables.sides[level])
        rest_lo = tables.lo[left - repeats, after, :, columns]  # (repeats, 2, widths)
        rest_hi = tables.hi[left - repeats, after, :, columns]
        lo = np.minimum(lo, (stage_lo[repeats - 1, :, columns] + rest_lo).min(axis=(0, 2)))
        hi = np.maximum(hi, (stage_hi[repeats - 1, :, columns] + rest_hi).max(axis=(0, 2)))
    return lo, hi


@lru_cache(maxsize=1024)  # 16 KiB each
def _stage_table(cell: CellGenotype | None, c_in: int, stride: int,
                 side: int) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) cost of a stage from `c_in` channels for every width and repeat count.

    Shapes: (MAX_REPEATS, 2, len(WIDTHS)), (params, MACs) on axis 1; exact (lowest == highest)
    for a known cell.
    """
    out = -(-side // stride)
    repeats = np.arange(MAX_REPEATS).reshape(-1, 1, 1)  # r - 1
    if cell is not None:
        form = _cell_form(cell)
        first = np.stack(_cell_terms(form, c_in, WIDTHS, stride, side))
        rest = np.stack(_cell_terms(form, WIDTHS, WIDTHS, 1, out))
        exact = first + repeats * rest
        return exact, exact
    firsts = [np.stack(_group_cost(g, c_in, WIDTHS, side * side, out * out))
              for g in _single_op_groups()]
    rests = [np.stack(_group_cost(g, WIDTHS, WIDTHS, out * out, out * out))
             for g in _single_op_groups()]
    lo = np.min([f + repeats * r for f, r in zip(firsts, rests, strict=True)], axis=0)
    step = _any_cell_step(side, stride)
    hi = step.hi_first[:, _width_index(c_in)] + repeats * step.hi_rest
    return lo, hi


@lru_cache(maxsize=1)
def _single_op_groups() -> tuple[_OpGroup, ...]:
    """One group per (op, kernel) of the 'cell' space: the op of a chain cell."""
    return tuple(_group([choice]) for choice in get_vocabulary("cell").choices)


@dataclass(frozen=True)
class _Step:
    """One stage of unknown cell from every width to every width at one side and stride.

    Shapes: lo, hi_first (2, from width, to width); hi_rest (2, to width); (params, MACs) first.
    """

    lo: np.ndarray  # the cheapest single cell (exact)
    hi_first: np.ndarray  # bound on the first cell
    hi_rest: np.ndarray  # bound on each further cell, at (c_out, c_out, 1)


@lru_cache(maxsize=32)  # 0.8 MiB each; a task uses up to 2 x (max_downsamples + 1)
def _any_cell_step(side: int, stride: int) -> _Step:
    out = -(-side // stride)
    c_in, c_out = WIDTHS.reshape(-1, 1), WIDTHS.reshape(1, -1)
    direct = np.array([np.stack(np.broadcast_arrays(
        *_group_cost(g, c_in, c_out, side * side, out * out)))
        for g in _single_op_groups()])
    inner = np.array([np.stack(_group_cost(g, WIDTHS, WIDTHS, out * out, out * out))
                      for g in _single_op_groups()]).max(axis=0)
    reshaped = (c_in != c_out) | (stride != 1)
    projection = np.stack(np.broadcast_arrays(reshaped * (c_in * c_out + 2 * c_out),
                                              reshaped * c_in * c_out * out * out))
    most = direct.max(axis=0)
    hi_first = most + 5 * np.maximum(most, inner[:, np.newaxis]) + projection
    return _Step(direct.min(axis=0), hi_first, 6 * inner)


@dataclass(frozen=True)
class _Bounds:
    """Best and worst continuations from (cells left, downsamples used, width index).

    Shapes: (MAX_CELLS + 1, max_downsamples + 1, 2, len(WIDTHS)), (params, MACs) on axis 2.
    `lo`/`hi` may end at once (head only); `lo_go`/`hi_go` must add at least one stage first.
    """

    sides: tuple[int, ...]  # spatial side after d downsamples
    lo: np.ndarray
    hi: np.ndarray
    lo_go: np.ndarray
    hi_go: np.ndarray


@lru_cache(maxsize=32)
def _bounds(stem_side: int, num_classes: int, final: int | None,
            max_downsamples: int) -> _Bounds:
    sides = [stem_side]
    for _ in range(max_downsamples):
        sides.append(-(-sides[-1] // 2))
    shape = (MAX_CELLS + 1, max_downsamples + 1, 2, len(WIDTHS))
    lo, lo_go = np.empty(shape, np.int64), np.full(shape, _NO_PATH)
    hi, hi_go = np.empty(shape, np.int64), np.full(shape, -1, np.int64)
    for cells in range(MAX_CELLS + 1):  # fewer cells left first: each stage uses >= 1
        for level, side in enumerate(sides):
            if cells:
                for stride in (1, 2) if level < max_downsamples else (1,):
                    step, after = _any_cell_step(side, stride), level + (stride == 2)
                    future = step.lo + lo[cells - 1, after][:, np.newaxis]
                    lo_go[cells, level] = np.minimum(lo_go[cells, level], future.min(axis=-1))
                    worst = hi[cells - 1, after]  # the best r per next width, then one max
                    for r in range(2, min(MAX_REPEATS, cells) + 1):
                        worst = np.maximum(worst, (r - 1) * step.hi_rest + hi[cells - r, after])
                    future = step.hi_first + worst[:, np.newaxis]
                    hi_go[cells, level] = np.maximum(hi_go[cells, level], future.max(axis=-1))
            head_lo = _head_table(final or MIN_CHANNELS, num_classes, side)
            head_hi = _head_table(final or MAX_CHANNELS, num_classes, side)
            lo[cells, level] = np.minimum(head_lo, lo_go[cells, level])
            hi[cells, level] = np.maximum(head_hi, hi_go[cells, level])
    return _Bounds(tuple(sides), lo, hi, lo_go, hi_go)


def _head_table(final: int, num_classes: int, side: int) -> np.ndarray:
    """Head cost from every width. Shape: (2, len(WIDTHS))."""
    conv = WIDTHS * final
    params = 2 * WIDTHS + conv + 2 * final + (final + 1) * num_classes
    return np.stack([params, conv * side * side + final * num_classes])


def _check_prefix(task: TaskLike, prefix: PartialMacro, max_downsamples: int) -> _Finished:
    """The one gate of `reachable_cost`: a prefix that no valid network extends is an error.
    Returns the finished part (checked and costed in `_finished_part`)."""
    if not isinstance(prefix, PartialMacro):
        raise GenotypeError(f"reachable_cost needs a PartialMacro; got {type(prefix).__name__}")
    if max_downsamples < 0:
        raise GenotypeError(f"max_downsamples must be >= 0; got {max_downsamples}")
    done = _finished_part(task.input_size, task.in_channels, prefix.stem_channels, prefix.stages)
    current = prefix.current
    if current is not None:
        _check_choices("current stage", current.channels, current.stride, current.repeats,
                       current.cell)
    if prefix.final_channels is not None:
        _check_choices("final", prefix.final_channels)
    if prefix.closed and (current is not None or not prefix.stages):
        raise GenotypeError("a closed prefix needs >= 1 finished stage and no current stage; "
                            "finish the current stage into `stages` first")
    downsamples = done.level + (current is not None and current.stride == 2)
    if downsamples > max_downsamples:
        raise GenotypeError(f"the prefix has {downsamples} stride-2 stages; at most "
                            f"{max_downsamples} (max_downsamples)")
    cells = done.cells + (0 if current is None else current.repeats or 1)
    if cells > MAX_CELLS:
        raise GenotypeError(f"the prefix has {cells} cells (a current stage counts >= 1); at "
                            f"most {MAX_CELLS}")
    return done


def _check_choices(where: str, channels: int | None, stride: int | None = 1,
                   repeats: int | None = 1, cell: CellGenotype | None = None) -> None:
    if channels is not None and not (MIN_CHANNELS <= channels <= MAX_CHANNELS
                                     and channels % CHANNEL_STEP == 0):
        raise GenotypeError(f"{where} channels is {channels}; allowed: multiples of "
                            f"{CHANNEL_STEP} in [{MIN_CHANNELS}, {MAX_CHANNELS}]")
    if stride not in (None, 1, 2):
        raise GenotypeError(f"{where} stride is {stride}; allowed: 1 or 2")
    if repeats is not None and not 1 <= repeats <= MAX_REPEATS:
        raise GenotypeError(f"{where} repeats is {repeats}; allowed: 1..{MAX_REPEATS}")
    if cell is not None:
        _check_cell(where, cell)


def _check_cell(where: str, cell: CellGenotype) -> None:
    if cell.space != "cell":
        raise GenotypeError(f"{where} cell is from the {cell.space!r} space; macro networks use "
                            "cells of the 'cell' space")
    try:
        _validate(cell)
    except GenotypeError as err:
        raise GenotypeError(f"{where} cell: {err}") from None


@lru_cache(maxsize=8192)  # a decoder meets the same cells in many prefixes
def _validate(cell: CellGenotype) -> None:
    cell.validate()
