"""The search job's stages on Ray: `RayExecutors` for `hgnas_ray.search.pipeline.run_pipeline`.

    corpus scoring      Ray Data (`distributed.corpus_scoring.score_corpus`)
    pretraining         Ray Train (`RayTrainers`, `RaySeqGenTrainer`), histories as Ray tasks
    generation          Ray Tune: one function trial per (temperature, budget share); each
                        reports (and checkpoints) after every scored candidate, so a restored
                        experiment re-scores nothing
    refinement          a pool of Ray scoring actors (`distributed.search.actor_pool_evaluate`)
    candidate training  Ray Tune with ASHA (`distributed.tune_train.train_candidates`)

`RayMonitor` logs each stage and sets the job's metrics (`ray.util.metrics`, on the Ray
dashboard's metrics page): hgnas_search_stage, hgnas_search_candidates{kind}, hgnas_search_best_
fitness, hgnas_search_trials{state}; with a terminal attached, a progress bar counts the
candidates scored during generation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ray import tune
from ray.util import metrics

from hgnas_ray.config import RayConfig
from hgnas_ray.search.config import CorpusConfig, GenerateConfig, TrainStageConfig, TrainWorkers
from hgnas_ray.search.pipeline import STAGES, LogMonitor, generate_candidates

log = logging.getLogger(__name__)
RECORDS_FILE = "records.json"
GENERATION_MANIFEST = "hgnas_generation.json"


# ---------------------------------------------------------------------- monitoring
class RayMonitor(LogMonitor):
    """Log lines, dashboard metrics, and a progress bar on a terminal."""

    def __init__(self, progress_bar: bool | None = None) -> None:
        self.stage_gauge = metrics.Gauge("hgnas_search_stage", description="index of the "
                                         "search job's running stage (1-based)")
        self.counts = metrics.Gauge("hgnas_search_candidates", tag_keys=("kind",),
                                    description="candidates generated, scored and valid")
        self.best = metrics.Gauge("hgnas_search_best_fitness",
                                  description="best proxy fitness among scored candidates")
        self.trial_gauge = metrics.Gauge("hgnas_search_trials", tag_keys=("state",),
                                         description="Tune trials running / finished")
        self.progress_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
        self.bar = None

    def stage(self, name: str, status: str, detail: str = "") -> None:
        super().stage(name, status, detail)
        if name in STAGES:
            self.stage_gauge.set(STAGES.index(name) + 1)
        if self.bar is not None and status != "running":
            self.bar.close()
            self.bar = None

    def candidates(self, generated: int, scored: int, valid: int, best: float) -> None:
        for kind, value in (("generated", generated), ("scored", scored), ("valid", valid)):
            self.counts.set(value, tags={"kind": kind})
        if best == best:  # not NaN
            self.best.set(best)

    def scored_progress(self, scored: int, total: int, best: float) -> None:
        """During generation: one tick per scored candidate."""
        self.counts.set(scored, tags={"kind": "scored"})
        if best == best:
            self.best.set(best)
        if not self.progress_bar:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="candidates scored", unit="net", file=sys.stderr)
        self.bar.n = scored
        self.bar.set_postfix(best=f"{best:.4g}")
        self.bar.refresh()

    def trials(self, running: int, finished: int) -> None:
        self.trial_gauge.set(running, tags={"state": "running"})
        self.trial_gauge.set(finished, tags={"state": "finished"})


class _Progress(tune.Callback):
    """Feeds trial events to the monitor (dropped when Tune pickles its experiment state)."""

    def __init__(self, monitor: RayMonitor | None, total: int = 0) -> None:
        self.monitor, self.total = monitor, total
        self.scored: dict[str, int] = {}
        self.best: dict[str, float] = {}
        self.running: set[str] = set()
        self.finished: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)
        self._trials()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if "scored" in result and self.monitor is not None:
            self.scored[trial.trial_id] = int(result["scored"])
            self.best[trial.trial_id] = float(result.get("best_fitness", float("nan")))
            finite = [b for b in self.best.values() if b == b]
            self.monitor.scored_progress(sum(self.scored.values()), self.total,
                                         max(finite, default=float("nan")))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial)

    def _end(self, trial) -> None:
        self.running.discard(trial.trial_id)
        self.finished.add(trial.trial_id)
        self._trials()

    def _trials(self) -> None:
        if self.monitor is not None:
            self.monitor.trials(len(self.running), len(self.finished))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "monitor": None}


# ---------------------------------------------------------------------- executors
class RayExecutors:
    """Every stage's heavy work on the Ray cluster `ray_config` names (joined on first use)."""

    def __init__(self, ray_config: RayConfig, monitor: RayMonitor | None = None) -> None:
        self.ray_config = ray_config
        self._monitor = monitor

    @property
    def monitor(self) -> RayMonitor:
        if self._monitor is None:
            self.start()
            self._monitor = RayMonitor()
        return self._monitor

    def start(self) -> None:
        from hgnas_ray.distributed.runtime import init_ray

        init_ray(self.ray_config)

    def score_corpus(self, corpus_dir: Path, scoring: Any, config: CorpusConfig) -> None:
        from hgnas_ray.distributed.corpus_scoring import score_corpus
        from hgnas_ray.errors import DataError

        self.start()
        report = score_corpus(corpus_dir, scoring, concurrency=config.concurrency,
                              num_cpus=config.num_cpus, num_gpus=config.num_gpus,
                              rows_per_batch=config.rows_per_batch, progress=False)
        if report.failed:
            name, message = next(iter(report.failed.items()))
            raise DataError(f"{len(report.failed)} corpus shard(s) could not be scored (first: "
                            f"{name}: {message}); fix or delete them and run again")

    def pretrain_cells(self, corpus_dir: Path, out_dir: Path, config: Any,
                       workers: TrainWorkers, storage: Path) -> None:
        from hgnas_ray.distributed.pretrain import RayTrainers
        from hgnas_ray.generator.cells.pretrain import LocalTrainers, pretrain_cells

        self.start()
        trainers = RayTrainers(_settings(workers, storage)) if workers.workers else LocalTrainers()
        pretrain_cells(corpus_dir, out_dir, config, trainers)

    def write_histories(self, out_dir: Path, settings: Sequence[Any], cell_artifact: Path,
                        config: Any) -> Path:
        from hgnas_ray.distributed.histories import ray_runner
        from hgnas_ray.search.histories import write_histories

        self.start()
        return write_histories(out_dir, settings, cell_artifact, config, ray_runner())

    def pretrain_macro(self, histories: Path, cell_artifact: Path, out_dir: Path, config: Any,
                       workers: TrainWorkers, storage: Path) -> None:
        from hgnas_ray.distributed.macro_pretrain import RaySeqGenTrainer
        from hgnas_ray.generator.macro.pretrain import LocalSeqGenTrainer, pretrain_macro

        self.start()
        trainer = RaySeqGenTrainer(_settings(workers, storage)) if workers.workers \
            else LocalSeqGenTrainer()
        pretrain_macro(histories, cell_artifact, out_dir, config, trainer)

    def generate(self, jobs: list[dict[str, Any]], storage: Path, name: str,
                 config: GenerateConfig) -> list[dict[str, Any]]:
        self.start()
        return generate_on_tune(jobs, storage, name, config, _Progress(
            self.monitor, total=sum(j["n"] for j in jobs)))

    def evaluator(self, scoring: dict[str, Any], workers: int, key: Callable[[Any], str],
                  text: Callable[[Any], str]) -> Callable[[Sequence[Any]], Iterable[dict]]:
        from hgnas_ray.distributed.search import actor_pool_evaluate

        self.start()
        return actor_pool_evaluate(scoring, workers, key, text)

    def train(self, genotypes: list[dict[str, Any]], task: Any, config: TrainStageConfig,
              storage: Path, name: str) -> list[dict[str, Any]]:
        from hgnas_ray.distributed.tune_train import train_candidates

        self.start()
        return train_candidates(genotypes, task, config.recipe, storage, name,
                                max_concurrent=config.max_concurrent, num_cpus=config.num_cpus,
                                num_gpus=config.num_gpus, grace_period=config.grace_period,
                                reduction_factor=config.reduction_factor,
                                callbacks=[_Progress(self.monitor)])

    def load_checkpoint(self, path: str) -> dict[str, Any]:
        from hgnas_ray.distributed.tune_train import load_trial_state

        return load_trial_state(path)


