"""Number of trainable parameters (counted by `hgnas_ray.nn.cost`)."""

from __future__ import annotations

from hgnas_ray.nn.cost import count_params
from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.registry import Proxy, register_proxy


def params(ctx: ProbeContext) -> float:
    return float(count_params(ctx.model_readonly))


register_proxy(Proxy(
    name="params", fn=params, needs=frozenset(),
    description="number of trainable parameters",
))
