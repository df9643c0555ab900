"""Synthetic ZC scores for smoke tests and unit tests: no network is built or run.

`write_synthetic_scores` fills ``<corpus>/scores/`` exactly as `hgnas corpus score` does (same
schema, one shard per cell shard, ``scoring.json``), with values that are a deterministic function
of each cell's structure plus seeded noise, so a generator trained on them has some signal to find.
The scoring settings say ``"task": "synthetic"``, so such scores are never mistaken for real ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hgnas_ray.corpus import cell_shards, default_scores_dir, score_schema
from hgnas_ray.corpus.schema import table_cells
from hgnas_ray.corpus.scoring import SCORING_FILE, records_to_table
from hgnas_ray.corpus.shards import read_cell_shard, write_json_atomic, write_table_atomic
from hgnas_ray.generator.cells.zc import LOG_SCALED_PROXIES
from hgnas_ray.space.cell import CellGenotype

SYNTHETIC_PROXIES = ("snip_snr", "nwot", "params")


def synthetic_zc(cell: CellGenotype, proxy_index: int, proxy: str,
                 rng: np.random.Generator) -> float:
    """A structure-driven stand-in score: counts, depth and kernel sizes, plus 10% noise."""
    features = np.array([len(cell.edges), len(cell.used_nodes()), cell.depth(),
                         sum(k for k in cell.kernels) / 3.0], dtype=np.float64)
    weights = np.roll(np.array([1.0, 0.5, 2.0, 0.25]), proxy_index)
    value = float(features @ weights) * (1.0 + 0.1 * rng.standard_normal())
    if proxy in LOG_SCALED_PROXIES:  # positive and heavy-tailed, like parameter counts
        return math.exp(1.0 + value / 4.0) * 100.0
    return value


def write_synthetic_scores(corpus_dir: str | Path, proxies: Sequence[str] = SYNTHETIC_PROXIES,
                           seed: int = 0, nan_every: int = 0) -> Path:
    """Score every cell shard of `corpus_dir` synthetically; return the scores folder.

    `nan_every` > 0 makes every `nan_every`-th cell's first proxy NaN with status "nonfinite"
    (as a real scorer records a failed proxy).
    """
    out_dir = default_scores_dir(corpus_dir)
    rng = np.random.default_rng(seed)
    row = 0
    for path in cell_shards(corpus_dir):
        table = read_cell_shard(path, ("hash", "genotype", "space", "adjacency", "ops",
                                       "kernels"))
        records = []
        for digest, genotype, cell in zip(table.column("hash").to_pylist(),
                                          table.column("genotype").to_pylist(),
                                          table_cells(table), strict=True):
            records.append(_record(digest, genotype, cell, proxies, rng,
                                   nan=nan_every > 0 and row % nan_every == 0))
            row += 1
        write_table_atomic(records_to_table(records, proxies), out_dir / path.name)
    write_json_atomic({"corpus": str(Path(corpus_dir).resolve()),
                       "settings": {"proxies": list(proxies), "task": "synthetic", "seed": seed},
                       "columns": score_schema(proxies).names}, out_dir / SCORING_FILE)
    return out_dir


def _record(digest: str, genotype: str, cell: CellGenotype, proxies: Sequence[str],
            rng: np.random.Generator, nan: bool) -> dict:
    record = {"hash": digest, "genotype": genotype, "status": "ok", "error": "", "seconds": 0.0}
    for i, name in enumerate(proxies):
        record[name] = synthetic_zc(cell, i, name, rng)
        record[f"{name}_status"] = "ok"
    if nan:
        record[proxies[0]], record[f"{proxies[0]}_status"] = math.nan, "nonfinite"
        record["status"] = "partial"
    return record
