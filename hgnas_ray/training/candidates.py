"""Training a candidate network for real: the short training that ranks a search's top choices.

    train_candidate(genotype, train, val, config, callback=None, state=None) -> CandidateResult
    split_train_val(dataset, config) -> (train, val)   # seeded; the validation split is carved
                                                       # from the training set
    TaskConfig(task, root, cache_dir, download).load(split) -> ArrayDataset

Any genotype kind trains (a cell in its skeleton, a macro network, a NAS-Bench-201 cell as the
benchmark's network, all through `build_network`). The recipe: SGD (momentum 0.9, Nesterov),
cosine decay to zero, optional label smoothing, random crop (padding 4) and horizontal flip for
images of at least 32 px. It runs on `loop.fit`, the project's one training loop; every epoch ends
with `callback(epoch, report, state)`, where

    report = {"epoch", "train_loss", "val_accuracy" (percent), "best_val_accuracy", "seconds"
              (wall seconds of this candidate's training across resumes), "lr", "final" (True
              when training stops after this epoch: its epochs or its budget are spent)}
    state  = loop.fit's checkpoint (model, optimizer, scheduler, epoch, RNG) with the report as
             its "metrics"; pass it back as `state=` to resume.

A wall-clock budget (`budget_s`) ends training at the first batch past it (that epoch is still
validated and reported); the cosine schedule then runs over the budget's seconds instead of the
steps, so every candidate ends annealed whatever its speed. `max_batches_per_epoch` makes epochs
short (one report, checkpoint and early-stopping decision each). A diverging (non-finite loss) or
out-of-memory run returns status "failed" with the reason; it never raises into the caller.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgnas_ray.data import ArrayDataset, TaskInfo, load_task
from hgnas_ray.errors import ConfigError
from hgnas_ray.nn.builder import Genotype, SkeletonSize, TaskShape, build_network
from hgnas_ray.space.genotypes import genotype_from_dict
from hgnas_ray.training.config import TrainConfig, resolve_device
from hgnas_ray.training.loop import Callback, fit

AUGMENT_MIN_SIZE = 32  # crop + flip only for images this large (not for 8x8 digits)
CROP_PADDING = 4
MAX_SEED = 2**63 - 1  # numpy and torch both accept seeds up to here


@dataclass(frozen=True)
class TaskConfig:
    """Where a candidate's images come from (a config dict crosses process boundaries)."""

    task: str = "cifar10"  # a registered task name or a path (ImageFolder folder, .npz)
    root: str | None = None  # data root; None: HGNAS_DATA
    cache_dir: str | None = None  # prepared arrays; None: HGNAS_CACHE or ~/.cache/hgnas_ray
    download: bool = False

    def load(self, split: str = "train") -> ArrayDataset:
        return load_task(self.task, split, self.root, self.download, self.cache_dir)


@dataclass(frozen=True)
class CandidateTrainConfig:
    epochs: int = 10  # at most; a budget can end training sooner
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    grad_clip: float | None = 5.0  # max global gradient norm (NAS-Bench-201's recipe uses 5)
    augment: bool | None = None  # None: crop + flip for images of at least 32 px
    val_fraction: float = 0.1  # of the training set, held out (seeded by `split_seed`)
    val_limit: int | None = None  # validate on at most this many of the held-out images
    split_seed: int = 0
    max_batches_per_epoch: int | None = None
    budget_s: float | None = None  # wall seconds per candidate; None: `epochs` decide
    eval_batch_size: int = 256
    channels: int = 16  # skeleton of cell / NAS-Bench-201 genotypes (macro ones ignore it)
    cells_per_stage: int = 5
    seed: int = 0  # weights, batch order and augmentation
    device: str = "auto"

    def validate(self) -> CandidateTrainConfig:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size,
                    "eval_batch_size": self.eval_batch_size, "channels": self.channels,
                    "cells_per_stage": self.cells_per_stage,
                    "max_batches_per_epoch": self.max_batches_per_epoch or 1,
                    "val_limit": self.val_limit or 1}
        bad = {k: v for k, v in positive.items() if v < 1}
        if bad:
            raise ConfigError(f"candidate training needs these >= 1: got {bad}")
        if not (self.lr > 0 and 0 <= self.momentum < 1 and self.weight_decay >= 0
                and 0 <= self.label_smoothing < 1 and 0 < self.val_fraction < 1):
            raise ConfigError(
                f"need lr > 0, 0 <= momentum < 1, weight_decay >= 0, 0 <= label_smoothing < 1, "
                f"0 < val_fraction < 1; got lr={self.lr}, momentum={self.momentum}, "
                f"weight_decay={self.weight_decay}, label_smoothing={self.label_smoothing}, "
                f"val_fraction={self.val_fraction}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ConfigError(f"budget_s must be > 0 seconds or None; got {self.budget_s}")
        if not (0 <= self.seed <= MAX_SEED and 0 <= self.split_seed <= MAX_SEED):
            raise ConfigError(f"seeds must lie in [0, 2**63 - 1]; got seed={self.seed}, "
                              f"split_seed={self.split_seed}")
        self.loop_config().validate()
        return self

    def loop_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                           seed=self.seed, device=self.device, weight_decay=self.weight_decay,
                           grad_clip=self.grad_clip)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CandidateResult:
    status: str  # "ok" or "failed"
    stop_reason: str  # "epochs", "budget", "diverged" or "out_of_memory"
    epochs: int  # completed epochs, across resumes
    best_val_accuracy: float | None  # percent; None when no epoch completed
    val_accuracy: float | None  # of the last completed epoch
    seconds: float  # wall seconds, across resumes
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # this call's reports

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------- data
def split_train_val(dataset: ArrayDataset, config: CandidateTrainConfig
                    ) -> tuple[ArrayDataset, ArrayDataset]:
    """Hold out `val_fraction` of `dataset` (a seeded permutation); the training part never
    depends on `val_limit`, which only shortens the validation part."""
    order = np.random.default_rng(config.split_seed).permutation(len(dataset))
    n_val = min(max(1, round(len(dataset) * config.val_fraction)), len(dataset) - 1)
    val = order[:n_val][:config.val_limit] if config.val_limit else order[:n_val]
    return dataset.subset(np.sort(order[n_val:])), dataset.subset(np.sort(val))


