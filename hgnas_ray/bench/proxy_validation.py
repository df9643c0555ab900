"""Validate the zero-cost proxies on NAS-Bench-201 against NAS-Bench-Suite-Zero and accuracy.

For each reference cell: build the exact NAS-Bench-201 network, score it on real CIFAR-10 probe
batches, and write one JSON line (resumable: cells already in the output are skipped). The
report gives (a) Spearman between our value and the reference value of the same proxy on the
same cells, and (b) Spearman and Kendall of every proxy against the 200-epoch CIFAR-10 test
accuracy, with the reference proxies' own correlations on the same cells side by side.
The accuracy table is used only to score proxies, never as an input to them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from hgnas_ray.errors import DataError

# our proxy -> the NAS-Bench-Suite-Zero column that implements the same definition
REFERENCE_NAMES = {"params": "params", "macs": "flops", "synflow": "synflow", "naswot": "nwot",
                   "jacov": "jacov", "snip": "snip", "grad_norm": "grad_norm", "zen": "zen"}
DEFAULT_PROXIES = ("params", "macs", "synflow", "naswot", "nwot", "jacov", "snip", "grad_norm",
                   "zen", "zico", "snip_snr", "tcet")


@dataclass(frozen=True)
class ValidationSetup:
    data_root: str | None
    task: str = "cifar10"
    batch_size: int = 64
    seed: int = 0
    channels: int = 16
    cells_per_stage: int = 5
    proxies: tuple[str, ...] = DEFAULT_PROXIES


def read_reference(path: str | Path) -> list[dict[str, Any]]:
    """Rows of zc_reference_cifar10_1000.csv: arch_str plus one float per reference proxy."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"reference proxy table {path} not found; pass --cells "
                        "<shared data>/nb201/zc_reference_cifar10_1000.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "arch_str" not in rows[0]:
        raise DataError(f"{path} has no arch_str column; expected NAS-Bench-Suite-Zero values")
    return [{k: (v if k == "arch_str" else float(v)) for k, v in row.items()} for row in rows]


_WORKER: dict[str, Any] = {}


def _init_worker(setup: ValidationSetup, threads: int) -> None:
    import torch

    from hgnas_ray.evaluation import Evaluator, load_probe
    from hgnas_ray.nn.builder import SkeletonSize

    torch.set_num_threads(threads)
    batches, task = load_probe(setup.task, setup.data_root, setup.batch_size, 2, setup.seed)
    skeleton = SkeletonSize(setup.channels, setup.cells_per_stage)
    _WORKER["scorer"] = Evaluator(setup.proxies, batches, task, skeleton, setup.seed, "cpu")


def _score_one(arch: str) -> dict[str, Any]:
    return _WORKER["scorer"](arch)


def run_validation(setup: ValidationSetup, archs: Sequence[str], out: Path, workers: int = 1,
                   progress: Callable[[int, int, dict], None] | None = None) -> None:
    """Score every arch not yet in `out` (JSON lines), appending as results arrive."""
    done = {r["genotype"] for r in read_results(out)}
    todo = [a for a in archs if a not in done]
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as sink:
        if workers <= 1:
            _init_worker(setup, threads)
            results: Iterable[dict] = map(_score_one, todo)
            _drain(results, sink, len(todo), progress)
            return
        with ProcessPoolExecutor(workers, initializer=_init_worker,
                                 initargs=(setup, threads)) as pool:
            _drain(pool.map(_score_one, todo, chunksize=4), sink, len(todo), progress)


def _drain(results: Iterable[dict], sink, total: int, progress) -> None:
    for count, record in enumerate(results, start=1):
        sink.write(json.dumps(record) + "\n")  # NaN is written as NaN: read back by json
        sink.flush()
        if progress is not None:
            progress(count, total, record)


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill: that cell is scored again
    return rows


@dataclass(frozen=True)
class Correlation:
    spearman: float
    kendall: float
    n: int


def correlate(a: Sequence[float], b: Sequence[float]) -> Correlation:
    """Rank correlations over the pairs where both values are finite."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return Correlation(math.nan, math.nan, int(keep.sum()))
    rho = stats.spearmanr(x[keep], y[keep]).statistic
    tau = stats.kendalltau(x[keep], y[keep]).statistic
    return Correlation(float(rho), float(tau), int(keep.sum()))


def build_report(results: list[dict], reference: list[dict], accuracy: dict[str, float],
                 proxies: Sequence[str]) -> dict[str, Any]:
    """Correlations of ours vs reference and of both vs test accuracy, on the same cells."""
    ours = {r["genotype"]: r for r in results}
    cells = [row for row in reference if row["arch_str"] in ours]
    acc = [accuracy[row["arch_str"]] for row in cells]
    report: dict[str, Any] = {"cells": len(cells), "proxies": {}, "reference_only": {}}
    for name in proxies:
        values = [_value(ours[row["arch_str"]], name) for row in cells]
        entry: dict[str, Any] = {"vs_accuracy": correlate(values, acc).__dict__,
                                 "nonfinite": int(sum(not math.isfinite(v) for v in values))}
        ref_name = REFERENCE_NAMES.get(name)
        if ref_name is not None:
            ref_values = [row[ref_name] for row in cells]
            entry["reference_name"] = ref_name
            entry["vs_reference"] = correlate(values, ref_values).__dict__
            entry["reference_vs_accuracy"] = correlate(ref_values, acc).__dict__
        report["proxies"][name] = entry
    used = set(REFERENCE_NAMES.values())
    for ref_name in (k for k in (reference[0] if reference else {}) if k != "arch_str"):
        if ref_name not in used:
            ref_values = [row[ref_name] for row in cells]
            report["reference_only"][ref_name] = correlate(ref_values, acc).__dict__
    return report


def _value(record: dict, name: str) -> float:
    value = record.get(name)
    return math.nan if value is None else float(value)


def format_report(report: dict[str, Any]) -> str:
    """A markdown table of the report."""
    lines = [f"Cells scored: {report['cells']}", "",
             "| proxy | vs reference (Spearman) | vs accuracy: Spearman / Kendall (ours) | "
             "reference vs accuracy: Spearman / Kendall | non-finite |",
             "|---|---|---|---|---|"]
    for name, entry in report["proxies"].items():
        acc = entry["vs_accuracy"]
        ref = entry.get("vs_reference")
        ref_acc = entry.get("reference_vs_accuracy")
        ref_col = f"{ref['spearman']:.3f} ({entry['reference_name']})" if ref else "-"
        ref_acc_col = (f"{ref_acc['spearman']:.3f} / {ref_acc['kendall']:.3f}" if ref_acc
                       else "-")
        lines.append(f"| {name} | {ref_col} | {acc['spearman']:.3f} / {acc['kendall']:.3f} | "
                     f"{ref_acc_col} | {entry['nonfinite']} |")
    for name, corr in report["reference_only"].items():
        lines.append(f"| ({name}, reference only) | - | - | {corr['spearman']:.3f} / "
                     f"{corr['kendall']:.3f} | - |")
    return "\n".join(lines)
