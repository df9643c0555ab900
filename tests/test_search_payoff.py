"""The pure summaries of benchmarks/search_payoff.py (no training, no data)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_payoff.py"


@pytest.fixture(scope="module")
def payoff():
    spec = importlib.util.spec_from_file_location("search_payoff", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(kind: str, accuracy: float | None, fitness: float | None = None,
        name: str = "abcdef0123456789") -> dict:
    return {"kind": kind, "test_accuracy": accuracy, "fitness": fitness, "hash": name,
            "params": 1000, "macs": 20000, "train_seconds": 1.0}


def test_summary_statistics_are_exact(payoff):
    rows = [row("chosen", 50.0, 4.0), row("random", 40.0, 1.0), row("random", 44.0, 2.0),
            row("random", 52.0, 3.0)]
    s = payoff.summarize(rows)
    assert s["random_n"] == 3
    assert s["random_mean"] == pytest.approx(136 / 3)
    assert s["random_std"] == pytest.approx(math.sqrt(((40 - 136 / 3) ** 2 + (44 - 136 / 3) ** 2
                                                       + (52 - 136 / 3) ** 2) / 2))
    assert s["random_best"] == 52.0
    assert s["chosen_minus_random_mean"] == pytest.approx(50 - 136 / 3)
    assert s["difference_in_random_stds"] == pytest.approx((50 - 136 / 3) / s["random_std"])
    assert (s["chosen_rank"], s["ranked_networks"]) == (2, 4)
    # fitness order 1,2,3,4 vs accuracy order 40,44,52,50: one swap at the top
    assert s["spearman_fitness_vs_test_accuracy"]["rho"] == pytest.approx(0.8)
    assert s["spearman_fitness_vs_test_accuracy"]["n"] == 4


def test_failed_networks_are_left_out_and_ties_share_the_better_rank(payoff):
    rows = [row("chosen", 44.0, 1.0), row("random", 44.0, None), row("random", None, 2.0),
            row("random", 30.0, 3.0)]
    s = payoff.summarize(rows)
    assert s["random_n"] == 2 and s["random_best"] == 44.0
    assert s["chosen_rank"] == 1 and s["ranked_networks"] == 3
    assert s["spearman_fitness_vs_test_accuracy"] == {"rho": None, "p": None, "n": 2}


def test_summary_needs_exactly_one_chosen(payoff):
    with pytest.raises(ValueError, match="exactly one chosen"):
        payoff.summarize([row("random", 1.0), row("random", 2.0)])


def test_spearman_ignores_non_finite_pairs_and_refuses_constant_sides(payoff):
    assert payoff.spearman([1, 2, 3, float("nan")], [3, 2, 1, 5])["rho"] == pytest.approx(-1.0)
    assert payoff.spearman([1, 2, 3], [7, 7, 7])["rho"] is None


def test_run_spearman_uses_the_candidates_that_reported(payoff):
    trained = [{"status": "ok", "fitness": 1.0, "best_val_accuracy": 20.0},
               {"status": "stopped", "fitness": 2.0, "best_val_accuracy": 25.0},
               {"status": "ok", "fitness": 3.0, "best_val_accuracy": 30.0},
               {"status": "failed", "fitness": 4.0, "best_val_accuracy": None}]
    s = payoff.run_spearman(trained)
    assert (s["rho"], s["n"], s["trained"], s["stopped_by_asha"]) == (pytest.approx(1.0), 3, 4, 1)


def test_table_lists_the_best_first_and_marks_failures(payoff):
    table = payoff.format_table([row("chosen", 40.0, 1.0, "c" * 16),
                                 row("random", None, 2.0, "r" * 16),
                                 row("random", 45.0, 3.0, "s" * 16)])
    lines = table.splitlines()
    assert lines[2].startswith("| random | ssssssssss") and lines[3].startswith("| chosen |")
    assert "failed" in lines[4]