def augment_batch(x: Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> Tensor:
    """Random crop after zero padding, and a horizontal flip with probability 1/2, per image.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.arange(w).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]  # (B, W)
    rows = torch.arange(h)[None, :] + dy[:, None]  # (B, H)
    index_b = torch.arange(b)[:, None, None, None]
    index_c = torch.arange(c)[None, :, None, None]
    return padded[index_b, index_c, rows[:, None, :, None], cols[:, None, None, :]]


def _epoch_batches(data: ArrayDataset, config: CandidateTrainConfig, augment: bool,
                   over_budget: Callable[[], bool]):
    steps = steps_per_epoch(len(data), config)

    def batches(generator: torch.Generator):
        order = torch.randperm(len(data), generator=generator).numpy()
        for step in range(steps):
            if step > 0 and over_budget():
                return  # the budget ends this epoch early; it is still validated
            x, y = data.batch(order[step * config.batch_size:(step + 1) * config.batch_size])
            yield (augment_batch(x, generator) if augment else x), y

    return batches


def steps_per_epoch(n_train: int, config: CandidateTrainConfig) -> int:
    """Full batches per epoch (a last partial batch is dropped), at most max_batches_per_epoch."""
    steps = max(1, n_train // config.batch_size)
    return min(steps, config.max_batches_per_epoch or steps)


# ---------------------------------------------------------------------- model and schedule
def build_candidate(genotype: Genotype | Mapping[str, Any], info: TaskInfo,
                    config: CandidateTrainConfig) -> nn.Module:
    """The genotype's network for the task, its initial weights drawn from `config.seed`
    without touching the global RNG."""
    if isinstance(genotype, Mapping):
        genotype = genotype_from_dict(dict(genotype))
    channels, height, _ = info.input_shape
    task = TaskShape(num_classes=info.num_classes, input_size=height, in_channels=channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_network(genotype, task, SkeletonSize(config.channels, config.cells_per_stage))


class CosineSchedule:
    """Cosine decay of every group's learning rate from its initial value to zero, stepped
    after each optimizer step. Progress is steps / total_steps, or elapsed / budget seconds
    when a budget is given (whichever is further)."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int,
                 budget_s: float | None = None,
                 elapsed: Callable[[], float] = lambda: 0.0) -> None:
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.total_steps, self.budget_s, self.elapsed = max(total_steps, 1), budget_s, elapsed
        self.steps = 0

    def progress(self) -> float:
        done = self.steps / self.total_steps
        if self.budget_s is not None:
            done = max(done, self.elapsed() / self.budget_s)
        return min(done, 1.0)

    def step(self) -> None:
        self.steps += 1
        factor = 0.5 * (1.0 + math.cos(math.pi * self.progress()))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.base_lrs = int(state["steps"]), list(state["base_lrs"])


