"""One factory from any genotype to its network, and its cost.

A cell genotype (either cell space) is built inside the fixed scoring skeleton (DESIGN 3); a
macro genotype as its own network; a NAS-Bench-201 genotype as the benchmark's network.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hgnas_ray.errors import GenotypeError
from hgnas_ray.nn.cost import Cost, network_cost
from hgnas_ray.nn.cost_model import macro_cost
from hgnas_ray.nn.macro import CellSkeleton, MacroNetwork
from hgnas_ray.nn.nb201 import Nb201Network
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.macro import MacroGenotype
from hgnas_ray.space.nb201 import Nb201Genotype

Genotype = CellGenotype | MacroGenotype | Nb201Genotype


@dataclass(frozen=True)
class TaskShape:
    """What a network needs to know of its task. Defaults: CIFAR-10."""

    num_classes: int = 10
    input_size: int = 32
    in_channels: int = 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.input_size, self.input_size)


@dataclass(frozen=True)
class SkeletonSize:
    """Size of the networks that hold a single cell (the paper's: 16 channels, 5 cells/stage)."""

    channels: int = 16
    cells_per_stage: int = 5


def build_network(genotype: Genotype, task: TaskShape = TaskShape(),
                  skeleton: SkeletonSize = SkeletonSize()) -> nn.Module:
    if isinstance(genotype, MacroGenotype):
        return MacroNetwork(genotype, task.num_classes, task.input_size, task.in_channels)
    if isinstance(genotype, CellGenotype):
        return CellSkeleton(genotype, skeleton.channels, skeleton.cells_per_stage,
                            task.num_classes, task.in_channels)
    if isinstance(genotype, Nb201Genotype):
        return Nb201Network(genotype, task.num_classes, skeleton.channels,
                            skeleton.cells_per_stage, task.in_channels)
    raise GenotypeError(f"cannot build a network from {type(genotype).__name__}; expected a "
                        "CellGenotype, MacroGenotype or Nb201Genotype")


def genotype_cost(genotype: Genotype, task: TaskShape = TaskShape(),
                  skeleton: SkeletonSize = SkeletonSize()) -> Cost:
    """Exact params and MACs (per sample) of the network `build_network` makes.

    Macro networks are counted from formulas (`macro_cost`, microseconds); cells in their
    skeleton and NAS-Bench-201 networks are traced on the meta device.
    """
    if isinstance(genotype, MacroGenotype):
        return macro_cost(genotype, task)
    return network_cost(lambda: build_network(genotype, task, skeleton), task.input_shape)
