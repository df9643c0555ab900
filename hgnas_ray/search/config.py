"""The search job's configuration (frozen dataclasses, YAML, validated on load).

`RayConfig` lives in `hgnas_ray.config` (every Ray entry point uses it); it is imported here
as the type of `SearchConfig.ray`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hgnas_ray.config import MAX_SEED, RayConfig, plain_folder_name
from hgnas_ray.errors import ConfigError

STORAGE_ENV = "HGNAS_STORAGE"


@dataclass(frozen=True)
class DataConfig:
    task: str = "cifar10"  # a registered task name or a path (ImageFolder dir, .npz)
    root: str | None = None  # data root; None: HGNAS_DATA, then the download cache
    download: bool = True  # allow torchvision to download CIFAR when online
    probe_size: int = 64
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


@dataclass(frozen=True)
class SampleConfig:
    num_candidates: int = 16
    seed: int = 0
    proxies: tuple[str, ...] = ("params", "macs", "naswot", "snip", "zico")
    rank_by: str = "zico"

    def validate(self) -> None:
        if self.num_candidates < 1:
            raise ConfigError(f"sample.num_candidates must be >= 1; got {self.num_candidates}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"sample.seed must be in [0, 2**63 - 1]; got {self.seed}")
        if self.rank_by not in self.proxies:
            raise ConfigError(f"sample.rank_by {self.rank_by!r} is not among sample.proxies "
                              f"{list(self.proxies)}")


@dataclass(frozen=True)
class SearchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    storage_path: str | None = None  # None: HGNAS_STORAGE, else ~/hgnas_results
    run_name: str = "search"

    def validate(self) -> None:
        check_run_name(self.run_name)

    def run_dir(self) -> Path:
        """`<storage>/<run_name>`; `run_name` is one plain folder name, so the run stays inside."""
        base = self.storage_path or os.environ.get(STORAGE_ENV) or "~/hgnas_results"
        return Path(base).expanduser() / check_run_name(self.run_name)


def check_run_name(name: str) -> str:
    """`name` if it is one plain folder name; a path (`a/b`, `..`, `/x`) would put the run's
    files outside the storage folder."""
    return plain_folder_name(name, "run_name", "the storage folder")
