"""ZiCo (Li et al., ICLR 2023), as the official ``compute_zico.py`` (and NASLib's ``zico``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hgnas_ray.proxies.context import ProbeContext, layer_gradients
from hgnas_ray.proxies.probe_pass import probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy


def zico(ctx: ProbeContext) -> float:
    """sum over conv/linear layers of log(sum over weights with std > 0 of mean|g| / std(g)).

    g: the cross-entropy gradient of one weight on each probe batch (train-mode BN); mean and
    population std are taken across batches. With one probe batch its two halves serve as the
    two batches (as NASLib's ``zico``). A layer whose sum is 0 is skipped (as the official code).
    """
    if len(ctx.batches) >= 2:
        probe = probe_pass(ctx)  # its backward is the gradient of the first batch
        per_batch = [probe.grads]
        per_batch += [layer_gradients(probe.model, x, y) for x, y in ctx.batches[1:]]
    else:
        model = ctx.model_copy(train=True).requires_grad_(True)
        x, y = ctx.batches[0]
        half = len(x) // 2
        per_batch = [layer_gradients(model, x[:half], y[:half]),
                     layer_gradients(model, x[half:], y[half:])]
    return zico_from_gradients(per_batch)


def zico_from_gradients(per_batch: list[dict[str, Tensor]]) -> float:
    total = 0.0
    for name in per_batch[0]:
        grads = torch.stack([batch[name].flatten() for batch in per_batch]).double()  # (B, P)
        std = grads.std(dim=0, unbiased=False)
        keep = std > 0
        ratio_sum = float((grads.abs().mean(dim=0)[keep] / std[keep]).sum())
        if ratio_sum != 0.0:
            total += math.log(ratio_sum)
    return total


register_proxy(Proxy(
    name="zico", fn=zico, needs=frozenset({"forward", "backward", "labels", "multi_batch"}),
    description="ZiCo: sum over layers of log(sum of mean|g|/std(g) across batches)",
    shared=frozenset({"weight_grads"}),
))
