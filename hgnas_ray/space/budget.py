"""Parameter and MAC budgets (DESIGN 2.2): hard limits checked on exact counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hgnas_ray.errors import BudgetError
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
        return cls(None if max_params is None else int(max_params),
                   None if max_macs is None else int(max_macs))

    @property
    def is_limited(self) -> bool:
        return self.max_params is not None or self.max_macs is not None

    def allows(self, cost) -> bool:
        return ((self.max_params is None or cost.params <= self.max_params)
                and (self.max_macs is None or cost.macs <= self.max_macs))

    def __str__(self) -> str:
        parts = [f"params <= {self.max_params:,}" if self.max_params else "",
                 f"MACs <= {self.max_macs:,}" if self.max_macs else ""]
        return " and ".join(p for p in parts if p) or "unlimited"


def sample_within_budget(rng: np.random.Generator, budget: Budget, task,
                         max_draws: int = 200) -> MacroGenotype:
    """Rejection-sample a macro network whose exact cost fits the budget."""
    from hgnas_ray.nn.builder import genotype_cost  # the space layer needs nn only here

    smallest = None
    for _ in range(max_draws):
        genotype = sample_macro(rng)
        cost = genotype_cost(genotype, task)
        if budget.allows(cost):
            return genotype
        if smallest is None or cost.params < smallest.params:
            smallest = cost
    raise BudgetError(f"no random macro network within budget ({budget}) in {max_draws} draws; "
                      f"the smallest had {smallest.params:,} params and {smallest.macs:,} MACs; "
                      "raise the budget")
