"""`hgnas bench nb201`: the head-to-head benchmark's plumbing, resume, oracle isolation and CLI."""

from __future__ import annotations

import builtins
import csv
import io
import json
import math
import os
from pathlib import Path

import pytest

from hgnas_ray.bench.nb201_report import format_summary
from hgnas_ray.bench.nb201_search import (
    Nb201BenchConfig,
    ShortTraining,
    run_benchmark,
    score_choices,
    summarize,
    to_json,
)
from hgnas_ray.bench.nb201_table import NB201_TABLE_FILE
from hgnas_ray.corpus.scoring import ScoringConfig
from hgnas_ray.errors import ConfigError, RegistryError
from hgnas_ray.search.spaces import GenotypeSpace
from hgnas_ray.space.nb201 import enumerate_nb201

SPACE = GenotypeSpace("nb201")
WEIGHT = {"none": 0, "skip_connect": 1, "avg_pool_3x3": 1, "nor_conv_1x1": 2, "nor_conv_3x3": 4}


def closed_form(arch) -> float:
    """A stand-in proxy: convolutions weigh most, edges into the output a little more."""
    return float(sum(WEIGHT[op] * (1.5 if i >= 3 else 1.0) for i, op in enumerate(arch.ops)))


def fake_evaluate(calls: list[str]):
    def evaluate(genotypes):
        for g in genotypes:
            calls.append(SPACE.key(g))
            value = closed_form(g)
            yield {"hash": SPACE.key(g), "genotype": SPACE.to_text(g), "status": "ok",
                   "error": "", "tcet": value, "tcet_status": "ok",
                   "params": 1000.0 + 10 * value, "params_status": "ok"}
    return evaluate


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory) -> Path:
    """A full-size stand-in accuracy table (offline): accuracy rises with the fake proxy."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "nb201"
    folder.mkdir()
    with (folder / NB201_TABLE_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "arch_str", "cifar10_test", "cifar10_valid"])
        for i, g in enumerate(enumerate_nb201()):
            acc = 10.0 + 3.0 * closed_form(g)
            writer.writerow([i, g.to_string(), acc, acc])
    return root


def scoring() -> ScoringConfig:
    return ScoringConfig(("tcet", "params"), skeleton_channels=8, skeleton_cells=1).validate()


def small(**changes) -> Nb201BenchConfig:
    base = dict(seeds=1, evals=48, batch_size=8, corpus_size=24, gvae_epochs=2, ccnf_epochs=1,
                clusters=2, population_size=10, sample_size=3)
    return Nb201BenchConfig(**{**base, **changes})


def test_searches_never_open_the_accuracy_table(tmp_path, table_dir, monkeypatch):
    monkeypatch.setenv("HGNAS_DATA", str(table_dir))
    real_open, real_io_open = builtins.open, io.open

    def guarded(opener):
        def open_(file, *args, **kwargs):
            if str(file).endswith(NB201_TABLE_FILE):
                raise AssertionError(f"a search opened the accuracy table {file}")
            return opener(file, *args, **kwargs)
        return open_

    monkeypatch.setattr(builtins, "open", guarded(real_open))
    monkeypatch.setattr(io, "open", guarded(real_io_open))
    calls: list[str] = []
    runs = run_benchmark(small(), scoring(), tmp_path / "work", tmp_path / "cache",
                         fake_evaluate(calls))
    monkeypatch.undo()
    assert {r.method for r in runs} == {"random", "evolution", "generative"}
    assert all(r.evaluations == 48 for r in runs)
    assert score_choices(runs, table_dir / "nb201")
    best = max(closed_form(g) for g in enumerate_nb201())
    for run in runs:
        assert run.test_accuracy == pytest.approx(10.0 + 3.0 * run.fitness)
        assert run.anytime[-1] == [48, run.chosen]
    assert max(r.fitness for r in runs) <= best
    summary = summarize(runs, small())
    assert summary["random"]["evals_to_match_random"] is not None
    json.dumps(to_json(runs, small(), scoring(), summary, {}))  # serialisable


def test_a_rerun_resumes_and_scores_nothing_again(tmp_path):
    calls: list[str] = []
    config = small(methods=("random", "evolution"))
    first = run_benchmark(config, scoring(), tmp_path / "w", tmp_path / "c", fake_evaluate(calls))
    assert len(calls) == len(set(calls)) <= 96  # cells shared by the two methods scored once
    calls.clear()
    again = run_benchmark(config, scoring(), tmp_path / "w", tmp_path / "c", fake_evaluate(calls))
    assert calls == []
    assert [r.chosen for r in again] == [r.chosen for r in first]
    # a new seed reuses the shared cache for every cell the earlier searches scored
    run_benchmark(small(methods=("random",), first_seed=5), scoring(), tmp_path / "w",
                  tmp_path / "c", fake_evaluate(calls))
    assert len(calls) < 48


def test_short_training_chooses_the_shortlists_best_by_validation(tmp_path, table_dir):
    """A stand-in trainer (no Ray): validation accuracy is the fake proxy reversed, so the
    trained choice is the shortlist's last cell; a finished shortlist is not trained again."""
    from hgnas_ray.space.nb201 import Nb201Genotype

    calls: list[tuple[list[str], str]] = []

    def train(archs, name):
        calls.append((list(archs), name))
        return [{"status": "failed" if i == 0 else "ok", "epochs": 2, "seconds": 1.0,
                 "best_val_accuracy": None if i == 0 else
                 100.0 - closed_form(Nb201Genotype.from_string(a)) + 0.01 * i}
                for i, a in enumerate(archs)]

    config = small(methods=("random", "evolution"), train_top=4)
    training = ShortTraining({"budget_s": 1.0}, train)
    runs = run_benchmark(config, scoring(), tmp_path / "w", tmp_path / "c", fake_evaluate([]),
                         training=training)
    assert [len(c[0]) for c in calls] == [4, 4] and calls[0][1].startswith("random-seed0-")
    for run in runs:
        assert len(run.shortlist) == 4 and run.shortlist[0] == run.chosen  # best first
        assert run.trained_choice == run.shortlist[-1]  # lowest fitness, best "validation"
        assert run.trained[0]["status"] == "failed"
    assert score_choices(runs, table_dir / "nb201")
    summary = summarize(runs, config)
    stats = summary["random"]["training"]
    assert stats["trials_by_status"] == {"ok": 3, "stopped": 0, "failed": 1}
    assert stats["val_test_spearman_mean"] < 0  # validation ranks opposite to the table
    assert stats["shortlist_best_mean"] == pytest.approx(summary["random"]["accuracy_mean"])
    result = to_json(runs, config, scoring(), summary, {"training": dict(training.settings)})
    assert "with training" in format_summary(json.loads(json.dumps(result)))
    calls.clear()
    run_benchmark(config, scoring(), tmp_path / "w", tmp_path / "c", fake_evaluate([]),
                  training=training)
    assert calls == []  # the finished shortlists' records are reused


