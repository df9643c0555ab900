"""Score genotypes with zero-cost proxies: build the network, run the proxies, return a record.

`GenotypeScorer` holds what every call shares (probe batches, proxy names, network size, seed), so
a worker loads its probe batches once and scores many genotypes. Any failure of one genotype
(malformed, unbuildable, out of memory) becomes an error record; nothing is raised per genotype.

Cells of the general space are scored inside the fixed skeleton of DESIGN 3. Its size is a
`SkeletonSize`; `default_skeleton(device)` gives the paper's (16 channels, 5 cells per stage,
batch 64) on a GPU and the CPU-sized (8 channels, 1 cell per stage, batch 32) elsewhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hgnas_ray.errors import HgnasError, unknown_name
from hgnas_ray.nn.builder import SkeletonSize, TaskShape, build_network
from hgnas_ray.proxies import available_proxies, score
from hgnas_ray.space import Genotype, format_genotype, genotype_hash, parse_genotype

Batch = tuple[torch.Tensor, torch.Tensor]
PAPER_SKELETON = SkeletonSize(channels=16, cells_per_stage=5)
CPU_SKELETON = SkeletonSize(channels=8, cells_per_stage=1)
PAPER_BATCH, CPU_BATCH = 64, 32


@dataclass(frozen=True)
class ScoringSetup:
    """Network size and probe batch size for cell scoring on one kind of device."""

    skeleton: SkeletonSize
    batch_size: int


def default_setup(device: str | torch.device | None = None) -> ScoringSetup:
    """Paper size on CUDA, CPU size otherwise (about 15x cheaper; see BENCHMARKS.md)."""
    kind = torch.device(device).type if device is not None else (
        "cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        return ScoringSetup(PAPER_SKELETON, PAPER_BATCH)
    return ScoringSetup(CPU_SKELETON, CPU_BATCH)


def check_proxy_names(names: Sequence[str]) -> tuple[str, ...]:
    valid = available_proxies()
    for name in names:
        if name not in valid:
            raise unknown_name("proxy", name, valid)
    if not names:
        raise HgnasError(f"no proxy requested; valid names: {', '.join(valid)}")
    return tuple(names)


class GenotypeScorer:
    """Callable: genotype (object, dict or text line) -> flat record of proxy values/statuses."""

    def __init__(self, proxies: Sequence[str], batches: Sequence[Batch], task: TaskShape,
                 skeleton: SkeletonSize = CPU_SKELETON, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        self.proxies = check_proxy_names(proxies)
        self.device = torch.device(device) if device is not None else batches[0][0].device
        self.batches = [(x.to(self.device), y.to(self.device)) for x, y in batches]
        self.task, self.skeleton, self.seed = task, skeleton, seed

    def __call__(self, genotype: Genotype | str) -> dict[str, Any]:
        record: dict[str, Any] = {"genotype": genotype if isinstance(genotype, str) else None}
        start = time.perf_counter()
        try:
            parsed = parse_genotype(genotype) if isinstance(genotype, str) else genotype
            record.update(genotype=format_genotype(parsed), hash=genotype_hash(parsed))
            torch.manual_seed(self.seed)
            network = build_network(parsed, self.task, self.skeleton).to(self.device)
            results = score(network, self.batches, self.proxies, seed=self.seed)
        except (HgnasError, RuntimeError, ValueError, MemoryError) as err:
            record.update(self._failed(f"{type(err).__name__}: {err}"))
        else:
            for name, result in results.items():
                record[name] = result.value
                record[f"{name}_status"] = result.status
            errors = [f"{n}: {r.message}" for n, r in results.items() if r.status == "error"]
            record["status"] = "ok" if not errors else "partial"
            record["error"] = "; ".join(errors)
        record["seconds"] = time.perf_counter() - start
        return record

    def _failed(self, message: str) -> dict[str, Any]:
        fields: dict[str, Any] = {"status": "error", "error": message}
        for name in self.proxies:
            fields[name] = math.nan
            fields[f"{name}_status"] = "error"
        return fields


def load_probe(task: str, root: str | None = None, batch_size: int = CPU_BATCH,
               n_batches: int = 2, seed: int = 0, class_balanced: bool = False,
               download: bool = False) -> tuple[list[Batch], TaskShape]:
    """Probe batches of real task images (train split) and the task's shape.

    Two batches by default: zico needs >= 2; single-batch proxies use the first.
    """
    from hgnas_ray.data import load_task, probe_batches

    dataset = load_task(task, "train", root=root, download=download)
    batches = probe_batches(dataset, n_batches, batch_size, seed=seed,
                            class_balanced=class_balanced)
    c, h, _ = dataset.info.input_shape
    return batches, TaskShape(dataset.info.num_classes, h, c)
