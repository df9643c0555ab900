"""Scoring a corpus with zero-cost proxies, without Ray: the per-batch scorer and the shard plan.

`CorpusScorer` is built from a plain config dict (so it can cross a process boundary), loads the
task and its probe batches once, and maps a table of (hash, genotype) rows to a table of scores
with `score_schema`, through the one `hgnas_ray.evaluation.Evaluator` (its flat records carry
more keys, e.g. flops, than the score schema keeps). `hgnas_ray.distributed.corpus_scoring` runs
it in a Ray Data actor pool; a serial loop can call it directly.

Output, one row per input cell, in ``<out>/part-NNNNN.parquet`` (same id as the input shard):
``hash``, ``genotype`` (strings), per proxy ``<proxy>`` (float64, NaN unless its status is ok)
and ``<proxy>_status`` ("ok" | "nonfinite" | "error"), ``status`` ("ok" | "partial" |
"error"), ``error`` (empty when ok), ``seconds`` (float64, wall time of the cell).
As in the evaluator's records, a ``params`` or ``macs`` column holds the cost of the network a
cell names: for a NAS-Bench-201 cell the benchmark's network (16 channels, 5 cells per stage),
whatever size it is scored in; for a cell of the general space the scoring skeleton.
``<out>/scoring.json`` holds the settings (``ScoringConfig.result_key``), the network the
proxies run on, and the kinds of device that scored into the folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from hgnas_ray.corpus.shards import (
    ShardError,
    cell_shards,
    list_shards,
    read_cell_shard,
    read_json,
    read_shard,
    remove_stale_tmp,
    shard_id,
    write_json_atomic,
    write_table_atomic,
)
from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.evaluation import (
    ScoringSetup,
    check_device,
    check_proxy_names,
    check_seed,
    check_setup,
)
from hgnas_ray.nn.builder import SkeletonSize

SCORES_DIR = "scores"
SCORING_FILE = "scoring.json"
INPUT_COLUMNS = ("hash", "genotype")


@dataclass(frozen=True)
class ScoringConfig:
    """Everything a scoring worker needs; ``to_dict`` is what crosses to Ray actors."""

    proxies: tuple[str, ...]
    task: str = "cifar10"  # task name or dataset path (as `hgnas score --task`)
    data_root: str | None = None  # None: HGNAS_DATA (prepared arrays: HGNAS_CACHE)
    batch_size: int = 32  # images per probe batch
    probe_batches: int = 2  # as `hgnas score`: zico needs 2, the others use the first
    class_balanced: bool = False
    skeleton_channels: int = 8
    skeleton_cells: int = 1
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> ScoringConfig:
        object.__setattr__(self, "proxies", check_proxy_names(tuple(self.proxies)))
        check_setup(self.setup(), ("skeleton_channels", "skeleton_cells", "batch_size"))
        if isinstance(self.probe_batches, bool) or not isinstance(self.probe_batches, int) \
                or self.probe_batches < 1:
            raise ConfigError(f"probe_batches must be an integer >= 1; got "
                              f"{self.probe_batches!r}")
        check_device(self.device, require_local=False)
        check_seed(self.seed, "seed")
        return self

    def setup(self) -> ScoringSetup:
        return ScoringSetup(SkeletonSize(self.skeleton_channels, self.skeleton_cells),
                            self.batch_size)

    def network(self) -> dict[str, Any]:
        """The network the proxies run on, as scoring.json names it (cf. the evaluator's
        `network_*` record keys)."""
        return {"channels": self.skeleton_channels, "cells_per_stage": self.skeleton_cells,
                "probe_batch_size": self.batch_size,
                "costs": "params/macs: nb201 cells -> the benchmark's network (16 channels, 5 "
                         "cells per stage); cells of the general space -> this skeleton"}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "proxies": list(self.proxies)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoringConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown scoring config keys {sorted(unknown)}")
        return cls(**{**data, "proxies": tuple(data["proxies"])}).validate()

    def result_key(self) -> dict[str, Any]:
        """The settings the scores depend on (not where the data or the worker lives)."""
        key = self.to_dict()
        for where in ("data_root", "device"):
            key.pop(where)
        return key


def score_schema(proxies: Sequence[str]) -> pa.Schema:
    fields = [("hash", pa.string()), ("genotype", pa.string())]
    for name in proxies:
        fields += [(name, pa.float64()), (f"{name}_status", pa.string())]
    fields += [("status", pa.string()), ("error", pa.string()), ("seconds", pa.float64())]
    return pa.schema(fields, metadata={b"hgnas.proxies": json.dumps(list(proxies)).encode()})


def records_to_table(records: Sequence[Mapping[str, Any]], proxies: Sequence[str]) -> pa.Table:
    schema = score_schema(proxies)
    columns = {}
    for f in schema:
        values = [r.get(f.name) for r in records]
        if pa.types.is_floating(f.type):
            values = [math.nan if v is None else float(v) for v in values]
        elif f.name == "error":
            values = [v or "" for v in values]
        columns[f.name] = pa.array(values, f.type)
    return pa.table(columns, schema=schema)


class CorpusScorer:
    """Callable: table with (hash, genotype) -> table of scores (`score_schema`).

    Loads the task and its probe batches once, at construction. Every row yields a record:
    a cell that cannot be parsed, built or scored is kept with its error.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        from hgnas_ray.evaluation import Evaluator, load_probe

        self.config = ScoringConfig.from_dict(config)
        cfg = self.config
        batches, task = load_probe(cfg.task, cfg.data_root, cfg.batch_size, cfg.probe_batches,
                                   cfg.seed, cfg.class_balanced)
        self.evaluator = Evaluator(cfg.proxies, batches, task, cfg.setup().skeleton,
                                   seed=cfg.seed, device=cfg.device)

    def __call__(self, table: pa.Table) -> pa.Table:
        hashes = table.column("hash").to_pylist()
        genotypes = table.column("genotype").to_pylist()
        records = [self.score_one(h, g) for h, g in zip(hashes, genotypes, strict=True)]
        return records_to_table(records, self.config.proxies)

    def score_one(self, digest: str, genotype: str | None) -> dict[str, Any]:
        if not genotype:
            record = failed_record(self.config.proxies, "empty genotype")
        else:
            try:
                record = self.evaluator(genotype)
            except Exception as err:  # noqa: BLE001  one cell must never end a corpus run
                record = failed_record(self.config.proxies, f"{type(err).__name__}: {err}")
                record["genotype"] = genotype
        record["hash"] = digest  # the corpus identity, also when the genotype did not parse
        return record


