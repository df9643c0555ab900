"""The NAS-Bench-201 network, built exactly as the benchmark builds it.

Mirrors xautodl's ``TinyNetwork`` / ``InferCell`` / ``ResNetBasicblock`` (Dong & Yang, ICLR 2020):
every edge op is instantiated (``none`` as a zero op, ``skip_connect`` as identity), so parameter
counts equal the benchmark's, and submodule names follow xautodl's so its state dicts line up.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hgnas_ray.space.nb201 import NB201_EDGES, Nb201Genotype


class ReLUConvBN(nn.Module):
    """ReLU, conv (no bias), BN (affine, running stats): NAS-Bench-201's ``nor_conv_kxk``.

    Shapes:
        input ``(N, C_in, H, W)`` -> output ``(N, C_out, H / stride, W / stride)``
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        # Kept in an ``op`` child to match xautodl's parameter names (``...op.1.weight``).
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2,
                      bias=False),
            nn.BatchNorm2d(c_out, affine=True, track_running_stats=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Zero(nn.Module):
    """NAS-Bench-201's ``none`` edge: outputs zeros of the input's shape (stride 1 only)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0)


def _edge_op(name: str, channels: int) -> nn.Module:
    """One cell edge op at ``channels`` -> ``channels``, stride 1 (as in every NB201 cell)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise AssertionError(f"op {name!r} passed genotype validation")  # pragma: no cover


class Nb201Cell(nn.Module):
    """A NAS-Bench-201 cell (xautodl ``InferCell``): node ``b`` = sum of ``op(a->b)(node a)``.

    Shapes:
        input ``(N, C, H, W)`` -> output ``(N, C, H, W)``
    """

    def __init__(self, genotype: Nb201Genotype, channels: int) -> None:
        super().__init__()
        self.genotype = genotype
        self.channels = channels
        # One op per edge, in NB201_EDGES order (sorted by target node, then source node).
        self.layers = nn.ModuleList(_edge_op(op, channels) for op in genotype.ops)

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            nodes.append(sum(  # type: ignore[arg-type]
                layer(nodes[src])
                for layer, (src, dst) in zip(self.layers, NB201_EDGES, strict=True)
                if dst == target
            ))
        return nodes[-1]

    def extra_repr(self) -> str:
        return f"arch={self.genotype.to_string()}, channels={self.channels}"


class ResNetBasicBlock(nn.Module):
    """The reduction block between stages (xautodl ``ResNetBasicblock``, stride 2).

    ``ReLU-conv3x3/2-BN, ReLU-conv3x3-BN`` plus a shortcut ``AvgPool2d(2, 2)`` then 1x1 conv.

    Shapes:
        input ``(N, C_in, H, W)`` -> output ``(N, C_out, H / 2, W / 2)``
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))

    def extra_repr(self) -> str:
        return f"c_in={self.c_in}, c_out={self.c_out}, stride=2"


class Nb201Network(nn.Module):
    """The NAS-Bench-201 network (xautodl ``TinyNetwork``) for one cell.

    Stem conv3x3 + BN at ``channels``; 3 stages of ``cells_per_stage`` cells at ``channels`` x
    (1, 2, 4) joined by stride-2 ``ResNetBasicBlock``s; BN, ReLU, global average pool, linear.
    The benchmark uses ``channels=16, cells_per_stage=5``; smaller values give the same skeleton
    for cheap scoring on CPU.

    Shapes:
        input ``(N, 3, H, W)`` -> logits ``(N, num_classes)``
    """

    def __init__(
        self,
        genotype: Nb201Genotype | str,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(genotype, str):
            genotype = Nb201Genotype.from_string(genotype)
        self.genotype = genotype
        self.num_classes, self.channels, self.cells_per_stage = (
            num_classes, channels, cells_per_stage,
        )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        cells: list[nn.Module] = []
        c_prev = channels
        for stage, width in enumerate((channels, 2 * channels, 4 * channels)):
            if stage > 0:
                cells.append(ResNetBasicBlock(c_prev, width))
            cells.extend(Nb201Cell(genotype, width) for _ in range(cells_per_stage))
            c_prev = width
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(torch.flatten(x, 1))

    def reset_parameters(self) -> None:
        """Re-initialise every parameter and BN statistic with PyTorch's defaults."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"arch={self.genotype.to_string()}, num_classes={self.num_classes}, "
            f"channels={self.channels}, cells_per_stage={self.cells_per_stage}"
        )
