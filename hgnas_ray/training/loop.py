"""The one epoch loop behind every model's training (STYLE rule 4).

Each epoch ends with `callback(epoch, metrics, state)`: `epoch` counts completed epochs (1-based),
`metrics` maps names to floats (epoch means over batches), and `state` is a checkpointable dict of
CPU tensors and plain values (loadable with `torch.load(weights_only=True)`):

    {"epoch": int, "model": state_dict, "optimizer": state_dict,
     "generator": ByteTensor (the loop generator's RNG state), "metrics": dict}

Passing that dict back as `state=` continues with epoch `state["epoch"] + 1` and the identical
RNG stream, so an interrupted run ends where an uninterrupted one does. All randomness of the loop
(shuffling, model noise) comes from one CPU `torch.Generator` seeded from `TrainConfig.seed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from hgnas_ray.errors import DataError
from hgnas_ray.training.config import TrainConfig

Callback = Callable[[int, dict[str, float], dict[str, Any]], None]
LossFn = Callable[[Any, torch.Generator], Mapping[str, Tensor]]


def fit(model: nn.Module, batches: Callable[[torch.Generator], Iterable[Any]], loss_fn: LossFn,
        config: TrainConfig, callback: Callback | None = None,
        state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train `model` for `config.epochs` epochs; return the final state (see the module doc).

    `batches(generator)` yields one epoch of batches; `loss_fn(batch, generator)` returns a dict
    of scalar tensors whose "loss" entry is minimised (all entries are reported as metrics).
    """
    config.validate()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    start, metrics = 0, {}
    if state is not None:
        start, metrics = load_training_state(state, model, optimizer, generator)
    snapshot = None
    for epoch in range(start + 1, config.epochs + 1):
        metrics = _run_epoch(model, optimizer, batches(generator), loss_fn, generator, config,
                             epoch)
        snapshot = training_state(epoch, model, optimizer, generator, metrics)
        if callback is not None:
            callback(epoch, metrics, snapshot)
    if snapshot is None:  # nothing left to train
        snapshot = training_state(start, model, optimizer, generator, metrics)
    return snapshot


def _run_epoch(model, optimizer, batches, loss_fn, generator, config, epoch) -> dict[str, float]:
    model.train()
    sums: dict[str, Tensor] = {}
    count = 0
    for step, batch in enumerate(batches):
        terms = loss_fn(batch, generator)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at epoch {epoch}, step {step}: "
                f"{ {k: float(v) for k, v in terms.items()} }; lower TrainConfig.lr or set "
                "grad_clip")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach()
        count += 1
    return {name: float(total) / max(count, 1) for name, total in sums.items()}


def training_state(epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, metrics: dict[str, float]) -> dict[str, Any]:
    """A detached CPU copy: later training steps do not change it."""
    return {"epoch": epoch, "model": _cpu_copy(model.state_dict()),
            "optimizer": _cpu_copy(optimizer.state_dict()), "generator": generator.get_state(),
            "metrics": dict(metrics)}


def load_training_state(state: Mapping[str, Any], model: nn.Module,
                        optimizer: torch.optim.Optimizer, generator: torch.Generator
                        ) -> tuple[int, dict[str, float]]:
    missing = {"epoch", "model", "optimizer", "generator"} - set(state)
    if missing:
        raise DataError(f"training state lacks {sorted(missing)}; pass the state dict a training "
                       "loop gave its callback (or returned)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return int(state["epoch"]), dict(state.get("metrics", {}))


def _cpu_copy(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value
