"""Train candidate networks in parallel as Ray Tune trials, ASHA stopping the weak ones early.

    train_candidates(genotypes, task, train, storage_path, name, max_concurrent=2, num_cpus=1,
                     num_gpus=0, grace_period=1, reduction_factor=2, ...) -> [record, ...]

One trial per candidate runs `hgnas_ray.training.candidates.train_candidate` (a plain function
trainable: one process per trial, no TorchTrainer) and reports every epoch with a checkpoint of
its training state. ASHA compares trials on `val_accuracy` at epochs grace_period x
reduction_factor^k. Results and checkpoints live in `storage_path/name`; calling again with the
same storage path and name restores the experiment (`Tuner.can_restore` / `Tuner.restore`):
finished and failed trials are not trained again, unfinished ones continue from their last
checkpoint. A trial whose training diverges or runs out of memory raises, so Tune records it as
errored (not retried unless `max_failures` > 0) and the other trials go on.

Each record, in the order of `genotypes`:
    {"index", "hash", "genotype" (dict), "status": "ok" | "stopped" (by ASHA) | "failed",
     "best_val_accuracy" (percent, None if no epoch finished), "val_accuracy" (last epoch),
     "epochs", "seconds" (training wall seconds), "error", "trial_id", "reported_at" (Unix time
     of the trial's last report), "curve": [[epoch, val_accuracy], ...], "checkpoint" (path of
     the trial's last checkpoint on the storage filesystem, None if none; its state.pt holds
     the model of the last reported epoch, see `load_trial_state`)}
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.util import metrics

from hgnas_ray.config import from_dict
from hgnas_ray.errors import ConfigError
from hgnas_ray.nn.builder import Genotype
from hgnas_ray.space.genotypes import genotype_from_dict, genotype_hash
from hgnas_ray.training.candidates import (
    CandidateTrainConfig,
    TaskConfig,
    split_train_val,
    train_candidate,
)

log = logging.getLogger(__name__)
METRIC = "val_accuracy"
STATE_FILE = "state.pt"
MANIFEST = "hgnas_candidates.json"  # what the experiment trains; a restore must match it


class CandidateFailed(RuntimeError):
    """A candidate's training diverged or ran out of memory (Tune records the trial errored)."""


def train_candidates(genotypes: Sequence[Genotype | Mapping[str, Any]],
                     task: TaskConfig | Mapping[str, Any],
                     train: CandidateTrainConfig | Mapping[str, Any],
                     storage_path: str | Path, name: str, *, max_concurrent: int = 2,
                     num_cpus: float = 1.0, num_gpus: float = 0.0, grace_period: int = 1,
                     reduction_factor: float = 2.0, max_failures: int = 0,
                     train_overrides: Sequence[Mapping[str, Any]] | None = None,
                     verbose: int = 0, callbacks: Sequence[tune.Callback] = ()
                     ) -> list[dict[str, Any]]:
    """Train every genotype (see the module doc); `train_overrides[i]` changes candidate i's
    training config (e.g. its learning rate); `callbacks` are extra Tune callbacks (progress).
    Starts a local Ray when none is running."""
    candidates = _candidates(genotypes, _train_config(train), train_overrides)
    task = task if isinstance(task, TaskConfig) else from_dict(TaskConfig, task)
    _check_scheduling(max_concurrent, num_cpus, num_gpus, grace_period, reduction_factor)
    if num_gpus > 0:  # Tune would otherwise wait forever for GPUs no node has
        from hgnas_ray.distributed.runtime import check_gpus

        if not ray.is_initialized():
            ray.init()  # what Tune would do on fit(); check_gpus needs Ray up
        check_gpus(num_gpus, "candidate training")
    experiment = Path(storage_path).expanduser().resolve() / name
    manifest = {"candidates": candidates, "task": asdict(task)}
    trainable = tune.with_resources(_train_trial, {"cpu": num_cpus, "gpu": num_gpus})
    if tune.Tuner.can_restore(str(experiment)):
        _check_manifest(experiment, manifest)
        log.info("restoring candidate training from %s", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False)
    else:
        experiment.mkdir(parents=True, exist_ok=True)
        (experiment / MANIFEST).write_text(json.dumps(manifest, indent=1))
        max_epochs = max(c["train"]["epochs"] for c in candidates)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_epochs,
                                  grace_period=min(grace_period, max_epochs),
                                  reduction_factor=reduction_factor)
        tuner = tune.Tuner(
            trainable,
            param_space={"candidate": tune.grid_search(candidates), "task": asdict(task),
                         "threads": max(1, int(num_cpus))},
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", scheduler=scheduler,
                                        max_concurrent_trials=max_concurrent),
            run_config=_run_config(experiment, max_failures, verbose, callbacks))
    with contextlib.redirect_stdout(sys.stderr):  # Tune prints its tables on stdout
        grid = tuner.fit()
    return _records(grid, candidates)


