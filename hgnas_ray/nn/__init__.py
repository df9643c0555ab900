"""Modules built from genotypes, their exact costs, and parameter/MAC budgets."""

from __future__ import annotations

from hgnas_ray.nn.budget import Budget, minimum_cost, sample_within_budget
from hgnas_ray.nn.builder import TaskShape, build_network, genotype_cost
from hgnas_ray.nn.cell import CellModule
from hgnas_ray.nn.cost import Cost, count_macs, count_params, network_cost
from hgnas_ray.nn.macro import CellSkeleton, MacroNetwork

__all__ = ["Budget", "CellModule", "CellSkeleton", "Cost", "MacroNetwork", "TaskShape",
           "build_network", "count_macs", "count_params", "genotype_cost", "minimum_cost",
           "network_cost", "sample_within_budget"]
