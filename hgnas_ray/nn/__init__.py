"""Modules built from genotypes, their exact costs, and parameter/MAC budgets."""

from __future__ import annotations

from hgnas_ray.nn.budget import Budget, minimum_cost, sample_within_budget
from hgnas_ray.nn.builder import TaskShape, build_network, genotype_cost
from hgnas_ray.nn.cell import CellModule
from hgnas_ray.nn.cost import Cost, count_macs, count_params, network_cost
from hgnas_ray.nn.cost_model import (
    PartialMacro,
    PartialStage,
    cell_cost,
    head_cost,
    macro_cost,
    reachable_cost,
    smallest_cost,
    stage_cost,
    stem_cost,
)
from hgnas_ray.nn.macro import CellSkeleton, MacroNetwork

__all__ = ["Budget", "CellModule", "CellSkeleton", "Cost", "MacroNetwork", "PartialMacro",
           "PartialStage", "TaskShape", "build_network", "cell_cost", "count_macs",
           "count_params", "genotype_cost", "head_cost", "macro_cost", "minimum_cost",
           "network_cost", "reachable_cost", "sample_within_budget", "smallest_cost",
           "stage_cost", "stem_cost"]
