"""HL-Evo histories over a grid of tasks and budgets: the sequence generator's pretraining data.

Pretraining is task-agnostic (DESIGN 1): a setting is a task *shape* (classes, input size,
input channels) and a budget, and networks are scored on seeded Gaussian probe batches of that
shape with random labels, never on a dataset. Each setting is one HL-Evo search (its own run
store under ``runs/<setting>``, so a killed job resumes it without re-scoring anything); when it
finishes, ``<setting>.jsonl`` is written atomically with one line per evaluated network:

    {"task": {"num_classes", "input_size", "in_channels"}, "budget": {"max_params", "max_macs"},
     "genotype": <macro genotype>, "clusters": [cluster id per stage], "fitness": float | null,
     "params": int, "macs": int, "evaluation": int}

A setting whose file holds `evaluations` lines is skipped; with another count, its search
continues (or is cut) from the run store and the file is written again. A `Runner` runs the
settings: in this process (`run_in_process`), or as Ray tasks (`hgnas_ray.distributed.histories`,
one task per setting).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hgnas_ray.corpus.shards import write_json_atomic
from hgnas_ray.errors import ConfigError
from hgnas_ray.nn.budget import Budget
from hgnas_ray.nn.builder import TaskShape

log = logging.getLogger(__name__)
HISTORY_SUFFIX = ".jsonl"
RUNS_DIR = "runs"
GRID_FILE = "grid.json"


@dataclass(frozen=True)
class HistorySetting:
    """One (task shape, budget) of the pretraining grid."""

    task: TaskShape
    budget: Budget

    def __post_init__(self) -> None:
        if not self.budget.is_limited:
            raise ConfigError(f"setting {self.task}: a pretraining budget needs max_params "
                              "and/or max_macs")

    @property
    def name(self) -> str:
        t, b = self.task, self.budget
        return (f"c{t.num_classes}_s{t.input_size}_i{t.in_channels}"
                f"_p{b.max_params or 0}_m{b.max_macs or 0}")

    def to_dict(self) -> dict[str, Any]:
        return {"task": asdict(self.task), "budget": asdict(self.budget)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistorySetting:
        return cls(TaskShape(**data["task"]), Budget(**data["budget"]))


def grid(classes: Iterable[int], sizes: Iterable[int], budgets: Iterable[Budget],
         in_channels: int = 3) -> list[HistorySetting]:
    return [HistorySetting(TaskShape(c, s, in_channels), b)
            for c in classes for s in sizes for b in budgets]


# Budgets limit parameters AND MACs: a network of 2M parameters at 64 px with no downsampling
# costs billions of MACs per image, which no one deploys and which takes a minute to score on a
# CPU. The small grid: 3 tasks x 2 budgets, one of them 10 classes at 32x32 under 1M parameters.
SMALL_BUDGETS = (Budget(max_params=500_000, max_macs=50_000_000),
                 Budget(max_params=2_000_000, max_macs=200_000_000))
SMALL_GRID = [HistorySetting(TaskShape(c, s), b)
              for c, s in ((10, 32), (100, 32), (1000, 64)) for b in SMALL_BUDGETS]
FULL_GRID = grid((10, 100, 1000), (32, 64, 224),
                 [Budget(max_params=p, max_macs=m) for p, m in
                  ((500_000, 50_000_000), (1_000_000, 100_000_000), (2_000_000, 200_000_000),
                   (5_000_000, 600_000_000))])


@dataclass(frozen=True)
class HistoryConfig:
    """How each setting's HL-Evo search runs."""

    fitness: str = "tcet"
    evaluations: int = 200
    population: int = 32
    space_evaluations: int | None = None  # default: 2 x population
    probe_batch: int = 16
    probe_batches: int = 1
    max_width: int = 256
    pool_size: int = 16  # cells drawn per cluster (GeneratorCells)
    batch_size: int = 8  # networks asked at once
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.evaluations < 1 or self.population < 2 or self.probe_batch < 2:
            raise ConfigError(f"histories need evaluations >= 1, population >= 2, probe_batch "
                              f">= 2; got {self.evaluations}, {self.population}, "
                              f"{self.probe_batch}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What the histories depend on. Not `evaluations`: a re-run with another count
        continues (or cuts) each search from its run store instead of starting again."""
        return {k: v for k, v in self.to_dict().items() if k != "evaluations"}


@dataclass
class SettingJob:
    """Everything one setting's search needs, as plain data (it crosses process boundaries)."""

    setting: dict[str, Any]
    config: dict[str, Any]
    cell_artifact: str
    out_dir: str
    index: int = 0  # position in the grid: each setting gets its own seed
    extra: dict[str, Any] = field(default_factory=dict)


def probe_batches(task: TaskShape, batch_size: int, n_batches: int, seed: int
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded Gaussian inputs of the task's shape with uniform random labels."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch_size, task.in_channels, task.input_size, task.input_size,
                         generator=generator),
             torch.randint(0, task.num_classes, (batch_size,), generator=generator))
            for _ in range(n_batches)]


