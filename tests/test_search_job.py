"""The search job end to end on a tiny real task (scikit-learn digits), every stage on Ray:
corpus (Ray Data), both generators (Ray Train), generation (Ray Tune), HL-Evo refinement (Ray
actors), candidate training (Ray Tune + ASHA), export, report. Then a re-run (every stage
skipped), a changed config (refused, then `force`), and a kill in the middle of candidate
training followed by a resume (a real process, killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hgnas_ray.config import load_config
from hgnas_ray.errors import ConfigError
from hgnas_ray.search.config import SearchConfig

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "jobs" / "search.py"
TINY = {
    "data": {"task": "digits", "probe_size": 16, "probe_batches": 2},
    "budget": {"max_params": 60000},
    "corpus": {"size": 16, "shard_size": 8, "concurrency": 1},
    "cells": {"pretrain": {
        "gvae": {"hidden_dim": 16, "num_layers": 2, "latent_dim": 8, "decoder_hidden": 32,
                 "cond_hidden": 16},
        "ccnf": {"hidden_dim": 16, "num_layers": 2, "method": "rk4", "step_size": 0.5,
                 "adjoint": False},
        "gvae_train": {"epochs": 1, "batch_size": 16}, "ccnf_train": {"epochs": 1},
        "n_clusters": 2, "min_cells_per_cluster": 2},
              "ray_train": {"workers": 0}},  # in-process: Ray Train has its own tests
    "macro": {"grid": "task",
              "histories": {"evaluations": 6, "population": 3, "space_evaluations": 3,
                            "probe_batch": 8, "max_width": 32, "pool_size": 2, "batch_size": 3},
              "pretrain": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32},
                           "train": {"epochs": 1, "batch_size": 16},
                           "top_fraction": 1.0, "min_per_setting": 2},
              "ray_train": {"workers": 0}},
    "generate": {"temperatures": [1.0], "budget_shares": [0.0, 0.3], "per_setting": 3,
                 "fitness": "synflow", "proxies": ["params", "macs", "synflow"]},
    "refine": {"evaluations": 2, "population": 2, "batch_size": 2, "workers": 1},
    "train": {"top_k": 2, "recipe": {"epochs": 3, "batch_size": 32,
                                     "max_batches_per_epoch": 4, "val_limit": 100},
              "max_concurrent": 2},
    "export": {"formats": ["torchscript"], "test_limit": 200},
    "run_name": "tiny",
}


def tiny_config(storage: Path, **overrides) -> SearchConfig:
    sets = [f"storage_path={storage}", *(f"{k}={json.dumps(v)}" for k, v in overrides.items())]
    path = storage / "tiny.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(TINY))
    return load_config(SearchConfig, path, sets)


class Recorder:
    """A monitor that keeps the stage events (and logs, as the plain monitor does)."""

    def __init__(self) -> None:
        from hgnas_ray.distributed.search_job import RayMonitor

        self.inner = RayMonitor(progress_bar=False)
        self.events: list[tuple[str, str]] = []

    def stage(self, name, status, detail=""):
        self.events.append((name, status))
        self.inner.stage(name, status, detail)

    def candidates(self, *args):
        self.inner.candidates(*args)

    def scored_progress(self, *args):
        self.inner.scored_progress(*args)

    def trials(self, *args):
        self.inner.trials(*args)

    def statuses(self) -> dict[str, str]:
        return dict(self.events)


def run_tiny(config: SearchConfig, force: bool = False):
    from hgnas_ray.distributed.search_job import RayExecutors
    from hgnas_ray.search.pipeline import run_pipeline

    recorder = Recorder()
    result = run_pipeline(config, RayExecutors(config.ray, recorder), force=force)
    return result, recorder


@pytest.fixture(scope="module")
def storage(tmp_path_factory, local_ray) -> Path:
    return tmp_path_factory.mktemp("search")


@pytest.fixture(scope="module")
def first_run(storage):
    return run_tiny(tiny_config(storage))


def test_every_stage_runs_and_the_run_folder_holds_the_results(first_run, storage) -> None:
    result, recorder = first_run
    assert [s for s, status in recorder.events if status == "running"] == [
        "corpus", "cells", "macro", "generate", "refine", "train", "export", "report"]
    run = storage / "tiny"
    candidates = [json.loads(x) for x in (run / "candidates.jsonl").read_text().splitlines()]
    sources = [c["source"] for c in candidates]
    assert sources.count("generated") >= 3 and sources.count("refined") == 2
    assert len({c["hash"] for c in candidates}) == len(candidates)
    assert all(c["params"] <= 60000 for c in candidates)
    trained = json.loads((run / "trained.json").read_text())
    assert len(trained) == 2 and all(t["status"] in ("ok", "stopped") for t in trained)
    metrics = json.loads((run / "export" / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 100 and metrics["flops"] == 2 * metrics["macs"]
    assert metrics["params"] <= 60000
    for name in ("genotype.json", "weights.safetensors", "model.pt"):
        assert (run / "export" / name).is_file()
    report = (run / "report.md").read_text()
    assert "Spearman" in report and list((run / "report").glob("*.png"))
    assert result.best is not None and result.best["hash"] in {t["hash"] for t in trained}


def test_the_artifacts_in_the_run_folder_load_and_generate(first_run, storage) -> None:
    from hgnas_ray.generator import CellGenerator
    from hgnas_ray.generator.macro import MacroGenerator
    from hgnas_ray.nn.builder import TaskShape

    artifacts = storage / "tiny" / "artifacts"
    assert CellGenerator.load(artifacts / "cells").num_clusters >= 1
    generator = MacroGenerator.load(artifacts / "macro", artifacts / "cells")
    assert len(generator.sample(TaskShape(10, 8, 1), {"max_params": 60000}, n=2, seed=1)) == 2


def test_a_rerun_skips_every_stage_and_changes_nothing(first_run, storage) -> None:
    before = (storage / "tiny" / "candidates.jsonl").read_text()
    result, recorder = run_tiny(tiny_config(storage))
    statuses = recorder.statuses()
    assert {statuses[s] for s in ("corpus", "cells", "macro", "generate", "refine", "train",
                                  "export")} == {"skipped"}
    assert (storage / "tiny" / "candidates.jsonl").read_text() == before
    assert result.best == first_run[0].best


def test_another_config_is_refused_unless_forced(first_run, storage) -> None:
    config = tiny_config(storage, **{"train.top_k": 1})
    with pytest.raises(ConfigError, match="train.top_k.*--force"):
        run_tiny(config)
    result, recorder = run_tiny(config, force=True)
    statuses = recorder.statuses()
    assert statuses["generate"] == "skipped" and statuses["train"] == "running"
    assert len(result.trained) == 1


def _trial_checkpoints(run: Path) -> list[Path]:
    return list(run.glob("tune/train-*/*/checkpoint_*"))


def test_a_kill_during_candidate_training_resumes_without_repeating_work(first_run, storage,
                                                                         local_ray) -> None:
    """A second run (its own folder; corpus and generators reused from the shared folder) is
    killed once a training trial has checkpointed; the same command then finishes it. The job
    joins this module's Ray instance (as under `ray job submit`): killing the driver ends its
    trials."""
    config = storage / "tiny.yaml"
    argv = [sys.executable, str(JOB), "--config", str(config), "--set",
            f"storage_path={storage}", "--set", "run_name=killed", "--set",
            "train.recipe.epochs=6", "--set", f"ray.address={local_ray}"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    run = storage / "killed"
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while not _trial_checkpoints(run) and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run / "trained.json").exists()
    candidates = (run / "candidates.jsonl").read_text()
    stages = json.loads((run / "stages.json").read_text())
    assert "generate" in stages and "train" not in stages

    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run / "candidates.jsonl").read_text() == candidates  # nothing scored again
    assert "generate] skipped" in resumed.stderr and "restoring candidate training" in \
        resumed.stderr
    trained = json.loads((run / "trained.json").read_text())
    assert len(trained) == 2 and len({t["hash"] for t in trained}) == 2
    for record in trained:
        epochs = [e for e, _ in record["curve"]]
        assert epochs == sorted(set(epochs)), record  # no epoch trained (reported) twice
    assert (run / "export" / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.data
def test_the_smoke_config_runs_end_to_end_on_cifar10(data_root, tmp_path) -> None:
    """`make demo`'s config, as a user runs it (its own Ray, real CIFAR-10): 20 minutes on the
    loaded 2-core machine, hence slow."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HGNAS_DATA": str(data_root)}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([sys.executable, str(JOB), "--smoke-test", "--set",
                             f"storage_path={tmp_path}"], env=env, capture_output=True,
                            text=True, timeout=3600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "smoke"
    metrics = json.loads((run / "export" / "metrics.json").read_text())
    assert metrics["params"] <= 1_000_000 and metrics["macs"] <= 40_000_000
    assert (run / "report.md").is_file() and (run / "export" / "model.pt").is_file()
    assert "best:" in result.stdout
