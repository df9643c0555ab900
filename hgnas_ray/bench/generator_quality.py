"""Quality of a cell-generator artifact (issue 4, item 6), measured on its scored corpus.

Stages (each timed):
  reconstruction  held-out cells (the artifact's `heldout_hashes`) -> encoder mean -> decoder
                  logits. Op accuracy: argmax over the vocabulary's ops vs the true op, per used
                  op node. Adjacency accuracy: logit >= 0 (probability >= 0.5) vs the true edge,
                  over the 28 entries of the 8x8 upper triangle. Exact: `decode_cell` gives the
                  cell's canonical hash.
  condition_r2    R^2 of the condition head on the held-out cells, in normalised units.
  sampling        per temperature: N raw draws (no deduplication, no retries), spread uniformly
                  over the clusters (N // K each, the first N mod K clusters one more).
                  validity = share that `decode_cell` (which repairs) turns into a cell passing
                  `validate()`; valid without repair = share whose logits state a valid cell
                  outright (`read_cell`); uniqueness = distinct hashes / N, novelty = distinct
                  hashes not in the corpus / distinct hashes.
  fidelity        per cluster k, `per_cluster` distinct cells sampled at tau = 0.4 under the
                  cluster's mean condition and scored exactly as the corpus was; per proxy, the
                  Spearman across clusters of requested (cluster mean, proxy units) vs measured
                  mean. Then `n_random` distinct cells of the best cluster (up to
                  `BEST_CLUSTER_DRAWS` draws each) vs `n_random` random cells (`sample_cell`;
                  NAS-Bench-201: random arch strings): the difference of the measured means for
                  every proxy, and their ratio where both means are > 0.
  nb201_accuracy  NAS-Bench-201 artifacts with a table only: mean CIFAR-10 test accuracy of
                  distinct cells of the best cluster, each scored by its arch string (the first
                  of its class; unmappable ones counted, none expected: the decoder returns
                  real cells) vs random arch strings. The table is used only to score.
A NAS-Bench-201 corpus of every distinct cell (`corpus build --all`) makes novelty 0 by
construction.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from hgnas_ray.corpus.reading import ScoredCorpus
from hgnas_ray.errors import ConfigError, DataError, GenotypeError
from hgnas_ray.generator.cells.cell_generator import (
    CLUSTER_TEMPERATURE,
    CellGenerator,
    GenerationWarning,
)
from hgnas_ray.space.cell import NUM_NODES, CellGenotype
from hgnas_ray.space.cell_sampling import sample_cell
from hgnas_ray.space.decoding import decode_cell, read_cell
from hgnas_ray.space.encoding import cell_to_arrays

# cells -> raw ZC (N, C) in the proxies' units, NaN where a proxy failed
ScoreFn = Callable[[Sequence[CellGenotype]], np.ndarray]
logger = logging.getLogger(__name__)
SAMPLE_CHUNK = 250  # latents per CCNF solve
# Draws allowed per distinct best-cluster cell. A narrow cluster repeats its cells at tau 0.4
# (NAS-Bench-201's best cluster: 55 distinct cells in 1,000 draws, 97 in 5,000).
BEST_CLUSTER_DRAWS = 100


@dataclass(frozen=True)
class GeneratorBenchConfig:
    samples: int = 1000
    temperatures: tuple[float, ...] = (CLUSTER_TEMPERATURE, 1.0)
    per_cluster: int = 8
    n_random: int = 100
    nb201_cells: int = 100
    seed: int = 0

    def validate(self) -> GeneratorBenchConfig:
        counts = {"samples": self.samples, "per_cluster": self.per_cluster,
                  "random": self.n_random, "nb201_cells": self.nb201_cells}
        bad = {k: v for k, v in counts.items() if v < 1}
        if bad:
            raise ConfigError(f"counts must be >= 1; got {bad}")
        if not self.temperatures or any(not t > 0 for t in self.temperatures):
            raise ConfigError(f"temperatures must be > 0; got {list(self.temperatures)}")
        return self


def run_generator_bench(generator: CellGenerator, corpus: ScoredCorpus, score: ScoreFn | None,
                        config: GeneratorBenchConfig, table=None) -> dict[str, Any]:
    """The full report (a JSON-able dict). `score=None` skips the condition-fidelity stage.
    Each stage's start and time go to this module's logger."""
    config = config.validate()
    if table is not None and generator.space != "nb201":
        raise ConfigError(f"--table needs a NAS-Bench-201 artifact; this one is for "
                          f"{generator.space!r} cells")
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"space": generator.space, "proxies": list(generator.proxies),
                              "clusters": generator.num_clusters, "config": asdict(config),
                              "timings_seconds": timings}
    cells, zc = heldout_cells(generator, corpus)
    report["heldout_cells"] = len(cells)
    with _timed(timings, "reconstruction"):
        report["reconstruction"] = reconstruction(generator, cells)
    with _timed(timings, "condition_r2"):
        report["condition_r2"] = condition_r2(generator, cells, zc)
    report["sampling"] = {}
    corpus_hashes = set(corpus.hashes)
    for tau in config.temperatures:
        with _timed(timings, f"sampling_t{tau:g}"):
            report["sampling"][f"{tau:g}"] = sample_quality(
                generator, config.samples, tau, corpus_hashes, config.seed)
    if score is not None:
        with _timed(timings, "fidelity"):
            report["fidelity"] = condition_fidelity(generator, score, config)
    if table is not None:
        with _timed(timings, "nb201_accuracy"):
            report["nb201_accuracy"] = nb201_accuracy(generator, table, config.nb201_cells,
                                                      config.seed)
    timings["total"] = sum(timings.values())
    return report


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    logger.info("[bench generator] %s ...", stage)
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    logger.info("[bench generator] %s: %.1fs", stage, timings[stage])


# ---------------------------------------------------------------------- held-out cells
def heldout_cells(generator: CellGenerator, corpus: ScoredCorpus
                  ) -> tuple[list[CellGenotype], np.ndarray]:
    """The artifact's held-out cells found in `corpus`, and their raw ZC (M, C)."""
    wanted = set(generator.heldout_hashes)
    if not wanted:
        raise DataError("the artifact lists no held-out cells (holdout_fraction 0?); train one "
                        "with a held-out split to benchmark it")
    if tuple(corpus.proxies) != tuple(generator.proxies):
        raise DataError(f"the corpus's proxies {list(corpus.proxies)} differ from the "
                        f"artifact's {list(generator.proxies)}; pass the corpus it was trained on")
    rows = [i for i, h in enumerate(corpus.hashes) if h in wanted]
    if len(rows) < len(wanted):
        raise DataError(f"only {len(rows)} of the artifact's {len(wanted)} held-out cells are in "
                        "the corpus; pass the corpus the artifact was trained on")
    return [corpus.cells[i] for i in rows], corpus.zc[rows]


