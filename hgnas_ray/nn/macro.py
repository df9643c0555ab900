"""Macro networks and the fixed skeleton that scores one cell (DESIGN 2.2 and 3)."""

from __future__ import annotations

from torch import Tensor, nn

from hgnas_ray.nn.cell import CellModule
from hgnas_ray.nn.ops import SqueezeExcite, conv_bn
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.macro import MacroGenotype

LARGE_INPUT = 64  # inputs larger than this get a stride-2 stem (ImageNet-size vs CIFAR-size)


class MacroNetwork(nn.Module):
    """stem (3x3 conv + BN), stages of cells, head (BN, ReLU, 1x1 conv, BN, pool, linear).

    `squeeze_excite=True` follows every cell with a squeeze-excite block (off by default: the
    genotype's exact costs and the search's budgets count the network without it).

    Shapes:
        x: (N, in_channels, H, W) -> logits (N, num_classes)
        forward_features(x) -> (N, final_channels, H', W') before global pooling
    """

    def __init__(self, genotype: MacroGenotype, num_classes: int = 10, input_size: int = 32,
                 in_channels: int = 3, squeeze_excite: bool = False) -> None:
        super().__init__()
        self.genotype = genotype
        self.num_classes, self.input_size = num_classes, input_size
        self.squeeze_excite = squeeze_excite
        stem_stride = 2 if input_size > LARGE_INPUT else 1
        self.stem = nn.Sequential(*conv_bn(in_channels, genotype.stem_channels, 3, stem_stride))
        cells: list[nn.Module] = []
        width = genotype.stem_channels
        for stage in genotype.stages:
            for repeat in range(stage.repeats):
                stride = stage.stride if repeat == 0 else 1
                cells.append(cell_block(stage.cell, width, stage.channels, stride,
                                        squeeze_excite))
                width = stage.channels
        self.cells = nn.Sequential(*cells)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(),
                                  *conv_bn(width, genotype.final_channels, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(genotype.final_channels, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.head(self.cells(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.forward_features(x)).flatten(1))

    def extra_repr(self) -> str:
        se = ", squeeze_excite=True" if self.squeeze_excite else ""
        return f"num_classes={self.num_classes}, input_size={self.input_size}, " \
               f"genotype={self.genotype.hash}{se}"


class CellSkeleton(nn.Module):
    """The fixed NAS-Bench-201-like network that scores one cell (DESIGN 3).

    stem 3x3 conv + BN to `channels`; 3 stages of `cells_per_stage` cells at channels x (1, 2, 4),
    the same cell with stride 2 opening stages 2 and 3; BN, ReLU, global pool, linear.
    `squeeze_excite=True` follows every cell with a squeeze-excite block (off by default).

    Shapes:
        x: (N, in_channels, H, W) -> logits (N, num_classes)
    """

    def __init__(self, cell: CellGenotype, channels: int = 16, cells_per_stage: int = 5,
                 num_classes: int = 10, in_channels: int = 3,
                 squeeze_excite: bool = False) -> None:
        super().__init__()
        self.genotype = cell
        self.channels, self.cells_per_stage = channels, cells_per_stage
        self.squeeze_excite = squeeze_excite
        self.stem = nn.Sequential(*conv_bn(in_channels, channels, 3))
        cells: list[nn.Module] = []
        width = channels
        for stage in range(3):
            out = channels * 2 ** stage
            for index in range(cells_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                cells.append(cell_block(cell, width, out, stride, squeeze_excite))
                width = out
        self.cells = nn.Sequential(*cells)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.head(self.cells(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.forward_features(x)).flatten(1))

    def extra_repr(self) -> str:
        se = ", squeeze_excite=True" if self.squeeze_excite else ""
        return f"channels={self.channels}, cells_per_stage={self.cells_per_stage}, " \
               f"cell={self.genotype.hash}{se}"


def cell_block(cell: CellGenotype, c_in: int, c_out: int, stride: int,
               squeeze_excite: bool = False) -> nn.Module:
    """A cell, followed by a squeeze-excite block when asked (its own submodule, so networks
    without it keep their state-dict keys)."""
    module = CellModule(cell, c_in, c_out, stride)
    return nn.Sequential(module, SqueezeExcite(c_out)) if squeeze_excite else module
