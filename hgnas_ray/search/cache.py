"""A proxy-score cache shared across runs: (cell hash, proxy) under one scoring setting.

A *setting* is everything that changes a score besides the cell: the space, the task and its
probe batches (size, count, seed, class balance), the network the cell is scored in (channels,
cells per stage), the device kind and the hgnas-ray version. Each setting has its own file,
`<root>/<setting key>.jsonl`, beside `<setting key>.json` naming the setting in full; a line
holds one cell's hash and proxy values with their statuses. Scores are deterministic for a
setting, so a hit is exactly what a fresh evaluation would give.

A corrupt line is named in a warning and its cell is scored again; the rest of the file is used.
`add_corpus_scores` fills the cache in bulk from `hgnas corpus score` output (Ray Data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hgnas_ray import __version__
from hgnas_ray.corpus.scoring import ScoringConfig
from hgnas_ray.corpus.shards import write_json_atomic
from hgnas_ray.errors import DataError
from hgnas_ray.search.store import append_line

log = logging.getLogger(__name__)


# What `params`/`macs` in a record count. Since the score records name their network, a
# NAS-Bench-201 cell's costs are the benchmark network's, also when scored in a reduced one;
# caches written before (which held the reduced network's costs) are not read.
COSTS_OF = "asked-network"


def scoring_setting(scoring: ScoringConfig, space: str) -> dict[str, Any]:
    """The cache setting of a scoring configuration: what a score depends on besides the cell
    (not the proxy list: the cache holds each proxy separately)."""
    key = {k: v for k, v in scoring.result_key().items() if k != "proxies"}
    return {"space": space, **key, "device_kind": scoring.device.split(":")[0],
            "version": __version__, "costs": COSTS_OF}


def setting_key(setting: Mapping[str, Any]) -> str:
    text = json.dumps(setting, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ProxyCache:
    """Proxy values by (hash, proxy) for one scoring setting, persisted as JSON lines."""

    def __init__(self, root: str | Path, setting: Mapping[str, Any]) -> None:
        self.root, self.setting = Path(root), json.loads(json.dumps(dict(setting)))
        self.key = setting_key(self.setting)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / f"{self.key}.jsonl"
        described = self.root / f"{self.key}.json"
        if not described.is_file():
            write_json_atomic(self.setting, described)
        self._entries: dict[str, dict[str, Any]] = {}
        self.hits = self.misses = 0
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        for line_no, line in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                entry = json.loads(line)
                self._entries.setdefault(str(entry.pop("hash")), {}).update(entry)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                log.warning("proxy cache %s line %d is corrupt; that cell is scored again",
                            self.path, line_no)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, proxies: Sequence[str]) -> dict[str, Any] | None:
        """A record with every proxy in `proxies` (value and status), or None on a miss."""
        entry = self._entries.get(key)
        if entry is None or any(f"{p}_status" not in entry for p in proxies):
            self.misses += 1
            return None
        self.hits += 1
        record: dict[str, Any] = {"hash": key, "cached": True}
        for p in proxies:
            value = entry.get(p)
            record[p] = math.nan if value is None else float(value)
            record[f"{p}_status"] = entry[f"{p}_status"]
        return record

    def put(self, records: Iterable[Mapping[str, Any]], proxies: Sequence[str]) -> int:
        """Store the proxies of successfully evaluated records; returns how many were new."""
        lines = []
        for record in records:
            entry = _cache_entry(record, proxies)
            if entry is None:
                continue
            key = entry.pop("hash")
            self._entries.setdefault(key, {}).update(entry)
            lines.append(json.dumps({"hash": key, **entry}))
        if lines:
            append_line(self.path, "\n".join(lines))
        return len(lines)

    def add_corpus_scores(self, scores_dir: str | Path) -> int:
        """Bulk fill from a scored corpus (`hgnas corpus score` on Ray Data): its Parquet score
        shards, when its `scoring.json` names this cache's setting. Returns the cells added.

        The hgnas-ray version is taken on trust; the device kinds that scored the corpus (its
        `devices`) must be this cache's kind."""
        from hgnas_ray.corpus.scoring import SCORING_FILE, default_scores_dir

        folder = Path(scores_dir)
        if not (folder / SCORING_FILE).is_file():
            folder = default_scores_dir(folder)
        path = folder / SCORING_FILE
        try:
            manifest = json.loads(path.read_text())
            settings = dict(manifest["settings"])
            proxies = list(settings.pop("proxies"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise DataError(f"{path} is not the scoring.json of `hgnas corpus score` ({err}); "
                            "pass a scored corpus folder or its scores/ folder") from None
        if "network" not in manifest:  # written before records named their network
            raise DataError(f"the corpus at {folder} was scored by an older hgnas-ray whose "
                            "records hold the reduced network's costs; score it again")
        devices = manifest.get("devices", [])
        if devices != [self.setting["device_kind"]]:
            raise DataError(f"the corpus at {folder} was scored on {devices}; this cache holds "
                            f"scores of {self.setting['device_kind']!r} devices only")
        mine = {k: v for k, v in self.setting.items()
                if k not in ("space", "device_kind", "version", "costs")}
        if settings != mine:
            differ = sorted(k for k in set(settings) | set(mine) if settings.get(k) != mine.get(k))
            raise DataError(f"the corpus at {folder} was scored with other settings (differs "
                            f"in: {', '.join(differ)}); score it with this search's settings "
                            "or let the search score its cells")
        return self.put(_corpus_records(folder), proxies)


def _cache_entry(record: Mapping[str, Any], proxies: Sequence[str]) -> dict[str, Any] | None:
    """Only scores that are a property of the cell: an error record (e.g. out of memory) is not
    cached, a non-finite value is (as null with its status)."""
    if record.get("status") == "error" or "hash" not in record:
        return None
    entry: dict[str, Any] = {"hash": str(record["hash"])}
    for p in proxies:
        status = record.get(f"{p}_status")
        if status not in ("ok", "nonfinite"):
            return None
        value = record.get(p)
        finite = isinstance(value, (int, float)) and math.isfinite(value)
        entry[p], entry[f"{p}_status"] = (float(value) if finite else None), status
    return entry


def _corpus_records(scores_dir: Path) -> Iterator[dict[str, Any]]:
    from hgnas_ray.corpus.shards import list_shards, read_shard

    for path in list_shards(scores_dir):
        try:
            rows = read_shard(path).to_pylist()
        except DataError as err:
            log.warning("skipped a score shard that cannot be read: %s", err)
            continue
        yield from rows
