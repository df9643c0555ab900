"""Build a corpus of distinct cells: sample (or enumerate) -> deduplicate -> Parquet shards.

The stream of distinct cells is a pure function of (space, seed, n): shard k holds distinct cells
k * shard_size .. (k + 1) * shard_size - 1 of it. A killed build therefore resumes exactly: the
stream is generated again from the seed (so deduplication stays exact across shards), shards
already on disk are checked against it and kept, and only the missing ones are written.

Cost: one canonical form per draw (`sample_cell` returns it; `canonical_hash` hashes it without
computing it again), about 0.3 ms per cell on one core for the cell space.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hgnas_ray import __version__
from hgnas_ray.corpus.schema import CORPUS_SCHEMA_VERSION, CellRow, rows_to_table
from hgnas_ray.corpus.shards import (
    CELLS_DIR,
    MANIFEST,
    ShardError,
    file_sha256,
    load_manifest,
    read_cell_shard,
    remove_stale_tmp,
    shard_name,
    write_json_atomic,
    write_table_atomic,
)
from hgnas_ray.errors import ConfigError, unknown_name
from hgnas_ray.space.cell import canonical_hash
from hgnas_ray.space.cell_sampling import sample_cell
from hgnas_ray.space.genotypes import nb201_to_cell
from hgnas_ray.space.nb201 import (
    NB201_NUM_CELLS,
    Nb201Genotype,
    enumerate_nb201,
    sample_nb201,
)

CORPUS_SPACES = ("cell", "nb201")
# Distinct NAS-Bench-201 cells in the 8-node form: the 15,625 arch strings collapse (skip and
# none edges, isomorphic cells) onto 5,257 hashes. Checked by tests/test_corpus.py.
NB201_DISTINCT_CELLS = 5257
DEFAULT_SHARD_SIZE = 10_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSpec:
    """What to build. ``enumerate_all`` (nb201 only): every distinct cell, whatever ``n``."""

    space: str
    n: int
    seed: int = 0
    shard_size: int = DEFAULT_SHARD_SIZE
    enumerate_all: bool = False

    def validate(self) -> CorpusSpec:
        if self.space not in CORPUS_SPACES:
            raise unknown_name("corpus space", self.space, CORPUS_SPACES)
        if self.enumerate_all and self.space != "nb201":
            raise ConfigError(f"--all enumerates NAS-Bench-201 only; the {self.space!r} space is "
                              "too large: pass --n")
        if self.n < 1 and not self.enumerate_all:
            raise ConfigError(f"--n must be >= 1; got {self.n}")
        if self.shard_size < 1:
            raise ConfigError(f"--shard-size must be >= 1; got {self.shard_size}")
        return self

    @property
    def enumerates(self) -> bool:
        """NAS-Bench-201 is enumerated when all of it (or more than it holds) is asked for."""
        return self.space == "nb201" and (self.enumerate_all or self.n >= NB201_DISTINCT_CELLS)

    @property
    def num_rows(self) -> int:
        return NB201_DISTINCT_CELLS if self.enumerates else self.n


@dataclass(frozen=True)
class BuildReport:
    rows: int
    shards_written: int
    shards_kept: int
    sampling_seconds: float
    write_seconds: float
    out_dir: Path

    @property
    def cells_per_second(self) -> float:
        return self.rows / self.sampling_seconds if self.sampling_seconds > 0 else float("nan")


def unique_rows(spec: CorpusSpec) -> Iterator[CellRow]:
    """The deterministic stream of distinct cells of ``spec`` (``spec.num_rows`` of them)."""
    seen: set[str] = set()
    if spec.space == "cell":
        rows = _distinct_cells(np.random.default_rng(spec.seed), seen)
    elif spec.enumerates:
        rows = _distinct_nb201(enumerate_nb201(), seen)
    else:
        rng = np.random.default_rng(spec.seed)
        rows = _distinct_nb201((sample_nb201(rng) for _ in itertools.count()), seen)
    return itertools.islice(rows, spec.num_rows)


def _distinct_cells(rng: np.random.Generator, seen: set[str]) -> Iterator[CellRow]:
    while True:
        cell = sample_cell(rng, "cell")  # already canonical
        digest = canonical_hash(cell)
        if digest not in seen:
            seen.add(digest)
            yield CellRow(digest, cell.to_json(), cell)


def _distinct_nb201(genotypes: Iterable[Nb201Genotype], seen: set[str]) -> Iterator[CellRow]:
    for genotype in genotypes:
        cell = nb201_to_cell(genotype).canonical()
        digest = canonical_hash(cell)
        if digest not in seen:
            seen.add(digest)
            yield CellRow(digest, genotype.to_string(), cell)


def build_corpus(out_dir: str | Path, spec: CorpusSpec, progress: bool = True) -> BuildReport:
    """Write the corpus of ``spec`` to ``out_dir`` (resuming a killed build of the same spec).

    Messages (resume, repairs) go to this module's logger; ``progress`` shows a progress bar.
    """
    spec.validate()
    out_dir = Path(out_dir)
    manifest = _open_manifest(out_dir, spec)
    if _is_complete(out_dir, manifest, spec):
        logger.info("corpus %s is already complete (%d cells); nothing to do", out_dir,
                    manifest["rows"])
        return BuildReport(manifest["rows"], 0, len(manifest["shards"]), 0.0, 0.0, out_dir)
    if remove_stale_tmp(out_dir / CELLS_DIR):
        logger.info("removed temporary files left by a killed build")
    if spec.space == "nb201" and spec.enumerates and not spec.enumerate_all:
        logger.info("nb201 holds %d distinct cells (of %d arch strings); enumerating all of "
                    "them instead of sampling %d", NB201_DISTINCT_CELLS, NB201_NUM_CELLS, spec.n)
    return _write_shards(out_dir, spec, manifest, progress)


def _write_shards(out_dir: Path, spec: CorpusSpec, manifest: dict[str, Any],
                  progress: bool) -> BuildReport:
    rows_iter = unique_rows(spec)
    sampling = writing = 0.0
    written = kept = total = 0
    manifest.update(shards=[], complete=False)
    bar = tqdm(total=spec.num_rows, unit="cell", desc="sampling", file=sys.stderr,
               disable=not progress, smoothing=0.1)
    for shard in itertools.count():
        start = time.perf_counter()
        rows = list(itertools.islice(rows_iter, spec.shard_size))
        if not rows:
            break
        table = rows_to_table(rows)
        sampling += time.perf_counter() - start
        start = time.perf_counter()
        path = out_dir / CELLS_DIR / shard_name(shard)
        digest = _existing_digest(path, table)
        if digest is None:
            digest = write_table_atomic(table, path)
            written += 1
        else:
            kept += 1
        total += len(rows)
        manifest["shards"].append({"file": f"{CELLS_DIR}/{path.name}", "rows": len(rows),
                                   "sha256": digest})
        manifest.update(rows=total, sampling_seconds=round(sampling, 3))
        write_json_atomic(manifest, out_dir / MANIFEST)
        writing += time.perf_counter() - start
        bar.update(len(rows))
    bar.close()
    manifest.update(complete=True, cells_per_second=round(total / max(sampling, 1e-9), 1),
                    finished=_now())
    write_json_atomic(manifest, out_dir / MANIFEST)
    return BuildReport(total, written, kept, sampling, writing, out_dir)


def _existing_digest(path: Path, table: Any) -> str | None:
    """sha256 of the shard on disk when it already holds exactly ``table``'s cells, else None."""
    if not path.is_file():
        return None
    try:
        existing = read_cell_shard(path, ["hash"]).column("hash").to_pylist()
    except ShardError as err:
        logger.warning("rewriting %s: %s", path.name, err)
        return None
    if existing != table.column("hash").to_pylist():
        raise ConfigError(f"{path} holds other cells than this build writes there (built with "
                          "other arguments or another hgnas-ray version); pass a new --out or "
                          f"delete {path.parent}")
    return file_sha256(path)


