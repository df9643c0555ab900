"""`score`: compute several registered proxies for one model on probe batches.

Input checks all sit in `_check_batches` / `_check_needs` (typed errors); everything after
them reports per proxy (`ProxyResult.status`) instead of raising.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.proxies.context import Batch, ProbeContext
from hgnas_ray.proxies.registry import Proxy, available_proxies, get_proxy

STATUSES = ("ok", "nonfinite", "error")


@dataclass(frozen=True)
class ProxyResult:
    """One proxy's outcome. ``value`` is NaN unless ``status == "ok"``.

    ``seconds``: wall time of the proxy, including the full build time of any shared pass it
    read (so shared time is counted once per proxy that uses it).
    """

    value: float
    status: str  # "ok" | "nonfinite" | "error"
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def score(
    model: nn.Module,
    batches: Batch | Tensor | Sequence[Batch | Tensor],
    names: str | Sequence[str],
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, ProxyResult]:
    """Compute the proxies ``names`` for ``model`` on probe ``batches``.

    Args:
        model: any module mapping (N, C, H, W) float images to (N, classes) logits. Only read:
            every proxy runs on a deep copy (in train mode, as NASLib; see each proxy).
        batches: one ``(x, y)`` pair, a list of them, or bare ``x`` tensors (no labels);
            x float (N, C, H, W), y int64 (N,). The first batch serves every single-batch proxy.
        names: proxy names (see `available_proxies`), or one name.
        seed: seeds the proxies' randomness (zen's init and inputs, dropout); the global RNG
            state is restored afterwards.
        device: where to compute; default: the first batch's device.

    Returns:
        ``{name: ProxyResult}`` in the order of ``names``.

    Raises:
        RegistryError: an unknown proxy name. DataError: malformed batches, or missing /
        single-class labels for a proxy that needs labels.
    """
    proxies = _resolve(names)
    checked = _check_batches(batches)
    _check_needs(proxies, checked)
    device = torch.device(device) if device is not None else checked[0][0].device
    moved = tuple((x.to(device), None if y is None else y.to(device)) for x, y in checked)
    shared = frozenset().union(*(p.shared for p in proxies))
    with _seeded_rng(seed, device), torch.enable_grad():
        ctx = ProbeContext(model, moved, device, seed, shared)
        failure = _model_failure(ctx)
        if failure is not None:
            return {p.name: ProxyResult(math.nan, "error", failure) for p in proxies}
        return {p.name: _run(p, ctx) for p in proxies}


def _run(proxy: Proxy, ctx: ProbeContext) -> ProxyResult:
    ctx.start_proxy()
    start = time.perf_counter()
    try:
        value = float(proxy.fn(ctx))
    except Exception as exc:  # noqa: BLE001 - one failing proxy must not stop the others
        if isinstance(exc, torch.OutOfMemoryError) and ctx.device.type == "cuda":
            torch.cuda.empty_cache()
        status, value, message = "error", math.nan, f"{type(exc).__name__}: {exc}"
    else:
        status, message = "ok", ""
        if not math.isfinite(value):
            status, value, message = "nonfinite", math.nan, f"{proxy.name} evaluated to {value}"
    seconds = time.perf_counter() - start - ctx.built_seconds + ctx.charged_seconds
    return ProxyResult(value, status, message, seconds)


def _model_failure(ctx: ProbeContext) -> str | None:
    """None if the model runs (train mode, as the proxies run it, no grad) on two probe
    samples, else why it does not."""
    try:
        model = ctx.model_copy(train=True)
        with torch.no_grad():
            model(ctx.batches[0][0][:2])
    except Exception as exc:  # noqa: BLE001 - reported as every proxy's error
        return f"the model does not run on the probe batch: {type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def _seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNGs the model may use (dropout) and restore them afterwards."""
    cuda = device.type == "cuda"
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if cuda:  # not torch.manual_seed: it would queue a lazy CUDA seed on CPU-only runs
            torch.cuda.manual_seed_all(seed)
        yield


def _resolve(names: str | Sequence[str]) -> list[Proxy]:
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ConfigError(f"no proxy names given; valid names: {', '.join(available_proxies())}")
    return [get_proxy(name) for name in dict.fromkeys(names)]


def _check_batches(batches: Batch | Tensor | Sequence[Batch | Tensor]) -> list[Batch]:
    """Normalise to a non-empty list of (x, y-or-None), checking shapes and dtypes."""
    if isinstance(batches, Tensor) or _is_single_pair(batches):
        batches = [batches]  # type: ignore[list-item]
    if not isinstance(batches, Sequence) or len(batches) == 0:
        raise DataError(f"batches: expected an (x, y) pair or a non-empty list of them; got "
                        f"{type(batches).__name__}")
    return [_check_batch(i, item) for i, item in enumerate(batches)]


def _is_single_pair(batches: object) -> bool:
    """True for one (x, y) pair (a tuple, or a DataLoader's [x, y] list)."""
    return (isinstance(batches, tuple | list) and len(batches) == 2
            and isinstance(batches[0], Tensor) and batches[0].ndim == 4
            and (batches[1] is None or (isinstance(batches[1], Tensor) and batches[1].ndim == 1)))


def _check_batch(index: int, item: Batch | Tensor) -> Batch:
    x, y = (item, None) if isinstance(item, Tensor) else (tuple(item) + (None,))[:2]
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point() or len(x) == 0:
        got = (f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor)
               else type(x).__name__)
        raise DataError(f"probe batch {index}: x must be a float tensor of shape (N, C, H, W) "
                        f"with N >= 1; got {got}")
    if y is not None and (not isinstance(y, Tensor) or y.shape != (len(x),)
                          or y.is_floating_point() or y.is_complex()):
        got = f"shape {tuple(y.shape)}, dtype {y.dtype}" if isinstance(y, Tensor) else type(y)
        raise DataError(f"probe batch {index}: y must be integer labels of shape ({len(x)},); "
                        f"got {got}")
    return x, (None if y is None else y.long())


def _check_needs(proxies: list[Proxy], batches: list[Batch]) -> None:
    split = [p.name for p in proxies if "multi_batch" in p.needs]
    if split and len(batches) == 1 and len(batches[0][0]) < 2:
        raise DataError(f"proxies {split} need 2 batches, or one batch of >= 2 samples to split "
                        f"in halves; got one batch of {len(batches[0][0])}")
    labelled = [p.name for p in proxies if "labels" in p.needs]
    if labelled:
        for index, (_, y) in enumerate(batches):
            if y is None:
                raise DataError(f"proxies {labelled} need labels; probe batch {index} has none: "
                                "pass (x, y) pairs")
            classes = torch.unique(y).tolist()
            if len(classes) < 2:
                raise DataError(f"proxies {labelled} need labels of at least 2 classes in each "
                                f"probe batch; batch {index} has only {classes}: use a larger "
                                "or shuffled batch")
