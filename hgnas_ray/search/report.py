"""The search's report: `run_dir/report.md` with PNG plots under `run_dir/report/`.

    write_report(run_dir, *, config, scored, trained, rank_by, best, stages=None,
                 history=None) -> path of report.md
    pareto_front(points) -> indices of the (macs, accuracy) points no other point dominates
    spearman(xs, ys) -> Spearman's rho over the finite pairs, or None (< 3 pairs, constant input)

Records (plain dicts, as the pipeline keeps them):
    scored   {"hash", "params", "macs", <rank_by>: float | None, "source": "generated" |
             "refined", "status"}: every proxy-scored candidate
    trained  tune_train.train_candidates records ({"hash", "status": ok | stopped | failed,
             "best_val_accuracy" (percent), "curve": [[epoch, val_acc], ...], "epochs",
             "seconds", "error"}) with "params", "macs" and <rank_by> added
    best     export metrics (nn.export: accuracy, params, macs, flops, latency) or None
    stages   {stage: {"seconds", "status": "ran" | "skipped", ...}}
    history  the proxy score of each evaluated candidate, in evaluation order (higher is better)

Empty inputs, missing or NaN scores and runs where every trial failed still give a whole report
that says so. Plots use matplotlib's Agg canvas directly (no pyplot, no global state). Every file
is written to a temporary name and renamed.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.stats import spearmanr

from hgnas_ray.files import write_atomic

REPORT_FILE, PLOT_DIR = "report.md", "report"
LIBRARIES = (("python", None), ("torch", "torch"), ("torchvision", "torchvision"),
             ("ray", "ray"), ("numpy", "numpy"), ("scipy", "scipy"),
             ("matplotlib", "matplotlib"), ("hgnas_ray", "hgnas-ray"))
ERROR_CHARS = 300


def write_report(run_dir: str | Path, *, config: Mapping[str, Any], scored: Sequence[Mapping],
                 trained: Sequence[Mapping], rank_by: str, best: Mapping[str, Any] | None,
                 stages: Mapping[str, Mapping] | None = None,
                 history: Sequence[float | None] | None = None) -> Path:
    """Write report.md and its plots (module doc); return the path of report.md."""
    run_dir = Path(run_dir)
    (run_dir / PLOT_DIR).mkdir(parents=True, exist_ok=True)
    scores = list(history) if history is not None else [r.get(rank_by) for r in scored]
    rho_note = _correlation(trained, rank_by)
    plots = {
        "Proxy score vs trained accuracy": _plot(run_dir, "proxy_vs_accuracy.png",
                                                 lambda ax: _draw_proxy_vs_accuracy(
                                                     ax, trained, rank_by, rho_note)),
        "Best proxy score vs evaluations": _plot(run_dir, "best_score.png",
                                                 lambda ax: _draw_progress(ax, scores, rank_by)),
        "Validation curves of the trials": _plot(run_dir, "val_curves.png",
                                                 lambda ax: _draw_curves(ax, trained)),
        "Accuracy vs MACs, Pareto front": _plot(run_dir, "pareto.png",
                                                lambda ax: _draw_pareto(ax, trained)),
    }
    sections = [_summary(config, scored, trained, best, rank_by),
                _trained_table(trained, rank_by), _failed_section(trained),
                _stage_table(stages or {}), _correlation_section(rho_note, rank_by),
                _front_section(trained),
                _plot_section(plots), _config_section(config), _versions_section()]
    text = "\n\n".join(s for s in sections if s) + "\n"
    path = run_dir / REPORT_FILE
    write_atomic(path, lambda tmp: tmp.write_text(text))
    return path


# ---------------------------------------------------------------------- pure helpers
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (macs, accuracy) on the front (min MACs, max accuracy), by
    increasing MACs. A point is off the front when another has MACs <= and accuracy >= and is
    better in one of them; of identical points the first stays. Non-finite points are ignored."""
    usable = sorted((m, -a, i) for i, (m, a) in enumerate(points) if _finite(m) and _finite(a))
    front, best_accuracy = [], -math.inf
    for _macs, negative_accuracy, index in usable:  # by MACs, then accuracy (best first)
        if -negative_accuracy > best_accuracy:
            front.append(index)
            best_accuracy = -negative_accuracy
    return front


