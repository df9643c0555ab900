"""Macro networks as a search space under a budget, with layouts for HL-Evo (DESIGN 2.2, 4).

`MacroHierarchy` serves every strategy: `sample` and `mutate` never return a network over the
budget (so `random` and `evolution` are budget-aware baselines), and its layouts and network
mutations are HL-Evo's two levels. A layout is JSON::

    {"stem": 16, "stages": [[cluster, channels, stride, repeats], ...], "final": 128}

Cells come from a `CellSource`: `RandomCells` (one pseudo-cluster of uniform random cells, no
generator needed) or a cell generator's clusters (`hgnas_ray.search.pretrained.GeneratorCells`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hgnas_ray.errors import BudgetError, GenotypeError
from hgnas_ray.nn.budget import Budget, minimum_cost
from hgnas_ray.nn.builder import TaskShape, genotype_cost
from hgnas_ray.nn.cost import Cost
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.cell_sampling import mutate_cell, sample_cell
from hgnas_ray.space.macro import (
    MAX_CELLS,
    MAX_REPEATS,
    REPEAT_DELTAS,
    WIDTH_FACTORS,
    MacroGenotype,
    Stage,
    mutate_macro,
    round_width,
    sample_macro,
)

SHRINK = 1.5  # an over-budget instantiation has every width divided by this, a few times
MAX_SHRINKS = 6


class CellSource(Protocol):
    """Where stage cells come from: cluster draws, regeneration, cluster assignment."""

    num_clusters: int

    def draw(self, cluster: int, rng: np.random.Generator) -> CellGenotype: ...

    def regenerate(self, cell: CellGenotype, rng: np.random.Generator) -> CellGenotype | None:
        """A new cell like `cell` (None: none found)."""

    def cluster_of(self, cells: list[CellGenotype]) -> list[int]: ...


class RandomCells:
    """No generator: one pseudo-cluster of uniform random cells; regeneration is mutation."""

    num_clusters = 1

    def draw(self, cluster: int, rng: np.random.Generator) -> CellGenotype:
        return sample_cell(rng)

    def regenerate(self, cell: CellGenotype, rng: np.random.Generator) -> CellGenotype | None:
        return mutate_cell(cell, rng)

    def cluster_of(self, cells: list[CellGenotype]) -> list[int]:
        return [0] * len(cells)


@dataclass
class MacroHierarchy:
    """Budgeted macro networks for one task (see the module docstring)."""

    task: TaskShape = field(default_factory=TaskShape)
    budget: Budget = field(default_factory=Budget)
    cells: CellSource = field(default_factory=RandomCells)
    max_downsamples: int = 3
    max_stages: int = 6
    max_width: int = 256
    regenerate_prob: float = 0.5  # level two: chance a changed cell is regenerated, not mutated
    max_tries: int = 50
    name: str = field(default="macro", init=False)

    def __post_init__(self) -> None:
        min_params, min_macs = minimum_cost(self.task)
        if ((self.budget.max_params is not None and self.budget.max_params < min_params)
                or (self.budget.max_macs is not None and self.budget.max_macs < min_macs)):
            raise BudgetError(f"budget ({self.budget}) is below what any macro network needs "
                              f"for this task: >= {min_params:,} params and >= {min_macs:,} "
                              "MACs; raise it")

    # ------------------------------------------------------------------ costs
    def cost(self, genotype: MacroGenotype) -> Cost:
        return genotype_cost(genotype, self.task)

    def fits(self, genotype: MacroGenotype) -> bool:
        return self.budget.allows(self.cost(genotype))

    # ------------------------------------------------------------------ SearchSpace
    def key(self, genotype: MacroGenotype) -> str:
        return genotype.hash

    def to_text(self, genotype: MacroGenotype) -> str:
        return genotype.to_json()

    def from_text(self, text: str) -> MacroGenotype:
        return MacroGenotype.from_json(text)

    def sample(self, rng: np.random.Generator) -> MacroGenotype:
        """A random network within the budget (a random layout, instantiated)."""
        for _ in range(self.max_tries):
            genotype = self.instantiate(self.sample_layout(rng), rng)
            if genotype is not None:
                return genotype
        raise BudgetError(f"no random macro network within budget ({self.budget}) in "
                          f"{self.max_tries} layouts; raise the budget or lower max_width")

    def mutate(self, genotype: MacroGenotype, rng: np.random.Generator) -> MacroGenotype:
        child = self.mutate_network(genotype, rng)
        if child is None:
            raise GenotypeError(f"no mutation of {genotype.hash} within budget ({self.budget}) "
                                f"in {self.max_tries} tries")
        return child

    # ------------------------------------------------------------------ HL-Evo level one
    def sample_layout(self, rng: np.random.Generator) -> dict[str, Any]:
        shape = sample_macro(rng, self.max_downsamples, self.max_stages, self.max_width)
        return {"stem": shape.stem_channels, "final": shape.final_channels,
                "stages": [[int(rng.integers(self.cells.num_clusters)), s.channels, s.stride,
                            s.repeats] for s in shape.stages]}

    def mutate_layout(self, layout: dict[str, Any], rng: np.random.Generator
                      ) -> dict[str, Any] | None:
        """One stage's cluster/channels/stride/repeats or the final width changed (DESIGN 2.2
        with the cell replaced by its cluster)."""
        for _ in range(self.max_tries):
            child = _mutate_layout_once(layout, rng, self.cells.num_clusters)
            stages = child["stages"]
            if (stages and child != layout and sum(s[3] for s in stages) <= MAX_CELLS
                    and sum(s[2] == 2 for s in stages) <= self.max_downsamples):
                return child
        return None

    def instantiate(self, layout: dict[str, Any], rng: np.random.Generator
                    ) -> MacroGenotype | None:
        """Each stage's cell drawn from its cluster; over budget, all widths shrink by 1.5x
        (up to 6 times) before the layout is given up."""
        cells = [self.cells.draw(int(s[0]), rng) for s in layout["stages"]]
        scale = 1.0
        for _ in range(MAX_SHRINKS + 1):
            genotype = _network(layout, cells, scale)
            if self.fits(genotype):
                return genotype
            scale /= SHRINK
        return None

    # ------------------------------------------------------------------ HL-Evo level two
    def mutate_network(self, genotype: MacroGenotype, rng: np.random.Generator
                       ) -> MacroGenotype | None:
        for _ in range(self.max_tries):
            try:
                child = mutate_macro(genotype, rng, self.max_downsamples, new_cell=self._new_cell)
            except GenotypeError:
                return None
            if self.fits(child):
                return child
        return None

    def _new_cell(self, cell: CellGenotype, rng: np.random.Generator) -> CellGenotype:
        if rng.random() < self.regenerate_prob:
            regenerated = self.cells.regenerate(cell, rng)
            if regenerated is not None:
                return regenerated
        return mutate_cell(cell, rng)

    def clusters_of(self, genotype: MacroGenotype) -> list[int]:
        """The cluster of each stage's cell."""
        return self.cells.cluster_of([s.cell for s in genotype.stages])


