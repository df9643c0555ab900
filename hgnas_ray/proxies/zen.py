"""Zen-score (Lin et al., ICCV 2021) as the official ZenNAS ``compute_zen_score.py``
(and NASLib's ``zen``, ``repeat=1``).

Pre-global-pool features: the model's ``forward_features(x)`` (or NASLib's
``forward_before_global_avg_pool`` / ZenNAS's ``forward_pre_GAP``) when it has one; otherwise
the input of the last global pooling module (``nn.AdaptiveAvgPool2d``/``AdaptiveMaxPool2d``
with output size 1) that runs, as NASLib's hook does; otherwise the input of the last
``nn.Linear`` that runs (already pooled features: a weaker stand-in).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.registry import Proxy, register_proxy

MIXUP_GAMMA = 1e-2
_FEATURE_METHODS = ("forward_features", "forward_before_global_avg_pool", "forward_pre_GAP")


def zen(ctx: ProbeContext) -> float:
    """log E|f(x) - f(x + 0.01 e)|_1 + sum over BatchNorm2d of log sqrt(mean(running_var)).

    x, e ~ N(0, 1) of the first batch's shape; weights re-drawn N(0, 1) (conv/linear, biases 0,
    BN/GroupNorm scale 1 shift 0); BN in train mode. The running variances are those left by
    the two forward passes (as the official code); we reset them first, so the score depends
    only on the architecture and seed, not on the model's history (same for a fresh model).
    """
    model = ctx.model_copy(train=True)
    generator = ctx.generator()
    _gaussian_init(model, generator)
    shape, dtype = ctx.batches[0][0].shape, ctx.batches[0][0].dtype
    x = torch.randn(shape, generator=generator, dtype=dtype).to(ctx.device)
    noise = torch.randn(shape, generator=generator, dtype=dtype).to(ctx.device)
    with torch.no_grad():
        change = (pre_pool_features(model, x) - pre_pool_features(model, x + MIXUP_GAMMA * noise))
        expected_change = float(change.abs().flatten(1).sum(1).mean())
    log_bn_scale = sum(0.5 * _log(float(m.running_var.double().mean()))
                       for m in model.modules()
                       if isinstance(m, nn.BatchNorm2d) and m.running_var is not None)
    return _log(expected_change) + log_bn_scale


def _log(value: float) -> float:
    """log with log(0) = -inf (reported as "nonfinite"), not a math domain error."""
    return math.log(value) if value > 0 else (-math.inf if value == 0 else math.nan)


@torch.no_grad()
def _gaussian_init(model: nn.Module, generator: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
            if m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()


def pre_pool_features(model: nn.Module, x: Tensor) -> Tensor:
    """Features before global pooling (see the module docstring for the lookup order)."""
    for method in _FEATURE_METHODS:
        if callable(getattr(model, method, None)):
            return getattr(model, method)(x)
    captured: dict[str, Tensor] = {}

    def keep(kind: str):
        return lambda _module, inputs, _output: captured.__setitem__(kind, inputs[0])

    hooks = [m.register_forward_hook(keep("pool")) for m in model.modules()
             if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)
             and m.output_size in (1, (1, 1))]
    hooks += [m.register_forward_hook(keep("linear")) for m in model.modules()
              if isinstance(m, nn.Linear)]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    if not captured:
        raise ValueError("zen needs pre-pooling features: give the model a forward_features(x) "
                         "method, a global nn.AdaptiveAvgPool2d, or a final nn.Linear")
    return captured.get("pool", captured.get("linear"))


register_proxy(Proxy(
    name="zen", fn=zen, needs=frozenset({"forward", "gaussian_input"}),
    description="Zen-score: log feature change under 1e-2 Gaussian input perturbation "
                "(N(0,1) weights) plus sum of log BN scales",
))