def spearman(xs: Sequence[float | None], ys: Sequence[float | None]) -> float | None:
    """Spearman's rho over the pairs where both values are finite; None with fewer than 3 such
    pairs or when either side is constant (rho is undefined there)."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if _finite(x) and _finite(y)]
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        return None
    return float(spearmanr([x for x, _ in pairs], [y for _, y in pairs]).statistic)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _correlation(trained: Sequence[Mapping], rank_by: str) -> str:
    """Spearman's rho as text, over the trained candidates with a finite score and accuracy."""
    xs = [r.get(rank_by) for r in trained]
    ys = [r.get("best_val_accuracy") for r in trained]
    n = sum(_finite(x) and _finite(y) for x, y in zip(xs, ys, strict=True))
    rho = spearman(xs, ys)
    if rho is not None:
        return f"Spearman rho = {rho:.4f} (n = {n})"
    why = "fewer than 3 points" if n < 3 else "constant score or accuracy"
    return f"Spearman rho = n/a ({why}; n = {n})"


def _fmt(value: Any, digits: int = 2) -> str:
    """A table cell: numbers rounded, missing or non-finite values as 'n/a'."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return _cell(str(value))


def _count(value: Any) -> str:
    """A large count in millions (params, MACs) with its exact value."""
    return f"{value / 1e6:.3f}M ({value:,})" if _finite(value) else "n/a"


def _millions(value: Any) -> str:
    return f"{value / 1e6:.3f}" if _finite(value) else "n/a"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no column separators."""
    return " ".join(text.split()).replace("|", "\\|")[:ERROR_CHARS]


# ---------------------------------------------------------------------- Markdown sections
def _summary(config: Mapping, scored: Sequence[Mapping], trained: Sequence[Mapping],
             best: Mapping | None, rank_by: str) -> str:
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    by_status = _counts(r.get("status") for r in trained)
    lines = ["# Search report", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}. Proxy (rank_by): `{rank_by}`, "
             "higher is better.", "", "## Summary", "",
             f"- Task: {data.get('task', config.get('task', 'n/a'))}",
             f"- Budget: {_budget(config.get('budget'))}",
             f"- Candidates scored: {len(scored)} "
             f"({_counts(r.get('source') for r in scored) or 'none'})",
             f"- Candidates trained: {len(trained)} ({by_status or 'none'})"]
    if trained and all(r.get("status") == "failed" for r in trained):
        lines.append(f"- **All {len(trained)} trained candidates failed**: no accuracy, no "
                     "best model from training (errors below).")
    elif not trained:
        lines.append("- **No candidate was trained.**")
    return "\n".join(lines + _best_lines(best))


def _counts(values: Any) -> str:
    tally: dict[str, int] = {}
    for value in values:
        tally[str(value)] = tally.get(str(value), 0) + 1
    return ", ".join(f"{n} {name}" for name, n in sorted(tally.items()))


def _budget(budget: Any) -> str:
    """Each limit with its unit; MACs also as FLOPs (= 2 x MACs)."""
    if not isinstance(budget, Mapping) or not budget:
        return "n/a"
    parts = []
    for key, value in budget.items():
        if value is None:
            parts.append(f"{key}: none")
        elif "macs" in key and _finite(value):
            parts.append(f"{key}: {value:,} MACs per image (= {2 * value:,} FLOPs, "
                         "FLOPs = 2 x MACs)")
        elif "params" in key and _finite(value):
            parts.append(f"{key}: {value:,} parameters")
        else:
            parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _best_lines(best: Mapping | None) -> list[str]:
    if not best:
        return ["- Best candidate: none exported."]
    macs = best.get("macs")
    flops = best.get("flops", 2 * macs if _finite(macs) else None)
    return ["", "### Best candidate (exported)", "",
            f"- Hash: `{best.get('hash', 'n/a')}`",
            f"- Accuracy: {_fmt(best.get('accuracy'))} % "
            f"({(best.get('extra') or {}).get('accuracy_is', 'as export/metrics.json says')})",
            f"- Parameters: {_count(best.get('params'))}",
            f"- MACs: {_count(macs)} per image",
            f"- FLOPs (= 2 x MACs): {_count(flops)} per image",
            f"- Latency: {_latency(best.get('latency'))}"]


