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


NB201_ARCH = ("|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|"
              "nor_conv_1x1~2|")


def test_each_record_names_the_network_and_nb201_costs_are_the_benchmarks(capsys, monkeypatch):
    """Regression (issue 12): `score --space nb201` scored a reduced network without saying so
    and reported its params; now the reduced network is asked for by name (--network reduced),
    the record names it, and params/macs are those of the benchmark's network."""
    from hgnas_ray.evaluation import NB201_BENCHMARK
    from hgnas_ray.nn.builder import TaskShape, genotype_cost
    from hgnas_ray.space import Nb201Genotype

    code, out, _ = run(["score", "--space", "nb201", "--proxies", "params,snip", "--task",
                        "digits", "--network", "reduced", "--device", "cpu", NB201_ARCH],
                       capsys, monkeypatch)
    record = json.loads(out)
    digits = TaskShape(num_classes=10, input_size=8, in_channels=1)
    benchmark = genotype_cost(Nb201Genotype.from_string(NB201_ARCH), digits, NB201_BENCHMARK)
    assert code == 0 and (record["params"], record["macs"]) == (benchmark.params, benchmark.macs)
    assert (record["network_channels"], record["network_cells_per_stage"],
            record["probe_batch_size"], record["device"]) == (8, 1, 32, "cpu")


def test_the_default_network_is_the_full_one(capsys, monkeypatch):
    line = format_genotype(sample_genotype("cell", np.random.default_rng(0)))
    code, out, _ = run(["score", "--space", "cell", "--proxies", "params", "--task", "digits",
                        "--device", "cpu", line], capsys, monkeypatch)
    record = json.loads(out)
    assert code == 0 and (record["network_channels"], record["network_cells_per_stage"],
                          record["probe_batch_size"]) == (16, 5, 64)


def test_help_names_the_network_choice(capsys):
    code, out, _ = run_cli(["score", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0
    assert "--network {full,reduced}" in text and "full (default)" in text
    assert "benchmark's network (16 channels, 5 cells per stage)" in text
    assert "its cost is that of the scoring skeleton" in text


@pytest.mark.parametrize("extra, message", [
    (["--skeleton-channels", "-8"], "--skeleton-channels must be an integer in [1, 256]"),
    (["--skeleton-channels", "999999999"], "--skeleton-channels must be an integer"),
    (["--skeleton-cells", "99999999"], "--skeleton-cells must be an integer in [1, 6]"),
    (["--skeleton-cells", "0"], "--skeleton-cells must be an integer in [1, 6]"),
    (["--batch-size", "1"], "--batch-size must be an integer in [2, 1024]"),
    (["--batch-size", "0"], "--batch-size must be an integer in [2, 1024]"),
    (["--device", "foo"], "--device must be cpu, cuda or cuda:N; got 'foo'"),
    (["--network", "tiny"], "argument --network: invalid choice: 'tiny'"),
    (["--seed", "-1"], "--seed must be an integer in [0, 9223372036854775807]"),
])
def test_bad_network_values_and_devices_are_one_line_and_exit_2(extra, message, capsys,
                                                                 monkeypatch):
    """Regression (issue 12): --skeleton-channels -8 turned every cell into an error record
    with nothing on stderr; --device cuda/foo gave a traceback."""
    line = format_genotype(sample_genotype("cell", np.random.default_rng(0)))
    code, out, err = run(["score", "--space", "cell", "--proxies", "params", *SMALL, *extra,
                          line], capsys, monkeypatch)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert message in err


def test_cuda_without_cuda_is_one_line_and_exit_2(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = format_genotype(sample_genotype("cell", np.random.default_rng(0)))
    code, out, err = run(["score", "--space", "cell", "--proxies", "params", *SMALL, "--device",
                          "cuda", line], capsys, monkeypatch)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--device cuda: CUDA is not available on this machine; use --device cpu" in err


@pytest.mark.data
def test_nb201_params_match_the_benchmark_and_describe(data_root, capsys, monkeypatch):
    """The issue's example on CIFAR-10: 157,306 params, as `space describe` and the benchmark
    say, whichever network the proxies ran on."""
    argv = ["score", "--space", "nb201", "--proxies", "params", "--data", str(data_root),
            "--network", "reduced", "--device", "cpu", NB201_ARCH]
    record = json.loads(run(argv, capsys, monkeypatch)[1])
    code, out, _ = run(["space", "describe", NB201_ARCH, "--json"], capsys, monkeypatch)
    assert record["params"] == json.loads(out)["params"] == 157_306


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
