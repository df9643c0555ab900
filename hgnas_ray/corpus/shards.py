"""Corpus layout on disk: shard paths, atomic writes, reading with clear errors, the manifest.

A corpus directory holds ``cells/part-00000.parquet``, ``cells/part-00001.parquet``, ... and
``manifest.json``. Every file is written to a temporary name in the same folder and renamed into
place, so a file with its final name is always complete; a killed writer leaves at most a
``.tmp`` file, which the next run removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hgnas_ray.corpus.schema import CORPUS_SCHEMA_VERSION, VERSION_KEY
from hgnas_ray.errors import DataError

CELLS_DIR = "cells"
MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^part-(\d{5,})\.parquet$")
TMP_SUFFIX = ".tmp"


class ShardError(DataError):
    """A shard file is unreadable, corrupt, or not what its folder says it is."""


def shard_name(shard_id: int) -> str:
    return f"part-{shard_id:05d}.parquet"


def shard_id(path: str | Path) -> int:
    match = SHARD_PATTERN.match(Path(path).name)
    if match is None:
        raise ShardError(f"{path} is not a shard file name (expected part-NNNNN.parquet)")
    return int(match.group(1))


def list_shards(folder: str | Path) -> list[Path]:
    """``part-*.parquet`` files of ``folder``, by shard id ([] when the folder does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if SHARD_PATTERN.match(p.name)), key=shard_id)


def cell_shards(corpus_dir: str | Path) -> list[Path]:
    """The cell shards of a corpus; `DataError` when there are none."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise DataError(f"corpus folder {str(corpus_dir)!r} does not exist; build one with "
                        "`hgnas corpus build --space cell --n N --out DIR`")
    shards = list_shards(corpus_dir / CELLS_DIR)
    if not shards:
        raise DataError(f"empty corpus: no {CELLS_DIR}/part-*.parquet in {corpus_dir}; build "
                        "one with `hgnas corpus build --space cell --n N --out DIR`")
    return shards


def read_shard(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a whole shard (every page is decoded, so corruption anywhere is caught)."""
    path = Path(path)
    try:
        table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    except (OSError, pa.ArrowException) as err:
        raise ShardError(f"shard {path} is unreadable or corrupt ({type(err).__name__}: "
                         f"{_first_line(err)}); delete it and re-run the command that wrote it "
                         "(finished shards are kept)") from None
    return table


def read_cell_shard(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """`read_shard` plus a check that it is a corpus shard of this schema version."""
    table = read_shard(path, columns)
    version = (table.schema.metadata or {}).get(VERSION_KEY)
    if version is None:
        raise ShardError(f"{path} is a Parquet file but not a corpus shard (no "
                         f"{VERSION_KEY.decode()} in its schema metadata)")
    if int(version) != CORPUS_SCHEMA_VERSION:
        raise ShardError(f"{path} has corpus schema version {int(version)}; this hgnas-ray reads "
                         f"version {CORPUS_SCHEMA_VERSION}: rebuild the corpus")
    missing = [c for c in (columns or ()) if c not in table.column_names]
    if missing:
        raise ShardError(f"{path} lacks columns {missing}")
    return table


def write_table_atomic(table: pa.Table, path: str | Path) -> str:
    """Write ``table`` to ``path`` via a temporary file and a rename; return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        pq.write_table(table, tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def write_json_atomic(data: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_tmp(folder: str | Path) -> int:
    """Delete temporary files a killed writer left in ``folder``; return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and
             p.name.endswith(TMP_SUFFIX)]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise DataError(f"cannot read {what} {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno}); "
                        "delete it and re-run the command that wrote it") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # not UTF-8; huge numbers
        raise DataError(f"{what} {path} is not readable JSON ({type(err).__name__}); delete "
                        "it and re-run the command that wrote it") from None
    if not isinstance(data, dict):
        raise DataError(f"{what} {path} should hold a JSON object; got {type(data).__name__}")
    return data


def load_manifest(corpus_dir: str | Path) -> dict[str, Any] | None:
    """The corpus manifest, or None when the corpus has none (yet)."""
    path = Path(corpus_dir) / MANIFEST
    return read_json(path, "corpus manifest") if path.is_file() else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no detail"


def check_corpus(corpus_dir: str | Path) -> tuple[int, list[str]]:
    """Read every shard in full and compare it with the manifest; return (rows, problems).

    Problems: unreadable or corrupt shards, a sha256 or row count that differs from the
    manifest, shards missing from it or on disk, a hash in more than one row, an incomplete build.
    """
    corpus_dir = Path(corpus_dir)
    shards = cell_shards(corpus_dir)
    manifest = load_manifest(corpus_dir)
    problems = [] if manifest else [f"{corpus_dir} has no {MANIFEST}"]
    listed, malformed = _listed_shards(manifest)
    problems += malformed
    if manifest and not manifest.get("complete"):
        problems.append("the build is not complete: re-run `hgnas corpus build` with the same "
                        "arguments to finish it")
    seen: set[str] = set()
    rows = 0
    for path in shards:
        entry = listed.pop(path.name, None)
        try:
            hashes = read_cell_shard(path, ["hash"]).column("hash").to_pylist()
        except ShardError as err:
            problems.append(str(err))
            continue
        rows += len(hashes)
        problems += _against_manifest(path, len(hashes), entry)
        duplicates = seen.intersection(hashes) | {h for h, n in Counter(hashes).items() if n > 1}
        if duplicates:
            problems.append(f"{path.name} repeats {len(duplicates)} cell hash(es), e.g. "
                            f"{sorted(duplicates)[0]}")
        seen.update(hashes)
    problems += [f"{name} is in the manifest but not on disk" for name in listed]
    return rows, problems


def _listed_shards(manifest: dict[str, Any] | None) -> tuple[dict[str, dict[str, Any]],
                                                             list[str]]:
    """The manifest's shard entries by file name, and a problem line per malformed entry."""
    entries = (manifest or {}).get("shards", [])
    if not isinstance(entries, list):
        return {}, [f"the manifest's shards should be a list; got {type(entries).__name__}"]
    listed, problems = {}, []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            listed[Path(entry["file"]).name] = entry
        else:
            problems.append(f"the manifest's shard entry {index} is malformed: {entry!r:.80}")
    return listed, problems


def _against_manifest(path: Path, rows: int, entry: dict[str, Any] | None) -> list[str]:
    if entry is None:
        return [f"{path.name} is not in the manifest"]
    problems = []
    if entry.get("rows") != rows:
        problems.append(f"{path.name} has {rows} rows; the manifest says {entry.get('rows')}")
    if entry.get("sha256") != file_sha256(path):
        problems.append(f"{path.name} differs from the file the build wrote (sha256 mismatch)")
    return problems