def test_missing_table_leaves_choices_unscored(tmp_path):
    calls: list[str] = []
    runs = run_benchmark(small(methods=("random",), evals=8), scoring(), tmp_path / "w",
                         tmp_path / "c", fake_evaluate(calls))
    assert not score_choices(runs, tmp_path / "nowhere")
    assert runs[0].test_accuracy is None
    assert summarize(runs, small(methods=("random",)))["random"]["accuracy_mean"] is None


def test_config_errors_name_the_fix():
    with pytest.raises(RegistryError, match="synflow"):
        small(fitness="synflo").validate()
    with pytest.raises(RegistryError, match="evolution"):
        small(methods=("annealing",)).validate()
    with pytest.raises(ConfigError, match=r"--evals >= 32"):
        small(evals=20).validate()
    with pytest.raises(ConfigError, match="--corpus-size >= 10"):
        small(corpus_size=9).validate()


def _run_cli(*argv: str) -> tuple[int, str, str]:
    import contextlib

    from hgnas_ray.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    for argv, needle in [(["--proxy", "synflo"], "synflow"), (["--methods", "x"], "random"),
                         (["--evals", "100", "--corpus-size", "300"], "--evals >= 316"),
                         (["--device", "foo"], "cpu or cuda"),
                         (["--artifact", str(tmp_path / "none")], "artifact")]:
        code, _, err = _run_cli("bench", "nb201", "--out", str(tmp_path / "r.json"), *argv)
        assert code == 2, err
        assert needle in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.data
def test_cli_scores_real_cells_and_reports_without_a_table(tmp_path):
    data = os.environ.get("HGNAS_DATA")
    if not data or not (Path(data) / "cifar10").exists():
        pytest.skip("needs HGNAS_DATA with cifar10/")
    out = tmp_path / "r.json"
    code, stdout, err = _run_cli("bench", "nb201", "--data", data, "--out", str(out),
                                 "--seeds", "1", "--evals", "6", "--batch-size", "3",
                                 "--methods", "random,evolution", "--table",
                                 str(tmp_path / "missing.csv"), "--cache", str(tmp_path / "c"))
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["scored"] is False and "not scored" in stdout
    assert "choices are not scored" in err
    run = result["runs"][0]
    assert run["evaluations"] == 6 and math.isfinite(run["fitness"])
    assert result["scoring"]["skeleton_channels"] == 8
