"""What a proxy function sees: probe batches, model copies, a seeded generator, shared passes."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor | None]  # x: (N, C, H, W) float, y: (N,) int64 labels or None
T = TypeVar("T")


class ProbeContext:
    """Inputs of one `score` call, shared by every proxy it computes.

    The caller's model is only ever read (deep-copied); shared results are built once, on first
    use, and their build time is charged to every proxy that reads them (see `charge`).
    """

    def __init__(self, model: nn.Module, batches: tuple[Batch, ...], device: torch.device,
                 seed: int, shared_products: frozenset[str]) -> None:
        self._model = model
        self.batches = batches
        self.device = device
        self.seed = seed
        self.shared_products = shared_products  # union over the requested proxies
        self._cache: dict[str, tuple[Any, BaseException | None, float]] = {}
        self.built_seconds = 0.0  # time spent building shared results inside the current proxy
        self.charged_seconds = 0.0  # build time of the shared results the current proxy read

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the first probe batch."""
        return tuple(self.batches[0][0].shape[1:])  # type: ignore[return-value]

    @property
    def model_readonly(self) -> nn.Module:
        """The caller's model itself, for proxies that only read its structure (params, macs):
        they must not run it, train it or change it."""
        return self._model

    def model_copy(self, train: bool = True) -> nn.Module:
        """A fresh deep copy of the caller's model on `device`, gradients cleared."""
        model = copy.deepcopy(self._model).to(self.device)
        model.train(train)
        model.zero_grad(set_to_none=True)
        return model

    def generator(self) -> torch.Generator:
        """A new CPU generator seeded with `seed` (draw on CPU, then move: same values on any
        device)."""
        return torch.Generator(device="cpu").manual_seed(self.seed)

    def shared(self, key: str, build: Callable[[ProbeContext], T]) -> T:
        """``build(self)`` computed once per `score` call; a failure is re-raised to each user."""
        if key not in self._cache:
            start = time.perf_counter()
            try:
                value, error = build(self), None
            except Exception as exc:  # noqa: BLE001 - re-raised below, to every reader
                value, error = None, exc
            elapsed = time.perf_counter() - start
            self._cache[key] = (value, error, elapsed)
            self.built_seconds += elapsed
        value, error, elapsed = self._cache[key]
        self.charged_seconds += elapsed
        if error is not None:
            raise error
        return value

    def start_proxy(self) -> None:
        """Reset the per-proxy timing counters."""
        self.built_seconds = self.charged_seconds = 0.0


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """The conv and linear layers whose weights the gradient proxies read (NASLib's choice)."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d | nn.Linear)]


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of (N, classes) logits, with a clear error for other output shapes."""
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits of shape (N={labels.shape[0]}, "
                         f"classes) for a loss; got {shape}")
    if int(labels.max()) >= logits.shape[1]:
        raise ValueError(f"label {int(labels.max())} is out of range for "
                         f"{logits.shape[1]} output classes")
    return F.cross_entropy(logits, labels)


def layer_gradients(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """dL/dw of every conv/linear weight for cross-entropy on (x, y); zeros where unused."""
    model.zero_grad(set_to_none=True)
    classification_loss(model(x), y).backward()
    return {name: (layer.weight.grad.detach() if layer.weight.grad is not None
                   else torch.zeros_like(layer.weight))
            for name, layer in weight_layers(model)}
