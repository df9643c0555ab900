"""One factory from any genotype to its network, and its cost.

A cell genotype (either cell space) is built inside the fixed scoring skeleton (DESIGN 3); a
macro genotype as its own network; a NAS-Bench-201 genotype as the benchmark's network.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hgnas_ray.errors import ConfigError, GenotypeError
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
                  skeleton: SkeletonSize = SkeletonSize(), *,
                  squeeze_excite: bool = False) -> nn.Module:
    """`squeeze_excite=True` adds a squeeze-excite block after every cell of a macro network or
    a cell skeleton (the ImageNet final-training recipe); NAS-Bench-201 networks have none."""
    if isinstance(genotype, MacroGenotype):
        return MacroNetwork(genotype, task.num_classes, task.input_size, task.in_channels,
                            squeeze_excite)
    if isinstance(genotype, CellGenotype):
        return CellSkeleton(genotype, skeleton.channels, skeleton.cells_per_stage,
                            task.num_classes, task.in_channels, squeeze_excite)
    if isinstance(genotype, Nb201Genotype):
        if squeeze_excite:
            raise ConfigError("squeeze-excite is not available for NAS-Bench-201 networks (the "
                              "benchmark's network is fixed); train it without squeeze-excite")
        return Nb201Network(genotype, task.num_classes, skeleton.channels,
                            skeleton.cells_per_stage, task.in_channels)
    raise GenotypeError(f"cannot build a network from {type(genotype).__name__}; expected a "
                        "CellGenotype, MacroGenotype or Nb201Genotype")


def genotype_cost(genotype: Genotype, task: TaskShape = TaskShape(),
                  skeleton: SkeletonSize = SkeletonSize(), *,
                  squeeze_excite: bool = False) -> Cost:
    """Exact params and MACs (per sample) of the network `build_network` makes.

    Macro networks are counted from formulas (`macro_cost`, microseconds); cells in their
    skeleton, NAS-Bench-201 networks and any network with squeeze-excite are traced on the meta
    device (the SE block's 1x1 convolutions count, its pooling and rescaling do not).
    """
    if isinstance(genotype, MacroGenotype) and not squeeze_excite:
        return macro_cost(genotype, task)
    return network_cost(lambda: build_network(genotype, task, skeleton,
                                              squeeze_excite=squeeze_excite), task.input_shape)