def _settings(workers: TrainWorkers, storage: Path):
    from hgnas_ray.distributed.pretrain import RayTrainSettings

    return RayTrainSettings(storage_path=str(storage), workers=workers.workers,
                            use_gpu=workers.use_gpu, cpus_per_worker=workers.cpus_per_worker)


# ---------------------------------------------------------------------- generation on Tune
def generate_on_tune(jobs: list[dict[str, Any]], storage: Path, name: str,
                     config: GenerateConfig, progress: tune.Callback | None = None
                     ) -> list[dict[str, Any]]:
    """Run each generation job as a Tune trial (restoring a killed experiment); return every
    scored record, in job order. A failed trial is logged and keeps what it scored."""
    from hgnas_ray.distributed.runtime import check_gpus
    from hgnas_ray.errors import ConfigError

    check_gpus(config.num_gpus, "candidate generation")  # Tune would wait for GPUs forever
    experiment = Path(storage).expanduser().resolve() / name
    trainable = tune.with_resources(_generation_trial, {"cpu": config.num_cpus,
                                                        "gpu": config.num_gpus})
    manifest = {"jobs": jobs}
    if tune.Tuner.can_restore(str(experiment)):
        saved = json.loads((experiment / GENERATION_MANIFEST).read_text()) \
            if (experiment / GENERATION_MANIFEST).is_file() else None
        if saved != json.loads(json.dumps(manifest)):
            raise ConfigError(f"{experiment} holds another generation experiment; delete it "
                              "or change run_name")
        log.info("restoring generation from %s", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        experiment.mkdir(parents=True, exist_ok=True)
        (experiment / GENERATION_MANIFEST).write_text(json.dumps(manifest, indent=1))
        tuner = tune.Tuner(
            trainable, param_space={"job": tune.grid_search(jobs)},
            tune_config=tune.TuneConfig(max_concurrent_trials=config.max_concurrent),
            run_config=tune.RunConfig(
                name=experiment.name, storage_path=str(experiment.parent), verbose=0,
                failure_config=tune.FailureConfig(max_failures=1),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[progress] if progress is not None else []))
    with contextlib.redirect_stdout(sys.stderr):  # Tune prints its tables on stdout
        grid = tuner.fit()
    by_index: dict[int, list[dict[str, Any]]] = {}
    for result in grid:
        records = _checkpoint_records(result.checkpoint)
        index = _job_index(result)
        if result.error is not None:
            log.warning("generation trial %s failed after %d candidates: %s", index,
                        len(records), str(result.error).strip().splitlines()[-1][:300])
        by_index[index] = records
    return [r for i in sorted(by_index) for r in by_index[i]]


def _generation_trial(config: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    job = config["job"]
    records = _checkpoint_records(tune.get_checkpoint())
    shown = job["fitness"].split("+")[0]  # progress shows the fitness's first proxy

    def on_record(record: dict[str, Any]) -> None:
        records.append(record)
        scores = [r[shown] for r in records if r.get(f"{shown}_status") == "ok"]
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / RECORDS_FILE).write_text(json.dumps(records))
            tune.report({"scored": len(records),
                         "valid": sum(r.get("status") != "error" for r in records),
                         "best_fitness": max(scores, default=float("nan")),
                         "job": job["index"]},
                        checkpoint=tune.Checkpoint.from_directory(folder))

    generate_candidates(job, records, on_record)


def _checkpoint_records(checkpoint: tune.Checkpoint | None) -> list[dict[str, Any]]:
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as folder:
        path = Path(folder) / RECORDS_FILE
        return json.loads(path.read_text()) if path.is_file() else []


def _job_index(result: tune.Result) -> int:
    if result.config:
        return int(result.config["job"]["index"])
    with result.filesystem.open_input_stream(f"{result.path}/params.json") as stream:
        return int(json.loads(stream.read().decode("utf-8"))["job"]["index"])

