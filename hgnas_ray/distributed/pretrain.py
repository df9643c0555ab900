"""Pretraining the cell generator on Ray Train (V2): thin `TorchTrainer` wrappers around the
plain loops `train_gvae` / `train_ccnf`.

Each model trains as one Ray Train run of N workers:
- the model is wrapped by `ray.train.torch.prepare_model` (DDP when N > 1; CPU or GPU as the
  `ScalingConfig(use_gpu=...)` says), built from the same seed on every worker;
- data is sharded per worker: G-VAE cells by a `DistributedSampler` (reshuffled every epoch from
  seed + epoch, so a resumed epoch sees the order an uninterrupted one would), CCNF pairs by a
  fixed, padded stride (the loop shuffles within the shard with its own generator). Every worker
  gets the same number of batches, as DDP needs. `TrainConfig.batch_size` is per worker;
- after every epoch the loop's callback averages the metrics over workers, gathers every
  worker's loop generator state, and rank 0 reports them with a checkpoint holding the loop's
  state dict (epoch, model without the DDP prefix, optimizer, generators, metric history) as
  `state.pt` (tensors and plain values only: `torch.load(weights_only=True)` reads it); the other
  ranks report the metrics without a checkpoint;
- a worker starts from `ray.train.get_checkpoint()` when there is one: after a worker failure
  (`FailureConfig(max_failures)`, Ray restarts the worker group from the latest checkpoint), and
  after the whole job was killed, when the same `RunConfig(storage_path, name)` is run again - Train
  V2 finds the run's checkpoint-manager snapshot in the storage folder and hands its latest
  checkpoint to the new workers (tested by killing a job's driver mid-run). A checkpoint counts
  once the controller has recorded it in that snapshot, shortly after its folder appears; a job
  killed before the first record starts that run over. `RayTrainers.begin` refuses a storage
  folder whose runs were made with other settings, data or model format (only the epoch counts
  may change, e.g. to train further);
- a run that already trained the epochs asked for is not started again: its final state is read
  from its latest checkpoint (`hgnas-run-done.json` in the run folder names it);
- a latest checkpoint that cannot be read (a truncated or damaged `state.pt`) is named in a
  warning (by the driver, before the workers start) and the workers resume from the newest
  readable checkpoint before it; the epochs after that one are trained again, and their
  checkpoints get new folder names (`epoch-00003-r<time>`), so the damaged folder's later
  deletion by Ray cannot take them along.

Only plain values cross to the workers: cell genotypes as JSON strings and numpy arrays, put in
the object store once (`ray.put`), and config dicts.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader

from hgnas_ray.errors import ConfigError
from hgnas_ray.generator.cells.pretrain import (
    PretrainConfig,
    TrainOutcome,
    pretrain_cells,
    seeded_model,
)
from hgnas_ray.models import CCNF, CCNFConfig
from hgnas_ray.models.gvae import GVAE, GVAEConfig
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.training import CellGraphDataset, TrainConfig, train_ccnf
from hgnas_ray.training.gvae import train_gvae

STATE_FILE = "state.pt"
FINGERPRINT_FILE = "pretrain-run.json"
DONE_FILE = "hgnas-run-done.json"  # in a run folder: epochs trained, latest checkpoint
DDP_PREFIX = "module."
CHECKPOINT_PREFIX = "epoch-"  # checkpoint folders: epoch-00003, or epoch-00003-r<time> (re-run)
# What torch.load raises on a truncated, damaged or foreign state file.
UNREADABLE = (OSError, RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayTrainSettings:
    """How the Ray Train runs are laid out. `storage_path` holds one folder per run."""

    storage_path: str
    workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 1  # worker-group restarts from the latest checkpoint
    keep_checkpoints: int = 2

    def validate(self) -> RayTrainSettings:
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1 for Ray Train (0 trains in-process); got "
                              f"{self.workers}")
        if self.cpus_per_worker <= 0 or self.keep_checkpoints < 1:
            raise ConfigError(f"cpus_per_worker must be > 0 and keep_checkpoints >= 1; got "
                              f"{self.cpus_per_worker}, {self.keep_checkpoints}")
        return self


class RayTrainers:
    """`hgnas_ray.generator.cells.pretrain.Trainers` on Ray Train; Ray must be initialised."""

    def __init__(self, settings: RayTrainSettings) -> None:
        self.settings = settings.validate()
        path = settings.storage_path
        self._local_storage = None if "://" in path else Path(path).expanduser().resolve()

    def begin(self, fingerprint: dict[str, Any]) -> None:
        """Record what the runs depend on; refuse to resume runs made from something else."""
        if self._local_storage is None:  # cloud storage (s3://...): not checked
            return
        path = self._local_storage / FINGERPRINT_FILE
        if path.is_file():
            existing = json.loads(path.read_text())
            if existing != fingerprint:
                changed = sorted(k for k in fingerprint if existing.get(k) != fingerprint[k])
                raise ConfigError(
                    f"{path.parent} holds training runs made with other settings, data or model "
                    f"format (differs in: {', '.join(changed)}); only the epoch counts may change "
                    "between runs. Pass a new --out (or delete that folder to start over)")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fingerprint, indent=1) + "\n")

    def gvae(self, cells: list[str], zc: np.ndarray, model: GVAEConfig, train: TrainConfig,
             run: str) -> TrainOutcome:
        payload = {"cells": cells, "zc": np.asarray(zc, dtype=np.float32)}
        return self._fit(_gvae_worker, payload, asdict(model), train, run)

    def ccnf(self, latents: np.ndarray, conditions: np.ndarray, model: CCNFConfig,
             train: TrainConfig, run: str) -> TrainOutcome:
        payload = {"latents": np.asarray(latents, np.float32),
                   "conditions": np.asarray(conditions, np.float32)}
        return self._fit(_ccnf_worker, payload, asdict(model), train, run)

    def describe(self) -> dict[str, Any]:
        return {"kind": "ray_train", **asdict(self.settings)}

    def _fit(self, worker, payload: dict[str, Any], model: dict[str, Any], train: TrainConfig,
             run: str) -> TrainOutcome:
        done = self._finished(run, train.epochs)
        if done is not None:  # e.g. the G-VAE of a job killed while its CCNF trained
            return done
        if self._local_storage is not None:
            warn_if_latest_unreadable(self._local_storage / run)
        s = self.settings
        config = {"payload": ray.put(payload), "model": model, "train": asdict(train),
                  "threads": max(1, int(s.cpus_per_worker))}
        trainer = TorchTrainer(
            worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=s.workers, use_gpu=s.use_gpu,
                                         resources_per_worker={"CPU": s.cpus_per_worker}),
            run_config=RunConfig(
                name=run, storage_path=str(self._local_storage or s.storage_path),
                checkpoint_config=CheckpointConfig(num_to_keep=s.keep_checkpoints),
                failure_config=FailureConfig(max_failures=s.max_failures)))
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train run {run!r} ended without a checkpoint")
        state = load_checkpoint_state(result.checkpoint)
        self._mark_finished(run, int(state["epoch"]), Path(result.checkpoint.path).name)
        history = state["history"]
        return TrainOutcome(state["model"], history,
                            resumed_from=int(history[-1].get("resumed_from", 0)))

    def _finished(self, run: str, epochs: int) -> TrainOutcome | None:
        """The outcome of a run that already trained `epochs` epochs, without starting workers
        (local or mounted storage only; otherwise the workers start and find nothing to do)."""
        if self._local_storage is None:
            return None
        marker = self._local_storage / run / DONE_FILE
        if not marker.is_file():
            return None
        done = json.loads(marker.read_text())
        state_file = marker.parent / done["checkpoint"] / STATE_FILE
        if done["epochs"] < epochs or not state_file.is_file():
            return None
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except UNREADABLE:  # damaged since: the workers resume from the one before it
            return None
        return TrainOutcome(state["model"], state["history"], resumed_from=int(state["epoch"]))

    def _mark_finished(self, run: str, epochs: int, checkpoint_dir: str) -> None:
        if self._local_storage is None:
            return
        marker = self._local_storage / run / DONE_FILE
        if marker.parent.is_dir():
            marker.write_text(json.dumps({"epochs": epochs, "checkpoint": checkpoint_dir}) + "\n")


def pretrain_cells_ray(corpus_dir: str | Path, out_dir: str | Path, config: PretrainConfig,
                       settings: RayTrainSettings) -> dict[str, Any]:
    """`pretrain_cells` with both models trained on Ray Train (see the module docstring)."""
    return pretrain_cells(corpus_dir, out_dir, config, RayTrainers(settings))


def load_checkpoint_state(checkpoint: Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def load_resumable_state(checkpoint: Checkpoint) -> tuple[dict[str, Any], list[str]]:
    """The state of `checkpoint`, or, when it cannot be read, of the newest readable checkpoint
    folder beside it (older by name); also the names of the unreadable ones skipped. Raises
    RuntimeError when none is readable."""
    skipped: list[str] = []
    for candidate in [checkpoint, *_older_checkpoints(checkpoint)]:
        try:
            state = load_checkpoint_state(candidate)
            if "epoch" not in state or "model" not in state:
                raise KeyError("epoch/model")
        except UNREADABLE as err:
            name = Path(candidate.path).name
            log.warning("checkpoint %s is unreadable (%s: %s); trying the one before it",
                        candidate.path, type(err).__name__, err)
            skipped.append(name)
            continue
        return state, skipped
    raise RuntimeError(f"no readable checkpoint in {Path(checkpoint.path).parent} (unreadable: "
                       f"{', '.join(skipped)}); delete the run folder to start over")


def _older_checkpoints(checkpoint: Checkpoint) -> list[Checkpoint]:
    """Checkpoint folders of the same run named before `checkpoint`, newest first."""
    fs, path = checkpoint.filesystem, checkpoint.path
    parent, name = os.path.dirname(path.rstrip("/")), os.path.basename(path.rstrip("/"))
    infos = fs.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    names = sorted((i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory
                    and i.base_name.startswith(CHECKPOINT_PREFIX) and i.base_name < name),
                   reverse=True)
    return [Checkpoint(os.path.join(parent, n), filesystem=fs) for n in names]


def warn_if_latest_unreadable(run_dir: Path) -> None:
    """Name the run's latest checkpoint folder in a warning when its state cannot be read (the
    workers then resume from the one before it); nothing when the run has none."""
    if not run_dir.is_dir():
        return
    folders = sorted(p for p in run_dir.iterdir()
                     if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))
    if not folders:
        return
    latest = folders[-1]
    try:
        torch.load(latest / STATE_FILE, map_location="cpu", weights_only=True)
    except UNREADABLE as err:
        before = folders[-2].name if len(folders) > 1 else "none (training starts over)"
        log.warning("the latest checkpoint %s is unreadable (%s); resuming from the one before "
                    "it: %s", latest, type(err).__name__, before)


# ---------------------------------------------------------------------- on the workers
def _gvae_worker(config: dict[str, Any]) -> None:
    ctx = _WorkerContext(config)
    payload = ray.get(config["payload"])
    model_config = GVAEConfig(**config["model"])
    cells = [CellGenotype.from_json(text) for text in payload["cells"]]
    dataset = CellGraphDataset(cells, payload["zc"], model_config.cond_dim)
    model = ray.train.torch.prepare_model(seeded_model(lambda: GVAE(model_config),
                                                       ctx.train.seed))
    state, history = ctx.restore(model)
    sampler = DistributedSampler(dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=True,
                                 seed=ctx.train.seed)
    loader = _EpochDataLoader(dataset, ctx.train.batch_size, sampler, ctx.start_epoch)
    train_gvae(model, loader, ctx.worker_train, _Reporter(ctx, history), state)


def _ccnf_worker(config: dict[str, Any]) -> None:
    ctx = _WorkerContext(config)
    payload = ray.get(config["payload"])
    rows = _shard_rows(len(payload["latents"]), ctx.rank, ctx.world)
    model_config = CCNFConfig(**config["model"])
    model = ray.train.torch.prepare_model(seeded_model(lambda: CCNF(model_config),
                                                       ctx.train.seed))
    state, history = ctx.restore(model)
    train_ccnf(model, payload["latents"][rows], payload["conditions"][rows], ctx.worker_train,
               _Reporter(ctx, history), state)


class _WorkerContext:
    """Rank, world size, device and this worker's loop config (seed + rank)."""

    def __init__(self, config: dict[str, Any]) -> None:
        torch.set_num_threads(config["threads"])
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.train = TrainConfig(**config["train"])
        # Each worker's loop generator (model noise, CCNF shuffling) gets its own stream.
        self.worker_train = replace(self.train, device=str(self.device),
                                    seed=self.train.seed + self.rank)
        self.start_epoch = 0
        self.skipped: list[str] = []  # unreadable checkpoints passed over when resuming
        self.resumed_at = 0  # time.time_ns() of the resume

    def checkpoint_dir_name(self, epoch: int) -> str:
        """epoch-00003; after resuming past an unreadable checkpoint, epoch-00003-r<time>: a
        re-trained epoch never shares a folder with a checkpoint Ray already recorded."""
        name = f"{CHECKPOINT_PREFIX}{epoch:05d}"
        return f"{name}-r{self.resumed_at}" if self.skipped else name

    def restore(self, model: torch.nn.Module) -> tuple[dict[str, Any] | None,
                                                       list[dict[str, float]]]:
        """The loop state to resume from (adapted to this worker) and the metric history."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None, []
        state, self.skipped = load_resumable_state(checkpoint)
        self.resumed_at = time.time_ns()
        generators = state.pop("generators")
        # A worker count that changed since the checkpoint: ranks reuse the saved streams.
        state["generator"] = generators[self.rank % len(generators)]
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            state["model"] = {DDP_PREFIX + k: v for k, v in state["model"].items()}
        self.start_epoch = int(state["epoch"])
        return state, list(state.pop("history"))


class _Reporter:
    """The loop callback: metrics averaged over workers; rank 0 checkpoints."""

    def __init__(self, ctx: _WorkerContext, history: list[dict[str, float]]) -> None:
        self.ctx, self.history = ctx, history

    def __call__(self, epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
        metrics = _mean_over_workers(metrics, self.ctx.world, self.ctx.device)
        generators = _gather(state["generator"], self.ctx.world)
        self.history.append({"epoch": epoch, "resumed_from": self.ctx.start_epoch, **metrics})
        report = {"epoch": epoch, **metrics}
        if self.ctx.rank != 0:
            ray.train.report(report)
            return
        saved = {**state, "model": _strip_prefix(state["model"]), "generators": generators,
                 "history": self.history}
        with tempfile.TemporaryDirectory(prefix="hgnas_ckpt_") as folder:
            torch.save(saved, os.path.join(folder, STATE_FILE))
            ray.train.report(report, checkpoint=Checkpoint.from_directory(folder),
                             checkpoint_dir_name=self.ctx.checkpoint_dir_name(epoch))


def _mean_over_workers(metrics: dict[str, float], world: int, device: torch.device
                       ) -> dict[str, float]:
    if world == 1:
        return metrics
    names = sorted(metrics)
    # On the worker's device: NCCL (GPU workers) reduces CUDA tensors only.
    values = torch.tensor([metrics[n] for n in names], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(values)
    return {n: float(v) / world for n, v in zip(names, values, strict=True)}


def _gather(generator_state: torch.Tensor, world: int) -> list[torch.Tensor]:
    if world == 1:
        return [generator_state]
    states: list[Any] = [None] * world
    torch.distributed.all_gather_object(states, generator_state)
    return states


def _strip_prefix(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix(DDP_PREFIX): v for k, v in model_state.items()}


def _shard_rows(n: int, rank: int, world: int) -> np.ndarray:
    """Rows of one worker: every world-th row from rank, padded by wrapping around so every
    worker has ceil(n / world) rows (as `DistributedSampler` does)."""
    per_worker = -(-n // world)
    rows = np.arange(per_worker * world) % n
    return rows[rank::world]


class _EpochDataLoader(DataLoader):
    """A PyG DataLoader whose distributed sampler moves to the next epoch each time it is
    iterated (the plain loop iterates its data once per epoch), starting at `first_epoch`."""

    def __init__(self, dataset, batch_size: int, sampler, first_epoch: int) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=sampler)
        self.epoch = first_epoch

    def __iter__(self):
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return super().__iter__()
