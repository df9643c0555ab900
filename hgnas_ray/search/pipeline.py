"""The search job's pipeline (DESIGN 1, step 3), without Ray: stages, their markers, resume.

    run_pipeline(config, executors, force=False) -> PipelineResult

Stages, in order; each is skipped when its output exists and was made from the same inputs
(its *key*: a digest of its config and of the keys of the stages it reads):

    corpus     build the cell corpus and score it (`executors.score_corpus`, Ray Data)
    cells      the cell generator: `cells.artifact`, or pretrained (Ray Train)
    macro      the sequence generator: `macro.artifact`, or HL-Evo histories (Ray tasks) and
               pretraining (Ray Train)
    generate   conditional generation, one trial per (temperature, minimum budget share),
               every candidate scored on the task's own probe batches (Ray Tune)
    refine     HL-Evo seeded with the generated candidates (Ray actors), when asked for
    train      the top-k candidates by fitness trained with ASHA (Ray Tune)
    export     the best trained candidate (genotype, weights, TorchScript/ONNX, metrics)
    report     report.md and its plots (always rewritten: it is cheap)

The corpus and the generators are task-agnostic and live under the shared folder
(`<storage>/shared/<stage>-<key>`), so every run with the same settings reuses them; a run
folder copies the artifacts it used to `artifacts/cells` and `artifacts/macro`. Inside a stage,
resume is the stage's own: shards already scored, Ray Train checkpoints, HL-Evo run stores,
`Tuner.restore`. A run folder made with another config is refused unless `force`; then the
stages whose key changed run again.

Run folder: config.yaml, stages.json (markers and timings), candidates.jsonl (every scored
candidate, generated then refined, each with its `fitness`), trained.json, tune/ (Tune
experiments), refine/<key>/ (HL-Evo run store), export/, report.md, report/.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from hgnas_ray.config import save_config, to_dict
from hgnas_ray.corpus.shards import read_json, write_json_atomic
from hgnas_ray.errors import BudgetError, ConfigError, DataError
from hgnas_ray.files import write_atomic
from hgnas_ray.nn.budget import Budget, minimum_cost
from hgnas_ray.nn.builder import TaskShape
from hgnas_ray.search.config import (
    CorpusConfig,
    GenerateConfig,
    SearchConfig,
    TrainStageConfig,
    TrainWorkers,
)
from hgnas_ray.search.fitness import Fitness

log = logging.getLogger(__name__)
STAGES = ("corpus", "cells", "macro", "generate", "refine", "train", "export", "report")
CONFIG_FILE, STAGES_FILE = "config.yaml", "stages.json"
CANDIDATES_FILE, TRAINED_FILE = "candidates.jsonl", "trained.json"
MARKER = "hgnas-stage.json"  # in a shared stage folder: the key it was made with
# keys of the config that do not change any result: a run may move between them
NEUTRAL_KEYS = ("ray", "storage_path", "shared_path")


# ---------------------------------------------------------------------- the Ray side
class Monitor(Protocol):
    """Progress: log lines here; Ray metrics and a progress bar in `hgnas_ray.distributed`."""

    def stage(self, name: str, status: str, detail: str = "") -> None: ...

    def candidates(self, generated: int, scored: int, valid: int, best: float) -> None: ...

    def trials(self, running: int, finished: int) -> None: ...


class Executors(Protocol):
    """Where each stage's heavy work runs (`hgnas_ray.distributed.search_job.RayExecutors`)."""

    monitor: Monitor

    def score_corpus(self, corpus_dir: Path, scoring: Any, config: CorpusConfig) -> None: ...

    def pretrain_cells(self, corpus_dir: Path, out_dir: Path, config: Any,
                       workers: TrainWorkers, storage: Path) -> None: ...

    def write_histories(self, out_dir: Path, settings: Sequence[Any], cell_artifact: Path,
                        config: Any) -> Path: ...

    def pretrain_macro(self, histories: Path, cell_artifact: Path, out_dir: Path, config: Any,
                       workers: TrainWorkers, storage: Path) -> None: ...

    def generate(self, jobs: list[dict[str, Any]], storage: Path, name: str,
                 config: GenerateConfig) -> list[dict[str, Any]]: ...

    def evaluator(self, scoring: dict[str, Any], workers: int, key: Callable[[Any], str],
                  text: Callable[[Any], str]) -> Callable[[Sequence[Any]], Iterable[dict]]: ...

    def train(self, genotypes: list[dict[str, Any]], task: Any, config: TrainStageConfig,
              storage: Path, name: str) -> list[dict[str, Any]]: ...

    def load_checkpoint(self, path: str) -> dict[str, Any]: ...