def run_setting(job: SettingJob) -> str:
    """One setting's HL-Evo search and its history file; returns the file's path."""
    from hgnas_ray.evaluation import Evaluator
    from hgnas_ray.generator.cells import CellGenerator
    from hgnas_ray.search import Fitness, RunStore, create_strategy, run_search, serial_evaluate
    from hgnas_ray.search.macro_space import MacroHierarchy
    from hgnas_ray.search.pretrained import GeneratorCells

    setting, config = HistorySetting.from_dict(job.setting), HistoryConfig(**job.config)
    out = Path(job.out_dir) / f"{setting.name}{HISTORY_SUFFIX}"
    if out.is_file() and _line_count(out) == config.evaluations:
        return str(out)
    seed = config.seed * 1_000 + job.index
    fitness = Fitness.parse(config.fitness)
    cells = GeneratorCells(CellGenerator.load(job.cell_artifact, device=config.device),
                           pool_size=config.pool_size, seed=seed)
    space = MacroHierarchy(setting.task, setting.budget, cells, max_width=config.max_width)
    strategy = create_strategy("hl-evo", space, fitness, seed=seed,
                               population_size=config.population,
                               space_evaluations=config.space_evaluations)
    evaluator = Evaluator(fitness.proxies, probe_batches(setting.task, config.probe_batch,
                                                         config.probe_batches, seed),
                          setting.task, seed=seed, device=config.device)
    store = RunStore(Path(job.out_dir) / RUNS_DIR / setting.name,
                     {**setting.to_dict(), "config": config.identity(),
                      "cell_artifact": job.cell_artifact})
    records = run_search(strategy, serial_evaluate(evaluator), store, config.evaluations,
                         config.batch_size, on_progress=lambda p: log.info(
                             "%s: %d/%d evaluated, best %s %.4g", setting.name, p.evaluations,
                             p.budget, fitness.name, p.best_fitness))
    _write_history(out, setting, strategy, space, records)
    return str(out)


def _write_history(out: Path, setting: HistorySetting, strategy, space, records) -> None:
    scores = strategy.fitness.scores(records)
    lines = []
    for index, (record, score) in enumerate(zip(records, scores, strict=True)):
        genotype = space.from_text(record["genotype"])
        layout = strategy.layouts.get(record["hash"])
        clusters = ([int(s[0]) for s in layout["stages"]] if layout is not None
                    else space.clusters_of(genotype))
        cost = space.cost(genotype)
        lines.append(json.dumps({**setting.to_dict(), "genotype": genotype.to_dict(),
                                 "clusters": clusters,
                                 "fitness": float(score) if math.isfinite(score) else None,
                                 "params": cost.params, "macs": cost.macs,
                                 "evaluation": index}))
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def _line_count(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


Runner = Callable[[Sequence[SettingJob]], list[str]]


def run_in_process(jobs: Sequence[SettingJob]) -> list[str]:
    return [run_setting(job) for job in jobs]


def write_histories(out_dir: str | Path, settings: Sequence[HistorySetting],
                    cell_artifact: str | Path, config: HistoryConfig = HistoryConfig(),
                    runner: Runner = run_in_process) -> Path:
    """HL-Evo histories for every setting under `out_dir` (see the module docstring).

    `grid.json` records the settings, the config and the cell artifact; a folder written with
    different ones is refused rather than mixed.
    """
    from hgnas_ray.generator.cells.artifact import ARTIFACT_FILE

    out_dir = Path(out_dir)
    cell_artifact = Path(cell_artifact)
    if not (cell_artifact / ARTIFACT_FILE).is_file():
        raise ConfigError(f"{cell_artifact} is not a cell-generator artifact (no "
                          f"{ARTIFACT_FILE}); write one with `hgnas pretrain cells`")
    if not settings:
        raise ConfigError("no settings to write histories for")
    meta = {"settings": [s.to_dict() for s in settings], "config": config.identity(),
            "cell_artifact": str(cell_artifact.resolve())}
    _check_grid(out_dir, meta)
    jobs = [SettingJob(s.to_dict(), config.to_dict(), str(cell_artifact.resolve()),
                       str(out_dir), index) for index, s in enumerate(settings)]
    runner(jobs)
    return out_dir


def _check_grid(out_dir: Path, meta: dict[str, Any]) -> None:
    path = out_dir / GRID_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(meta)):
            changed = sorted(k for k in meta if saved.get(k) != json.loads(json.dumps(meta[k])))
            raise ConfigError(f"{out_dir} holds histories of another grid (differs in "
                              f"{', '.join(changed)}); use another folder or delete it")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta, path)


def read_histories(folder: str | Path) -> list[dict[str, Any]]:
    """Every line of every history file in `folder`."""
    rows = []
    for path in sorted(Path(folder).glob(f"*{HISTORY_SUFFIX}")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def smoke_config(config: HistoryConfig = HistoryConfig()) -> HistoryConfig:
    """The `--smoke-test` cut: a few evaluations per setting, small probes."""
    return replace(config, evaluations=24, population=6, space_evaluations=12, probe_batch=8,
                   max_width=128, pool_size=4, batch_size=6)