def _latency(latency: Any) -> str:
    if not isinstance(latency, Mapping):
        return "n/a" if latency is None else str(latency)
    per_batch = ", ".join(f"batch {b}: {_fmt(ms)} ms" if _finite(ms) else f"batch {b}: {ms}"
                          for b, ms in (latency.get("median_ms") or {}).items())
    return (f"{per_batch or 'n/a'} (median) on {latency.get('device', '?')} "
            f"({latency.get('device_name', '?')}), {latency.get('torch_threads', '?')} torch "
            "threads")


def _trained_table(trained: Sequence[Mapping], rank_by: str) -> str:
    if not trained:
        return "## Trained candidates\n\nNo candidate was trained."
    ordered = sorted(trained, key=lambda r: -r["best_val_accuracy"]
                     if _finite(r.get("best_val_accuracy")) else math.inf)
    rows = ["## Trained candidates", "",
            f"| # | hash | status | best val acc (%) | {rank_by} | params (M) | MACs (M) | "
            "epochs | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for rank, r in enumerate(ordered, 1):
        rows.append(f"| {rank} | `{r.get('hash', '?')}` | {_fmt(r.get('status'))} | "
                    f"{_fmt(r.get('best_val_accuracy'))} | {_fmt(r.get(rank_by), 4)} | "
                    f"{_millions(r.get('params'))} | {_millions(r.get('macs'))} | "
                    f"{_fmt(r.get('epochs'))} | {_fmt(r.get('seconds'), 1)} |")
    return "\n".join(rows)


def _failed_section(trained: Sequence[Mapping]) -> str:
    failed = [r for r in trained if r.get("status") == "failed"]
    if not failed:
        return ""
    rows = [f"## Failed candidates ({len(failed)} of {len(trained)})", "", "| hash | error |",
            "|---|---|"]
    rows += [f"| `{r.get('hash', '?')}` | {_cell(str(r.get('error') or 'no error recorded'))} |"
             for r in failed]
    return "\n".join(rows)


def _stage_table(stages: Mapping[str, Mapping]) -> str:
    if not stages:
        return "## Stage timings\n\nNo stage timings recorded."
    rows = ["## Stage timings", "", "| stage | status | seconds | notes |", "|---|---|---|---|"]
    for name, info in stages.items():
        notes = ", ".join(f"{k}: {_fmt(v)}" for k, v in info.items()
                          if k not in ("seconds", "status"))
        rows.append(f"| {_cell(name)} | {_fmt(info.get('status'))} | "
                    f"{_fmt(info.get('seconds'), 1)} | {_cell(notes)} |")
    total = sum(i.get("seconds") for i in stages.values() if _finite(i.get("seconds")))
    return "\n".join(rows + [f"| total | | {total:.1f} | |"])


def _correlation_section(note: str, rank_by: str) -> str:
    return ("## Proxy vs trained accuracy\n\n"
            f"{note}, between `{rank_by}` and the best validation accuracy of the trained "
            "candidates (ASHA-stopped trials included with the accuracy they reached).")


def _front_section(trained: Sequence[Mapping]) -> str:
    usable = [r for r in trained if _finite(r.get("macs")) and _finite(r.get("best_val_accuracy"))]
    front = [usable[i] for i in pareto_front([(r["macs"], r["best_val_accuracy"])
                                              for r in usable])]
    listed = ", ".join(f"`{r.get('hash', '?')}` ({r['best_val_accuracy']:.2f} %, "
                       f"{r['macs'] / 1e6:.3f}M MACs)" for r in front)
    listed = listed or "none (no trained candidate with an accuracy)"
    return ("## Pareto front\n\nTrained candidates no other dominates (at least as accurate "
            f"with at most as many MACs), by increasing MACs: {listed}.")


def _plot_section(plots: Mapping[str, Path]) -> str:
    lines = ["## Plots"]
    for title, path in plots.items():
        lines += ["", f"### {title}", "", f"![{title}]({PLOT_DIR}/{path.name})"]
    return "\n".join(lines)


def _config_section(config: Mapping) -> str:
    plain = json.loads(json.dumps(config, default=str))  # tuples, paths -> YAML-safe values
    return "## Configuration\n\n```yaml\n" + yaml.safe_dump(plain, sort_keys=False) + "```"


def _versions_section() -> str:
    rows = ["## Library versions", "", "| library | version |", "|---|---|"]
    for name, dist in LIBRARIES:
        rows.append(f"| {name} | {_version(dist)} |")
    return "\n".join(rows + ["", f"Platform: {platform.platform()}"])


def _version(dist: str | None) -> str:
    """A distribution's version from its metadata (importing ray only to ask is too slow)."""
    if dist is None:
        return platform.python_version()
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------- plots
def _plot(run_dir: Path, name: str, draw: Callable[[Any], None]) -> Path:
    """Draw on a fresh Agg figure and save it as run_dir/report/name (atomically)."""
    figure = Figure(figsize=(6, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    figure.tight_layout()
    path = run_dir / PLOT_DIR / name
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


def _no_data(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, f"no data: {why}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_proxy_vs_accuracy(ax: Any, trained: Sequence[Mapping], rank_by: str,
                            note: str) -> None:
    points = [(r.get(rank_by), r.get("best_val_accuracy")) for r in trained]
    points = [(x, y) for x, y in points if _finite(x) and _finite(y)]
    ax.set_title(f"{rank_by} vs trained accuracy: {note}", fontsize=9)
    if not points:
        return _no_data(ax, "no trained candidate with both a score and an accuracy")
    ax.scatter([x for x, _ in points], [y for _, y in points])
    ax.set_xlabel(f"proxy score ({rank_by})")
    ax.set_ylabel("best validation accuracy (%)")


def _draw_progress(ax: Any, scores: Sequence[float | None], rank_by: str) -> None:
    ax.set_title(f"best {rank_by} vs evaluations")
    finite = [(i, s) for i, s in enumerate(scores, 1) if _finite(s)]
    if not finite:
        return _no_data(ax, "no evaluation with a finite score")
    running, best = [], -math.inf
    for _, score in finite:
        best = max(best, score)
        running.append(best)
    ax.scatter([i for i, _ in finite], [s for _, s in finite], s=14, alpha=0.6, label="each")
    ax.step([i for i, _ in finite], running, where="post", color="C3", label="best so far")
    ax.set_xlabel(f"evaluations ({len(scores)}, {len(scores) - len(finite)} without a score)")
    ax.set_ylabel(rank_by)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()


def _draw_curves(ax: Any, trained: Sequence[Mapping]) -> None:
    ax.set_title("validation accuracy of the trials")
    drawn = 0
    for r in trained:
        curve = [p for p in r.get("curve") or () if len(p) == 2 and _finite(p[1])]
        if curve:
            ax.plot([p[0] for p in curve], [p[1] for p in curve], marker=".",
                    linestyle="--" if r.get("status") == "failed" else "-",
                    label=f"{str(r.get('hash', '?'))[:8]} ({r.get('status')})")
            drawn += 1
    if not drawn:
        return _no_data(ax, "no trial reported a validation accuracy")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy (%)")
    if drawn <= 12:
        ax.legend(fontsize=7)


def _draw_pareto(ax: Any, trained: Sequence[Mapping]) -> None:
    ax.set_title("accuracy vs MACs (front: max accuracy, min MACs)")
    usable = [r for r in trained if _finite(r.get("macs")) and _finite(r.get("best_val_accuracy"))]
    if not usable:
        return _no_data(ax, "no trained candidate with MACs and an accuracy")
    points = [(r["macs"], r["best_val_accuracy"]) for r in usable]
    on_front = pareto_front(points)
    front = [points[i] for i in on_front]
    ax.scatter([m / 1e6 for m, _ in points], [a for _, a in points], color="0.6",
               label="trained")
    ax.step([m / 1e6 for m, _ in front], [a for _, a in front], where="post", color="C3",
            marker="o", label="Pareto front")
    for i in on_front:
        ax.annotate(str(usable[i].get("hash", "?"))[:8], (points[i][0] / 1e6, points[i][1]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("MACs per image (millions; FLOPs = 2 x MACs)")
    ax.set_ylabel("best validation accuracy (%)")
    ax.legend()
