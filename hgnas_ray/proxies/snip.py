"""SNIP (Lee et al., ICLR 2019) as NASLib's ``snip`` measure."""

from __future__ import annotations

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.probe_pass import probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy


def snip(ctx: ProbeContext) -> float:
    """sum over conv/linear weights of |w * dL/dw| (cross-entropy on the first batch)."""
    probe = probe_pass(ctx)
    return sum(float((probe.weights[n] * probe.grads[n]).abs().double().sum())
               for n in probe.layers)


register_proxy(Proxy(
    name="snip", fn=snip, needs=frozenset({"forward", "backward", "labels"}),
    description="sum of |w * dL/dw| over conv/linear weights (cross-entropy, first batch)",
    shared=frozenset({"weight_grads"}),
))
