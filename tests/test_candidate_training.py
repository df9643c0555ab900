"""Real training of candidate networks: the Ray-free loop (on the built-in 8x8 digits) and its
Ray Tune adapter (parallel trials, ASHA, a failed trial recorded, restore without retraining)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from hgnas_ray.errors import ConfigError
from hgnas_ray.space.cell_sampling import sample_cell
from hgnas_ray.space.macro import MacroGenotype, Stage
from hgnas_ray.space.nb201 import Nb201Genotype
from hgnas_ray.training.candidates import (
    CandidateTrainConfig,
    TaskConfig,
    augment_batch,
    split_train_val,
    train_candidate,
)

CELL = Nb201Genotype.from_string(
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|"
    "avg_pool_3x3~2|")
TINY = CandidateTrainConfig(epochs=3, batch_size=32, lr=0.1, channels=8, cells_per_stage=1,
                            max_batches_per_epoch=12)


@pytest.fixture(scope="module")
def digits():
    return split_train_val(TaskConfig("digits").load("train"), TINY)


def test_split_is_seeded_disjoint_and_limited():
    data = TaskConfig("digits").load("train")
    train, val = split_train_val(data, TINY)
    again, val_again = split_train_val(data, TINY)
    assert len(train) + len(val) == len(data) and len(val) == round(0.1 * len(data))
    assert np.array_equal(val.images, val_again.images)
    limited_train, limited = split_train_val(data, replace(TINY, val_limit=20))
    assert len(limited) == 20 and len(limited_train) == len(train)  # the limit keeps train fixed
    _, other = split_train_val(data, replace(TINY, split_seed=1))
    assert not np.array_equal(val.labels, other.labels)


def test_augment_crops_and_flips_each_image():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = augment_batch(x, torch.Generator().manual_seed(0), padding=0)  # flip only
    for image, original in zip(out, x, strict=True):
        assert torch.equal(image, original) or torch.equal(image, original.flip(-1))
    padded = augment_batch(x, torch.Generator().manual_seed(1), padding=2)
    assert padded.shape == x.shape


def test_loss_falls_and_validation_beats_chance(digits):
    train, val = digits
    reports = []
    result = train_candidate(CELL, train, val, TINY, lambda e, m, s: reports.append(m))
    assert result.status == "ok" and result.stop_reason == "epochs" and result.epochs == 3
    assert [r["epoch"] for r in reports] == [1, 2, 3] and reports[-1]["final"]
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]
    assert result.best_val_accuracy > 30.0  # 10 classes: chance is 10 %
    assert reports[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at zero


def test_resume_from_a_state_matches_the_uninterrupted_run(digits):
    train, val = digits
    states, reports = {}, []

    def keep(epoch, report, state):
        states[epoch] = state
        reports.append(report)

    train_candidate(CELL, train, val, TINY, keep)
    resumed = train_candidate(CELL, train, val, TINY, state=states[1])
    assert [r["epoch"] for r in resumed.history] == [2, 3]
    for a, b in zip(resumed.history, reports[1:], strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_accuracy"] == b["val_accuracy"]
    assert resumed.best_val_accuracy == max(r["val_accuracy"] for r in reports)
    assert resumed.seconds > states[1]["metrics"]["seconds"]  # the clock continues


def test_a_diverging_run_ends_failed_without_raising(digits):
    train, val = digits
    result = train_candidate(CELL, train, val, replace(TINY, lr=1e6))
    assert result.status == "failed" and result.stop_reason == "diverged"
    assert "non-finite" in result.error


def test_a_wall_clock_budget_stops_training_annealed(digits):
    train, val = digits
    config = replace(TINY, epochs=10_000, max_batches_per_epoch=4, budget_s=1.5)
    result = train_candidate(CELL, train, val, config)
    assert result.status == "ok" and result.stop_reason == "budget"
    assert result.epochs < 10_000 and result.history[-1]["final"]
    assert result.history[-1]["lr"] < 0.1 * config.lr  # the schedule ran over the seconds


@pytest.mark.parametrize("kind", ["cell", "macro"])
def test_every_genotype_kind_trains(digits, kind):
    train, val = digits
    cell = sample_cell(np.random.default_rng(3))
    genotype = cell if kind == "cell" else MacroGenotype(8, (Stage(cell, 8, 2, 1),), 16)
    result = train_candidate(genotype.to_dict(), train, val,
                             replace(TINY, epochs=1, max_batches_per_epoch=3))
    assert result.status == "ok" and result.epochs == 1


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="val_fraction"):
        replace(TINY, val_fraction=1.5).validate()
    with pytest.raises(ConfigError, match="budget_s"):
        replace(TINY, budget_s=0.0).validate()


# ---------------------------------------------------------------------- Ray Tune
def test_a_gpu_request_no_node_can_meet_is_refused_before_tune_starts(monkeypatch, tmp_path):
    """On a cluster without GPUs (Ray's node list stubbed: no Ray start), asking for a GPU per
    trial fails at once with the cluster's resources named, instead of Tune waiting forever."""
    import ray

    from hgnas_ray.distributed import runtime
    from hgnas_ray.distributed.tune_train import train_candidates
    from hgnas_ray.errors import ClusterError

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(runtime.ray, "nodes", lambda: [
        {"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 1.0}}])
    monkeypatch.setattr(runtime, "_autoscaler_gpus_per_node", lambda: [])
    with pytest.raises(ClusterError, match=r"candidate training asks for 1 GPU\(s\) per worker, "
                       r"but the Ray cluster has no GPUs .*\(2 live node\(s\)\)"):
        train_candidates([CELL], TaskConfig("digits"), TINY, tmp_path, "gpu", num_gpus=1)
    assert not (tmp_path / "gpu").exists()  # refused before the experiment was made


@pytest.mark.ray
def test_tune_trains_in_parallel_records_a_failure_and_restores(local_ray, tmp_path):
    from hgnas_ray.distributed.tune_train import train_candidates

    cells = [CELL, Nb201Genotype.from_string(
        "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"),
             Nb201Genotype.from_string(
        "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")]
    config = replace(TINY, epochs=2, max_batches_per_epoch=6)
    args = (cells, TaskConfig("digits"), config, tmp_path, "candidates")
    kwargs = {"max_concurrent": 3, "num_cpus": 0.5, "grace_period": 1, "reduction_factor": 2,
              "train_overrides": [{}, {}, {"lr": 1e6}]}  # the third one diverges
    records = train_candidates(*args, **kwargs)
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[2]["status"] == "failed" and "diverged" in records[2]["error"]
    finished = records[:2]
    assert all(r["status"] in ("ok", "stopped") for r in finished)
    assert any(r["status"] == "ok" and r["epochs"] == 2 for r in finished)
    assert all(r["best_val_accuracy"] is not None and r["curve"] for r in finished)

    start = time.perf_counter()
    again = train_candidates(*args, **kwargs)  # same storage path and name: restore
    assert time.perf_counter() - start < 20
    assert [(r["status"], r["reported_at"], r["epochs"]) for r in again] == \
        [(r["status"], r["reported_at"], r["epochs"]) for r in records]

    with pytest.raises(ConfigError, match="another name"):
        train_candidates(cells[:2], TaskConfig("digits"), config, tmp_path, "candidates")
