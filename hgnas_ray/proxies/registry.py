"""The proxy registry: one `Proxy` record per zero-cost proxy, looked up by name.

A proxy function takes a `ProbeContext` (the probe batches, model copies, a seeded generator
and the shared probe pass) and returns one float. Each proxy module registers itself at import
with `register_proxy`; `hgnas_ray.proxies` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hgnas_ray.errors import unknown_name

if TYPE_CHECKING:
    from hgnas_ray.proxies.context import ProbeContext

# What a proxy needs from its inputs; `score` validates the batches against these.
NEEDS = frozenset({"forward", "backward", "labels", "multi_batch", "gaussian_input"})
# Products of the shared probe pass (see `probe_pass.py`); a proxy lists the ones it reads so
# the pass computes only what the requested proxies use.
SHARED_PRODUCTS = frozenset({"weight_grads", "relu_codes", "layer_codes", "input_jacobian"})


@dataclass(frozen=True)
class Proxy:
    """A registered zero-cost proxy.

    Attributes:
        name: registry key.
        fn: ``fn(ctx) -> float``; higher is better unless the description says otherwise.
        needs: subset of `NEEDS` (``"labels"``: every probe batch must carry labels of >= 2
            classes; ``"multi_batch"``: uses several batches, splits a single one in halves).
        description: one line saying what is computed.
        shared: subset of `SHARED_PRODUCTS` read from the shared probe pass.
    """

    name: str
    fn: Callable[[ProbeContext], float]
    needs: frozenset[str]
    description: str
    shared: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for label, given, allowed in (("needs", self.needs, NEEDS),
                                      ("shared", self.shared, SHARED_PRODUCTS)):
            unknown = set(given) - allowed
            if unknown:
                raise ValueError(f"proxy {self.name!r}: unknown {label} {sorted(unknown)}; "
                                 f"allowed: {sorted(allowed)}")
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "shared", frozenset(self.shared))


_PROXIES: dict[str, Proxy] = {}


def register_proxy(proxy: Proxy, *, replace: bool = False) -> Proxy:
    """Add ``proxy`` to the registry; a taken name is an error unless ``replace``."""
    if proxy.name in _PROXIES and not replace:
        raise ValueError(f"proxy {proxy.name!r} is already registered; pass replace=True to "
                         "override it")
    _PROXIES[proxy.name] = proxy
    return proxy


def get_proxy(name: str) -> Proxy:
    """The registered proxy ``name``; an unknown name raises `RegistryError` listing all."""
    if name not in _PROXIES:
        raise unknown_name("proxy", name, tuple(_PROXIES))
    return _PROXIES[name]


def available_proxies() -> list[str]:
    """Names of all registered proxies, sorted."""
    return sorted(_PROXIES)
