"""T-CET, HGENNAS's network-level fitness: layer-wise NWOT times log1p(SNIP-SNR).

HGENNAS did not publish its proxy code; this follows DESIGN 3. For each conv/linear layer l
(on the first probe batch, train-mode BN):
    tcet = sum_l logdet(K_l) * log1p(snr_l)
with K_l the binary-code kernel of layer l's outputs (binarised at 0, as `nwot`) and snr_l the
layer's SNIP signal-to-noise ratio (as `snip_snr`). A layer with a singular K_l (log-det -inf)
is left out of the sum: e.g. a 10-class classifier on a batch of 64 has rank(K_l) <= 20 < 64,
always. If every layer is singular the result is NaN ("nonfinite").
"""

from __future__ import annotations

import math

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.probe_pass import kernel_logdet, probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy
from hgnas_ray.proxies.snip_snr import layer_snr


def tcet(ctx: ProbeContext) -> float:
    probe = probe_pass(ctx)
    total, used = 0.0, 0
    for name in probe.layers:
        if name not in probe.layer_kernels:  # the layer did not run
            continue
        logdet = kernel_logdet(probe.layer_kernels[name])
        if math.isfinite(logdet):
            total += logdet * math.log1p(layer_snr(probe.weights[name], probe.grads[name]))
            used += 1
    return total if used else math.nan


register_proxy(Proxy(
    name="tcet", fn=tcet, needs=frozenset({"forward", "backward", "labels"}),
    description="sum over conv/linear layers with a non-singular code kernel of "
                "logdet(K_layer) * log1p(SNIP-SNR_layer)",
    shared=frozenset({"layer_codes", "weight_grads"}),
))
