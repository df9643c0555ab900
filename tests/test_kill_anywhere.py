"""Kill anywhere: SIGKILL `hgnas corpus score` at several points, re-run, and every cell of the
corpus is scored exactly once (Parquet rows counted by hash).

Kill points: before the first shard is written, between shards, and while the last shard is in
flight, for small shards (several per run); while the only shard is in flight, for the default
shard size (the whole corpus in one shard; slow, as the small-shard test kills a run with a shard
in flight too); at random moments, again and again (slow). Each run
is the real command in its own process, joining the module's local Ray (2 CPUs) as a driver
under `ray job submit` does; it is killed alone, with SIGKILL, as a crashed or evicted driver
would be. A tiny scoring setting (digits, a 4-channel skeleton) keeps a run to seconds.

Kill points are found by watching the scores folder and the run's own log. A kill meant for the
last shard that lands after that shard was written (a loaded machine) is retried with the shard
deleted, which is what a user re-scoring a shard does.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray")

from hgnas_ray.corpus import (  # noqa: E402
    DEFAULT_SHARD_SIZE,
    CorpusSpec,
    build_corpus,
    cell_shards,
    list_shards,
    read_cell_shard,
)

pytestmark = pytest.mark.ray

CLI = [sys.executable, "-c", "import sys; from hgnas_ray.cli import main; sys.exit(main())"]
TINY = ["--task", "digits", "--batch-size", "16", "--skeleton-channels", "4",
        "--skeleton-cells", "1", "--proxies", "snip_snr,nwot,params", "--no-progress"]
PLANNED = "shard(s) to score"  # what a run logs once it has planned its shards
TIMEOUT = 300.0  # a loaded 2-core machine may take minutes to start or finish a run
KillPoint = Callable[["ScoreRun"], bool]


class ScoreRun:
    """One `hgnas corpus score` process on `corpus`, joined to the test's Ray, with its log."""

    counter = itertools.count()

    def __init__(self, corpus: Path, address: str, *extra: str) -> None:
        self.scores = corpus / "scores"
        self.log = corpus.parent / f"{corpus.name}-run{next(self.counter)}.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*CLI, "corpus", "score", "--corpus", str(corpus), "--address", address, *TINY,
                 *extra], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)

    def shards(self) -> list[Path]:
        return list_shards(self.scores)

    def planned(self) -> bool:
        return PLANNED in self.log.read_text(errors="replace")

    def kill_when(self, point: KillPoint, what: str) -> bool:
        """SIGKILL the run once `point(self)` holds; False if the run ended before."""
        deadline = time.monotonic() + TIMEOUT
        while not point(self):
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")
            time.sleep(0.01)
        self.kill()
        return self.proc.returncode == -signal.SIGKILL

    def kill(self) -> None:
        """SIGKILL the driver alone: its Ray workers are the cluster's to clean up."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        try:  # anything else the driver started in its session (none when it joins a cluster)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _build(path: Path, n: int, shard_size: int) -> list[str]:
    build_corpus(path, CorpusSpec("cell", n, seed=11, shard_size=shard_size), progress=False)
    return [h for p in cell_shards(path) for h in read_cell_shard(p, ["hash"])["hash"].to_pylist()]


def _stamps(scores: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in list_shards(scores)}


def _run_killed_at(corpus: Path, address: str, point: KillPoint, what: str,
                   *extra: str) -> tuple[ScoreRun, bool]:
    """A run killed at `point` (False: it ended before); no finished shard is written again."""
    before = _stamps(corpus / "scores")
    run = ScoreRun(corpus, address, *extra)
    killed = run.kill_when(point, what)
    after = _stamps(corpus / "scores")
    assert {name: after.get(name) for name in before} == before, "a shard was written again"
    return run, killed


def _kill(corpus: Path, address: str, point: KillPoint, what: str, *extra: str) -> None:
    run, killed = _run_killed_at(corpus, address, point, what, *extra)
    assert killed, f"the run ended before {what}:\n{run.tail()}"


def _after_plan(seconds: float) -> KillPoint:
    """`seconds` after the run planned its shards (its Ray Data pipeline is starting)."""
    start: list[float] = []

    def point(run: ScoreRun) -> bool:
        if not start and run.planned():
            start.append(time.monotonic())
        return bool(start) and time.monotonic() >= start[0] + seconds

    return point


def _kill_during_last(corpus: Path, address: str, total: int, *extra: str) -> None:
    """Kill while the last shard is in flight: every other shard written, that one not yet
    (a single shard: 3 s after the plan, when its first batches are being scored)."""
    for _ in range(3):
        point = _after_plan(3.0) if total == 1 else (lambda r: len(r.shards()) >= total - 1)
        run, killed = _run_killed_at(corpus, address, point, "all shards but the last", *extra)
        done = run.shards()
        if killed and len(done) == total - 1:
            return
        assert len(done) == total and run.proc.returncode in (0, -signal.SIGKILL), run.tail()
        done[-1].unlink()  # the kill came too late: that shard is to be scored again
    pytest.fail("could not kill a run while its last shard was in flight")


def _finish(corpus: Path, address: str, *extra: str) -> None:
    run = ScoreRun(corpus, address, *extra)
    assert run.proc.wait(timeout=TIMEOUT) == 0, run.tail()


def _assert_exactly_once(scores: Path, hashes: list[str]) -> None:
    counts = Counter(h for p in list_shards(scores)
                     for h in pq.read_table(p, columns=["hash"])["hash"].to_pylist())
    assert set(counts) == set(hashes), "cells missing from, or foreign to, the scores"
    assert set(counts.values()) == {1}, f"cells scored more than once: {counts.most_common(3)}"
    assert not [p.name for p in scores.iterdir() if p.name.endswith(".tmp")]


def test_small_shards_killed_before_between_and_during_the_last(tmp_path, local_ray):
    corpus = tmp_path / "corpus"
    hashes = _build(corpus, 30, shard_size=5)  # 6 shards; --rows-per-batch 16 (default) > 5
    total, scores = 6, corpus / "scores"

    _kill(corpus, local_ray, _after_plan(0.0), "the plan")
    assert list_shards(scores) == []

    _kill(corpus, local_ray, lambda r: len(r.shards()) >= 1, "a first shard")
    assert 1 <= len(list_shards(scores)) < total  # shards become durable one by one

    _kill_during_last(corpus, local_ray, total)
    _finish(corpus, local_ray)
    assert len(list_shards(scores)) == total
    _assert_exactly_once(scores, hashes)


@pytest.mark.slow
def test_default_shard_size_killed_during_its_only_shard(tmp_path, local_ray):
    corpus = tmp_path / "corpus"
    hashes = _build(corpus, 12, shard_size=DEFAULT_SHARD_SIZE)  # one shard
    extra = ("--rows-per-batch", "2")

    _kill_during_last(corpus, local_ray, 1, *extra)
    assert list_shards(corpus / "scores") == []
    _finish(corpus, local_ray, *extra)
    _assert_exactly_once(corpus / "scores", hashes)


@pytest.mark.slow
@pytest.mark.parametrize("shard_size, rows_per_batch, concurrency",
                         [(3, 1, 2), (7, 5, 1), (4, 16, 2), (DEFAULT_SHARD_SIZE, 4, 2)])
def test_killed_at_random_moments_until_done(tmp_path, local_ray, shard_size, rows_per_batch,
                                             concurrency):
    """Kill after a random delay, again and again, until a run finishes (at most 8 kills)."""
    corpus = tmp_path / "corpus"
    hashes = _build(corpus, 40, shard_size=shard_size)
    rng = random.Random(shard_size * 1000 + rows_per_batch)
    extra = ("--rows-per-batch", str(rows_per_batch), "--concurrency", str(concurrency))
    for _ in range(8):
        run, killed = _run_killed_at(corpus, local_ray, _after_plan(rng.uniform(0.0, 15.0)),
                                     "the kill moment", *extra)
        if not killed:
            assert run.proc.returncode == 0, run.tail()
            break
    else:
        _finish(corpus, local_ray, *extra)
    _assert_exactly_once(corpus / "scores", hashes)