# ---------------------------------------------------------------------- reconstruction, R^2
@torch.no_grad()
def reconstruction(generator: CellGenerator, cells: Sequence[CellGenotype]) -> dict[str, Any]:
    mu = torch.as_tensor(generator.encode(cells), device=generator.device)
    adj_logits, feat_logits = (t.cpu().numpy() for t in generator.gvae.decode(mu))
    n_ops = len(_ops(generator.space))
    upper = np.triu(np.ones((NUM_NODES, NUM_NODES), dtype=bool), 1)
    op_hits = op_total = adj_hits = adj_total = exact = kernel_hits = 0
    for cell, adj, feats in zip(cells, adj_logits, feat_logits, strict=True):
        true_adj, true_feats = cell_to_arrays(cell)
        used = list(cell.used_nodes())
        op_hits += int((feats[used, :n_ops].argmax(1) == true_feats[used, :n_ops].argmax(1)).sum())
        kernel_hits += int((feats[used, -3:].argmax(1) == true_feats[used, -3:].argmax(1)).sum())
        op_total += len(used)
        predicted = adj[:NUM_NODES, :NUM_NODES] >= 0.0
        adj_hits += int((predicted == (true_adj[:NUM_NODES, :NUM_NODES] > 0.5))[upper].sum())
        adj_total += int(upper.sum())
        exact += int(decode_cell(adj, feats, generator.space).hash == cell.hash)
    return {"cells": len(cells), "op_accuracy": _ratio(op_hits, op_total),
            "kernel_accuracy": _ratio(kernel_hits, op_total),
            "adjacency_accuracy": _ratio(adj_hits, adj_total),
            "exact_cell_rate": _ratio(exact, len(cells))}


