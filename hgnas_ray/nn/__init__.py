"""Modules built from genotypes, and their exact costs."""

from __future__ import annotations

from hgnas_ray.nn.builder import TaskShape, build_network, genotype_cost
from hgnas_ray.nn.cell import CellModule
from hgnas_ray.nn.cost import Cost, count_macs, count_params, network_cost
from hgnas_ray.nn.macro import CellSkeleton, MacroNetwork

__all__ = ["CellModule", "CellSkeleton", "Cost", "MacroNetwork", "TaskShape", "build_network",
           "count_macs", "count_params", "genotype_cost", "network_cost"]
