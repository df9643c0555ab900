"""Training data of the sequence generator: the best networks of HL-Evo histories.

A histories folder holds JSONL files (`*.jsonl`, at its top level), one line per evaluated
network (written by `hgnas_ray.search.histories.write_histories`)::

    {"task": {"num_classes", "input_size", "in_channels"}, "budget": {"max_params",
     "max_macs"}, "genotype": <MacroGenotype.to_dict()>, "clusters": [one id per stage],
     "fitness": float (higher is better; NaN/null: failed), "params": int, "macs": int,
     "evaluation": int}

Per (task, budget) setting, networks that failed, were over budget or repeat an earlier network
are dropped, and the top `top_fraction` by fitness (at least `min_per_setting`) are kept. A
torn last line (a writer killed mid-write) is skipped; any other malformed line is an error that
names its file and line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hgnas_ray.errors import DataError, HgnasError
from hgnas_ray.models.seqgen.vocab import (
    MAX_SEQUENCE_LENGTH,
    MacroLayout,
    SeqVocabulary,
    task_from_dict,
)
from hgnas_ray.nn.budget import Budget
from hgnas_ray.space.macro import MacroGenotype


@dataclass(frozen=True)
class HistoryRecord:
    task: Any  # TaskShape
    budget: Budget
    layout: MacroLayout
    fitness: float
    params: int
    macs: int
    network: str  # the macro genotype's hash

    @property
    def setting(self) -> tuple:
        return (self.task, self.budget)


@dataclass
class HistoryData:
    """Records kept, and what was dropped and why."""

    records: list[HistoryRecord]
    lines: int
    dropped: dict[str, int]
    files: int

    def summary(self) -> dict[str, Any]:
        settings = sorted({_setting_name(r) for r in self.records})
        return {"files": self.files, "lines": self.lines, "kept": len(self.records),
                "dropped": dict(self.dropped), "settings": settings}


def _setting_name(record: HistoryRecord) -> str:
    t, b = record.task, record.budget
    return (f"{t.num_classes} classes, {t.input_size}px, {t.in_channels}ch, "
            f"params<={b.max_params}, macs<={b.max_macs}")


def parse_record(data: Mapping[str, Any], num_clusters: int) -> HistoryRecord:
    """One history line as a record (`HgnasError` when malformed)."""
    if not isinstance(data, Mapping):
        raise DataError(f"a history line is a JSON object; got {type(data).__name__}")
    missing = [k for k in ("task", "budget", "genotype", "clusters", "fitness") if k not in data]
    if missing:
        raise DataError(f"history record lacks {missing}")
    budget = data["budget"] or {}
    unknown = sorted(set(budget) - {"max_params", "max_macs"})
    if unknown:
        raise DataError(f"unknown budget field(s) {unknown}; valid: max_params, max_macs")
    genotype = MacroGenotype.from_dict(data["genotype"])
    clusters = [int(c) for c in data["clusters"]]
    if any(not 0 <= c < num_clusters for c in clusters):
        raise DataError(f"cluster ids {clusters} outside 0..{num_clusters - 1}: the histories "
                        "were written with another cell artifact (fewer or more clusters)")
    fitness = data["fitness"]
    return HistoryRecord(task_from_dict(data["task"]),
                         Budget(budget.get("max_params"), budget.get("max_macs")),
                         MacroLayout.from_genotype(genotype, clusters).validate(num_clusters),
                         math.nan if fitness is None else float(fitness),
                         int(data.get("params", -1)), int(data.get("macs", -1)), genotype.hash)


def history_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"histories folder {str(folder)!r} does not exist; write one with "
                        "`hgnas pretrain macro` (its first stage) or pass --histories DIR")
    files = sorted(folder.glob("*.jsonl"))  # not runs/*/evaluations.jsonl of the searches
    if not files:
        raise DataError(f"{folder} holds no *.jsonl history files")
    return files


def read_history_records(folder: str | Path, num_clusters: int) -> HistoryData:
    """Every well-formed record of a histories folder (see the module docstring)."""
    records, dropped, lines = [], {"torn_line": 0}, 0
    files = history_files(folder)
    for path in files:
        text = path.read_text().split("\n")
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            lines += 1
            try:
                records.append(parse_record(json.loads(line), num_clusters))
            except json.JSONDecodeError:
                if number == len(text) and not text[-1].endswith("}"):  # unterminated last line
                    dropped["torn_line"] += 1
                    continue
                raise DataError(f"{path}:{number} is not valid JSON") from None
            except (HgnasError, TypeError, ValueError) as err:
                raise DataError(f"{path}:{number}: {err}") from None
    return HistoryData(records, lines, dropped, len(files))


def select_top(records: Iterable[HistoryRecord], top_fraction: float, min_per_setting: int
               ) -> tuple[list[HistoryRecord], dict[str, int]]:
    """Per setting, the best `top_fraction` (at least `min_per_setting`) of the finite, within
    budget, distinct networks; also the counts of what was dropped."""
    by_setting: dict[tuple, dict[str, HistoryRecord]] = {}
    dropped = {"failed": 0, "over_budget": 0, "duplicate": 0}
    for record in records:
        if not math.isfinite(record.fitness):
            dropped["failed"] += 1
            continue
        if record.params >= 0 and not record.budget.allows(record):
            dropped["over_budget"] += 1
            continue
        networks = by_setting.setdefault(record.setting, {})
        best = networks.get(record.network)
        if best is not None:
            dropped["duplicate"] += 1
            if best.fitness >= record.fitness:
                continue
        networks[record.network] = record
    kept = []
    for networks in by_setting.values():
        ranked = sorted(networks.values(), key=lambda r: (-r.fitness, r.network))
        count = max(min_per_setting, math.ceil(top_fraction * len(ranked)))
        kept.extend(ranked[:count])
    return kept, dropped


def token_matrix(records: Sequence[HistoryRecord], vocab: SeqVocabulary) -> np.ndarray:
    """(N, MAX_SEQUENCE_LENGTH) int64 rows: prompt + layout, right-padded with <pad>."""
    rows = np.full((len(records), MAX_SEQUENCE_LENGTH), vocab.pad, dtype=np.int64)
    for i, record in enumerate(records):
        ids = vocab.encode(record.task, record.budget, record.layout)
        rows[i, : len(ids)] = ids
    return rows


def tokens_digest(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int64).tobytes()).hexdigest()