def _ops(space: str) -> tuple[str, ...]:
    from hgnas_ray.space.vocab import get_vocabulary

    return tuple(get_vocabulary(space).ops)


def condition_r2(generator: CellGenerator, cells: Sequence[CellGenotype], zc: np.ndarray
                 ) -> dict[str, Any]:
    """R^2 per proxy and mean, normalised units (the condition head's target)."""
    target = generator.transform.transform(zc)
    predicted = generator.predict_condition(cells, normalized=True)
    residual = ((predicted - target) ** 2).sum(0)
    spread = ((target - target.mean(0)) ** 2).sum(0)
    r2 = [float(1.0 - r / s) if s > 0 else math.nan for r, s in zip(residual, spread, strict=True)]
    return {"per_proxy": dict(zip(generator.proxies, r2, strict=True)),
            "mean": float(np.nanmean(r2)) if np.isfinite(r2).any() else math.nan}


# ---------------------------------------------------------------------- sampling quality
@torch.no_grad()
def raw_samples(generator: CellGenerator, n: int, temperature: float, seed: int
                ) -> tuple[list[CellGenotype], int, int]:
    """`n` raw draws spread uniformly over the clusters; (valid cells, invalid count, count of
    draws whose logits state a valid cell without repair)."""
    means = np.asarray(generator.cluster_model.means, dtype=np.float32)
    k = len(means)
    per = np.full(k, n // k) + (np.arange(k) < n % k)
    conditions = torch.as_tensor(np.repeat(means, per, axis=0), device=generator.device)
    rng = torch.Generator().manual_seed(int(seed))
    cells, invalid, unrepaired = [], 0, 0
    for start in range(0, n, SAMPLE_CHUNK):
        z = generator.ccnf.sample(conditions[start:start + SAMPLE_CHUNK],
                                  temperature=temperature, generator=rng)
        adj, feats = generator.gvae.decode(z)
        for a, f in zip(adj.cpu(), feats.cpu(), strict=True):
            unrepaired += read_cell(a, f, generator.space) is not None
            try:
                cells.append(decode_cell(a, f, generator.space).validate())
            except GenotypeError:
                invalid += 1
    return cells, invalid, unrepaired


def sample_quality(generator: CellGenerator, n: int, temperature: float,
                   corpus_hashes: set[str], seed: int) -> dict[str, Any]:
    cells, invalid, unrepaired = raw_samples(generator, n, temperature, seed)
    distinct = {c.hash for c in cells}
    return {"samples": n, "spread": "uniform over clusters", "invalid": invalid,
            "validity": _ratio(len(cells), n),
            "validity_without_repair": _ratio(unrepaired, n), "distinct": len(distinct),
            "uniqueness": _ratio(len(distinct), n),
            "novelty": _ratio(len(distinct - corpus_hashes), len(distinct))}


# ---------------------------------------------------------------------- condition fidelity
def condition_fidelity(generator: CellGenerator, score: ScoreFn,
                       config: GeneratorBenchConfig) -> dict[str, Any]:
    proxies = generator.proxies
    clusters = generator.clusters()
    requested = np.array([[c["mean_condition"][p] for p in proxies] for c in clusters])
    measured = np.full_like(requested, np.nan)
    failed, counts = 0, []
    for k in range(len(clusters)):
        with warnings.catch_warnings():  # fewer distinct cells than asked: counted below
            warnings.simplefilter("ignore", GenerationWarning)
            cells = generator.sample(config.per_cluster, cluster=k, seed=config.seed + k)
        counts.append(len(cells))
        values = score(cells)
        failed += int((~np.isfinite(values)).any(1).sum())
        measured[k] = _nanmean(values)
        logger.info("[bench generator] cluster %d: %d cells scored", k, len(cells))
    spearman = {p: _spearman(requested[:, j], measured[:, j]) for j, p in enumerate(proxies)}
    best = generator.best_cluster()
    best_zc = score(generator.sample(config.n_random, cluster=best, seed=config.seed + 7919,
                                     max_draws=BEST_CLUSTER_DRAWS * config.n_random))
    rng = np.random.default_rng(config.seed)
    random_zc = score([_random_cell(rng, generator.space) for _ in range(config.n_random)])
    return {"per_cluster": config.per_cluster, "temperature": CLUSTER_TEMPERATURE,
            "failed_scores": failed, "cells_per_cluster": counts, "spearman": spearman,
            "spearman_mean": float(np.nanmean(list(spearman.values()))),
            "requested": requested.tolist(), "measured": measured.tolist(),
            "best_vs_random": _best_vs_random(proxies, best, best_zc, random_zc)}


def _best_vs_random(proxies, best: int, best_zc: np.ndarray, random_zc: np.ndarray
                    ) -> dict[str, Any]:
    best_mean, random_mean = _nanmean(best_zc), _nanmean(random_zc)
    rows = {}
    for j, p in enumerate(proxies):
        b, r = float(best_mean[j]), float(random_mean[j])
        rows[p] = {"best": b, "random": r, "difference": b - r,
                   "ratio": b / r if b > 0 and r > 0 else None}
    return {"best_cluster": best, "best_cells": len(best_zc), "random_cells": len(random_zc),
            "selected_by": proxies[0], "per_proxy": rows}


# ---------------------------------------------------------------------- NAS-Bench-201 accuracy
def nb201_accuracy(generator: CellGenerator, table, n: int, seed: int) -> dict[str, Any]:
    from hgnas_ray.space.nb201 import sample_nb201
    from hgnas_ray.space.nb201_cells import nb201_arch

    best = generator.best_cluster()
    archs = [nb201_arch(c) for c in generator.sample(n, cluster=best, seed=seed,
                                                     max_draws=BEST_CLUSTER_DRAWS * n)]
    mapped = [a for a in archs if a is not None]
    rng = np.random.default_rng(seed)
    random_acc = [table.test_accuracy(sample_nb201(rng)) for _ in range(n)]
    best_acc = [table.test_accuracy(a) for a in mapped]
    return {"best_cluster": best, "sampled": len(archs), "unmappable": len(archs) - len(mapped),
            "best_mean_accuracy": float(np.mean(best_acc)) if best_acc else math.nan,
            "random_mean_accuracy": float(np.mean(random_acc)), "random_cells": n}


# ---------------------------------------------------------------------- helpers
def _random_cell(rng: np.random.Generator, space: str) -> CellGenotype:
    if space == "nb201":  # a random arch string: most random 8-node cells are no NB201 cell
        from hgnas_ray.space.genotypes import nb201_to_cell
        from hgnas_ray.space.nb201 import sample_nb201

        return nb201_to_cell(sample_nb201(rng)).canonical()
    return sample_cell(rng, space)


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _nanmean(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values).all(1) if values.ndim == 2 and len(values) else np.zeros(0, bool)
    if not ok.any():
        return np.full(values.shape[1] if values.ndim == 2 else 0, np.nan)
    return values[ok].mean(0)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return math.nan
    return float(stats.spearmanr(x[keep], y[keep]).statistic)


# ---------------------------------------------------------------------- formatting
def format_generator_report(report: dict[str, Any]) -> str:
    """Markdown tables."""
    t = report["timings_seconds"]
    rec, r2 = report["reconstruction"], report["condition_r2"]
    lines = [f"## Cell generator quality ({report['space']}, {report['clusters']} clusters, "
             f"proxies {', '.join(report['proxies'])})", "",
             f"Held-out cells: {report['heldout_cells']}", "",
             "| reconstruction | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(rec[k])} |" for k in
              ("op_accuracy", "kernel_accuracy", "adjacency_accuracy", "exact_cell_rate")]
    lines += ["", "| condition head R^2 (normalised) | value |", "|---|---|"]
    lines += [f"| {p} | {_fmt(v)} |" for p, v in r2["per_proxy"].items()]
    lines += [f"| mean | {_fmt(r2['mean'])} |", "",
              "| temperature | samples | invalid | validity | valid without repair | "
              "uniqueness | novelty |", "|---|---|---|---|---|---|---|"]
    for tau, s in report["sampling"].items():
        lines.append(f"| {tau} | {s['samples']} | {s['invalid']} | {_fmt(s['validity'])} | "
                     f"{_fmt(s['validity_without_repair'])} | {_fmt(s['uniqueness'])} | "
                     f"{_fmt(s['novelty'])} |")
    lines.append("\nSamples are spread uniformly over the clusters; raw draws (no dedup).")
    if "fidelity" in report:
        lines += _format_fidelity(report["fidelity"])
    if "nb201_accuracy" in report:
        a = report["nb201_accuracy"]
        lines += ["", "| NAS-Bench-201 CIFAR-10 test accuracy | mean | cells |", "|---|---|---|",
                  f"| best cluster {a['best_cluster']} | {_fmt(a['best_mean_accuracy'])} | "
                  f"{a['sampled'] - a['unmappable']} ({a['unmappable']} unmappable) |",
                  f"| random | {_fmt(a['random_mean_accuracy'])} | {a['random_cells']} |"]
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in t.items()]
    return "\n".join(lines)


