"""Lower bounds on the cost of every network completing a layout prefix (for the decoder).

`hgnas_ray.nn.cost_model.reachable_cost` bounds completions of a `PartialMacro` whose finished
stages hold concrete cells. A layout's finished stages hold cluster ids instead, so each finished
stage counts at its cheapest possible cell, and since stages cost independently of each other and
of the continuation, the lowest params (MACs) of the prefix is `reachable_cost`'s lower bound with
every finished stage holding its params-cheapest (MACs-cheapest) cell. Exact, component by
component, like `reachable_cost`. "Possible cells" of a stage are:

- `layout_lower_bound`: any cell of the 'cell' space. The cheapest is a chain input -> op ->
  avg_pool -> output (proved and brute-force checked in the cost model), so the chain cells of
  every (op, kernel) are searched;
- `PooledLowerBound(pools)`: the cells drawn for the stage's cluster (`pools[cluster]`), when
  the network's cells will be picked from those draws. The stage being written and the stages
  after it count at any cell, as above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from hgnas_ray.models.seqgen.decoding import PartialLayout
from hgnas_ray.models.seqgen.vocab import MAX_DOWNSAMPLES
from hgnas_ray.nn.cost import Cost
from hgnas_ray.nn.cost_model import (
    PartialMacro,
    PartialStage,
    cell_cost,
    reachable_cost,
    smallest_cost,
    stem_cost,
)
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.macro import Stage
from hgnas_ray.space.vocab import NONE, get_vocabulary


@lru_cache(maxsize=1)
def chain_cells() -> tuple[CellGenotype, ...]:
    """input -> (op, kernel) -> avg_pool -> output, for every (op, kernel) of the 'cell' space."""
    pool_kernel = min(k for op, k in get_vocabulary("cell").choices if op == "avg_pool")
    return tuple(CellGenotype((op, "avg_pool", *(NONE,) * 4), (kernel, pool_kernel, *(0,) * 4),
                              ((0, 1), (1, 2), (2, 7))).validate()
                 for op, kernel in get_vocabulary("cell").choices)


def cell_pair_costs(cells: Sequence[CellGenotype], c_in: int, channels: int, stride: int,
                    side: int) -> list[tuple[Cost, Cost]]:
    """Per cell: (first cell of a stage, each further cell): a stage of r repeats costs
    first + (r - 1) x further."""
    out = -(-side // stride)
    return [(cell_cost(cell, c_in, channels, stride, side),
             cell_cost(cell, channels, channels, 1, out)) for cell in cells]


def cheapest_of(cells: Sequence[CellGenotype], pairs: Sequence[tuple[Cost, Cost]],
                repeats: int) -> tuple[CellGenotype, CellGenotype]:
    """(params-cheapest, MACs-cheapest) of `cells` in a stage of `repeats` cells, given their
    `cell_pair_costs`."""
    params = [first.params + (repeats - 1) * rest.params for first, rest in pairs]
    macs = [first.macs + (repeats - 1) * rest.macs for first, rest in pairs]
    return cells[params.index(min(params))], cells[macs.index(min(macs))]


@lru_cache(maxsize=1 << 14)
def _chain_pairs(c_in: int, channels: int, stride: int, side: int) -> list[tuple[Cost, Cost]]:
    return cell_pair_costs(chain_cells(), c_in, channels, stride, side)


@lru_cache(maxsize=1 << 16)
def _cheapest_chain(c_in: int, channels: int, stride: int, repeats: int, side: int
                    ) -> tuple[CellGenotype, CellGenotype]:
    return cheapest_of(chain_cells(), _chain_pairs(c_in, channels, stride, side), repeats)


def layout_lower_bound(task, prefix: PartialLayout) -> tuple[int, int]:
    """Lowest (params, MACs per sample) of any valid network completing `prefix` for `task`,
    with any cells (each minimised separately, at most MAX_DOWNSAMPLES stride-2 stages).
    Memoised: decoding asks for the same prefixes again and again."""
    return _generic_bound(task, prefix.cost_key())


@lru_cache(maxsize=1 << 17)
def _generic_bound(task, key: tuple) -> tuple[int, int]:
    stem, stages, current, head, final = key
    return _bound(task, stem, [(None, *s) for s in stages], current, head, final,
                  lambda _, *shape: _cheapest_chain(*shape))


class PooledLowerBound:
    """`layout_lower_bound` with each finished stage's cell one of `pools[cluster]`.

    `pools` may draw lazily (a mapping whose `__getitem__` samples a cluster's cells on first
    use); the bounds are memoised per instance.
    """

    def __init__(self, pools: Mapping[int, Sequence[CellGenotype]]) -> None:
        self.pools = pools
        self._pairs: dict[tuple, list[tuple[Cost, Cost]]] = {}
        self._stages: dict[tuple, tuple[CellGenotype, CellGenotype]] = {}
        self._bounds: dict[tuple, tuple[int, int]] = {}

    def __call__(self, task, prefix: PartialLayout) -> tuple[int, int]:
        key = (task, prefix.stem, prefix.stages, prefix.current[1:] if prefix.current else None,
               prefix.head, prefix.final)
        if key not in self._bounds:
            stages = [(s.cluster, s.stride, s.channels, s.repeats) for s in prefix.stages]
            self._bounds[key] = _bound(task, prefix.stem, stages, key[3], prefix.head,
                                       prefix.final, self._cheapest)
        return self._bounds[key]

    def _cheapest(self, cluster: int, c_in: int, channels: int, stride: int, repeats: int,
                  side: int) -> tuple[CellGenotype, CellGenotype]:
        key = (cluster, c_in, channels, stride, repeats, side)
        if key not in self._stages:
            shape = (cluster, c_in, channels, stride, side)
            if shape not in self._pairs:
                self._pairs[shape] = cell_pair_costs(self.pools[cluster], *shape[1:])
            self._stages[key] = cheapest_of(self.pools[cluster], self._pairs[shape], repeats)
        return self._stages[key]


def _bound(task, stem: int | None, stages: list[tuple], current: tuple | None, head: bool,
           final: int | None, cheapest) -> tuple[int, int]:
    """`stages`: (cluster, stride, channels, repeats) of the finished stages; `current`: the
    (stride, channels) chosen so far of the stage being written, or None; `cheapest(cluster,
    c_in, channels, stride, repeats, side)` -> (params-cheapest, MACs-cheapest) cell."""
    if stem is None:
        low = smallest_cost(task, MAX_DOWNSAMPLES)
        return low.params, low.macs
    _, side = stem_cost(task, stem)
    by_params, by_macs, width = [], [], stem
    for cluster, stride, channels, repeats in stages:
        cheap_params, cheap_macs = cheapest(cluster, width, channels, stride, repeats, side)
        by_params.append(Stage(cheap_params, channels, stride, repeats))
        by_macs.append(Stage(cheap_macs, channels, stride, repeats))
        side, width = -(-side // stride), channels
    partial = None
    if current is not None:  # the cell of the stage being written is unknown
        stride, channels = (*current, None, None)[:2]
        partial = PartialStage(None, channels=channels, stride=stride)
    low_params = _lowest(task, stem, by_params, partial, head, final)
    low_macs = low_params if by_macs == by_params else \
        _lowest(task, stem, by_macs, partial, head, final)
    return low_params.params, low_macs.macs


def _lowest(task, stem: int, stages: list[Stage], current: PartialStage | None, head: bool,
            final: int | None):
    partial = PartialMacro(stem, tuple(stages), current, closed=head, final_channels=final)
    return reachable_cost(task, partial, MAX_DOWNSAMPLES)[0]
