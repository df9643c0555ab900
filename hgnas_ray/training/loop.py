"""The one epoch loop behind every model's training (STYLE rule 4).

Each epoch ends with `callback(epoch, metrics, state)`: `epoch` counts completed epochs (1-based),
`metrics` maps names to floats (epoch means over batches), and `state` is a checkpointable dict of
CPU tensors and plain values (loadable with `torch.load(weights_only=True)`):

    {"epoch": int, "model": state_dict, "optimizer": state_dict,
     "generator": ByteTensor (the loop generator's RNG state), "metrics": dict,
     "scheduler": state_dict (only when a scheduler is given)}

Passing that dict back as `state=` continues with epoch `state["epoch"] + 1` and the identical
RNG stream, so an interrupted run ends where an uninterrupted one does. All randomness of the loop
(shuffling, augmentation, model noise) comes from one CPU `torch.Generator` seeded from
`TrainConfig.seed`.

The optimizer defaults to Adam; a caller may pass its own (e.g. SGD for image classifiers), a
learning-rate scheduler stepped after every optimizer step, and a `should_stop(epoch, metrics)`
test run after each epoch's callback (e.g. a wall-clock budget).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from hgnas_ray.errors import DataError
from hgnas_ray.training.config import TrainConfig

Callback = Callable[[int, dict[str, float], dict[str, Any]], None]
LossFn = Callable[[Any, torch.Generator], Mapping[str, Tensor]]
StopTest = Callable[[int, dict[str, float]], bool]


class Scheduler(Protocol):
    """What `fit` needs of a learning-rate scheduler (torch's LRScheduler fits)."""

    def step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def fit(model: nn.Module, batches: Callable[[torch.Generator], Iterable[Any]], loss_fn: LossFn,
        config: TrainConfig, callback: Callback | None = None,
        state: Mapping[str, Any] | None = None, *,
        optimizer: torch.optim.Optimizer | None = None, scheduler: Scheduler | None = None,
        should_stop: StopTest | None = None) -> dict[str, Any]:
    """Train `model` for `config.epochs` epochs; return the final state (see the module doc).

    `batches(generator)` yields one epoch of batches; `loss_fn(batch, generator)` returns a dict
    of scalar tensors whose "loss" entry is minimised (all entries are reported as metrics).
    `optimizer` defaults to Adam(config.lr, config.weight_decay); `scheduler` is stepped after
    every optimizer step; training ends early after an epoch for which `should_stop` is true.
    A non-finite loss raises `FloatingPointError`.
    """
    config.validate()
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    start, metrics = 0, {}
    if state is not None:
        start, metrics = load_training_state(state, model, optimizer, generator, scheduler)
    snapshot = None
    for epoch in range(start + 1, config.epochs + 1):
        metrics = _run_epoch(model, optimizer, scheduler, batches(generator), loss_fn, generator,
                             config, epoch)
        snapshot = training_state(epoch, model, optimizer, generator, metrics, scheduler)
        if callback is not None:
            callback(epoch, metrics, snapshot)
        if should_stop is not None and should_stop(epoch, metrics):
            break
    if snapshot is None:  # nothing left to train
        snapshot = training_state(start, model, optimizer, generator, metrics, scheduler)
    return snapshot


def _run_epoch(model, optimizer, scheduler, batches, loss_fn, generator, config,
               epoch) -> dict[str, float]:
    model.train()
    sums: dict[str, Tensor] = {}
    count = 0
    for step, batch in enumerate(batches):
        terms = loss_fn(batch, generator)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at epoch {epoch}, step {step}: "
                f"{ {k: float(v.detach()) for k, v in terms.items()} }; lower the learning "
                "rate or set grad_clip")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach()
        count += 1
    return {name: float(total) / max(count, 1) for name, total in sums.items()}


def training_state(epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, metrics: dict[str, float],
                   scheduler: Scheduler | None = None) -> dict[str, Any]:
    """A detached CPU copy: later training steps do not change it."""
    state = {"epoch": epoch, "model": _cpu_copy(model.state_dict()),
             "optimizer": _cpu_copy(optimizer.state_dict()), "generator": generator.get_state(),
             "metrics": dict(metrics)}
    if scheduler is not None:
        state["scheduler"] = _cpu_copy(scheduler.state_dict())
    return state


def load_training_state(state: Mapping[str, Any], model: nn.Module,
                        optimizer: torch.optim.Optimizer, generator: torch.Generator,
                        scheduler: Scheduler | None = None) -> tuple[int, dict[str, float]]:
    required = {"epoch", "model", "optimizer", "generator"}
    if scheduler is not None:
        required.add("scheduler")
    missing = required - set(state)
    if missing:
        raise DataError(f"training state lacks {sorted(missing)}; pass the state dict a training "
                       "loop gave its callback (or returned)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"]), dict(state.get("metrics", {}))


def _cpu_copy(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value
