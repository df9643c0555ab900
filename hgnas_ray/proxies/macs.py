"""Multiply-accumulates of conv and linear layers for one sample (`hgnas_ray.nn.cost`)."""

from __future__ import annotations

from hgnas_ray.nn.cost import count_macs
from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.registry import Proxy, register_proxy


def macs(ctx: ProbeContext) -> float:
    """conv: out elements x in_channels/groups x kh x kw; linear: out elements x in_features;
    for one sample of the first batch's (C, H, W). FLOPs = 2 x MACs."""
    return float(count_macs(ctx.model_readonly, ctx.input_shape))


register_proxy(Proxy(
    name="macs", fn=macs, needs=frozenset({"forward"}),
    description="conv + linear multiply-accumulates for one sample (FLOPs = 2 x MACs)",
))
