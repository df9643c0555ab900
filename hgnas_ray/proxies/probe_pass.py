"""The shared probe pass: one forward (+ backward) of a train-mode copy on the first batch.

Which proxy reads which product:
- ``relu_codes``     (forward hooks on nn.ReLU outputs)          -> naswot
- ``layer_codes``    (forward hooks on conv/linear outputs)      -> nwot, tcet
- ``input_jacobian`` (d sum(logits) / dx, same forward)          -> jacov
- ``weight_grads``   (cross-entropy backward, same forward)      -> snip, snip_snr, grad_norm,
                                                                    tcet, zico (first batch)
BatchNorm is in train mode, so every product equals what a separate pass on a fresh copy gives
(as NASLib computes each measure): batch statistics do not depend on the running buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from hgnas_ray.proxies.context import ProbeContext, classification_loss, weight_layers


@dataclass(frozen=True)
class ProbePass:
    """Products of the shared pass (each empty/None unless a requested proxy reads it).

    Shapes (N = first batch size):
        relu_kernel, layer_kernels[name]: (N, N) float64, entry (i, j) = number of units on
            which samples i and j have the same binary code (summed over hooked calls)
        input_jacobian: (N, C*H*W)
        weights[name], grads[name]: the layer's weight shape
    """

    model: nn.Module  # the train-mode copy the pass ran on (zico reuses it for later batches)
    layers: tuple[str, ...]  # conv/linear module names in named_modules order
    weights: dict[str, Tensor]
    grads: dict[str, Tensor]  # dL/dw; zeros for layers without gradient
    relu_kernel: Tensor | None
    relu_calls: int  # number of nn.ReLU calls hooked (0: the model has no ReLU modules)
    layer_kernels: dict[str, Tensor]  # only layers that ran
    input_jacobian: Tensor | None


def binary_code_kernel(activations: Tensor) -> Tensor:
    """K = c c^T + (1 - c)(1 - c)^T for the codes c = (activations > 0), one row per sample.

    Shapes: activations (N, ...) -> (N, N) float64, exact integers.
    """
    codes = activations.detach().flatten(1) > 0
    units = codes.shape[1]
    # 0/1 products summed in float32 are exact below 2^24 units.
    dtype = torch.float32 if units < 2 ** 24 else torch.float64
    c = codes.to(dtype)
    gram = (c @ c.T).double()
    ones = c.sum(1).double()
    return units - ones[:, None] - ones[None, :] + 2.0 * gram


def kernel_logdet(kernel: Tensor) -> float:
    """log|det K| as NASLib's ``np.linalg.slogdet``; -inf when K is singular."""
    sign, logabsdet = np.linalg.slogdet(kernel.detach().cpu().double().numpy())
    return float("-inf") if sign == 0 else float(logabsdet)


def build_probe_pass(ctx: ProbeContext) -> ProbePass:
    """Run the shared pass for the products in ``ctx.shared_products``."""
    products = ctx.shared_products
    want_grads, want_jacobian = "weight_grads" in products, "input_jacobian" in products
    model = ctx.model_copy(train=True).requires_grad_(True)
    layers = weight_layers(model)
    x, y = ctx.batches[0]
    kernels: dict[str, Tensor] = {}
    relu_calls = [0]
    hooks = _add_code_hooks(model, layers, products, kernels, relu_calls)
    try:
        x_in = x.detach().clone().requires_grad_(want_jacobian)
        with torch.set_grad_enabled(want_grads or want_jacobian):
            logits = model(x_in)
    finally:
        for hook in hooks:
            hook.remove()
    jacobian = None
    if want_jacobian:
        (grad_x,) = torch.autograd.grad(logits.sum(), x_in, retain_graph=want_grads,
                                        allow_unused=True)
        grad_x = torch.zeros_like(x_in) if grad_x is None else grad_x
        jacobian = grad_x.detach().flatten(1)
    grads: dict[str, Tensor] = {}
    if want_grads:
        assert y is not None, "score() checks labels for proxies that need them"
        classification_loss(logits, y).backward()
        grads = {name: (layer.weight.grad.detach() if layer.weight.grad is not None
                        else torch.zeros_like(layer.weight)) for name, layer in layers}
    return ProbePass(
        model=model, layers=tuple(name for name, _ in layers),
        weights={name: layer.weight.detach() for name, layer in layers}, grads=grads,
        relu_kernel=kernels.pop("<relu>", None), relu_calls=relu_calls[0],
        layer_kernels=kernels, input_jacobian=jacobian,
    )


def _add_code_hooks(model: nn.Module, layers: list[tuple[str, nn.Module]],
                    products: frozenset[str], kernels: dict[str, Tensor],
                    relu_calls: list[int]) -> list[torch.utils.hooks.RemovableHandle]:
    """Forward hooks that add each call's binary-code kernel into ``kernels``."""

    def accumulate(key: str, output: Tensor) -> None:
        with torch.no_grad():
            kernel = binary_code_kernel(output)
        kernels[key] = kernels[key] + kernel if key in kernels else kernel

    def relu_hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        relu_calls[0] += 1  # ReLU output > 0 <=> input > 0 (NASLib hooks the input)
        accumulate("<relu>", output)

    def layer_hook(name: str):
        return lambda _module, _inputs, output: accumulate(name, output)

    hooks = []
    if "relu_codes" in products:
        hooks += [m.register_forward_hook(relu_hook) for m in model.modules()
                  if isinstance(m, nn.ReLU)]
    if "layer_codes" in products:
        hooks += [layer.register_forward_hook(layer_hook(name)) for name, layer in layers]
    return hooks


def probe_pass(ctx: ProbeContext) -> ProbePass:
    """The shared pass of this `score` call (built on first use)."""
    return ctx.shared("probe_pass", build_probe_pass)
