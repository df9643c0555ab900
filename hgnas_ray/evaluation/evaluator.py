"""The evaluator: genotype -> network -> exact cost and zero-cost proxies -> one flat record.

`Evaluator` holds what every call shares (probe batches, proxy names, network size, seed), so a
worker loads its probe batches once and evaluates many genotypes: the search job's Ray tasks, the
corpus scorer's Ray Data actors, `hgnas score` and the benchmarks all call it. Any failure of one
genotype (malformed, unbuildable, out of memory) becomes an error record; nothing is raised per
genotype.

The flat record (JSON-ready apart from NaN):

    genotype            the text `parse_genotype` reads (cell/macro JSON, NAS-Bench-201 arch)
    hash                canonical hash (None when the genotype did not parse)
    params, macs, flops exact cost of the network built (`hgnas_ray.nn.cost`); None if unbuilt
    <proxy>             value, NaN unless `<proxy>_status` is "ok"
    <proxy>_status      "ok" | "nonfinite" | "error"
    status, error       "ok" | "partial" (some proxy errored) | "error" (nothing scored); why
    seconds             wall time of this genotype
    forward_ms, accuracy_untrained
                        with `forward_check=True`: one forward pass on the first probe batch

The `params` and `macs` proxies measure the same counts as the cost: their column holds the
exact count and they add only their `_status`.

Cells of the general space are scored inside the fixed skeleton of DESIGN 3. Its size is a
`SkeletonSize`; `default_setup(device)` gives the paper's (16 channels, 5 cells per stage,
batch 64) on a GPU and the CPU-sized (8 channels, 1 cell per stage, batch 32) elsewhere. Macro
and NAS-Bench-201 genotypes are built as their own networks.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hgnas_ray.errors import HgnasError, unknown_name
from hgnas_ray.nn.builder import SkeletonSize, TaskShape, build_network, genotype_cost
from hgnas_ray.proxies import available_proxies, score
from hgnas_ray.space import (
    Genotype,
    format_genotype,
    genotype_from_dict,
    genotype_hash,
    parse_genotype,
)

Batch = tuple[torch.Tensor, torch.Tensor]
PAPER_SKELETON = SkeletonSize(channels=16, cells_per_stage=5)
CPU_SKELETON = SkeletonSize(channels=8, cells_per_stage=1)
PAPER_BATCH, CPU_BATCH = 64, 32
COST_KEYS = ("params", "macs", "flops")
FORWARD_KEYS = ("forward_ms", "accuracy_untrained")


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


class Evaluator:
    """Callable: genotype (object, dict or text line) -> flat record (see the module docstring).

    Only plain data crosses in and out, so the same object serves in-process and in Ray workers.
    """

    def __init__(self, proxies: Sequence[str], batches: Sequence[Batch], task: TaskShape,
                 skeleton: SkeletonSize = CPU_SKELETON, seed: int = 0,
                 device: str | torch.device | None = None, forward_check: bool = False) -> None:
        self.proxies = check_proxy_names(proxies)
        self.device = torch.device(device) if device is not None else batches[0][0].device
        self.batches = [(x.to(self.device), y.to(self.device)) for x, y in batches]
        self.task, self.skeleton, self.seed = task, skeleton, seed
        self.forward_check = forward_check

    def __call__(self, genotype: Genotype | Mapping[str, Any] | str) -> dict[str, Any]:
        record: dict[str, Any] = {"genotype": _text(genotype), "hash": None,
                                  **dict.fromkeys(COST_KEYS)}
        start = time.perf_counter()
        try:
            parsed = _parse(genotype)
            record.update(genotype=format_genotype(parsed), hash=genotype_hash(parsed))
            record.update(genotype_cost(parsed, self.task, self.skeleton).to_dict())
            torch.manual_seed(self.seed)
            network = build_network(parsed, self.task, self.skeleton).to(self.device)
            if self.forward_check:
                record.update(_forward_check(network, self.batches[0], self.task.num_classes))
            results = score(network, self.batches, self.proxies, seed=self.seed)
        except (HgnasError, RuntimeError, ValueError, MemoryError) as err:
            self._fail(record, f"{type(err).__name__}: {err}")
        else:
            for name, result in results.items():
                if name not in COST_KEYS:  # params/macs: the exact count is already there
                    record[name] = result.value
                record[f"{name}_status"] = result.status
            errors = [f"{n}: {r.message}" for n, r in results.items() if r.status == "error"]
            record["status"] = "ok" if not errors else "partial"
            record["error"] = "; ".join(errors)
        record["seconds"] = time.perf_counter() - start
        return record

    def _fail(self, record: dict[str, Any], message: str) -> None:
        if self.forward_check:
            for key in FORWARD_KEYS:
                record.setdefault(key, math.nan)
        for name in self.proxies:
            if record.get(name) is None:  # a cost counted before the failure is kept
                record[name] = math.nan
            record[f"{name}_status"] = "error"
        record.update(status="error", error=message)


def _text(genotype: Genotype | Mapping[str, Any] | str) -> str | None:
    """The genotype as text before it is parsed (what an error record shows)."""
    if isinstance(genotype, str):
        return genotype
    if isinstance(genotype, Mapping):
        return json.dumps(dict(genotype), sort_keys=True, default=str)
    return None


def _parse(genotype: Genotype | Mapping[str, Any] | str) -> Genotype:
    if isinstance(genotype, str):
        return parse_genotype(genotype)
    if isinstance(genotype, Mapping):
        return genotype_from_dict(dict(genotype))
    return genotype


def _forward_check(network: torch.nn.Module, batch: Batch, num_classes: int) -> dict[str, float]:
    """One eval-mode forward pass: its time and the untrained network's accuracy."""
    x, y = batch
    network.eval()
    start = time.perf_counter()
    with torch.no_grad():
        logits = network(x)
    elapsed = time.perf_counter() - start
    if logits.shape != (x.shape[0], num_classes):
        raise RuntimeError(f"network output has shape {tuple(logits.shape)}")
    accuracy = float((logits.argmax(1) == y).float().mean())
    return {"forward_ms": 1000 * elapsed, "accuracy_untrained": accuracy}
