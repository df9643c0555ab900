"""The search job on a tiny real dataset (scikit-learn digits): the loop through the package
(`hgnas_ray.search.job`, in-process), and the entry point `jobs/search.py` with Ray in-process."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest

from hgnas_ray.config import load_config
from hgnas_ray.search.config import SearchConfig
from hgnas_ray.search.job import evaluate_serially, format_ranking, run_search_job

JOB = Path(__file__).resolve().parents[1] / "jobs" / "search.py"
SMALL = ["data.task=digits", "run_name=t", "sample.num_candidates=3", "data.probe_size=20",
         "budget.max_params=200000", "sample.proxies=[params, naswot, zico]"]


def _load_job():
    spec = importlib.util.spec_from_file_location("search_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_loop_evaluates_resumes_and_ranks(tmp_path, caplog):
    config = load_config(SearchConfig, None, [*SMALL, f"storage_path={tmp_path}"])
    calls = []

    def evaluate(genotypes, evaluator, on_result):
        calls.append(len(genotypes))
        evaluate_serially(genotypes, evaluator, on_result)

    ranking = run_search_job(config, evaluate)
    run_dir = tmp_path / "t"
    records = [json.loads(x) for x in (run_dir / "candidates.jsonl").read_text().splitlines()]
    assert calls == [3] and len(records) == 3 and all(r["status"] == "ok" for r in records)
    assert all(r["params"] <= 200_000 and r["flops"] == 2 * r["macs"] for r in records)
    assert all(r["forward_ms"] > 0 and r["zico_status"] == "ok" for r in records)
    assert json.loads((run_dir / "ranking.json").read_text()) == ranking
    assert [row["zico"] for row in ranking] == sorted((r["zico"] for r in records), reverse=True)
    assert {row["genotype"] for row in ranking} == {r["genotype"] for r in records}
    assert (run_dir / "config.yaml").is_file()
    text = format_ranking(ranking, "zico")
    assert "ranked by zico" in text and f"#1   {ranking[0]['hash']}" in text
    # a re-run finds every candidate done and evaluates nothing
    with caplog.at_level(logging.INFO, logger="hgnas_ray"):
        assert run_search_job(config, evaluate) == ranking
    assert calls == [3] and "3 already evaluated, 0 to go" in caplog.text


@pytest.mark.ray
def test_search_job_entry_point_on_ray(tmp_path, capsys):
    import ray

    job = _load_job()
    args = [x for item in [*SMALL, f"storage_path={tmp_path}", "ray.num_cpus=2"]
            for x in ("--set", item)]
    try:
        assert job.main(args) == 0
        run_dir = tmp_path / "t"
        records = [json.loads(x) for x in (run_dir / "candidates.jsonl").read_text().splitlines()]
        assert len(records) == 3 and all(r["status"] == "ok" for r in records)
        ranking = json.loads((run_dir / "ranking.json").read_text())
        values = [row["zico"] for row in ranking]
        assert values == sorted(values, reverse=True)
        out = capsys.readouterr()
        assert "ranked by zico" in out.out and "[3/3]" in out.err
        # a re-run finds every candidate done and evaluates nothing
        assert job.main(args) == 0
        assert "3 already evaluated, 0 to go" in capsys.readouterr().err
        assert len((run_dir / "candidates.jsonl").read_text().splitlines()) == 3
    finally:
        ray.shutdown()


def test_bad_config_is_one_line_exit_2(tmp_path, capsys):
    job = _load_job()
    assert job.main(["--set", "sample.bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config key" in err[0]


def test_missing_data_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HGNAS_DATA", raising=False)
    monkeypatch.setenv("HGNAS_CACHE", str(tmp_path / "cache"))
    job = _load_job()
    code = job.main(["--set", "data.download=false", "--set", f"storage_path={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "HGNAS_DATA" in err[0]