def _network(layout: dict[str, Any], cells: list[CellGenotype], scale: float) -> MacroGenotype:
    stages = tuple(Stage(cell, round_width(s[1] * scale), s[2], s[3])
                   for cell, s in zip(cells, layout["stages"], strict=True))
    return MacroGenotype(round_width(layout["stem"] * scale), stages,
                         round_width(layout["final"] * scale)).validate()


def _mutate_layout_once(layout: dict[str, Any], rng: np.random.Generator,
                        num_clusters: int) -> dict[str, Any]:
    stages = [list(s) for s in layout["stages"]]
    final = layout["final"]
    index = int(rng.integers(len(stages)))
    cluster, channels, stride, repeats = stages[index]
    names = ("cluster", "channels", "stride", "repeats", "final")
    fields = [f for f in names if rng.random() < 0.5] or [names[int(rng.integers(5))]]
    if "cluster" in fields and num_clusters > 1:
        cluster = int((cluster + rng.integers(1, num_clusters)) % num_clusters)
    if "channels" in fields:
        channels = round_width(channels * rng.choice(WIDTH_FACTORS))
    if "stride" in fields:
        stride = 3 - stride
    if "repeats" in fields:
        repeats += int(rng.choice(REPEAT_DELTAS))
    if "final" in fields:
        final = round_width(final * rng.choice(WIDTH_FACTORS))
    if repeats <= 0:
        replacement = []
    elif repeats <= MAX_REPEATS:
        replacement = [[cluster, channels, stride, repeats]]
    else:  # too many repeats: split into two stages, as `mutate_macro` does
        replacement = [[cluster, channels, stride, MAX_REPEATS],
                       [cluster, channels, 1, repeats - MAX_REPEATS]]
    stages[index:index + 1] = replacement
    return {"stem": layout["stem"], "stages": stages, "final": final}
