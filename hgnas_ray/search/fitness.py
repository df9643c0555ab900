"""Fitness: one registered proxy, or a rank aggregate of several, over flat evaluation records.

A record is what the evaluator returns: ``record[proxy]`` is the value and
``record[f"{proxy}_status"]`` says whether it is usable (``"ok"``). A value that is missing,
non-finite or not ``ok`` is the worst possible fitness (never a sentinel inside the record).

A rank aggregate (``"synflow+nwot+macs"``) scores each record by the sum over its proxies of the
record's rank among the records given (average ranks for ties, 1 = worst), the aggregate of
NAS-Bench-Suite-Zero's combination studies. Ranks are relative, so a strategy always compares
records through `scores` over one list (its whole history).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from hgnas_ray.errors import ConfigError, unknown_name
from hgnas_ray.proxies import available_proxies

SEPARATOR = "+"


@dataclass(frozen=True)
class Fitness:
    """The proxies a search maximises; one proxy is used as is, several by rank sum."""

    proxies: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.proxies:
            raise ConfigError("a fitness needs at least one proxy, e.g. 'tcet' or 'synflow+nwot'")
        valid = available_proxies()
        for name in self.proxies:
            if name not in valid:
                raise unknown_name("proxy", name, valid)
        if len(set(self.proxies)) != len(self.proxies):
            raise ConfigError(f"fitness {self.name!r} names a proxy twice")

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> Fitness:
        """``"tcet"``, ``"synflow+nwot+macs"`` or a sequence of proxy names."""
        names = text.split(SEPARATOR) if isinstance(text, str) else list(text)
        return cls(tuple(n.strip() for n in names if n.strip()))

    @property
    def name(self) -> str:
        return SEPARATOR.join(self.proxies)

    def values(self, record: Mapping[str, Any]) -> dict[str, float | None]:
        """The usable values of this fitness's proxies in one record (``None`` where unusable)."""
        return self.values_of(record, self.proxies)

    @staticmethod
    def values_of(record: Mapping[str, Any], proxies: Iterable[str]) -> dict[str, float | None]:
        return {p: _usable(record, p) for p in proxies}

    def scores(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Fitness of each record, higher is better; -inf where a single proxy is unusable."""
        if not records:
            return np.zeros(0)
        columns = np.array([[_nan_if_none(_usable(r, p)) for p in self.proxies]
                            for r in records], dtype=np.float64)
        if len(self.proxies) == 1:
            column = columns[:, 0]
            return np.where(np.isnan(column), -math.inf, column)
        total = np.zeros(len(records))
        for j in range(len(self.proxies)):
            column = columns[:, j]
            ranks = rankdata(np.where(np.isnan(column), -math.inf, column))
            total += np.where(np.isnan(column), 0.0, ranks)
        return total


def _usable(record: Mapping[str, Any], proxy: str) -> float | None:
    value = record.get(proxy)
    status = record.get(f"{proxy}_status", "ok")
    if status != "ok" or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value
