"""ZC vectors as the generator sees them: log-scaled where heavy-tailed, then robust z-scores.

Counting proxies (params, macs) and product/sum-of-magnitude proxies (synflow, snip, grad_norm)
are non-negative and span orders of magnitude across cells: a robust z-score of the raw values
squeezes most cells into a sliver near the median and leaves a long tail the condition head and
the CCNF fit badly. They are mapped with log1p first (log1p, not log: a proxy may be exactly 0);
the log-domain proxies (nwot, naswot, zen, zico, jacov, tcet) and snip_snr are left as they are.
`ZCTransform.inverse` undoes both steps, so conditions can be read and given in the proxies'
original units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hgnas_ray.errors import DataError
from hgnas_ray.training.datasets import ZCNormalizer

LOG_SCALED_PROXIES = ("params", "macs", "synflow", "snip", "grad_norm")


def default_log_scaled(proxies: Sequence[str]) -> tuple[str, ...]:
    return tuple(p for p in proxies if p in LOG_SCALED_PROXIES)


class ZCTransform:
    """Raw ZC vectors (N, C) in the proxies' units <-> normalised conditions (N, C).

    Rows with any NaN/inf are not used to fit and stay NaN through `transform`.
    """

    def __init__(self, proxies: Sequence[str], log_scaled: Sequence[str] = ()) -> None:
        unknown = sorted(set(log_scaled) - set(proxies))
        if unknown:
            raise DataError(f"cannot log-scale {unknown}: not among the proxies {list(proxies)}")
        self.proxies = tuple(proxies)
        self.log_scaled = tuple(p for p in self.proxies if p in set(log_scaled))
        self._log_mask = np.array([p in self.log_scaled for p in self.proxies], dtype=bool)
        self.normalizer = ZCNormalizer()

    def fit(self, raw: np.ndarray) -> ZCTransform:
        self.normalizer.fit(self._to_log(raw))
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """(N, C) raw -> (N, C) float32 normalised."""
        return self.normalizer.transform(self._to_log(raw))

    def inverse(self, normalised: np.ndarray) -> np.ndarray:
        """(N, C) normalised -> (N, C) float64 in the proxies' units."""
        logged = self.normalizer.inverse_transform(np.asarray(normalised, dtype=np.float64))
        logged[:, self._log_mask] = np.expm1(logged[:, self._log_mask])
        return logged

    def _to_log(self, raw: np.ndarray) -> np.ndarray:
        raw = np.array(raw, dtype=np.float64)  # a copy: the caller's array is not changed
        if raw.ndim != 2 or raw.shape[1] != len(self.proxies):
            raise DataError(f"ZC vectors must have shape (N, {len(self.proxies)}) for proxies "
                            f"{list(self.proxies)}; got {raw.shape}")
        part = raw[:, self._log_mask]
        with np.errstate(invalid="ignore"):
            negative = np.isfinite(part) & (part < 0)
        if negative.any():
            column = self.log_scaled[int(np.argmax(negative.any(axis=0)))]
            raise DataError(f"proxy {column!r} has negative values, so it cannot be log-scaled; "
                            "leave it out of the log-scaled proxies (--log-scale)")
        raw[:, self._log_mask] = np.log1p(part)
        return raw

    def state_dict(self) -> dict[str, Any]:
        return {"proxies": list(self.proxies), "log_scaled": list(self.log_scaled),
                "log_function": "log1p", "normalizer": self.normalizer.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ZCTransform:
        if state.get("log_function", "log1p") != "log1p":
            raise DataError(f"unsupported ZC log function {state.get('log_function')!r}; "
                            "expected 'log1p'")
        self = cls(state["proxies"], state["log_scaled"])
        self.normalizer = ZCNormalizer.from_state_dict(state["normalizer"])
        if len(self.normalizer.center) != len(self.proxies):
            raise DataError(f"ZC normaliser has {len(self.normalizer.center)} components for "
                            f"{len(self.proxies)} proxies")
        return self

    def __repr__(self) -> str:
        return f"ZCTransform(proxies={self.proxies}, log_scaled={self.log_scaled})"
