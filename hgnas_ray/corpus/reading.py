"""Reading a scored corpus: its cells, their raw ZC vectors, and what was left out.

The one place that reads a corpus and its scores back as arrays (the cell generator trains on
them; the benchmarks measure against them).

A cell is *labelled* when every chosen proxy has status "ok" and a finite value. The others
(a NaN or non-ok proxy, or no score row at all because its shard is not scored yet) are counted
by reason and kept unlabelled: the G-VAE still learns to reconstruct them (DESIGN 4), but they
never enter the ZC normaliser, the metric and condition losses, the CCNF conditions or the
clusters' measured means. Nothing is replaced by a made-up number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from hgnas_ray.corpus.schema import table_cells
from hgnas_ray.corpus.scoring import SCORING_FILE, default_scores_dir
from hgnas_ray.corpus.shards import cell_shards, list_shards, read_cell_shard, read_json, read_shard
from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.space.cell import CellGenotype

CELL_COLUMNS = ("hash", "space", "adjacency", "ops", "kernels")
EXCLUDED_UNSCORED = "no_score_row"  # the cell's shard is not scored (yet)
EXCLUDED_BAD = "nan_or_not_ok"  # some proxy is NaN/inf or its status is not "ok"


@dataclass
class ScoredCorpus:
    """Cells in corpus order with raw ZC vectors `zc` (N, C), NaN rows where unlabelled.

    `excluded` counts the unlabelled cells by reason; "nan_or_not_ok:<proxy>" counts per proxy
    (a cell can count under several proxies).
    """

    space: str
    proxies: tuple[str, ...]
    hashes: list[str]
    cells: list[CellGenotype]
    zc: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool."""
        return np.isfinite(self.zc).all(axis=1)

    def summary(self) -> dict[str, Any]:
        return {"cells": len(self.cells), "labelled": int(self.labelled.sum()),
                "unlabelled": int((~self.labelled).sum()), "unlabelled_by_reason": self.excluded}


def load_scored_corpus(corpus_dir: str | Path, proxies: tuple[str, ...] | None = None,
                       space: str | None = None) -> ScoredCorpus:
    """Read the cells and the ZC scores of `proxies` (default: those of scoring.json)."""
    corpus_dir = Path(corpus_dir)
    hashes, cells = _read_cells(corpus_dir)
    corpus_space = _corpus_space(corpus_dir, cells)
    if space is not None and space != corpus_space:
        raise ConfigError(f"--space {space} does not match the corpus {corpus_dir}, which holds "
                          f"{corpus_space!r} cells; drop --space or pass --space {corpus_space}")
    scores_dir = default_scores_dir(corpus_dir)
    proxies = tuple(proxies) if proxies else _scored_proxies(scores_dir, corpus_dir)
    zc, excluded = _read_scores(scores_dir, hashes, proxies)
    return ScoredCorpus(corpus_space, proxies, hashes, cells, zc, excluded)


def _read_cells(corpus_dir: Path) -> tuple[list[str], list[CellGenotype]]:
    hashes: list[str] = []
    cells: list[CellGenotype] = []
    for path in cell_shards(corpus_dir):
        table = read_cell_shard(path, CELL_COLUMNS)
        hashes += table.column("hash").to_pylist()
        cells += table_cells(table)
    return hashes, cells


def _corpus_space(corpus_dir: Path, cells: list[CellGenotype]) -> str:
    spaces = {c.space for c in cells}
    if len(spaces) != 1:
        raise DataError(f"corpus {corpus_dir} mixes cell spaces {sorted(spaces)}; a generator "
                        "is trained on one space")
    return spaces.pop()


def _no_scores(corpus_dir: Path) -> DataError:
    return DataError(f"corpus {corpus_dir} has no ZC scores (no scores/part-*.parquet with proxy "
                     f"columns); score it first: `hgnas corpus score --corpus {corpus_dir} "
                     "--proxies snip_snr,nwot,params`")


def _scored_proxies(scores_dir: Path, corpus_dir: Path) -> tuple[str, ...]:
    """The proxy list of scoring.json, else of the first score shard's schema metadata."""
    settings_path = scores_dir / SCORING_FILE
    if settings_path.is_file():
        proxies = read_json(settings_path, "scoring settings").get("settings", {}).get("proxies")
        if proxies:
            return tuple(proxies)
    shards = list_shards(scores_dir)
    if shards:
        metadata = pq.read_schema(shards[0]).metadata or {}
        if b"hgnas.proxies" in metadata:
            return tuple(json.loads(metadata[b"hgnas.proxies"]))
    raise _no_scores(corpus_dir)


def _read_scores(scores_dir: Path, hashes: list[str], proxies: tuple[str, ...]
                 ) -> tuple[np.ndarray, dict[str, int]]:
    """Raw ZC (N, C), NaN rows where unlabelled, and the counts of unlabelled cells by reason."""
    shards = list_shards(scores_dir)
    if not shards:
        raise _no_scores(scores_dir.parent)
    row_of = {h: i for i, h in enumerate(hashes)}
    zc = np.full((len(hashes), len(proxies)), np.nan)
    scored = np.zeros(len(hashes), dtype=bool)
    bad_rows, bad_by_proxy = 0, np.zeros(len(proxies), dtype=np.int64)
    for path in shards:
        table = _score_table(path, proxies)
        rows = np.array([row_of.get(h, -1) for h in table.column("hash").to_pylist()],
                        dtype=np.int64)
        values, bad = _proxy_matrix(table, proxies)
        known = rows >= 0  # score rows of cells no longer in the corpus are ignored
        rows, values, bad = rows[known], values[known], bad[known]
        ok = ~bad.any(axis=1)
        zc[rows[ok]] = values[ok]
        scored[rows] = True
        bad_rows += int((~ok).sum())
        bad_by_proxy += bad.sum(axis=0)
    excluded = {EXCLUDED_UNSCORED: int((~scored).sum()), EXCLUDED_BAD: bad_rows}
    excluded |= {f"{EXCLUDED_BAD}:{name}": int(n)
                 for name, n in zip(proxies, bad_by_proxy, strict=True)}
    return zc, {k: v for k, v in excluded.items() if v}


def _score_table(path: Path, proxies: tuple[str, ...]):
    table = read_shard(path)
    missing = [p for p in proxies if p not in table.column_names]
    if "hash" not in table.column_names or missing:
        present = [c for c in table.column_names if f"{c}_status" in table.column_names]
        raise DataError(f"score shard {path} lacks the ZC column(s) {missing or ['hash']}; it "
                        f"has proxies {present}. Pass --proxies from those, or score the corpus "
                        "with the proxies you want")
    return table


def _proxy_matrix(table, proxies: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """values (rows, C) float64 and bad (rows, C) bool: NaN/inf, or a status other than "ok"."""
    values = np.stack([np.asarray(table.column(name).to_numpy(zero_copy_only=False),
                                  dtype=np.float64) for name in proxies], axis=1)
    bad = ~np.isfinite(values)
    for j, name in enumerate(proxies):
        status = f"{name}_status"
        if status in table.column_names:
            bad[:, j] |= np.array([s != "ok" for s in table.column(status).to_pylist()], bool)
    return values, bad
