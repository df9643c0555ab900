"""NASWOT (Mellor et al., ICML 2021) as NASLib's ``nwot`` measure (hooks on ReLUs)."""

from __future__ import annotations

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.probe_pass import kernel_logdet, probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy


def naswot(ctx: ProbeContext) -> float:
    """log|K|, K = sum over nn.ReLU calls of c c^T + (1-c)(1-c)^T, c = binary ReLU codes.

    Identical samples give a singular K: -inf, reported as "nonfinite".
    """
    probe = probe_pass(ctx)
    if probe.relu_calls == 0 or probe.relu_kernel is None:
        raise ValueError("naswot hooks nn.ReLU modules and none ran (functional relu calls "
                         "cannot be hooked); use 'nwot', which hooks conv/linear outputs")
    return kernel_logdet(probe.relu_kernel)


register_proxy(Proxy(
    name="naswot", fn=naswot, needs=frozenset({"forward"}),
    description="log-det of the binary-code kernel of all nn.ReLU activations (first batch)",
    shared=frozenset({"relu_codes"}),
))
