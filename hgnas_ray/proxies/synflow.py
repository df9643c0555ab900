"""SynFlow (Tanaka et al., NeurIPS 2020) as NASLib's ``synflow`` measure (``bn=False``)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from hgnas_ray.proxies.context import ProbeContext, weight_layers
from hgnas_ray.proxies.registry import Proxy, register_proxy


def synflow(ctx: ProbeContext) -> float:
    """sum over conv/linear weights of |w * dR/dw|, R = sum(f(1)), on a copy with every
    parameter and buffer replaced by its absolute value, BatchNorm as identity, in float64,
    for an all-ones input of shape (1, C, H, W).

    NASLib restores the weights' signs afterwards; our copy is thrown away instead. The copy
    is in eval mode (only dropout is affected: BN is bypassed).
    """
    model = ctx.model_copy(train=False)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.forward = _identity  # NASLib's bn=False copy: BN forward -> no-op
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    model.double().requires_grad_(True)
    ones = torch.ones((1, *ctx.input_shape), dtype=torch.float64, device=ctx.device)
    model(ones).sum().backward()
    return sum(float((layer.weight.detach() * layer.weight.grad).abs().sum())
               for _, layer in weight_layers(model) if layer.weight.grad is not None)


def _identity(x: Tensor) -> Tensor:
    return x


register_proxy(Proxy(
    name="synflow", fn=synflow, needs=frozenset({"forward", "backward"}),
    description="SynFlow: sum |w * dR/dw| with |w|, BN off, float64, all-ones input",
))