def _run_config(experiment: Path, max_failures: int, verbose: int,
                callbacks: Sequence[tune.Callback] = ()) -> tune.RunConfig:
    """Results and one checkpoint per trial under `experiment`; failed trials stay failed
    unless `max_failures` allows retries (from the last checkpoint)."""
    return tune.RunConfig(name=experiment.name, storage_path=str(experiment.parent),
                          verbose=verbose,
                          failure_config=tune.FailureConfig(max_failures=max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                          callbacks=[_TrialLog(), *callbacks])


def _train_config(train: CandidateTrainConfig | Mapping[str, Any]) -> CandidateTrainConfig:
    if isinstance(train, CandidateTrainConfig):
        return train.validate()
    return from_dict(CandidateTrainConfig, train)


def _candidates(genotypes: Sequence[Genotype | Mapping[str, Any]], train: CandidateTrainConfig,
                overrides: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """One plain dict per candidate: its index, genotype dict, hash and training config."""
    if not genotypes:
        raise ConfigError("train_candidates needs at least one genotype")
    if overrides is not None and len(overrides) != len(genotypes):
        raise ConfigError(f"train_overrides has {len(overrides)} entries for {len(genotypes)} "
                          "genotypes; pass one mapping (possibly empty) per genotype")
    out = []
    for index, genotype in enumerate(genotypes):
        if isinstance(genotype, Mapping):
            genotype = genotype_from_dict(dict(genotype))
        config = replace(train, **dict(overrides[index])) if overrides else train
        out.append({"index": index, "hash": genotype_hash(genotype),
                    "genotype": genotype.to_dict(), "train": config.validate().to_dict()})
    return out


def _check_scheduling(max_concurrent: int, num_cpus: float, num_gpus: float, grace_period: int,
                      reduction_factor: float) -> None:
    if max_concurrent < 1 or not num_cpus > 0 or num_gpus < 0:
        raise ConfigError(f"need max_concurrent >= 1, num_cpus > 0 and num_gpus >= 0 per trial; "
                          f"got {max_concurrent}, {num_cpus}, {num_gpus}")
    if grace_period < 1 or not reduction_factor > 1:
        raise ConfigError(f"ASHA needs grace_period >= 1 epoch and reduction_factor > 1; got "
                          f"{grace_period} and {reduction_factor}")


def _check_manifest(experiment: Path, manifest: dict[str, Any]) -> None:
    path = experiment / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{experiment} holds a Tune experiment that train_candidates did not "
                          f"start (no {MANIFEST}); pass another name or storage path")
    if json.loads(path.read_text()) != json.loads(json.dumps(manifest)):
        raise ConfigError(f"{experiment} trains other candidates, task or settings than this "
                          "call asks for; pass another name, or delete that folder to start over")


# ---------------------------------------------------------------------- one trial
def _train_trial(config: dict[str, Any]) -> None:
    """The function trainable: one candidate, one report (and checkpoint) per epoch."""
    torch.set_num_threads(config["threads"])  # its CPUs, not the whole machine's
    candidate = config["candidate"]
    train_config = from_dict(CandidateTrainConfig, candidate["train"])
    train, val = split_train_val(from_dict(TaskConfig, config["task"]).load("train"),
                                 train_config)
    result = train_candidate(candidate["genotype"], train, val, train_config, _report,
                             _restored_state())
    if result.status != "ok":
        raise CandidateFailed(f"candidate {candidate['index']} ({candidate['hash'][:12]}) "
                              f"failed after {result.epochs} epoch(s): {result.error}")


def _report(epoch: int, report: dict[str, Any], state: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        tune.report(dict(report), checkpoint=tune.Checkpoint.from_directory(folder))


def load_trial_state(checkpoint_path: str) -> dict[str, Any]:
    """The training state (model, optimizer, ..., metrics) of a record's "checkpoint"."""
    with tune.Checkpoint(checkpoint_path).as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True, map_location="cpu")


def _restored_state() -> dict[str, Any] | None:
    """The state to resume from: Tune's checkpoint of this trial, else the newest readable
    checkpoint in the trial's own folder. A job killed after a trial wrote a checkpoint but
    before Tune's experiment snapshot recorded it restores the trial without one; without this
    fallback that epoch would be trained (and reported) twice."""
    checkpoint = tune.get_checkpoint()
    candidates = [checkpoint] if checkpoint is not None else _checkpoints_in_trial_folder()
    for candidate in candidates:
        try:
            with candidate.as_directory() as folder:
                return torch.load(Path(folder) / STATE_FILE, weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            if checkpoint is not None:
                raise
            log.warning("skipping unreadable checkpoint %s: %s", candidate.path, err)
    return None


def _checkpoints_in_trial_folder() -> list[tune.Checkpoint]:
    """This trial's checkpoint_* folders on its storage, newest first ([] when unknown)."""
    try:
        storage = tune.get_context().get_storage()
        fs, root = storage.storage_filesystem, storage.trial_fs_path
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except (OSError, AttributeError, RuntimeError, ValueError):
        return []
    folders = sorted(i.path for i in infos if i.type == pyarrow.fs.FileType.Directory
                     and i.base_name.startswith("checkpoint_"))
    return [tune.Checkpoint(path, filesystem=fs) for path in reversed(folders)]


# ---------------------------------------------------------------------- results
class _TrialLog(tune.Callback):
    """One log line per finished trial, and a Ray metric counting trials by outcome."""

    def __init__(self) -> None:
        self.counter: metrics.Counter | None = None

    def _count(self, status: str) -> None:
        if self.counter is None:  # made lazily: a Callback is pickled with the experiment
            self.counter = metrics.Counter("hgnas_candidate_trials", tag_keys=("status",),
                                           description="candidate training trials finished")
        self.counter.inc(1, tags={"status": status})

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        status = "ok" if last.get("final") else "stopped"
        log.info("candidate trial %s %s after %s epoch(s): best val accuracy %.2f", trial,
                 status, last.get("epoch", 0), last.get("best_val_accuracy", float("nan")))
        self._count(status)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        log.warning("candidate trial %s failed (error file: %s)", trial, trial.error_file)
        self._count("failed")

    def __getstate__(self) -> dict[str, Any]:
        return {"counter": None}


def _records(grid: tune.ResultGrid, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_index: dict[int, dict[str, Any]] = {}
    for result in grid:
        candidate = _trial_config(result)["candidate"]
        by_index[candidate["index"]] = _record(result, candidate)
    missing = [c["index"] for c in candidates if c["index"] not in by_index]
    if missing:  # Tune always returns every trial; this guards a foreign experiment folder
        raise ConfigError(f"the Tune experiment has no trial for candidate(s) {missing}")
    return [by_index[c["index"]] for c in candidates]


def _trial_config(result: tune.Result) -> dict[str, Any]:
    """The trial's config; a restored trial that errored before its first report has none in
    its Result, so it is read from the trial folder's params.json (any storage filesystem)."""
    if result.config:
        return result.config
    with result.filesystem.open_input_stream(f"{result.path}/params.json") as stream:
        return json.loads(stream.read().decode("utf-8"))


def _record(result: tune.Result, candidate: dict[str, Any]) -> dict[str, Any]:
    last = result.metrics or {}
    frame = result.metrics_dataframe
    curve = ([[int(e), float(a)] for e, a in zip(frame["epoch"], frame[METRIC], strict=True)]
             if frame is not None and METRIC in frame else [])
    if result.error is not None:
        status = "failed"
    else:
        status = "ok" if last.get("final") else "stopped"
    return {"index": candidate["index"], "hash": candidate["hash"],
            "genotype": candidate["genotype"], "status": status,
            "best_val_accuracy": last.get("best_val_accuracy"),
            "val_accuracy": last.get(METRIC), "epochs": int(last.get("epoch", 0)),
            "seconds": float(last.get("seconds", 0.0)),
            "error": _error_text(result.error) if result.error is not None else None,
            "trial_id": last.get("trial_id"),
            "reported_at": last.get("timestamp") if "epoch" in last else None,
            "curve": curve,
            "checkpoint": result.checkpoint.path if result.checkpoint is not None else None}


def _error_text(error: BaseException) -> str:
    """The failure's own message (Ray wraps it with the worker's traceback)."""
    cause = error
    while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
        cause = cause.cause
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__
