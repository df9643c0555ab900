"""SNIP signal-to-noise ratio: per layer sum / std of the SNIP saliencies, summed over layers."""

from __future__ import annotations

from torch import Tensor

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.probe_pass import probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy


def layer_snr(weight: Tensor, grad: Tensor) -> float:
    """sum(s) / std(s) of the saliencies s = |w * g| of one layer (unbiased std).

    A layer whose saliencies have no spread (std 0, e.g. all zero, or a single weight)
    contributes 0, the rule ZiCo applies to weights with zero gradient std.
    """
    saliency = (weight * grad).abs().double().flatten()
    if saliency.numel() < 2:
        return 0.0
    std = float(saliency.std())
    return 0.0 if std == 0.0 else float(saliency.sum()) / std


def snip_snr(ctx: ProbeContext) -> float:
    probe = probe_pass(ctx)
    return sum(layer_snr(probe.weights[n], probe.grads[n]) for n in probe.layers)


register_proxy(Proxy(
    name="snip_snr", fn=snip_snr, needs=frozenset({"forward", "backward", "labels"}),
    description="sum over conv/linear layers of sum(|w*g|) / std(|w*g|) (SNIP saliencies)",
    shared=frozenset({"weight_grads"}),
))
