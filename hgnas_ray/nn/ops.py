"""Cell operations (DESIGN 2.1), one registry.

Every op is pre-activation (ReLU first), puts the stride in its spatial convolution and pads
k // 2 (dilated: 2 * (k // 2)), so that spatial size depends only on the stride. A factory takes
(c_in, c_out, stride, kernel) and returns a module mapping (N, c_in, H, W) to
(N, c_out, ceil(H / stride), ceil(W / stride)).

`bconv_e*` is a ResNet-style bottleneck (1x1 reduce to e*C_out, full k x k conv, 1x1 project);
`mbconv_e*` is the inverted residual without the residual (1x1 expand to e*C_out, depthwise k x k,
1x1 project), BN after each convolution as DESIGN 2.1 says.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from hgnas_ray.errors import unknown_name

OpFactory = Callable[[int, int, int, int], nn.Module]
OPS: dict[str, OpFactory] = {}
SE_REDUCTION, SE_MIN_HIDDEN = 4, 8  # squeeze-excite: hidden = max(8, channels // 4)


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    def wrap(factory: OpFactory) -> OpFactory:
        assert name not in OPS, f"op {name} registered twice"
        OPS[name] = factory
        return factory
    return wrap


def create_op(name: str, c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    if name not in OPS:
        raise unknown_name("op", name, tuple(OPS))
    return OPS[name](c_in, c_out, stride, kernel)


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
            dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel // 2)
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups,
                      bias=False), nn.BatchNorm2d(c_out)]


def projection(c_in: int, c_out: int, stride: int) -> nn.Module:
    """ReLU, 1x1 conv with stride, BN: the input's projection inside a cell."""
    return nn.Sequential(nn.ReLU(), *conv_bn(c_in, c_out, 1, stride))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al.): global average pool, 1x1 conv to `hidden`, ReLU, 1x1
    conv back, sigmoid, and the input rescaled channel by channel. Not a cell op: an opt-in
    block after each cell (`build_network(..., squeeze_excite=True)`).

    Shapes:
        x: (N, channels, H, W) -> (N, channels, H, W)
    """

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        self.channels, self.hidden = channels, max(SE_MIN_HIDDEN, channels // reduction)
        self.reduce = nn.Conv2d(channels, self.hidden, 1)
        self.expand = nn.Conv2d(self.hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(scale))))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"


class AvgPoolOp(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int) -> None:
        layers: list[nn.Module] = [nn.AvgPool2d(kernel, stride, kernel // 2,
                                                count_include_pad=False)]
        if c_in != c_out:
            layers.append(projection(c_in, c_out, 1))
        super().__init__(*layers)


@register_op("avg_pool")
def _avg_pool(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    return AvgPoolOp(c_in, c_out, stride, kernel)


@register_op("conv")
def _conv(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), *conv_bn(c_in, c_out, kernel, stride))


@register_op("sep_conv")
def _sep_conv(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(),
                         nn.Conv2d(c_in, c_in, kernel, stride, kernel // 2, groups=c_in,
                                   bias=False),
                         *conv_bn(c_in, c_out, 1))


@register_op("dil_conv")
def _dil_conv(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(),
                         nn.Conv2d(c_in, c_in, kernel, stride, 2 * (kernel // 2), dilation=2,
                                   groups=c_in, bias=False),
                         *conv_bn(c_in, c_out, 1))


def _mbconv(expand: float) -> OpFactory:
    def factory(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
        mid = max(1, round(expand * c_out))
        return nn.Sequential(nn.ReLU(), *conv_bn(c_in, mid, 1), nn.ReLU(),
                             *conv_bn(mid, mid, kernel, stride, groups=mid), nn.ReLU(),
                             *conv_bn(mid, c_out, 1))
    return factory


def _bottleneck(expand: float) -> OpFactory:
    def factory(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
        mid = max(1, round(expand * c_out))
        return nn.Sequential(nn.ReLU(), *conv_bn(c_in, mid, 1), nn.ReLU(),
                             *conv_bn(mid, mid, kernel, stride), nn.ReLU(),
                             *conv_bn(mid, c_out, 1))
    return factory


for _e in (2, 3, 6):
    register_op(f"mbconv_e{_e}")(_mbconv(_e))
for _e in (0.5, 0.25):
    register_op(f"bconv_e{_e}")(_bottleneck(_e))


# NAS-Bench-201's node-form ops (DESIGN 2.3): ReLU-conv-BN and a 3x3 average pool.
@register_op("nor_conv_1x1")
def _nor_conv_1x1(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    return _conv(c_in, c_out, stride, 1)


@register_op("nor_conv_3x3")
def _nor_conv_3x3(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    return _conv(c_in, c_out, stride, 3)


@register_op("avg_pool_3x3")
def _avg_pool_3x3(c_in: int, c_out: int, stride: int, kernel: int) -> nn.Module:
    return AvgPoolOp(c_in, c_out, stride, 3)