class LogMonitor:
    """The plain monitor: one log line per event."""

    def stage(self, name: str, status: str, detail: str = "") -> None:
        index = STAGES.index(name) + 1 if name in STAGES else 0
        log.info("[stage %d/%d %s] %s%s", index, len(STAGES), name, status,
                 f": {detail}" if detail else "")

    def candidates(self, generated: int, scored: int, valid: int, best: float) -> None:
        log.info("candidates: %d generated, %d scored, %d valid, best fitness %.4g", generated,
                 scored, valid, best)

    def trials(self, running: int, finished: int) -> None:
        log.info("trials: %d running, %d finished", running, finished)


# ---------------------------------------------------------------------- keys and markers
def stable_key(*parts: Any) -> str:
    """A digest of JSON-able parts (the identity of a stage's inputs)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Ledger:
    """`stages.json` of a run folder: per stage its key, status and seconds."""

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> Ledger:
        return cls(path, read_json(path, "stage markers") if path.is_file() else {})

    def done(self, stage: str, key: str) -> bool:
        entry = self.entries.get(stage)
        return bool(entry and entry.get("key") == key and entry.get("done"))

    def mark(self, stage: str, key: str, seconds: float, **info: Any) -> None:
        self.entries[stage] = {"key": key, "done": True, "seconds": round(seconds, 3), **info}
        write_json_atomic(self.entries, self.path)


@dataclass
class PipelineResult:
    run_dir: Path
    candidates: list[dict[str, Any]]
    trained: list[dict[str, Any]]
    best: dict[str, Any] | None
    report: Path | None


# ---------------------------------------------------------------------- the pipeline
def run_pipeline(config: SearchConfig, executors: Executors, force: bool = False
                 ) -> PipelineResult:
    """Run (or resume) every stage of `config`; see the module docstring."""
    return _Pipeline(config, executors, force).run()


class _Pipeline:
    def __init__(self, config: SearchConfig, executors: Executors, force: bool) -> None:
        self.config, self.x, self.force = config, executors, force
        self.run_dir, self.shared = config.run_dir(), config.shared_dir()
        self.fitness = Fitness.parse(config.generate.fitness)
        self.stage_seconds: dict[str, dict[str, Any]] = {}

    @property
    def monitor(self) -> Monitor:
        return self.x.monitor  # on first use: a Ray monitor starts Ray

    def run(self) -> PipelineResult:
        task = self._preflight()
        self._claim_run_dir()
        self.ledger = Ledger.open(self.run_dir / STAGES_FILE)
        cells, cells_key = self._timed("cells", lambda: self._cells())
        macro, macro_key = self._timed("macro", lambda: self._macro(cells, cells_key, task))
        candidates, gen_key = self._generate(task, cells, macro, cells_key, macro_key)
        candidates, refine_key = self._refine(task, cells, candidates, gen_key)
        trained, train_key = self._train(candidates, refine_key)
        best = self._export(task, trained, train_key)
        report = self._report(candidates, trained, best)
        return PipelineResult(self.run_dir, candidates, trained, best, report)

    # ------------------------------------------------------------------ preflight
    def _preflight(self) -> TaskShape:
        """The task loads and the budget admits a network, before anything is written."""
        from hgnas_ray.data import load_task

        data = self.config.data
        dataset = load_task(data.task, "train", root=data.root, download=data.download)
        info = dataset.info
        task = TaskShape(info.num_classes, info.input_shape[1], info.input_shape[0])
        min_params, min_macs = minimum_cost(task)
        budget = self.budget
        if (budget.max_params is not None and budget.max_params < min_params) or \
                (budget.max_macs is not None and budget.max_macs < min_macs):
            raise BudgetError(f"no network meets budget ({budget}) on {info.name}: the smallest "
                              f"feasible network has {min_params:,} params and {min_macs:,} MACs "
                              f"({2 * min_macs:,} FLOPs); raise budget.max_params/max_macs")
        log.info("task %s: %d images, %d classes, input %s; budget %s; run folder %s", info.name,
                 len(dataset), info.num_classes, info.input_shape, budget, self.run_dir)
        return task

    @property
    def budget(self) -> Budget:
        return Budget(self.config.budget.max_params, self.config.budget.max_macs)

    def _claim_run_dir(self) -> None:
        """A run folder of another config is refused unless `force` (its stages then rerun
        where their keys changed)."""
        path = self.run_dir / CONFIG_FILE
        if path.is_file():
            try:
                saved = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                saved = {}
            changed = _changed_keys(saved, to_dict(self.config))
            if changed and not self.force:
                raise ConfigError(
                    f"{self.run_dir} holds a run of another config (differs in "
                    f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}); pass "
                    "--force to rerun the stages it changes, or set another run_name")
            if changed:
                log.warning("--force: config differs in %s; stages it changes run again",
                            ", ".join(changed[:5]))
        save_config(self.config, path)

    def _timed(self, stage: str, body: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = body()
        self.stage_seconds.setdefault(stage, {"status": "ran"})
        self.stage_seconds[stage]["seconds"] = round(time.perf_counter() - start, 3)
        return out

    def _ran(self, stage: str, key: str, start: float, **info: Any) -> None:
        """Mark a run stage done (stages.json) with its wall seconds since `start`."""
        seconds = time.perf_counter() - start
        self.ledger.mark(stage, key, seconds, **info)
        self.stage_seconds[stage] = {"status": "ran", "seconds": round(seconds, 3)}

    def _skip(self, stage: str, detail: str) -> None:
        self.stage_seconds[stage] = {"status": "skipped"}
        self.monitor.stage(stage, "skipped", detail)

    # ------------------------------------------------------------------ shared stages
    def _corpus(self) -> tuple[Path, str]:
        from hgnas_ray.corpus import CorpusSpec, ScoringConfig, build_corpus
        from hgnas_ray.data import resolve_data_root
        from hgnas_ray.evaluation import scoring_setup

        cfg = self.config.corpus
        setup = scoring_setup(cfg.network)
        root = resolve_data_root(self.config.data.root)
        scoring = ScoringConfig(
            proxies=cfg.proxies, task=cfg.task or self.config.data.task,
            data_root=str(root.resolve()) if root is not None else None,
            batch_size=setup.batch_size, skeleton_channels=setup.skeleton.channels,
            skeleton_cells=setup.skeleton.cells_per_stage, seed=cfg.seed,
            device="cuda" if cfg.num_gpus > 0 else "cpu").validate()
        spec = CorpusSpec("cell", cfg.size, cfg.seed, cfg.shard_size)
        key = stable_key("corpus", asdict(spec), scoring.result_key())
        folder = self.shared / f"corpus-{key}"
        if _shared_done(folder, key):
            self._skip("corpus", f"{cfg.size} scored cells in {folder}")
            return folder, key
        self.monitor.stage("corpus", "running", f"{cfg.size} cells -> {folder}")
        start = time.perf_counter()
        build_corpus(folder, spec, progress=False)
        self.x.score_corpus(folder, scoring, cfg)
        _mark_shared(folder, key)
        self.stage_seconds["corpus"] = {"status": "ran",
                                        "seconds": round(time.perf_counter() - start, 3)}
        return folder, key

    def _cells(self) -> tuple[Path, str]:
        from hgnas_ray.generator.macro.artifact import cell_artifact_digest

        cfg = self.config.cells
        if cfg.artifact:
            path = Path(cfg.artifact).expanduser().resolve()
            key = cell_artifact_digest(path)[:16]
            self._skip("corpus", "cells.artifact is given")
            self._skip("cells", f"using {path}")
        else:
            corpus, corpus_key = self._corpus()
            key = stable_key("cells", corpus_key, to_dict(cfg.pretrain), asdict(cfg.ray_train))
            path = self.shared / f"cells-{key}"
            if _shared_done(path, key):
                self._skip("cells", f"pretrained generator in {path}")
            else:
                self.monitor.stage("cells", "running", f"pretraining -> {path}")
                self.x.pretrain_cells(corpus, path, cfg.pretrain, cfg.ray_train, path / "runs")
                _mark_shared(path, key)
        _copy_artifact(path, self.run_dir / "artifacts" / "cells")
        return path, key

    def _macro(self, cells: Path, cells_key: str, task: TaskShape) -> tuple[Path, str]:
        from hgnas_ray.generator.macro.artifact import read_manifest

        cfg = self.config.macro
        if cfg.artifact:
            path = Path(cfg.artifact).expanduser().resolve()
            read_manifest(path, cells)  # refuses an artifact of another cell generator
            key = stable_key("macro-artifact", (path / "artifact.json").read_text())
            self._skip("macro", f"using {path}")
        else:
            settings = self._grid(task)
            key = stable_key("macro", cells_key, [s.to_dict() for s in settings],
                             cfg.histories.to_dict(), cfg.pretrain.to_dict(),
                             asdict(cfg.ray_train))
            path = self.shared / f"macro-{key}"
            if _shared_done(path, key):
                self._skip("macro", f"pretrained generator in {path}")
            else:
                self.monitor.stage("macro", "running", f"{len(settings)} HL-Evo histories, "
                                   f"{cfg.histories.evaluations} evaluations each -> {path}")
                histories = self.x.write_histories(path / "histories", settings, cells,
                                                   cfg.histories)
                self.x.pretrain_macro(histories, cells, path, cfg.pretrain, cfg.ray_train,
                                      path / "runs")
                _mark_shared(path, key)
        _copy_artifact(path, self.run_dir / "artifacts" / "macro")
        return path, key

    def _grid(self, task: TaskShape) -> list[Any]:
        from hgnas_ray.search import histories

        grid = self.config.macro.grid
        if grid == "small":
            return list(histories.SMALL_GRID)
        if grid == "full":
            return list(histories.FULL_GRID)
        budget = self.budget
        half = Budget(*(None if v is None else max(1, v // 2)
                        for v in (budget.max_params, budget.max_macs)))
        settings = [histories.HistorySetting(task, budget)]
        min_params, min_macs = minimum_cost(task)
        if (half.max_params or min_params) >= min_params and \
                (half.max_macs or min_macs) >= min_macs:
            settings.append(histories.HistorySetting(task, half))
        return settings

    # ------------------------------------------------------------------ run stages
    def scoring(self) -> dict[str, Any]:
        return candidate_scoring(self.config)

    def _generate(self, task: TaskShape, cells: Path, macro: Path, cells_key: str,
                  macro_key: str) -> tuple[list[dict[str, Any]], str]:
        gen = self.config.generate
        scoring = self.scoring()
        jobs = [{"index": i, "temperature": t, "budget_share": s, "n": gen.per_setting,
                 "seed": gen.seed + i, "task": asdict(task), "budget": asdict(self.budget),
                 "macro_artifact": str(macro), "cell_artifact": str(cells), "scoring": scoring,
                 "fitness": gen.fitness}
                for i, (t, s) in enumerate(itertools.product(gen.temperatures,
                                                            gen.budget_shares))]
        key = stable_key("generate", cells_key, macro_key,
                         [{k: v for k, v in j.items() if not k.endswith("artifact")}
                          for j in jobs], {k: v for k, v in scoring.items()
                                           if k not in ("data_root", "device")})
        path = self.run_dir / CANDIDATES_FILE
        if self.ledger.done("generate", key) and path.is_file():
            self._skip("generate", f"{_count_lines(path)} candidates in {path}")
            return read_candidates(path), key
        self.monitor.stage("generate", "running", f"{len(jobs)} trials x {gen.per_setting} "
                           "candidates, scored on the task's probe batches")
        start = time.perf_counter()
        records = self.x.generate(jobs, self.run_dir / "tune", f"generate-{key[:8]}", gen)
        candidates = self._with_fitness(_distinct(records))
        if not candidates:
            raise DataError("generation produced no candidate (every trial failed; see the "
                            "warnings above); lower generate.budget_shares or check the "
                            "generator artifacts")
        _write_jsonl(path, candidates)
        self._ran("generate", key, start, candidates=len(candidates))
        self._announce(candidates)
        return candidates, key

    def _with_fitness(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each record gets `fitness` (for a rank aggregate: ranked over all of them)."""
        scores = self.fitness.scores(records) if records else []
        return [{**r, "fitness": None if not np.isfinite(s) else float(s)}
                for r, s in zip(records, scores, strict=True)]

    def _announce(self, candidates: list[dict[str, Any]]) -> None:
        valid = [c for c in candidates if c["fitness"] is not None]
        best = max((c["fitness"] for c in valid), default=float("nan"))
        self.monitor.candidates(len(candidates), len(candidates), len(valid), best)

    def _refine(self, task: TaskShape, cells: Path, candidates: list[dict[str, Any]],
                gen_key: str) -> tuple[list[dict[str, Any]], str]:
        cfg = self.config.refine
        key = stable_key("refine", gen_key, asdict(cfg))
        if cfg.evaluations == 0:
            self._skip("refine", "refine.evaluations is 0")
            return candidates, key
        path = self.run_dir / CANDIDATES_FILE
        if self.ledger.done("refine", key):
            self._skip("refine", f"{cfg.evaluations} HL-Evo evaluations in {path}")
            return candidates, key
        self.monitor.stage("refine", "running", f"HL-Evo, {cfg.evaluations} evaluations "
                           f"seeded with {len(candidates)} candidates")
        start = time.perf_counter()
        generated = [c for c in candidates if c.get("source") == "generated"]
        refined = refine_with_hlevo(self, task, cells, generated, key)
        merged = self._with_fitness(_distinct([*generated, *refined]))
        _write_jsonl(path, merged)
        self._ran("refine", key, start, refined=len(refined))
        self._announce(merged)
        return merged, key

    def _train(self, candidates: list[dict[str, Any]], refine_key: str
               ) -> tuple[list[dict[str, Any]], str]:
        from hgnas_ray.training.candidates import TaskConfig

        cfg = self.config.train
        top = top_candidates(candidates, cfg.top_k)
        data = self.config.data
        task = TaskConfig(data.task, data.root, None, data.download)
        key = stable_key("train", refine_key, [c["hash"] for c in top], asdict(cfg),
                         {"task": data.task})
        path = self.run_dir / TRAINED_FILE
        if self.ledger.done("train", key) and path.is_file():
            self._skip("train", f"{cfg.top_k} trained candidates in {path}")
            return json.loads(path.read_text()), key
        self.monitor.stage("train", "running", f"top {len(top)} candidates by "
                           f"{self.fitness.name}, up to {cfg.recipe.epochs} epochs each (ASHA)")
        start = time.perf_counter()
        genotypes = [json.loads(c["genotype"]) for c in top]
        records = self.x.train(genotypes, task, cfg, self.run_dir / "tune",
                               f"train-{key[:8]}")
        by_hash = {c["hash"]: c for c in top}
        trained = [{**r, "params": by_hash[r["hash"]].get("params"),
                    "macs": by_hash[r["hash"]].get("macs"),
                    "fitness": by_hash[r["hash"]].get("fitness")} for r in records]
        write_json_atomic(trained, path)
        self._ran("train", key, start, trained=len(trained),
                  failed=sum(r["status"] == "failed" for r in trained))
        return trained, key

    def _export(self, task: TaskShape, trained: list[dict[str, Any]], train_key: str
                ) -> dict[str, Any] | None:
        cfg = self.config.export
        best = choose_best(trained)
        key = stable_key("export", train_key, asdict(cfg), best["hash"] if best else None)
        out = self.run_dir / "export"
        metrics_path = out / "metrics.json"
        if best is None:
            self._skip("export", "no candidate finished training")
            return None
        if self.ledger.done("export", key) and metrics_path.is_file():
            self._skip("export", f"{out}")
            return read_json(metrics_path, "export metrics")
        self.monitor.stage("export", "running", f"candidate {best['hash'][:12]} "
                           f"(val accuracy {best['val_accuracy']:.2f}%) -> {out}")
        start = time.perf_counter()
        metrics = export_best(self, task, best, out)
        self._ran("export", key, start, hash=best["hash"])
        return metrics

    def _report(self, candidates: list[dict[str, Any]], trained: list[dict[str, Any]],
                best: dict[str, Any] | None) -> Path:
        from hgnas_ray.search.report import write_report

        self.monitor.stage("report", "running", str(self.run_dir / "report.md"))
        stages = {name: {**self.ledger.entries.get(name, {}), **self.stage_seconds.get(name, {})}
                  for name in STAGES if name in self.stage_seconds or name in self.ledger.entries}
        history = [c["fitness"] if c["fitness"] is not None else float("nan")
                   for c in candidates]
        path = write_report(self.run_dir, config=to_dict(self.config), scored=candidates,
                            trained=trained, rank_by="fitness", best=best, stages=stages,
                            history=history)
        self.monitor.stage("report", "done", str(path))
        return path


