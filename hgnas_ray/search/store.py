"""The run store: every evaluation of one search run, once, and the strategy's last state.

A run folder holds `run.json` (what the run is: strategy, fitness, space, seed, budget...),
`evaluations.jsonl` (one flat record per evaluated key, appended and flushed as each finishes)
and `state.json` (the strategy's `state_dict` after its last complete `tell`, written
atomically). A killed run resumes from `state.json`; the asks it repeats find their records in
`evaluations.jsonl`, so nothing is evaluated twice. A line cut short or corrupted is named in a
warning and that key is evaluated again; nothing else is lost.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hgnas_ray.corpus.shards import write_json_atomic
from hgnas_ray.errors import ConfigError

log = logging.getLogger(__name__)
RUN_FILE, EVALUATIONS_FILE, STATE_FILE = "run.json", "evaluations.jsonl", "state.json"


class RunStore:
    """One search run's folder. `meta` must match a folder's existing `run.json`."""

    def __init__(self, path: str | Path, meta: Mapping[str, Any]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"run folder {self.path} is a file; pass a folder path")
        self.path.mkdir(parents=True, exist_ok=True)
        self.meta = json.loads(json.dumps(dict(meta)))  # plain JSON values, as saved
        self._check_meta()
        self._records = self._read_records()

    def _check_meta(self) -> None:
        run_file = self.path / RUN_FILE
        if not run_file.is_file():
            write_json_atomic(self.meta, run_file)
            return
        try:
            saved = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{run_file} is unreadable ({err}); delete the run folder "
                              "to start over") from None
        if saved != self.meta:
            changed = sorted(k for k in set(saved) | set(self.meta)
                             if saved.get(k) != self.meta.get(k))
            raise ConfigError(f"run folder {self.path} holds a run with other settings "
                              f"(differs in: {', '.join(changed)}); use another folder or "
                              "delete this one")

    def _read_records(self) -> dict[str, dict[str, Any]]:
        path = self.path / EVALUATIONS_FILE
        records: dict[str, dict[str, Any]] = {}
        if not path.is_file():
            return records
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                record = json.loads(line)
                records.setdefault(str(record["hash"]), record)
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s line %d is not a complete record; its cell is evaluated again",
                            path, line_no)
        return records

    # ------------------------------------------------------------------ evaluations
    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def append(self, record: Mapping[str, Any]) -> None:
        key = str(record["hash"])
        if key in self._records:
            return
        clean = _json_safe(record)
        append_line(self.path / EVALUATIONS_FILE, json.dumps(clean))
        self._records[key] = clean

    # ------------------------------------------------------------------ strategy state
    def save_state(self, state: Mapping[str, Any]) -> None:
        write_json_atomic(state, self.path / STATE_FILE)

    def load_state(self) -> dict[str, Any] | None:
        path = self.path / STATE_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("%s is corrupt; the search restarts from its first ask (evaluations "
                        "already stored are reused)", path)
            return None


def append_line(path: Path, text: str) -> None:
    """Append one line and flush it to disk. A line cut short by a kill is closed first, so the
    torn line stays the only casualty (the readers skip it) and this one is whole."""
    with path.open("ab") as sink:
        if sink.tell() > 0:
            with path.open("rb") as source:
                source.seek(-1, os.SEEK_END)
                if source.read(1) != b"\n":
                    sink.write(b"\n")
        sink.write(text.encode() + b"\n")
        sink.flush()
        os.fsync(sink.fileno())


def _json_safe(record: Mapping[str, Any]) -> dict[str, Any]:
    """NaN/inf are not JSON: store them as null (the proxy's status says why)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()}
