"""Gradient norm as NASLib's ``grad_norm`` measure."""

from __future__ import annotations

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.probe_pass import probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy


def grad_norm(ctx: ProbeContext) -> float:
    """sum over conv/linear layers of ||dL/dw||_2 (cross-entropy on the first batch)."""
    probe = probe_pass(ctx)
    return sum(float(probe.grads[n].double().norm()) for n in probe.layers)


register_proxy(Proxy(
    name="grad_norm", fn=grad_norm, needs=frozenset({"forward", "backward", "labels"}),
    description="sum over conv/linear layers of the L2 norm of dL/dw (cross-entropy)",
    shared=frozenset({"weight_grads"}),
))
