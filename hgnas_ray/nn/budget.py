"""Parameter and MAC budgets (DESIGN 2.2): hard limits checked on exact counts.

Here and not in `hgnas_ray.space`: checking a budget needs the networks' costs, which
`hgnas_ray.nn.cost_model` computes exactly from formulas (no network is built).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hgnas_ray.errors import BudgetError
from hgnas_ray.nn.cost_model import macro_cost, smallest_cost
from hgnas_ray.space.macro import MacroGenotype, sample_macro


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


def minimum_cost(task) -> tuple[int, int]:
    """The fewest params and the fewest MACs per sample of any valid macro network for `task`.

    Exact, each minimised separately (`smallest_cost`, with at most 3 stride-2 stages as
    `sample_macro` draws): e.g. 8-channel stem, parameter-free average-pool cells at 8 channels
    (stride 2 ones shrink the head's MACs), 8-channel head.
    """
    smallest = smallest_cost(task)
    return smallest.params, smallest.macs


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
        cost = macro_cost(genotype, task)
        if budget.allows(cost):
            return genotype
        excess = budget.excess(cost)
        if excess < closest_excess:
            closest, closest_excess = cost, excess
    raise BudgetError(f"no random macro network within budget ({budget}) in {max_draws} draws; "
                      f"the closest had {closest.params:,} params and {closest.macs:,} MACs; "
                      "raise the budget")
