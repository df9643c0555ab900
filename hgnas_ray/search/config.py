"""The search job's configuration (frozen dataclasses, YAML, validated on load).

One section per stage of `hgnas_ray.search.pipeline` (DESIGN 1, step 3):

    corpus    cells sampled and scored on Ray Data (skipped when `cells.artifact` is given)
    cells     the cell generator: an artifact, or pretrained from the corpus on Ray Train
    macro     the sequence generator: an artifact, or HL-Evo histories + Ray Train pretraining
    generate  conditional generation for the task and budget, as Ray Tune trials (one per
              temperature x minimum budget share), every candidate scored on the task's images
    refine    optional HL-Evo seeded with the generated candidates (0 evaluations: off)
    train     the top-k candidates trained as Ray Tune trials with ASHA
    export    the best trained candidate: genotype, weights, TorchScript/ONNX, metrics

`RayConfig` lives in `hgnas_ray.config` (every Ray entry point uses it). Budgets name their unit:
`budget.max_params` counts parameters, `budget.max_macs` multiply-accumulates per sample
(FLOPs = 2 x MACs, the unit the HGENNAS paper's "FLOPs" budgets use).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hgnas_ray.config import MAX_SEED, RayConfig, plain_folder_name
from hgnas_ray.errors import ConfigError
from hgnas_ray.generator.cells.pretrain import PretrainConfig
from hgnas_ray.generator.macro.pretrain import MacroPretrainConfig
from hgnas_ray.search.histories import HistoryConfig
from hgnas_ray.training.candidates import CandidateTrainConfig

STORAGE_ENV = "HGNAS_STORAGE"
NETWORKS = ("reduced", "full")
GRIDS = ("small", "full", "task")
EXPORT_FORMATS = ("torchscript", "onnx")


@dataclass(frozen=True)
class DataConfig:
    task: str = "cifar10"  # a registered task name or a path (ImageFolder dir, .npz)
    root: str | None = None  # data root; None: HGNAS_DATA, then the download cache
    download: bool = True  # allow torchvision to download CIFAR when online
    probe_size: int = 64  # images per probe batch of the candidates' proxies
    probe_batches: int = 2  # zico needs >= 2
    class_balanced: bool = True

    def validate(self) -> None:
        if self.probe_size < 2 or self.probe_batches < 1:
            raise ConfigError(f"data.probe_size must be >= 2 and data.probe_batches >= 1; got "
                              f"{self.probe_size} and {self.probe_batches}")


@dataclass(frozen=True)
class BudgetConfig:
    max_params: int | None = None  # trainable parameters (count)
    max_macs: int | None = None  # conv+linear multiply-accumulates per sample (FLOPs = 2 x MACs)

    def validate(self) -> None:
        if self.max_params is None and self.max_macs is None:
            raise ConfigError("the search needs a budget: set budget.max_params (parameters) "
                              "and/or budget.max_macs (MACs per sample; FLOPs = 2 x MACs)")
        for name in ("max_params", "max_macs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"budget.{name} must be >= 1 or null; got {value}")


@dataclass(frozen=True)
class CorpusConfig:
    """The cell corpus the cell generator is pretrained on (task-agnostic: reused by every run
    whose corpus settings match, under `<shared>/corpus-<key>`)."""

    size: int = 3000  # distinct cells
    seed: int = 0
    shard_size: int = 250
    proxies: tuple[str, ...] = ("snip_snr", "nwot", "params")  # the cell ZC vector (DESIGN 3)
    network: str = "reduced"  # the skeleton the cells are scored in: reduced | full
    task: str | None = None  # the images the cells are scored on; None: data.task
    concurrency: int = 2  # Ray Data scoring actors
    num_cpus: float = 1.0
    num_gpus: float = 0.0  # per actor; fractions share a GPU (e.g. 0.25)
    rows_per_batch: int = 16

    def validate(self) -> None:
        if self.size < 8 or self.shard_size < 1:
            raise ConfigError(f"corpus.size must be >= 8 cells and corpus.shard_size >= 1; got "
                              f"{self.size} and {self.shard_size}")
        if self.network not in NETWORKS:
            raise ConfigError(f"corpus.network must be one of {list(NETWORKS)}; got "
                              f"{self.network!r}")
        if self.concurrency < 1 or not self.num_cpus > 0 or self.num_gpus < 0:
            raise ConfigError(f"corpus needs concurrency >= 1, num_cpus > 0, num_gpus >= 0; got "
                              f"{self.concurrency}, {self.num_cpus}, {self.num_gpus}")


@dataclass(frozen=True)
class TrainWorkers:
    """How a pretraining run is laid out: Ray Train with `workers` DDP workers, or in the
    driver's process with `workers: 0` (small models: no Ray Train start-up)."""

    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0

    def validate(self) -> None:
        if self.workers < 0 or not self.cpus_per_worker > 0:
            raise ConfigError(f"ray_train needs workers >= 0 (0: in the driver's process) and "
                              f"cpus_per_worker > 0; got {self.workers} and "
                              f"{self.cpus_per_worker}")


@dataclass(frozen=True)
class CellsConfig:
    artifact: str | None = None  # an existing cell-generator artifact: no corpus, no pretraining
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # as `hgnas pretrain cells`
    ray_train: TrainWorkers = field(default_factory=TrainWorkers)


