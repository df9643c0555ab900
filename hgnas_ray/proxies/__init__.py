"""Zero-cost proxies (DESIGN 3): one module per proxy, one registry, one `score` entry point.

    >>> results = score(model, [(x, y)], ["snip", "nwot", "zen"], seed=0)
    >>> results["snip"].value, results["snip"].status

Importing this package registers every built-in proxy.
"""

from hgnas_ray.proxies import (  # noqa: F401  (imported to register the proxies)
    grad_norm,
    jacov,
    macs,
    naswot,
    nwot,
    params,
    snip,
    snip_snr,
    synflow,
    tcet,
    zen,
    zico,
)
from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.registry import Proxy, available_proxies, get_proxy, register_proxy
from hgnas_ray.proxies.scoring import ProxyResult, score

__all__ = [
    "ProbeContext",
    "Proxy",
    "ProxyResult",
    "available_proxies",
    "get_proxy",
    "register_proxy",
    "score",
]
