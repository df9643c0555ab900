"""The search job end to end on a tiny real dataset (scikit-learn digits), Ray in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

JOB = Path(__file__).resolve().parents[1] / "jobs" / "search.py"


def _load_job():
    spec = importlib.util.spec_from_file_location("search_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.ray
def test_search_slice_runs_resumes_and_ranks(tmp_path, capsys):
    import ray

    job = _load_job()
    args = ["--set", "data.task=digits", "--set", f"storage_path={tmp_path}",
            "--set", "run_name=t", "--set", "sample.num_candidates=3",
            "--set", "data.probe_size=20", "--set", "budget.max_params=200000",
            "--set", "ray.num_cpus=2", "--set", "sample.proxies=[params, naswot, zico]"]
    try:
        assert job.main(args) == 0
        run_dir = tmp_path / "t"
        records = [json.loads(x) for x in (run_dir / "candidates.jsonl").read_text().splitlines()]
        assert len(records) == 3 and all(r["status"] == "ok" for r in records)
        assert all(r["params"] <= 200_000 and r["flops"] == 2 * r["macs"] for r in records)
        ranking = json.loads((run_dir / "ranking.json").read_text())
        values = [row["zico"] for row in ranking]
        assert values == sorted(values, reverse=True)
        assert (run_dir / "config.yaml").is_file()
        # a re-run finds every candidate done and evaluates nothing
        assert job.main(args) == 0
        assert "3 already evaluated, 0 to go" in capsys.readouterr().out
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