# ---------------------------------------------------------------------- stage bodies
def candidate_scoring(config: SearchConfig) -> dict[str, Any]:
    """How every candidate of `config`'s run is scored (a `ScoringConfig` dict): the task's own
    probe batches, the run's seed, `generate.proxies`. Benchmarks score other networks with it
    to compare them with the run's candidates."""
    from hgnas_ray.corpus import ScoringConfig
    from hgnas_ray.data import resolve_data_root

    data, gen = config.data, config.generate
    root = resolve_data_root(data.root)
    return ScoringConfig(
        proxies=gen.proxies, task=data.task,
        data_root=str(root.resolve()) if root is not None else None,
        batch_size=data.probe_size, probe_batches=data.probe_batches,
        class_balanced=data.class_balanced, seed=config.seed,
        device="cuda" if gen.num_gpus > 0 else "cpu").validate().to_dict()


def refine_with_hlevo(pipeline: _Pipeline, task: TaskShape, cells: Path,
                      seeds: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """HL-Evo over the budgeted macro space, its level-two population seeded with the generated
    candidates (told first, never re-scored); returns the records it evaluated after them."""
    from hgnas_ray.generator import CellGenerator
    from hgnas_ray.search.hlevo import HLEvolution
    from hgnas_ray.search.loop import run_search
    from hgnas_ray.search.macro_space import MacroHierarchy
    from hgnas_ray.search.pretrained import GeneratorCells
    from hgnas_ray.search.store import RunStore

    cfg = pipeline.config.refine
    space = MacroHierarchy(task, pipeline.budget,
                           GeneratorCells(CellGenerator.load(cells), seed=cfg.seed))
    strategy = HLEvolution(space, pipeline.fitness, seed=cfg.seed,
                           population_size=cfg.population, space_evaluations=0)
    store = RunStore(pipeline.run_dir / "refine" / key[:8], {"key": key})  # a new key: a new store
    usable = [s for s in seeds if s.get("status") != "error"]
    if store.load_state() is None and usable:
        genotypes = [space.from_text(s["genotype"]) for s in usable]
        for record in usable:
            if record["hash"] not in store:
                store.append(record)
        strategy.tell(genotypes, usable)
    evaluate = pipeline.x.evaluator(pipeline.scoring(), cfg.workers, space.key, space.to_text)
    records = run_search(strategy, evaluate, store, len(usable) + cfg.evaluations,
                         batch_size=cfg.batch_size,
                         on_progress=lambda p: log.info("refine: %d/%d evaluations, best %.4g",
                                                        p.evaluations, p.budget,
                                                        p.best_fitness))
    return [{**r, "source": "refined"} for r in records[len(usable):]]


def export_best(pipeline: _Pipeline, task: TaskShape, best: dict[str, Any], out: Path
                ) -> dict[str, Any]:
    """Load the best trial's weights, measure test accuracy, write `export/`."""
    from hgnas_ray.nn.export import export_model
    from hgnas_ray.space.genotypes import genotype_from_dict

    state = pipeline.x.load_checkpoint(best["checkpoint"])
    model_state = state["model"]
    accuracy, images = measure_test_accuracy(pipeline.config, best["genotype"], model_state)
    extra = {"hash": best["hash"], "val_accuracy": best["val_accuracy"],
             "best_val_accuracy": best["best_val_accuracy"], "trained_epochs": best["epochs"],
             "fitness": best.get("fitness"), "fitness_name": pipeline.fitness.name,
             "test_images": images,
             "accuracy_is": f"top-1 % on {images} images of the task's test split, after the "
                            "search's short training (not the final recipe)"}
    return export_model(out, genotype_from_dict(dict(best["genotype"])), model_state, task,
                        accuracy=accuracy,
                        extra_metrics=extra, formats=pipeline.config.export.formats)


def measure_test_accuracy(config: SearchConfig, genotype: Mapping[str, Any],
                  model_state: Mapping[str, Any]) -> tuple[float, int]:
    """Top-1 accuracy (percent) on the task's test split, or its first `export.test_limit`
    images of a seeded permutation; and the number of images."""
    import torch

    from hgnas_ray.training.candidates import TaskConfig, build_candidate
    from hgnas_ray.training.config import resolve_device

    data = config.data
    test = TaskConfig(data.task, data.root, None, data.download).load("test")
    order = np.random.default_rng(config.seed).permutation(len(test))
    if config.export.test_limit is not None:
        order = order[:config.export.test_limit]
    device = resolve_device("auto")
    model = build_candidate(genotype, test.info, config.train.recipe).to(device)
    model.load_state_dict(model_state)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(order), 256):
            x, y = test.batch(np.sort(order[start:start + 256]))
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    return 100.0 * correct / max(len(order), 1), int(len(order))


