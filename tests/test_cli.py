"""The `hgnas` command line: `space sample` and `space describe`."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hgnas_ray import cli
from hgnas_ray.cli import space as space_cli
from hgnas_ray.nn.builder import SkeletonSize, TaskShape, genotype_cost
from hgnas_ray.space import (
    CellGenotype,
    MacroGenotype,
    Nb201Genotype,
    format_genotype,
    genotype_hash,
    parse_genotype,
    sample_genotype,
)

SMALL_SKELETON = ["--skeleton-channels", "8", "--skeleton-cells", "1"]
KINDS = {"cell": CellGenotype, "macro": MacroGenotype, "nb201": Nb201Genotype}
HGNAS = Path(sys.executable).with_name("hgnas")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; argparse errors exit through SystemExit."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def sample_text(space: str, seed: int = 0) -> str:
    return format_genotype(sample_genotype(space, np.random.default_rng(seed)))


# ---------------------------------------------------------------------------- sample
@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_sample_prints_parsable_lines(space: str, capsys) -> None:
    code, out, err = run(["space", "sample", "--space", space, "-n", "6", "--seed", "3"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 6
    genotypes = [parse_genotype(line) for line in lines]
    assert all(isinstance(g, KINDS[space]) for g in genotypes)
    assert [format_genotype(g) for g in genotypes] == lines
    rng = np.random.default_rng(3)  # the CLI is the library, seeded
    assert genotypes == [sample_genotype(space, rng) for _ in range(6)]


@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_sample_is_deterministic_per_seed(space: str, capsys) -> None:
    argv = ["space", "sample", "--space", space, "-n", "4"]
    first = run([*argv, "--seed", "11"], capsys)
    again = run([*argv, "--seed", "11"], capsys)
    other = run([*argv, "--seed", "12"], capsys)
    assert first == again and first[0] == 0
    assert other[1] != first[1]


def test_sample_zero(capsys) -> None:
    assert run(["space", "sample", "--space", "cell", "-n", "0"], capsys) == (0, "", "")


def test_sample_within_budget(capsys) -> None:
    code, out, err = run(["space", "sample", "--space", "macro", "-n", "2", "--seed", "1",
                          "--max-params", "2e5", "--max-macs", "4e7", "--num-classes", "100"],
                         capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        cost = genotype_cost(parse_genotype(line), TaskShape(num_classes=100))
        assert cost.params <= 200_000 and cost.macs <= 40_000_000


# ---------------------------------------------------------------------------- describe
@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_describe_json(space: str, capsys) -> None:
    text = sample_text(space, seed=5)
    code, out, err = run(["space", "describe", text, "--json", *SMALL_SKELETON], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    genotype = parse_genotype(text)
    cost = genotype_cost(genotype, TaskShape(), SkeletonSize(8, 1))
    assert {"params", "macs", "flops", "units", "hash", "genotype"} <= set(info)
    assert info["flops"] == 2 * info["macs"]
    assert (info["params"], info["macs"]) == (cost.params, cost.macs)
    assert info["hash"] == genotype_hash(genotype)
    assert parse_genotype(info["genotype"]) == genotype
    assert "2 x macs" in info["units"]["flops"]
    assert info["units"]["macs"].startswith("multiply-accumulates")
    if space == "macro":
        assert info["num_cells"] == genotype.num_cells
        assert info["cells"] == len(genotype.stages)


@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_describe_text(space: str, capsys) -> None:
    text = sample_text(space, seed=6)
    code, out, err = run(["space", "describe", text, *SMALL_SKELETON], capsys)
    assert (code, err) == (0, "")
    genotype = parse_genotype(text)
    cost = genotype_cost(genotype, TaskShape(), SkeletonSize(8, 1))
    assert out.startswith(genotype_hash(genotype))
    assert f"params {cost.params:,}" in out and f"MACs {cost.macs:,}" in out
    assert f"FLOPs {cost.flops:,}" in out and "FLOPs = 2 x MACs" in out
    assert "out = sum" in out  # the drawing of the cell(s)
    if space == "macro":
        assert out.count("  stage ") == len(genotype.stages)
    if space == "nb201":
        assert f"arch {text}" in out


def test_describe_task_options_change_the_cost(capsys) -> None:
    text = sample_text("macro", seed=2)
    code, out, _ = run(["space", "describe", text, "--json", "--num-classes", "100",
                        "--input-size", "64"], capsys)
    info = json.loads(out)
    cost = genotype_cost(parse_genotype(text), TaskShape(num_classes=100, input_size=64))
    assert code == 0 and (info["params"], info["macs"]) == (cost.params, cost.macs)
    assert "100 classes, 64x64" in info["network"]


def test_describe_reads_stdin_and_reports_bad_lines(capsys, monkeypatch) -> None:
    good = [sample_text("cell", 1), sample_text("nb201", 2), sample_text("macro", 3)]
    lines = [good[0], "", good[1], '{"ops": ["conv",', good[2]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    code, out, err = run(["space", "describe", "-", "--json", *SMALL_SKELETON], capsys)
    assert code == 2
    printed = [json.loads(line) for line in out.splitlines()]
    assert [parse_genotype(p["genotype"]) for p in printed] == [parse_genotype(g) for g in good]
    errors = err.splitlines()
    assert len(errors) == 1 and "line 4:" in errors[0] and "Traceback" not in err


def test_describe_stdin_all_good(capsys, monkeypatch) -> None:
    lines = [sample_text("cell", s) for s in range(3)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines)))
    code, out, err = run(["space", "describe", "-", *SMALL_SKELETON], capsys)
    assert (code, err) == (0, "")
    assert sum(line[:1] not in (" ", "") for line in out.splitlines()) == 3  # one header each


# ---------------------------------------------------------------------------- errors
CELL_JSON = {"space": "cell", "ops": ["conv", "sep_conv", "none", "none", "none", "none"],
             "kernels": [3, 5, 0, 0, 0, 0], "edges": [[0, 1], [1, 2], [2, 7], [0, 7]]}


def _cell_with(**changes) -> str:
    return json.dumps({**CELL_JSON, **changes})


def _macro_with_width(width: int) -> str:
    return json.dumps({"space": "macro", "stem_channels": 16, "final_channels": 64,
                       "stages": [{"cell": CELL_JSON, "channels": width, "stride": 1,
                                   "repeats": 1}]})


@pytest.mark.parametrize(("genotype", "needles"), [
    ('{"ops": ["conv",', ["malformed"]),
    ("not a genotype", ["malformed"]),
    (_cell_with(ops=["conv", "warp_conv", "none", "none", "none", "none"]),
     ["'warp_conv'", "node 2"]),
    (_cell_with(ops=["conv", "sep_conv", "conv", "none", "none", "none"],
                kernels=[3, 5, 3, 0, 0, 0], edges=[[0, 1], [0, 3], [3, 2], [1, 2], [2, 7]]),
     ["edge (3, 2)"]),
    (_macro_with_width(12), ["12", "multiples of 8"]),
    ("|nor_conv_3x3~0|+|bogus~0|", ["NAS-Bench-201"]),
])
def test_describe_bad_genotype_is_one_line(genotype: str, needles: list[str], capsys) -> None:
    code, out, err = run(["space", "describe", genotype], capsys)
    assert_one_line_error(code, out, err, "hgnas: error:", *needles)


@pytest.mark.parametrize("argv", [
    ["space", "sample", "--space", "darts"],
    ["space", "sample"],
    ["space", "sample", "--space", "cell", "-n", "many"],
    ["space", "describe"],
    ["space"],
    [],
])
def test_bad_usage_is_one_line(argv: list[str], capsys) -> None:
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, "error:", "--help")


def test_unknown_space_names_the_choices(capsys) -> None:
    code, out, err = run(["space", "sample", "--space", "darts"], capsys)
    assert_one_line_error(code, out, err, "'darts'", "cell", "macro", "nb201")


def test_over_budget_is_one_line(capsys, monkeypatch) -> None:
    # Same code path as the real command, with fewer draws: 200 draws take over a minute.
    fast = functools.partial(space_cli.sample_within_budget, max_draws=5)
    monkeypatch.setattr(space_cli, "sample_within_budget", fast)
    code, out, err = run(["space", "sample", "--space", "macro", "--max-params", "100"], capsys)
    assert_one_line_error(code, out, err, "params <= 100", "below what any", "raise it")


def test_hard_budget_is_one_line(capsys, monkeypatch) -> None:
    fast = functools.partial(space_cli.sample_within_budget, max_draws=3)
    monkeypatch.setattr(space_cli, "sample_within_budget", fast)
    code, out, err = run(["space", "sample", "--space", "macro", "--max-params", "600"], capsys)
    assert_one_line_error(code, out, err, "params <= 600", "closest", "raise the budget")


@pytest.mark.parametrize("option", ["--input-size", "--num-classes", "--skeleton-channels",
                                    "--skeleton-cells"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_bad_task_options_are_one_line(option: str, value: str, capsys) -> None:
    code, out, err = run(["space", "describe", sample_text("cell"), option, value], capsys)
    assert_one_line_error(code, out, err, option, "positive integer")


@pytest.mark.parametrize("argv", [
    ["space", "sample", "--space", "macro", "--max-params", "nan"],
    ["space", "sample", "--space", "macro", "--max-macs", "inf"],
    ["space", "sample", "--space", "cell", "--max-params", "1e6"],
    ["space", "sample", "--space", "nb201", "--max-macs", "1e6"],
    ["space", "sample", "--space", "macro", "--max-params", "0"],
    ["space", "sample", "--space", "cell", "-n", "-1"],
])
def test_bad_option_values_are_one_line(argv: list[str], capsys) -> None:
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, "hgnas: error:")


# ---------------------------------------------------------------------------- console script
def _hgnas(*args: str, stdin: str = "", timeout: int = 120) -> subprocess.CompletedProcess:
    assert HGNAS.is_file(), f"{HGNAS} missing: reinstall the package (pip install -e .)"
    return subprocess.run([str(HGNAS), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_console_script() -> None:
    """One real process: output, the error line and the exit code all pass through the script."""
    good = sample_text("cell", 4)
    result = _hgnas("space", "describe", "-", "--json", *SMALL_SKELETON,
                    stdin=f"{good}\n{{bad\n")
    assert result.returncode == 2
    [printed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert parse_genotype(printed["genotype"]) == parse_genotype(good)
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("hgnas: error: line 2: malformed")


def test_console_script_impossible_budget_fails_fast() -> None:
    result = _hgnas("space", "sample", "--space", "macro", "--max-params", "100", timeout=600)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "below what any" in result.stderr