def _open_manifest(out_dir: Path, spec: CorpusSpec) -> dict[str, Any]:
    """The manifest to continue: a fresh one, or the existing one when it is for ``spec``."""
    existing = load_manifest(out_dir)
    wanted = asdict(spec)
    if existing is not None and existing.get("spec") != wanted:
        raise ConfigError(f"{out_dir} holds a corpus built with {existing.get('spec')}, not "
                          f"{wanted}; pass a new --out (or delete {out_dir} to rebuild)")
    if existing is not None:
        return existing
    return {"schema_version": CORPUS_SCHEMA_VERSION, "spec": wanted, "space": spec.space,
            "n": spec.n, "seed": spec.seed, "enumerated": spec.enumerates, "rows": 0,
            "shards": [], "complete": False, "created": _now(), "sampling_seconds": 0.0,
            "package_version": __version__}


def _is_complete(out_dir: Path, manifest: dict[str, Any], spec: CorpusSpec) -> bool:
    """The manifest says complete, lists the shards ``spec`` makes (part-00000 on, holding
    ``spec.num_rows`` cells) and each is in cells/ with its sha256. A damaged manifest is not
    complete: the build then checks every shard and writes it anew."""
    shards = manifest.get("shards")
    if manifest.get("complete") is not True or not isinstance(shards, list):
        return False
    entries = [s if isinstance(s, dict) else {} for s in shards]
    names = [f"{CELLS_DIR}/{shard_name(i)}" for i in range(len(entries))]
    rows = [e.get("rows") for e in entries]
    if ([e.get("file") for e in entries] != names or not all(type(r) is int for r in rows)
            or sum(rows) != spec.num_rows or manifest.get("rows") != spec.num_rows):
        return False
    for entry, name in zip(entries, names, strict=True):
        path = out_dir / name
        if not path.is_file() or file_sha256(path) != entry.get("sha256"):
            return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

