"""Parameter and MAC budgets (DESIGN 2.2): hard limits checked on exact counts.

Here and not in `hgnas_ray.space`: checking a budget builds the network to count it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hgnas_ray.errors import BudgetError
from hgnas_ray.nn.builder import genotype_cost
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.macro import MIN_CHANNELS, MacroGenotype, Stage, sample_macro


@dataclass(frozen=True)
class Budget:
    """Limits on trainable parameters (count) and MACs per sample (count); None = no limit."""

    max_params: int | None = None
    max_macs: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("max_params", self.max_params), ("max_macs", self.max_macs)):
            if value is not None and value <= 0:
                raise BudgetError(f"{name} must be positive; got {value}")

    @classmethod
    def from_floats(cls, max_params: float | None, max_macs: float | None) -> Budget:
        return cls(_count("max_params", max_params), _count("max_macs", max_macs))

    @property
    def is_limited(self) -> bool:
        return self.max_params is not None or self.max_macs is not None

    def allows(self, cost) -> bool:
        return ((self.max_params is None or cost.params <= self.max_params)
                and (self.max_macs is None or cost.macs <= self.max_macs))

    def excess(self, cost) -> float:
        """How far over budget: the largest ratio of cost to limit (<= 1 means within)."""
        ratios = [cost.params / self.max_params if self.max_params else 0.0,
                  cost.macs / self.max_macs if self.max_macs else 0.0]
        return max(ratios)

    def __str__(self) -> str:
        parts = [f"params <= {self.max_params:,}" if self.max_params else "",
                 f"MACs <= {self.max_macs:,}" if self.max_macs else ""]
        return " and ".join(p for p in parts if p) or "unlimited"


def _count(name: str, value: float | None) -> int | None:
    if value is None:
        return None
    if not math.isfinite(value):  # int() would raise ValueError/OverflowError, not BudgetError
        raise BudgetError(f"{name} must be a finite count; got {value}")
    return int(value)


@lru_cache(maxsize=32)  # builds a network; called once per sampled candidate otherwise
def minimum_cost(task) -> tuple[int, int]:
    """Lower bounds (params, MACs per sample) of any macro network for `task`.

    The smallest network (8-channel stem, one parameter-free average-pool cell, 8-channel head)
    has the fewest parameters possible; every network pays at least its stem and classifier MACs.
    """
    cell = CellGenotype(("avg_pool", "none", "none", "none", "none", "none"), (1, 0, 0, 0, 0, 0),
                        ((0, 1), (0, 7), (1, 7)))
    smallest = MacroGenotype(MIN_CHANNELS, (Stage(cell, MIN_CHANNELS, 1, 1),), MIN_CHANNELS)
    stem_macs = task.in_channels * MIN_CHANNELS * 9 * task.input_size ** 2
    classifier_macs = MIN_CHANNELS * task.num_classes
    return genotype_cost(smallest, task).params, stem_macs + classifier_macs


def sample_within_budget(rng: np.random.Generator, budget: Budget, task,
                         max_draws: int = 200) -> MacroGenotype:
    """Rejection-sample a macro network whose exact cost fits the budget."""
    min_params, min_macs = minimum_cost(task)
    if (budget.max_params or min_params) < min_params or (budget.max_macs or min_macs) < min_macs:
        raise BudgetError(f"budget ({budget}) is below what any macro network needs for this "
                          f"task (>= {min_params:,} params, >= {min_macs:,} MACs); raise it")
    closest, closest_excess = None, np.inf
    for _ in range(max_draws):
        genotype = sample_macro(rng)
        cost = genotype_cost(genotype, task)
        if budget.allows(cost):
            return genotype
        excess = budget.excess(cost)
        if excess < closest_excess:
            closest, closest_excess = cost, excess
    raise BudgetError(f"no random macro network within budget ({budget}) in {max_draws} draws; "
                      f"the closest had {closest.params:,} params and {closest.macs:,} MACs; "
                      "raise the budget")