def failed_record(proxies: Sequence[str], message: str) -> dict[str, Any]:
    """The record of a cell that could not be scored at all (`Evaluator` catches the
    expected failures itself; this is for anything else)."""
    record: dict[str, Any] = {"status": "error", "error": message, "seconds": math.nan}
    for name in proxies:
        record[name] = math.nan
        record[f"{name}_status"] = "error"
    return record


@dataclass(frozen=True)
class ShardTask:
    """One input shard still to score: its rows' hashes, in file order."""

    shard_id: int
    cells_path: Path
    out_path: Path
    hashes: tuple[str, ...]


@dataclass
class ScoringPlan:
    pending: list[ShardTask] = field(default_factory=list)
    finished: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # shard file name -> message


def default_scores_dir(corpus_dir: str | Path) -> Path:
    return Path(corpus_dir) / SCORES_DIR


def plan_scoring(corpus_dir: str | Path, out_dir: str | Path, config: ScoringConfig
                 ) -> ScoringPlan:
    """Sort the corpus's shards into finished, to do, and unreadable (with their message)."""
    shards = cell_shards(corpus_dir)  # DataError on an empty corpus, before anything else
    out_dir = Path(out_dir)
    _claim_out_dir(out_dir, corpus_dir, config)
    remove_stale_tmp(out_dir)
    plan = ScoringPlan()
    for cells_path in shards:
        try:
            hashes = tuple(read_cell_shard(cells_path, INPUT_COLUMNS).column("hash").to_pylist())
        except ShardError as err:
            plan.failed[cells_path.name] = str(err)
            continue
        out_path = out_dir / cells_path.name
        if is_scored(out_path, hashes):
            plan.finished.append(out_path)
        else:
            plan.pending.append(ShardTask(shard_id(cells_path), cells_path, out_path, hashes))
    return plan


def is_scored(out_path: Path, hashes: Sequence[str]) -> bool:
    """True when ``out_path`` is a readable score shard with exactly these hashes."""
    if not out_path.is_file():
        return False
    try:
        scored = read_shard(out_path, ["hash"]).column("hash").to_pylist()
    except ShardError:
        return False  # scored again and overwritten
    return sorted(scored) == sorted(hashes)


def write_scored_shard(task: ShardTask, tables: Sequence[pa.Table]) -> pa.Table:
    """Check that ``tables`` hold every cell of ``task`` exactly once; write them atomically.

    Rows are put back in input order, so a shard's file does not depend on worker timing.
    """
    table = pa.concat_tables(tables).select(score_schema_names(tables[0].schema))
    scored = table.column("hash").to_pylist()
    if sorted(scored) != sorted(task.hashes):
        missing = set(task.hashes) - set(scored)
        raise DataError(f"scores of {task.cells_path.name} do not match its cells ({len(scored)} "
                        f"rows for {len(task.hashes)} cells, {len(missing)} missing); nothing "
                        "written, re-run to score it again")
    order = {h: i for i, h in enumerate(task.hashes)}
    table = table.take(sorted(range(len(scored)), key=lambda r: order[scored[r]]))
    write_table_atomic(table, task.out_path)
    return table


def score_schema_names(schema: pa.Schema) -> list[str]:
    """Columns of a scorer output, without any pass-through columns a runner added."""
    proxies = json.loads((schema.metadata or {}).get(b"hgnas.proxies", b"[]"))
    return score_schema(proxies).names


def scored_shards(out_dir: str | Path) -> list[Path]:
    return list_shards(out_dir)


def _claim_out_dir(out_dir: Path, corpus_dir: str | Path, config: ScoringConfig) -> None:
    """Record the scoring settings in ``out_dir``; refuse to mix scores of other settings.

    ``scoring.json`` also names the network the proxies run on and every kind of device that
    scored into the folder (the settings leave the device out: a run may resume elsewhere)."""
    path = out_dir / SCORING_FILE
    key, kind = config.result_key(), config.device.split(":")[0]
    if path.is_file():
        existing = read_json(path, "scoring settings")
        if existing.get("settings") != key:
            raise ConfigError(f"{out_dir} holds scores computed with {existing.get('settings')}, "
                              f"not {key}; pass another --out to score with new settings")
        devices = existing.get("devices")
        if isinstance(devices, list) and kind not in devices:
            write_json_atomic({**existing, "devices": [*devices, kind]}, path)
        return
    write_json_atomic({"corpus": str(Path(corpus_dir).resolve()), "settings": key,
                       "network": config.network(), "devices": [kind],
                       "columns": score_schema(config.proxies).names}, path)