def generate_candidates(job: Mapping[str, Any], done: Sequence[dict[str, Any]],
                        on_record: Callable[[dict[str, Any]], None]) -> None:
    """One generation trial (a job of `_Pipeline._generate`): sample `n` networks from the
    sequence generator at the job's temperature and minimum budget share, score each one not
    in `done` on the task's probe batches, and pass its record to `on_record`."""
    from hgnas_ray.corpus.scoring import CorpusScorer
    from hgnas_ray.generator.macro import MacroGenerator
    from hgnas_ray.space import format_genotype
    from hgnas_ray.space.genotypes import genotype_hash

    generator = MacroGenerator.load(job["macro_artifact"], job["cell_artifact"])
    genotypes = generator.sample(job["task"], job["budget"], job["n"], job["temperature"],
                                 job["seed"], job["budget_share"])
    scorer = CorpusScorer(job["scoring"])
    seen = {r["hash"] for r in done}
    for genotype in genotypes:
        digest = genotype_hash(genotype)
        if digest in seen:
            continue
        seen.add(digest)
        record = scorer.score_one(digest, format_genotype(genotype))
        on_record({**record, "source": "generated", "setting": job["index"],
                   "temperature": job["temperature"], "budget_share": job["budget_share"]})


# ---------------------------------------------------------------------- helpers
def top_candidates(candidates: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The `k` fittest scored candidates (ties: the earlier first)."""
    usable = [c for c in candidates if c.get("fitness") is not None]
    if not usable:
        raise DataError("no candidate has a usable fitness (every proxy score failed); see "
                        f"{CANDIDATES_FILE} for the errors")
    order = sorted(range(len(usable)), key=lambda i: (-usable[i]["fitness"], i))
    return [usable[i] for i in order[:k]]


def choose_best(trained: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trained candidate to export: highest last-epoch validation accuracy (the weights its
    checkpoint holds) among those that finished, else among those ASHA stopped."""
    for statuses in (("ok",), ("stopped",)):
        pool = [r for r in trained if r["status"] in statuses and r.get("val_accuracy")
                is not None and r.get("checkpoint")]
        if pool:
            return max(pool, key=lambda r: r["val_accuracy"])
    return None


def read_candidates(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _distinct(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        seen.setdefault(record.get("hash") or f"unparsed-{len(seen)}", record)
    return list(seen.values())


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _changed_keys(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = ""
                  ) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        if not prefix and key in NEUTRAL_KEYS:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _shared_done(folder: Path, key: str) -> bool:
    path = folder / MARKER
    try:
        return path.is_file() and json.loads(path.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def _mark_shared(folder: Path, key: str) -> None:
    write_json_atomic({"key": key, "finished": time.time()}, folder / MARKER)


def _copy_artifact(source: Path, target: Path) -> None:
    """The artifact files (not training runs, histories or corpora) into the run folder."""
    skip = {"runs", "histories", MARKER}
    if target.resolve() == source.resolve():
        return
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name in skip:
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target / item.name)

