"""The search report: plots, Spearman, Pareto front, and degenerate inputs."""

from __future__ import annotations

import math
import re

import pytest
from scipy.stats import spearmanr

from hgnas_ray.search.report import pareto_front, spearman, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("proxy_vs_accuracy.png", "best_score.png", "val_curves.png", "pareto.png")
CONFIG = {"data": {"task": "cifar10"}, "budget": {"max_params": 1_000_000, "max_macs": None},
          "train": {"top_k": 5, "proxies": ("zico", "nwot")}}
BEST = {"hash": "aaaa0001", "accuracy": 81.0, "params": 420_000, "macs": 30_000_000,
        "flops": 60_000_000, "latency": {"device": "cpu", "device_name": "x86_64",
                                         "torch_threads": 1, "median_ms": {"1": 1.5, "64": 40.0}}}
STAGES = {"generate": {"seconds": 12.5, "status": "ran", "candidates": 40},
          "train": {"seconds": 300.0, "status": "ran"},
          "export": {"seconds": 0.0, "status": "skipped"}}


def _trained(hash_: str, score, accuracy, macs, status="ok", error=None) -> dict:
    curve = [] if accuracy is None else [[1, accuracy / 2], [2, accuracy]]
    return {"hash": hash_, "status": status, "best_val_accuracy": accuracy, "curve": curve,
            "epochs": len(curve), "seconds": 10.0, "error": error, "params": 400_000,
            "macs": macs, "zico": score}


TRAINED = [_trained("aaaa0001", 3.0, 81.0, 30e6), _trained("bbbb0002", 1.0, 70.0, 10e6),
           _trained("cccc0003", 2.0, 75.0, 40e6, status="stopped"),
           _trained("dddd0004", 4.0, 79.0, 20e6), _trained("eeee0005", 0.5, 60.0, 5e6),
           _trained("ffff0006", 2.5, None, 25e6, status="failed", error="loss is NaN | x\nend")]
SCORED = [{"hash": f"h{i}", "params": 1000 * i, "macs": 10_000 * i, "zico": float(i),
           "source": "generated" if i < 4 else "refined", "status": "ok"} for i in range(6)]


def _report(tmp_path, **overrides) -> str:
    arguments = {"config": CONFIG, "scored": SCORED, "trained": TRAINED, "rank_by": "zico",
                 "best": BEST, "stages": STAGES, "history": [1.0, float("nan"), 3.0, None, 2.0]}
    path = write_report(tmp_path, **{**arguments, **overrides})
    assert path == tmp_path / "report.md"
    return path.read_text()


def _assert_plots(tmp_path, text: str) -> None:
    for name in PLOTS:
        data = (tmp_path / "report" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
        assert f"](report/{name})" in text
    assert not list(tmp_path.rglob(".*.tmp"))


def test_report_has_its_plots_sections_and_versions(tmp_path):
    text = _report(tmp_path)
    _assert_plots(tmp_path, text)
    for needle in ("Task: cifar10", "1,000,000 parameters", "`aaaa0001`", "81.00 %",
                   "FLOPs (= 2 x MACs): 60.000M", "batch 64: 40.00 ms", "## Trained candidates",
                   "## Failed candidates (1 of 6)", "loss is NaN \\| x end", "## Stage timings",
                   "| generate | ran | 12.5 | candidates: 40 |", "```yaml", "- zico",
                   "| ray |", "| hgnas_ray |", "| torchvision |", "4 generated, 2 refined",
                   "increasing MACs: `eeee0005` (60.00 %, 5.000M MACs), `bbbb0002`"):
        assert needle in text, needle


def test_printed_spearman_equals_scipys(tmp_path):
    text = _report(tmp_path)
    ok = [r for r in TRAINED if r["best_val_accuracy"] is not None]
    expected = spearmanr([r["zico"] for r in ok], [r["best_val_accuracy"] for r in ok]).statistic
    printed = re.search(r"Spearman rho = (-?[0-9.]+) \(n = (\d+)\)", text)
    assert printed and int(printed.group(2)) == len(ok) == 5
    assert float(printed.group(1)) == pytest.approx(expected, abs=5e-5)
    assert spearman([r["zico"] for r in TRAINED],
                    [r["best_val_accuracy"] for r in TRAINED]) == pytest.approx(expected)


def test_spearman_is_undefined_for_few_points_or_constant_input():
    assert spearman([1.0, 2.0], [3.0, 4.0]) is None
    assert spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) is None
    assert spearman([1.0, None, float("nan"), 2.0], [1.0, 2.0, 3.0, 4.0]) is None
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_pareto_front_on_a_hand_made_example():
    points = [(10, 70.0),   # 0 front: cheapest
              (20, 80.0),   # 1 front
              (25, 78.0),   # 2 dominated by 1
              (30, 80.0),   # 3 dominated by 1 (same accuracy, more MACs)
              (40, 90.0),   # 4 front
              (40, 85.0),   # 5 dominated by 4 (same MACs)
              (20, 80.0),   # 6 duplicate of 1: the first stays
              (5, float("nan")),  # 7 ignored
              (50, 89.0)]   # 8 dominated by 4
    assert pareto_front(points) == [0, 1, 4]
    assert pareto_front([]) == []
    assert pareto_front([(1, 2.0)]) == [0]


def test_no_trained_candidate_still_gives_a_report(tmp_path):
    text = _report(tmp_path, scored=[], trained=[], best=None, stages=None, history=None)
    _assert_plots(tmp_path, text)
    for needle in ("No candidate was trained", "none exported", "Spearman rho = n/a",
                   "No stage timings recorded", "Candidates scored: 0",
                   "increasing MACs: none"):
        assert needle in text, needle


def test_all_trials_failed_says_so(tmp_path):
    failed = [_trained(f"f{i}", float(i), None, 1e6, status="failed", error="CUDA out of memory")
              for i in range(3)]
    text = _report(tmp_path, trained=failed, best=None)
    _assert_plots(tmp_path, text)
    assert "All 3 trained candidates failed" in text
    assert text.count("CUDA out of memory") == 3
    assert "Spearman rho = n/a (fewer than 3 points; n = 0)" in text


def test_nan_and_missing_scores_are_reported_not_crashed_on(tmp_path):
    trained = [_trained("n1", float("nan"), 50.0, math.nan), _trained("n2", None, 60.0, 2e6),
               _trained("n3", 1.0, float("nan"), 3e6)]
    scored = [{"hash": "s", "params": None, "macs": None, "zico": float("nan"),
               "source": "generated", "status": "failed"}]
    text = _report(tmp_path, trained=trained, scored=scored, history=None,
                   config={"odd": (1, 2), "path": tmp_path})
    _assert_plots(tmp_path, text)
    assert "Spearman rho = n/a" in text and "| n/a |" in text
    assert "Budget: n/a" in text