def _format_fidelity(f: dict[str, Any]) -> list[str]:
    b = f["best_vs_random"]
    counts = f["cells_per_cluster"]
    lines = ["", f"Condition fidelity: up to {f['per_cluster']} distinct cells per cluster at tau "
             f"{f['temperature']} (got {min(counts)}..{max(counts)}, {sum(counts)} in all), "
             f"scored as the corpus was ({f['failed_scores']} failed).", "",
             "| proxy | Spearman requested vs measured (across clusters) |", "|---|---|"]
    lines += [f"| {p} | {_fmt(v)} |" for p, v in f["spearman"].items()]
    lines += [f"| mean | {_fmt(f['spearman_mean'])} |", "",
              f"Best cluster {b['best_cluster']} (by measured {b['selected_by']}; "
              f"{b['best_cells']} cells) vs {b['random_cells']} random cells:", "",
              "| proxy | best mean | random mean | difference | ratio |", "|---|---|---|---|---|"]
    for p, r in b["per_proxy"].items():
        lines.append(f"| {p} | {_fmt(r['best'])} | {_fmt(r['random'])} | "
                     f"{_fmt(r['difference'])} | {_fmt(r['ratio'])} |")
    return lines


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"


# ---------------------------------------------------------------------- the corpus's scorer
def corpus_score_fn(corpus_dir, data_root: str | None = None) -> ScoreFn:
    """Score cells with the settings of the corpus's ``scores/scoring.json`` (proxies, task,
    probe batch size and count, skeleton, seed), on the CPU; synthetic corpora synthetically."""
    from hgnas_ray.corpus.scoring import SCORING_FILE, CorpusScorer, default_scores_dir
    from hgnas_ray.corpus.shards import read_json

    path = default_scores_dir(corpus_dir) / SCORING_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: the corpus's scoring settings are needed to score "
                        "generated cells the same way; score the corpus with `hgnas corpus score`")
    settings = dict(read_json(path, "scoring settings")["settings"])
    proxies = tuple(settings["proxies"])
    if settings.get("task") == "synthetic":
        return _synthetic_score_fn(proxies, int(settings.get("seed", 0)))
    scorer = CorpusScorer({**settings, "data_root": data_root, "device": "cpu"}).evaluator

    def score(cells: Sequence[CellGenotype]) -> np.ndarray:
        records = [scorer(c) for c in cells]
        return np.array([[r[p] if r.get(f"{p}_status") == "ok" else math.nan for p in proxies]
                         for r in records], dtype=np.float64).reshape(len(cells), len(proxies))

    return score


def _synthetic_score_fn(proxies: tuple[str, ...], seed: int) -> ScoreFn:
    from hgnas_ray.generator.cells.synthetic import synthetic_zc

    rng = np.random.default_rng(seed)

    def score(cells: Sequence[CellGenotype]) -> np.ndarray:
        return np.array([[synthetic_zc(c, j, p, rng) for j, p in enumerate(proxies)]
                         for c in cells], dtype=np.float64).reshape(len(cells), len(proxies))

    return score
