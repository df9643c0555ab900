"""Exact parameter and multiply-accumulate (MAC) counts.

Convention (stated everywhere a cost is printed): `macs` counts the multiply-accumulates of
convolutions and linear layers for ONE input sample; `flops` = 2 x `macs` (the HGENNAS code's
"FLOPs"); ZenNAS and ZiCo budgets are MACs. BatchNorm, pooling, activations and additions are not
counted (NAS-Bench-201's own counter adds them, so its absolute values are a little higher).
Counts are read off the layers' shapes in a forward pass on the `meta` device: no real compute.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Cost:
    params: int  # trainable parameters (count)
    macs: int  # conv + linear multiply-accumulates per sample (count)

    @property
    def flops(self) -> int:
        """FLOPs as 2 x MACs."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "flops": self.flops}

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(self.params + other.params, self.macs + other.macs)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_macs(module: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """MACs of one forward pass for one sample of shape (C, H, W), traced on the meta device.

    Traces a copy (the caller's module is never moved or changed) in eval mode, with BatchNorm
    swapped for identity: BN has no MACs in this convention and its meta kernel is slow.
    """
    module = copy.deepcopy(module)
    if _device(module) != "meta":
        module = module.to("meta")
    return _count_macs_in_place(module, input_shape)


def _count_macs_in_place(module: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """`count_macs` on a meta-device module it may change (BatchNorm dropped, hooks added)."""
    _drop_batchnorm(module)
    module.eval()
    total = 0

    def conv_hook(layer: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = layer.in_channels // layer.groups * layer.kernel_size[0] \
            * layer.kernel_size[1]
        total += output[0].numel() * per_output

    def linear_hook(layer: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * layer.in_features

    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            layer.register_forward_hook(conv_hook)
        elif isinstance(layer, nn.Linear):
            layer.register_forward_hook(linear_hook)
    with torch.no_grad():
        module(torch.empty((1, *input_shape), device="meta"))
    return total


def _drop_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _drop_batchnorm(child)


def network_cost(build: Callable[[], nn.Module], input_shape: tuple[int, int, int]) -> Cost:
    """Build a network on the meta device (no memory, no init cost) and count it."""
    with torch.device("meta"):
        module = build()
    params = count_params(module)
    if _device(module) != "meta":  # `build` returned a module made elsewhere: leave it as it is
        return Cost(params, count_macs(module, input_shape))
    # built here for this count only: counted in place, saving the deep copy (~1/3 of the time)
    return Cost(params, _count_macs_in_place(module, input_shape))


def _device(module: nn.Module) -> str:
    first = next(module.parameters(), None)
    return "cpu" if first is None else first.device.type
