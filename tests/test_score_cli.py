"""`hgnas score` on the always-available digits task, and `hgnas bench proxies` on real data."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from test_cli import run as run_cli  # tests/ is on sys.path under pytest

from hgnas_ray.space import format_genotype, sample_genotype

SMALL = ["--task", "digits", "--batch-size", "16", "--skeleton-channels", "8",
         "--skeleton-cells", "1", "--device", "cpu"]


def run(argv, capsys, monkeypatch, stdin: str | None = None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return run_cli(argv, capsys)


@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_score_prints_one_json_line_per_genotype(space, capsys, monkeypatch):
    rng = np.random.default_rng(3)
    lines = [format_genotype(sample_genotype(space, rng)) for _ in range(2)]
    code, out, err = run(["score", "--space", space, "--proxies", "params,nwot,zico", *SMALL],
                         capsys, monkeypatch, "\n".join(lines) + "\n")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 2
    for line, record in zip(lines, records, strict=True):
        assert record["genotype"] == line and record["status"] == "ok"
        for proxy in ("params", "nwot", "zico"):
            assert record[f"{proxy}_status"] == "ok" and math.isfinite(record[proxy])


def test_score_is_deterministic_for_a_seed(capsys, monkeypatch):
    line = format_genotype(sample_genotype("cell", np.random.default_rng(0)))
    argv = ["score", "--space", "cell", "--proxies", "snip,naswot", "--seed", "5", *SMALL, line]
    first, second = (json.loads(run(argv, capsys, monkeypatch)[1]) for _ in range(2))
    first.pop("seconds"), second.pop("seconds")
    assert first == second and first["snip_status"] == "ok"


def test_bad_lines_are_reported_and_the_rest_scored(capsys, monkeypatch):
    good = format_genotype(sample_genotype("cell", np.random.default_rng(1)))
    nb201 = format_genotype(sample_genotype("nb201", np.random.default_rng(1)))
    code, out, err = run(["score", "--space", "cell", "--proxies", "params", *SMALL],
                         capsys, monkeypatch, f"{good}\n{{not json\n{nb201}\n{good}\n")
    assert code == 2 and len(out.splitlines()) == 2
    assert [line.split(":")[2].strip() for line in err.splitlines()] == ["line 2", "line 3"]


def test_unknown_proxy_lists_the_valid_names(capsys, monkeypatch):
    code, out, err = run(["score", "--space", "cell", "--proxies", "params,flopz", *SMALL],
                         capsys, monkeypatch, "")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "'flopz'" in err and "synflow" in err and "zico" in err


@pytest.mark.data
def test_bench_proxies_on_three_reference_cells(nb201_dir, data_root, tmp_path, capsys,
                                                monkeypatch):
    out_file = tmp_path / "nb201.jsonl"
    argv = ["bench", "proxies", "--cells", str(nb201_dir / "zc_reference_cifar10_1000.csv"),
            "--data", str(data_root), "--out", str(out_file), "--limit", "3",
            "--batch-size", "8", "--proxies", "params,macs,synflow", "--json"]
    code, out, _ = run(argv, capsys, monkeypatch)
    report = json.loads(out)
    assert code == 0 and report["cells"] == 3 and len(out_file.read_text().splitlines()) == 3
    assert report["proxies"]["params"]["vs_reference"]["n"] == 3
    # params of the exact NAS-Bench-201 network rank like the benchmark's own column
    assert report["proxies"]["params"]["vs_reference"]["spearman"] == pytest.approx(1.0)
    # a re-run resumes: nothing is scored again
    run(argv, capsys, monkeypatch)
    assert len(out_file.read_text().splitlines()) == 3
