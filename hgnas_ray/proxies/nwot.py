"""NWOT as HGENNAS uses it: NASWOT's kernel over conv/linear outputs instead of ReLUs."""

from __future__ import annotations

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.probe_pass import kernel_logdet, probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy


def nwot(ctx: ProbeContext) -> float:
    """log|K|, K = sum over conv/linear layers of the kernel of their outputs binarised at 0."""
    probe = probe_pass(ctx)
    if not probe.layer_kernels:
        raise ValueError("nwot hooks conv/linear layers and none ran")
    return kernel_logdet(sum(probe.layer_kernels.values()))


register_proxy(Proxy(
    name="nwot", fn=nwot, needs=frozenset({"forward"}),
    description="log-det of the binary-code kernel of all conv/linear outputs (first batch)",
    shared=frozenset({"layer_codes"}),
))
