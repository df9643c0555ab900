"""Score a cell corpus on Ray Data: read_parquet -> map_batches(actor pool) -> one file per shard.

Design: ONE streaming pipeline over all shards still to score, not one per shard, so each actor
loads the task and its probe batches once per run instead of once per shard. Rows carry their
input file (``include_paths``); the driver collects each shard's scores as they stream in and,
when the last of its cells arrives, checks that every hash is there exactly once and writes
``<out>/part-NNNNN.parquet`` atomically (temp file + rename). A killed run therefore leaves only
complete score shards; the next run skips them and scores the rest. Input shards that cannot be
read are reported by name and left out; the other shards are still scored.

A shard is written as soon as its last cell is scored, whatever the shard and batch sizes,
because nothing between an actor and the driver holds scores back:
- each read task reads ONE shard file and splits it into blocks of at most ``rows_per_batch``
  rows, and ``map_batches(batch_size=None)`` scores one block per actor call; so a Ray Data
  task never mixes two shards (with ``batch_size=N`` the actor pool bundles blocks up to N
  rows, across shards, and returns them only when the whole bundle is done);
- the driver iterates with ``prefetch_batches=0`` (with the default prefetch it holds each
  block until the next one arrives: on a corpus of a few blocks, until the end of the run).

Every scored block carries the id of the node whose actor scored it (a pass-through column, not
written): `ScoringReport.nodes` counts the cells each node scored in this run, so a multi-node
run shows that every node took part.

Metrics for the dashboard (`ray.util.metrics`): ``hgnas_corpus_cells_scored`` (by status),
``hgnas_corpus_cell_failures``, ``hgnas_corpus_scoring_rate`` (cells/s of each worker's last
batch) and ``hgnas_corpus_shards_done``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.util import metrics

from hgnas_ray.corpus.scoring import (
    INPUT_COLUMNS,
    CorpusScorer,
    ScoringConfig,
    ShardTask,
    default_scores_dir,
    plan_scoring,
    records_to_table,
    write_scored_shard,
)
from hgnas_ray.distributed.runtime import check_gpus
from hgnas_ray.errors import HgnasError

logger = logging.getLogger(__name__)
PATH_COLUMN = "path"  # added by read_parquet(include_paths=True)
NODE_COLUMN = "scored_on_node"  # added by RayCorpusScorer: the Ray node id of its actor
DEFAULT_ROWS_PER_BATCH = 16


@dataclass
class ScoringReport:
    out_dir: Path
    scored: list[str] = field(default_factory=list)  # shard files written by this run
    skipped: list[str] = field(default_factory=list)  # already scored before this run
    failed: dict[str, str] = field(default_factory=dict)  # shard file -> why
    cells: int = 0
    cell_errors: int = 0
    seconds: float = 0.0
    nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> cells it scored

    def node_summary(self) -> str:
        """"<node id, 8 hex digits>: cells" per node, most cells first."""
        counts = sorted(self.nodes.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{node[:8]}: {cells}" for node, cells in counts) or "none"

    @property
    def ok(self) -> bool:
        return not self.failed


class RayCorpusScorer:
    """The Ray Data UDF: a `CorpusScorer` per actor, plus torch threads and metrics."""

    def __init__(self, config: dict[str, Any], torch_threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, torch_threads))  # this actor's CPUs, no oversubscription
        self.scorer = CorpusScorer(config)
        context = ray.get_runtime_context()
        self.worker = context.get_actor_id() or "driver"
        self.node = context.get_node_id()
        self.cells = metrics.Counter("hgnas_corpus_cells_scored", tag_keys=("status",),
                                     description="corpus cells scored, by status")
        self.failures = metrics.Counter("hgnas_corpus_cell_failures",
                                        description="corpus cells whose scoring failed")
        self.rate = metrics.Gauge("hgnas_corpus_scoring_rate", tag_keys=("worker",),
                                  description="cells per second of a worker's last batch")

    def __call__(self, batch: pa.Table) -> pa.Table:
        start = time.perf_counter()
        scores = self.scorer(batch.select(list(INPUT_COLUMNS)))
        elapsed = time.perf_counter() - start
        statuses = scores.column("status").to_pylist()
        for status in set(statuses):
            self.cells.inc(statuses.count(status), tags={"status": status})
        if "error" in statuses:
            self.failures.inc(statuses.count("error"))
        self.rate.set(len(statuses) / max(elapsed, 1e-9), tags={"worker": self.worker[:12]})
        nodes = pa.array([self.node] * scores.num_rows, pa.string())
        return scores.append_column(PATH_COLUMN, batch.column(PATH_COLUMN)).append_column(
            NODE_COLUMN, nodes)


def score_corpus(corpus_dir: str | Path, config: ScoringConfig, out_dir: str | Path | None = None,
                 concurrency: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 rows_per_batch: int = DEFAULT_ROWS_PER_BATCH, progress: bool = True,
                 on_shard: Callable[[str, pa.Table], None] | None = None) -> ScoringReport:
    """Score every not-yet-scored shard of ``corpus_dir``; Ray must be initialised.

    ``on_shard(name, table)`` is called after each score shard is written.
    """
    _check_resources(concurrency, num_cpus, num_gpus, rows_per_batch)
    check_gpus(num_gpus, "corpus scoring")  # Ray Data would otherwise wait for GPUs forever
    if num_gpus > 0 and config.device == "cpu":
        config = replace(config, device="cuda")
    config.validate()
    out_dir = Path(out_dir) if out_dir is not None else default_scores_dir(corpus_dir)
    start = time.perf_counter()
    plan = plan_scoring(corpus_dir, out_dir, config)
    report = ScoringReport(out_dir, skipped=[p.name for p in plan.finished],
                           failed=dict(plan.failed))
    for name, message in plan.failed.items():
        logger.warning("skipping %s: %s", name, message)
    todo = [t for t in plan.pending if t.hashes]
    logger.info("%d shard(s) to score (%d cells), %d already scored in %s", len(plan.pending),
                sum(len(t.hashes) for t in todo), len(plan.finished), out_dir)
    for empty in (t for t in plan.pending if not t.hashes):
        write_scored_shard(empty, [records_to_table([], config.proxies)])
        report.scored.append(empty.out_path.name)
    if todo:
        ds = _pipeline(todo, config, concurrency, num_cpus, num_gpus, rows_per_batch, progress)
        _collect(ds, todo, report, on_shard)
        logger.info("cells scored per node (%d node(s)): %s", len(report.nodes),
                    report.node_summary())
    report.seconds = time.perf_counter() - start
    return report


def _pipeline(todo: list[ShardTask], config: ScoringConfig, concurrency: int, num_cpus: float,
              num_gpus: float, rows_per_batch: int, progress: bool) -> ray.data.Dataset:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    # In order: shards then finish one after another (each written as soon as it is complete),
    # so a kill loses at most the shards in flight.
    context.execution_options.preserve_order = True
    return read_cells(todo, rows_per_batch).map_batches(
        RayCorpusScorer, fn_constructor_kwargs={"config": config.to_dict(),
                                                "torch_threads": max(1, int(num_cpus))},
        compute=ray.data.ActorPoolStrategy(size=concurrency),  # `concurrency=` is deprecated
        num_cpus=num_cpus, num_gpus=num_gpus,
        batch_size=None,  # one block per call: no bundling across shards (module docstring)
        batch_format="pyarrow")


def read_cells(todo: list[ShardTask], rows_per_batch: int) -> ray.data.Dataset:
    """The (hash, genotype, path) rows of the shards to score, in blocks of one shard each and
    at most `rows_per_batch` rows."""
    context = ray.data.DataContext.get_current()
    # Ray 2.60's default Parquet reader (DataSourceV2) lists files in a task that needs 1 CPU,
    # which waits forever once the scoring actors hold every CPU (e.g. 2 actors on 2 CPUs).
    # The V1 reader lists on the driver and runs its read tasks at num_cpus=0 as asked.
    use_v2, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        return ray.data.read_parquet(
            [str(t.cells_path) for t in todo], columns=list(INPUT_COLUMNS), include_paths=True,
            num_cpus=0,  # reading is light; it must never wait behind the scoring actors
            override_num_blocks=read_blocks([len(t.hashes) for t in todo], rows_per_batch))
    finally:
        context.use_datasource_v2 = use_v2


def read_blocks(shard_rows: list[int], rows_per_batch: int) -> int:
    """The ``override_num_blocks`` that gives one read task per shard, each split into blocks
    of at most ``rows_per_batch`` rows.

    Ray Data makes min(files, blocks) read tasks of whole files and splits each task's output
    into ceil(blocks / files) equal parts; asking for files x k blocks, with k the number of
    batches of the largest shard, makes every part <= rows_per_batch rows.
    """
    per_shard = max((math.ceil(rows / rows_per_batch) for rows in shard_rows), default=1)
    return len(shard_rows) * max(1, per_shard)


def _collect(ds: ray.data.Dataset, todo: list[ShardTask], report: ScoringReport,
             on_shard: Callable[[str, pa.Table], None] | None) -> None:
    """Group streamed scores by input shard; write each shard as soon as it is complete."""
    by_path = {_path_key(t.cells_path): t for t in todo}
    buffers: dict[str, list[pa.Table]] = {key: [] for key in by_path}
    counts = dict.fromkeys(by_path, 0)
    shards_done = metrics.Gauge("hgnas_corpus_shards_done",
                                description="score shards written by this run")
    try:
        # prefetch_batches=0: a block reaches the driver as soon as its task ends
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                     prefetch_batches=0):
            _count_nodes(batch, report.nodes)
            for key, part in _split_by_path(batch).items():
                buffers[key].append(part)
                counts[key] += part.num_rows
                task = by_path[key]
                if counts[key] == len(task.hashes):
                    _finish(task, buffers.pop(key), report, on_shard)
                    shards_done.set(len(report.scored))
    except Exception as err:  # noqa: BLE001  report which shards are unfinished, keep the rest
        message = f"scoring stopped: {type(err).__name__}: {_first_line(err)}"
        logger.error(message)
        for key in buffers:
            report.failed[by_path[key].cells_path.name] = message
        return
    for key in buffers:  # the stream ended without all of a shard's rows
        task = by_path[key]
        report.failed[task.cells_path.name] = (f"got {counts[key]} of {len(task.hashes)} rows "
                                               "back; nothing written, re-run to score it")


def _finish(task: ShardTask, parts: list[pa.Table], report: ScoringReport,
            on_shard: Callable[[str, pa.Table], None] | None) -> None:
    try:
        table = write_scored_shard(task, parts)
    except HgnasError as err:
        report.failed[task.cells_path.name] = str(err)
        logger.error("%s: %s", task.cells_path.name, err)
        return
    errors = table.column("status").to_pylist().count("error")
    seconds = sum(s for s in table.column("seconds").to_pylist() if not math.isnan(s))
    report.scored.append(task.out_path.name)
    report.cells += table.num_rows
    report.cell_errors += errors
    logger.info("scored %s: %d cells, %d failed, %.1f worker-s (%.1f cells/worker-s) -> %s",
                task.cells_path.name, table.num_rows, errors, seconds,
                table.num_rows / max(seconds, 1e-9), task.out_path)
    if on_shard is not None:
        on_shard(task.out_path.name, table)


def _count_nodes(batch: pa.Table, nodes: dict[str, int]) -> None:
    if NODE_COLUMN in batch.column_names:
        for node in batch.column(NODE_COLUMN).to_pylist():
            nodes[node] = nodes.get(node, 0) + 1


def _split_by_path(batch: pa.Table) -> dict[str, pa.Table]:
    paths = batch.column(PATH_COLUMN).to_pylist()
    scores = batch.drop_columns([c for c in (PATH_COLUMN, NODE_COLUMN)
                                 if c in batch.column_names])
    parts = {}
    for path in dict.fromkeys(paths):
        rows = [i for i, p in enumerate(paths) if p == path]
        parts[_path_key(path)] = scores.take(rows)
    return parts


def _path_key(path: str | Path) -> str:
    """Shard file name: read_parquet may report paths in another form than we passed them."""
    return Path(str(path)).name


def _check_resources(concurrency: int, num_cpus: float, num_gpus: float,
                     rows_per_batch: int) -> None:
    from hgnas_ray.errors import ConfigError

    if concurrency < 1:
        raise ConfigError(f"--concurrency must be >= 1; got {concurrency}")
    if num_cpus <= 0 or num_gpus < 0:
        raise ConfigError(f"--num-cpus must be > 0 and --num-gpus >= 0 (fractions allowed); "
                          f"got {num_cpus}, {num_gpus}")
    if rows_per_batch < 1:
        raise ConfigError(f"--rows-per-batch must be >= 1; got {rows_per_batch}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no detail"