@dataclass(frozen=True)
class MacroConfig:
    artifact: str | None = None  # an existing sequence-generator artifact (of `cells`' artifact)
    grid: str = "small"  # small | full | task (the run's task shape at its budget and half of
    #                      it: quick, but not task-agnostic)
    histories: HistoryConfig = field(default_factory=HistoryConfig)
    pretrain: MacroPretrainConfig = field(default_factory=MacroPretrainConfig)
    ray_train: TrainWorkers = field(default_factory=TrainWorkers)

    def validate(self) -> None:
        if self.grid not in GRIDS:
            raise ConfigError(f"macro.grid must be one of {list(GRIDS)}; got {self.grid!r}")


@dataclass(frozen=True)
class GenerateConfig:
    temperatures: tuple[float, ...] = (0.8, 1.0)
    budget_shares: tuple[float, ...] = (0.5, 0.8)  # keep networks using >= this budget share
    per_setting: int = 16  # candidates per (temperature, budget share) trial
    fitness: str = "tcet"  # a proxy or a rank aggregate ("synflow+nwot")
    proxies: tuple[str, ...] = ("params", "macs", "tcet")  # scored on every candidate
    seed: int = 0
    max_concurrent: int = 2  # trials at once
    num_cpus: float = 1.0  # per trial
    num_gpus: float = 0.0

    def validate(self) -> None:
        if not self.temperatures or not self.budget_shares or self.per_setting < 1:
            raise ConfigError("generate needs temperatures, budget_shares and per_setting >= 1")
        if any(not t > 0 for t in self.temperatures):
            raise ConfigError(f"generate.temperatures must be > 0; got {list(self.temperatures)}")
        if any(not 0 <= s < 1 for s in self.budget_shares):
            raise ConfigError(f"generate.budget_shares must lie in [0, 1); got "
                              f"{list(self.budget_shares)}")
        missing = [p for p in self.fitness.split("+") if p.strip() not in self.proxies]
        if missing:
            raise ConfigError(f"generate.fitness {self.fitness!r} needs {missing} in "
                              f"generate.proxies {list(self.proxies)}; add them")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"generate.seed must be in [0, 2**63 - 1]; got {self.seed}")
        if self.max_concurrent < 1 or not self.num_cpus > 0 or self.num_gpus < 0:
            raise ConfigError("generate needs max_concurrent >= 1, num_cpus > 0, num_gpus >= 0")


@dataclass(frozen=True)
class RefineConfig:
    evaluations: int = 0  # HL-Evo evaluations after generation; 0: no refinement
    population: int = 16
    batch_size: int = 4  # networks asked at once
    workers: int = 2  # Ray scoring actors
    seed: int = 0

    def validate(self) -> None:
        if self.evaluations < 0 or self.population < 2 or self.batch_size < 1 \
                or self.workers < 1:
            raise ConfigError(f"refine needs evaluations >= 0, population >= 2, batch_size >= 1, "
                              f"workers >= 1; got {self.evaluations}, {self.population}, "
                              f"{self.batch_size}, {self.workers}")


@dataclass(frozen=True)
class TrainStageConfig:
    top_k: int = 4  # candidates trained, best fitness first
    recipe: CandidateTrainConfig = field(default_factory=CandidateTrainConfig)
    max_concurrent: int = 2
    num_cpus: float = 1.0  # per trial
    num_gpus: float = 0.0
    grace_period: int = 1  # ASHA: epochs before the first stop
    reduction_factor: float = 2.0

    def validate(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"train.top_k must be >= 1; got {self.top_k}")
        self.recipe.validate()


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple[str, ...] = EXPORT_FORMATS
    test_limit: int | None = None  # test images for the exported accuracy; None: all

    def validate(self) -> None:
        unknown = [f for f in self.formats if f not in EXPORT_FORMATS]
        if unknown:
            raise ConfigError(f"export.formats: unknown {unknown}; valid: {list(EXPORT_FORMATS)}")


@dataclass(frozen=True)
class SearchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(max_params=1_000_000))
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    cells: CellsConfig = field(default_factory=CellsConfig)
    macro: MacroConfig = field(default_factory=MacroConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    train: TrainStageConfig = field(default_factory=TrainStageConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    storage_path: str | None = None  # None: HGNAS_STORAGE, else ~/hgnas_results
    shared_path: str | None = None  # corpora and generators reused by runs; None: <storage>/shared
    run_name: str = "search"
    seed: int = 0  # the probe batches and the candidates' proxies

    def validate(self) -> None:
        check_run_name(self.run_name)
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be in [0, 2**63 - 1]; got {self.seed}")

    def storage(self) -> Path:
        base = self.storage_path or os.environ.get(STORAGE_ENV) or "~/hgnas_results"
        return Path(base).expanduser().resolve()

    def run_dir(self) -> Path:
        """`<storage>/<run_name>`; `run_name` is one plain folder name, so the run stays inside."""
        return self.storage() / check_run_name(self.run_name)

    def shared_dir(self) -> Path:
        return Path(self.shared_path).expanduser().resolve() if self.shared_path \
            else self.storage() / "shared"


def check_run_name(name: str) -> str:
    """`name` if it is one plain folder name; a path (`a/b`, `..`, `/x`) would put the run's
    files outside the storage folder."""
    return plain_folder_name(name, "run_name", "the storage folder")
