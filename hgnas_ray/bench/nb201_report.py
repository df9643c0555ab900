"""Text table and anytime plot of a NAS-Bench-201 search benchmark (`hgnas bench nb201`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Best-of-1,000 random cells and other points measured from NAS-Bench-Suite-Zero's published
# proxy values and NAS-Bench-201's accuracies (200 draws), as the issue states them; the optimum
# is the benchmark's best cell (index 6111).
REFERENCE_POINTS = {
    "random best-of-1000 by nwot": 93.10,
    "random best-of-1000 by synflow": 93.41,
    "perfect proxy over 1000 random cells": 94.26,
    "optimum": 94.37,
}


def format_summary(result: dict[str, Any]) -> str:
    """A markdown table: method, accuracy mean +- std, evaluations, seconds, evals to match."""
    summary = result["summary"]
    lines = [f"fitness {result['config']['fitness']}, {result['config']['evals']} evaluations "
             f"per search, {result['config']['seeds']} seeds; network "
             f"{_network(result['scoring'])}", "",
             "| method | CIFAR-10 test accuracy (mean +- std) | evaluations | wall s per search "
             "| evaluations to match random's final mean |", "|---|---|---|---|---|"]
    for method, stats in summary.items():
        if method == "generative" and result["config"].get("artifact"):
            method = "generative (amortised: pretrained artifact, no corpus of its own)"
        acc = ("not scored" if stats["accuracy_mean"] is None else
               f"{stats['accuracy_mean']:.2f} +- {stats['accuracy_std']:.2f}")
        match = stats["evals_to_match_random"]
        lines.append(f"| {method} | {acc} | {stats['evaluations_mean']:.0f} | "
                     f"{stats['wall_seconds_mean']:.1f} | "
                     f"{'never' if match is None else match} |")
    if any("training" in stats for stats in summary.values()):
        lines += ["", *format_training(result)]
    return "\n".join(lines)


def format_training(result: dict[str, Any]) -> list[str]:
    """The short-training table: each method's choice without and with training, the best
    cell of its shortlist (what a perfect ranking of it would give), and the training cost."""
    settings = result.get("training", {})
    work = (f"{settings['epochs']} epochs of {settings['train']['max_batches_per_epoch']} "
            f"batches each (at most {settings.get('budget_s')} s)" if settings.get("epochs")
            else f"at most {settings.get('budget_s')} s each")
    lines = [f"short training: top {result['config']['train_top']} cells per search by "
             f"fitness, {work} ({_trial_setting(settings)}), choice by validation accuracy", "",
             "| method | without training | with training | best cell of the shortlist | "
             "Spearman val vs test (mean per search) | trials ok/stopped/failed | "
             "training wall s (total) |", "|---|---|---|---|---|---|---|"]
    for method, stats in result["summary"].items():
        train = stats.get("training")
        if train is None:
            continue
        counts = "/".join(str(train["trials_by_status"][s]) for s in ("ok", "stopped", "failed"))
        lines.append(f"| {method} | {_acc(stats['accuracy_mean'], stats['accuracy_std'])} | "
                     f"{_acc(train['accuracy_mean'], train['accuracy_std'])} | "
                     f"{_number(train['shortlist_best_mean'])} | "
                     f"{_number(train['val_test_spearman_mean'], 3)} | {counts} | "
                     f"{train['wall_seconds_total']:.0f} |")
    return lines


def _trial_setting(settings: dict[str, Any]) -> str:
    train = settings.get("train", {})
    return (f"{train.get('channels')} channels, {train.get('cells_per_stage')} cell(s) per "
            f"stage, batch {train.get('batch_size')}, {settings.get('max_concurrent')} trials "
            "at a time")


def _acc(mean: float | None, std: float | None) -> str:
    return "not scored" if mean is None else f"{mean:.2f} +- {std:.2f}"


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _network(scoring: dict[str, Any]) -> str:
    return (f"{scoring['skeleton_channels']} channels, {scoring['skeleton_cells']} cell(s) per "
            f"stage, probe batch {scoring['batch_size']}, {scoring['device_kind']}")


def plot_anytime(result: dict[str, Any], path: str | Path) -> Path | None:
    """Accuracy of each method's choice so far (its best by the proxy; it can fall when the
    proxy's best changes), mean over seeds, against evaluations; one line per method."""
    curves = {m: s["anytime_mean"] for m, s in result["summary"].items() if s["anytime_mean"]}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, curve in curves.items():
        ax.plot([p[0] for p in curve], [p[1] for p in curve], marker="o", ms=3, label=method)
    for label, value in REFERENCE_POINTS.items():
        if label in ("optimum", "random best-of-1000 by synflow"):
            ax.axhline(value, ls=":", lw=1, color="gray")
            ax.text(0.01, value, label, transform=ax.get_yaxis_transform(), fontsize=7,
                    color="gray", va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("proxy evaluations (distinct cells scored, corpus included)")
    ax.set_ylabel("CIFAR-10 test accuracy of the proxy's choice (%)")
    ax.set_title(f"NAS-Bench-201, fitness {result['config']['fitness']}, "
                 f"{result['config']['seeds']} seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
