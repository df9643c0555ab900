"""Scoring a corpus on Ray Data: a small real run, resume after a kill, a corrupt shard.

Uses the digits task (always offline) and a 4-channel skeleton; one local Ray for the module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from hgnas_ray.cli import main  # noqa: E402
from hgnas_ray.corpus import (  # noqa: E402
    CorpusSpec,
    ScoringConfig,
    build_corpus,
    cell_shards,
    list_shards,
    read_cell_shard,
    score_schema,
)
from hgnas_ray.corpus.scoring import plan_scoring  # noqa: E402
from hgnas_ray.distributed.corpus_scoring import (  # noqa: E402
    PATH_COLUMN,
    _pipeline,
    read_blocks,
    score_corpus,
)

pytestmark = pytest.mark.ray

PROXIES = ("snip_snr", "nwot", "params")
CONFIG = ScoringConfig(PROXIES, task="digits", batch_size=16, skeleton_channels=4,
                       skeleton_cells=1)
TINY_ARGS = ["--task", "digits", "--batch-size", "16", "--skeleton-channels", "4",
             "--skeleton-cells", "1", "--proxies", ",".join(PROXIES), "--no-progress"]

KILLED_RUN = """
import sys, time
import ray
from hgnas_ray.corpus import ScoringConfig
from hgnas_ray.distributed.corpus_scoring import score_corpus

ray.init(address=sys.argv[1], log_to_driver=False)
config = ScoringConfig.from_dict({config!r})

def stall(name, table):  # the run is killed while this shard's successors are in flight
    time.sleep(600)

score_corpus(sys.argv[2], config, rows_per_batch=2, progress=False, on_shard=stall)
"""

def _build(path, n, shard_size):
    build_corpus(path, CorpusSpec("cell", n, seed=7, shard_size=shard_size), progress=False)
    return [h for p in cell_shards(path) for h in read_cell_shard(p, ["hash"])["hash"].to_pylist()]


def _scored_hashes(folder):
    return [h for p in list_shards(folder) for h in pq.read_table(p)["hash"].to_pylist()]


def _wait_for_first_shard(folder, proc, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list_shards(folder):
            return
        if proc.poll() is not None:
            pytest.fail(f"scoring run exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    pytest.fail("no score shard appeared in time")


def test_killed_run_resumes_with_every_cell_exactly_once(tmp_path, local_ray):
    hashes = _build(tmp_path, 24, shard_size=4)  # 6 shards
    scores = tmp_path / "scores"
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN.format(config=CONFIG.to_dict())))
    proc = subprocess.Popen([sys.executable, str(script), local_ray, str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _wait_for_first_shard(scores, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job driver, mid-pipeline
        proc.wait()
    first = list_shards(scores)
    assert 1 <= len(first) < 6
    stamps = {p.name: p.stat().st_mtime_ns for p in first}

    report = score_corpus(tmp_path, CONFIG, concurrency=2, rows_per_batch=2, progress=False)
    assert report.ok and sorted(report.skipped) == sorted(stamps)
    assert len(report.scored) + len(report.skipped) == 6
    assert {p.name: p.stat().st_mtime_ns for p in first} == stamps  # not rewritten
    counts = Counter(_scored_hashes(scores))
    assert set(counts) == set(hashes) and set(counts.values()) == {1}
    table = pq.read_table(list_shards(scores)[-1])
    assert table.schema.equals(score_schema(PROXIES))
    assert set(table["status"].to_pylist()) <= {"ok", "partial", "error"}
    assert all(v > 0 for v in table["params"].to_pylist())


def test_corrupt_shard_is_named_and_the_rest_is_scored(tmp_path, local_ray, capsys):
    hashes = _build(tmp_path, 12, shard_size=4)
    bad = tmp_path / "cells" / "part-00001.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    code = main(["corpus", "score", "--corpus", str(tmp_path), "--concurrency", "2",
                 "--rows-per-batch", "2", *TINY_ARGS])
    err = capsys.readouterr().err
    assert code == 2
    assert f"shard {bad} is unreadable or corrupt" in err
    assert "1 shard(s) not scored: part-00001.parquet" in err
    scored = [p.name for p in list_shards(tmp_path / "scores")]
    assert scored == ["part-00000.parquet", "part-00002.parquet"]
    assert sorted(_scored_hashes(tmp_path / "scores")) == sorted(hashes[:4] + hashes[8:])


@pytest.mark.parametrize("shard_rows, rows_per_batch, blocks",
                         [([5] * 6, 16, 6), ([10, 10, 3], 4, 9), ([40], 16, 3), ([1], 1, 1)])
def test_read_blocks_give_one_read_task_per_shard_and_batch_sized_blocks(shard_rows,
                                                                          rows_per_batch, blocks):
    assert read_blocks(shard_rows, rows_per_batch) == blocks


def test_no_scoring_batch_spans_two_shards_or_exceeds_rows_per_batch(tmp_path, local_ray):
    _build(tmp_path, 13, shard_size=5)  # shards of 5, 5, 3
    plan = plan_scoring(tmp_path, tmp_path / "scores", CONFIG)
    ds = _pipeline(plan.pending, CONFIG, concurrency=2, num_cpus=1.0, num_gpus=0.0,
                   rows_per_batch=2, progress=False)
    batches = [b[PATH_COLUMN].to_pylist() for b in ds.iter_batches(batch_size=None,
                                                                   batch_format="pyarrow")]
    assert all(len(set(paths)) == 1 and len(paths) <= 2 for paths in batches)
    assert sum(len(paths) for paths in batches) == 13


def test_each_shard_is_written_as_soon_as_its_cells_are_scored(tmp_path, local_ray):
    """Regression: with shards smaller than a batch, every shard was written at the very end
    (a kill lost all of them). One worker scores the cells in order, so the last shard is
    written about the scoring time of the other shards after the first."""
    _build(tmp_path, 30, shard_size=5)
    report = score_corpus(tmp_path, CONFIG, concurrency=1, progress=False)  # 16 rows/batch
    assert report.ok and len(report.scored) == 6
    shards = list_shards(tmp_path / "scores")
    written = [p.stat().st_mtime_ns / 1e9 for p in shards]
    scoring = sum(sum(pq.read_table(p, columns=["seconds"])["seconds"].to_pylist())
                  for p in shards[1:])
    assert written[-1] - written[0] >= 0.5 * scoring > 0