class _Clock:
    """Wall seconds of one candidate's training, continuing a resumed run's count."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset, self.start = offset, time.perf_counter()

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.start

    def restart(self) -> None:
        """Count from now (the one-off set-up before the first step is not training time)."""
        self.start = time.perf_counter()


# ---------------------------------------------------------------------- training
@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: ArrayDataset, device: torch.device,
                      batch_size: int = 256) -> float:
    """Top-1 accuracy in percent, in eval mode (BN running statistics)."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        x, y = data.batch(np.arange(start, min(start + batch_size, len(data))))
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    model.train()
    return 100.0 * correct / max(len(data), 1)


def train_candidate(genotype: Genotype | Mapping[str, Any], train: ArrayDataset,
                    val: ArrayDataset, config: CandidateTrainConfig,
                    callback: Callback | None = None,
                    state: Mapping[str, Any] | None = None) -> CandidateResult:
    """Train `genotype`'s network on `train`, validating on `val` after every epoch; resume from
    `state` (a state the callback received). See the module doc for the report and the state."""
    config.validate()
    device = resolve_device(config.device)
    run = _Run(config, state)
    try:
        model = build_candidate(genotype, train.info, config).to(device)
        run.train(model, train, val, device, callback, state)
    except FloatingPointError as err:
        return run.result("failed", "diverged", f"diverged: {err}")
    except (RuntimeError, MemoryError) as err:
        if not _is_out_of_memory(err):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return run.result("failed", "out_of_memory", f"out of memory on {device}: {err}")
    return run.result("ok", "epochs" if run.epoch >= config.epochs else "budget")


class _Run:
    """One call's bookkeeping: the clock, the best accuracy and the epoch reports."""

    def __init__(self, config: CandidateTrainConfig, state: Mapping[str, Any] | None) -> None:
        prior = dict(state.get("metrics", {})) if state else {}
        self.config, self.clock = config, _Clock(float(prior.get("seconds", 0.0)))
        self.epoch = int(state["epoch"]) if state else 0
        self.best = prior.get("best_val_accuracy")
        self.last = prior.get("val_accuracy")
        self.history: list[dict[str, float]] = []
        self.final = False  # decided when an epoch is reported, so the report can say so

    def over_budget(self) -> bool:
        return self.config.budget_s is not None and self.clock() >= self.config.budget_s

    def train(self, model: nn.Module, train: ArrayDataset, val: ArrayDataset,
              device: torch.device, callback: Callback | None,
              state: Mapping[str, Any] | None) -> None:
        config = self.config
        if state is not None and self.over_budget():
            return  # resumed with the budget already spent
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    nesterov=config.nesterov, weight_decay=config.weight_decay)
        total = config.epochs * steps_per_epoch(len(train), config)
        scheduler = CosineSchedule(optimizer, total, config.budget_s, self.clock)
        augment = config.augment if config.augment is not None else (
            min(train.info.input_shape[1:]) >= AUGMENT_MIN_SIZE)
        batches = _epoch_batches(train, config, augment, self.over_budget)
        self.clock.restart()

        def loss_fn(batch, _generator) -> dict[str, Tensor]:
            x, y = (t.to(device) for t in batch)
            return {"loss": F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)}

        def on_epoch(epoch: int, metrics: dict[str, float], snapshot: dict[str, Any]) -> None:
            report = self.report(epoch, metrics, model, val, device, optimizer)
            snapshot["metrics"] = report
            if callback is not None:
                callback(epoch, report, snapshot)

        fit(model, batches, loss_fn, config.loop_config(), on_epoch, state, optimizer=optimizer,
            scheduler=scheduler, should_stop=lambda _e, _m: self.final)

    def report(self, epoch: int, metrics: dict[str, float], model: nn.Module, val: ArrayDataset,
               device: torch.device, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        accuracy = evaluate_accuracy(model, val, device, self.config.eval_batch_size)
        self.epoch, self.last = epoch, accuracy
        self.best = accuracy if self.best is None else max(self.best, accuracy)
        self.final = epoch >= self.config.epochs or self.over_budget()
        report = {"epoch": epoch, "train_loss": metrics["loss"], "val_accuracy": accuracy,
                  "best_val_accuracy": self.best, "seconds": self.clock(),
                  "lr": optimizer.param_groups[0]["lr"], "final": self.final}
        self.history.append(report)
        return report

    def result(self, status: str, reason: str, error: str | None = None) -> CandidateResult:
        return CandidateResult(status, reason, self.epoch, self.best, self.last, self.clock(),
                               error, self.history)


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(err)
    return "out of memory" in text or "can't allocate memory" in text
