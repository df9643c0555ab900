"""The evaluator: genotype -> network -> exact cost and zero-cost proxies -> one flat record.

`Evaluator` holds what every call shares (probe batches, proxy names, network size, seed), so a
worker loads its probe batches once and evaluates many genotypes: the search job's Ray tasks, the
corpus scorer's Ray Data actors, `hgnas score` and the benchmarks all call it. Any failure of one
genotype (malformed, unbuildable, out of memory) becomes an error record; nothing is raised per
genotype.

The flat record (JSON-ready apart from NaN):

    genotype            the text `parse_genotype` reads (cell/macro JSON, NAS-Bench-201 arch)
    hash                canonical hash (None when the genotype did not parse)
    params, macs, flops exact cost (`hgnas_ray.nn.cost`; flops = 2 x macs) of the network the
                        genotype names: a NAS-Bench-201 genotype -> the benchmark's network
                        (16 channels, 5 cells per stage) whatever network the proxies ran on;
                        a cell of the general space -> the scoring skeleton it was scored in
                        (a bare cell has no network of its own); a macro genotype -> itself.
                        None when the genotype did not parse
    network_channels, network_cells_per_stage
                        the network the proxies were computed on: skeleton width and cells per
                        stage for cell and NAS-Bench-201 genotypes; None for macro genotypes
                        (their own network) and for genotypes that did not parse
    probe_batch_size, device
                        images per probe batch, and the torch device ("cpu", "cuda:0", ...)
    <proxy>             value, NaN unless `<proxy>_status` is "ok"
    <proxy>_status      "ok" | "nonfinite" | "error"
    status, error       "ok" | "partial" (some proxy errored) | "error" (nothing scored); why
    seconds             wall time of this genotype
    forward_ms, accuracy_untrained
                        with `forward_check=True`: one forward pass on the first probe batch

The `params` and `macs` proxies measure the same counts as the cost: their column holds the
exact count and they add only their `_status`.

Cells of the general space are scored inside the fixed skeleton of DESIGN 3, NAS-Bench-201
cells inside the benchmark's network; both have the size of a `SkeletonSize`. Two named sizes
(`NETWORK_SIZES`, `scoring_setup`): "full", the paper's skeleton and the benchmark's network
(16 channels, 5 cells per stage, probe batch 64), and "reduced" (8 channels, 1 cell per stage,
batch 32), about 13x cheaper on a CPU but a different network, on which some proxies rank cells
differently. Macro genotypes are built as their own networks.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hgnas_ray.config import MAX_SEED
from hgnas_ray.errors import ConfigError, HgnasError, unknown_name
from hgnas_ray.nn.builder import SkeletonSize, TaskShape, build_network, genotype_cost
from hgnas_ray.proxies import available_proxies, score
from hgnas_ray.space import (
    CellGenotype,
    Genotype,
    Nb201Genotype,
    format_genotype,
    genotype_from_dict,
    genotype_hash,
    parse_genotype,
)

Batch = tuple[torch.Tensor, torch.Tensor]
PAPER_SKELETON = SkeletonSize(channels=16, cells_per_stage=5)
CPU_SKELETON = SkeletonSize(channels=8, cells_per_stage=1)
PAPER_BATCH, CPU_BATCH = 64, 32
NB201_BENCHMARK = SkeletonSize(channels=16, cells_per_stage=5)  # the network its table rates
COST_KEYS = ("params", "macs", "flops")
NETWORK_KEYS = ("network_channels", "network_cells_per_stage", "probe_batch_size", "device")
FORWARD_KEYS = ("forward_ms", "accuracy_untrained")
# Bounds of a scoring network: the last stage (4 x channels wide) stays within the 1024 channels
# of DESIGN 2.2, the three stages within its 20-cell cap; probe batches need >= 2 images
# (gradient proxies split them) and beyond 1024 only cost memory.
MAX_CHANNELS, MAX_CELLS_PER_STAGE, MIN_BATCH, MAX_BATCH = 256, 6, 2, 1024
CLI_OPTIONS = ("--skeleton-channels", "--skeleton-cells", "--batch-size")


@dataclass(frozen=True)
class ScoringSetup:
    """Network size and probe batch size for cell scoring."""

    skeleton: SkeletonSize
    batch_size: int


NETWORK_SIZES = {"full": ScoringSetup(PAPER_SKELETON, PAPER_BATCH),
                 "reduced": ScoringSetup(CPU_SKELETON, CPU_BATCH)}


def scoring_setup(network: str = "full", channels: int | None = None,
                  cells_per_stage: int | None = None, batch_size: int | None = None
                  ) -> ScoringSetup:
    """The named network size (`NETWORK_SIZES`) with any value overridden; every value checked.

    Messages name the command-line options (`--network`, `--skeleton-channels`, ...)."""
    if network not in NETWORK_SIZES:
        raise unknown_name("network size (--network)", network, tuple(NETWORK_SIZES))
    base = NETWORK_SIZES[network]
    return check_setup(ScoringSetup(
        SkeletonSize(base.skeleton.channels if channels is None else channels,
                     base.skeleton.cells_per_stage if cells_per_stage is None
                     else cells_per_stage),
        base.batch_size if batch_size is None else batch_size))


def check_setup(setup: ScoringSetup, names: Sequence[str] = CLI_OPTIONS) -> ScoringSetup:
    """`setup` if its values are in range, else a `ConfigError` naming the value as `names`
    (channels, cells per stage, batch size) call it."""
    _check_range(names[0], setup.skeleton.channels, 1, MAX_CHANNELS,
                 "the last stage is 4x as wide, at most 1024 channels")
    _check_range(names[1], setup.skeleton.cells_per_stage, 1, MAX_CELLS_PER_STAGE,
                 "3 stages of them stay under 20 cells")
    _check_range(names[2], setup.batch_size, MIN_BATCH, MAX_BATCH,
                 "gradient proxies split a batch in two")
    return setup


def check_seed(seed: int, name: str = "--seed") -> int:
    _check_range(name, seed, 0, MAX_SEED, "numpy and torch seeds are non-negative")
    return seed


def _check_range(option: str, value: int, low: int, high: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{option} must be an integer in [{low}, {high}] ({why}); got "
                          f"{value!r}")


def default_setup(device: str | torch.device | None = None) -> ScoringSetup:
    """The "full" size on CUDA, "reduced" otherwise (for callers that want the cheap CPU size;
    the command line asks for it by name with --network)."""
    kind = torch.device(device).type if device is not None else (
        "cuda" if torch.cuda.is_available() else "cpu")
    return NETWORK_SIZES["full" if kind == "cuda" else "reduced"]


def check_device(name: str | None, require_local: bool = True) -> str:
    """A torch device name, checked: "cpu", "cuda" or "cuda:N" (None: cuda if this machine has
    a GPU, else cpu). `require_local`: the device must exist here (False for a Ray driver whose
    workers may have GPUs it lacks)."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N; got {name!r}")
    if device.type == "cuda" and require_local:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {name}: CUDA is not available on this machine; use "
                              "--device cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}")
    return str(device)


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
                                  **dict.fromkeys(COST_KEYS), **self._network(None)}
        start = time.perf_counter()
        try:
            parsed = _parse(genotype)
            record.update(genotype=format_genotype(parsed), hash=genotype_hash(parsed),
                          **self._network(parsed))
            record.update(genotype_cost(parsed, self.task, self._cost_size(parsed)).to_dict())
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

    def _network(self, genotype: Genotype | None) -> dict[str, Any]:
        """The `NETWORK_KEYS` of a record: what the proxies of `genotype` were computed on."""
        in_skeleton = isinstance(genotype, CellGenotype | Nb201Genotype)
        return {"network_channels": self.skeleton.channels if in_skeleton else None,
                "network_cells_per_stage": self.skeleton.cells_per_stage if in_skeleton else None,
                "probe_batch_size": int(self.batches[0][0].shape[0]),
                "device": str(self.device)}

    def _cost_size(self, genotype: Genotype) -> SkeletonSize:
        """Network size of the reported cost: a NAS-Bench-201 genotype names the benchmark's
        network, whatever size it is scored in."""
        return NB201_BENCHMARK if isinstance(genotype, Nb201Genotype) else self.skeleton

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
