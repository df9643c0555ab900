"""ZC vectors as the generator sees them: log-scaled where heavy-tailed, then robust z-scores.

Counting proxies (params, macs) and product/sum-of-magnitude proxies (synflow, snip, grad_norm)
are non-negative and span orders of magnitude across cells: a robust z-score of the raw values
squeezes most cells into a sliver near the median and leaves a long tail the condition head and
the CCNF fit badly. They are mapped with log1p first (log1p, not log: a proxy may be exactly 0);
the log-domain proxies (nwot, naswot, zen, zico, jacov, tcet) and snip_snr are left as they are.
`ZCTransform.inverse` undoes both steps, so conditions can be read and given in the proxies'
original units.

The second step, `ZCNormalizer`, is a robust z-score per component: (x - median) / (IQR / 1.349),
so the scale matches the standard deviation on Gaussian data while a few extreme proxy values
cannot stretch it. It is fitted on the finite rows only; rows with any NaN/inf (unlabelled cells)
are counted and excluded, and stay NaN through `transform`. A component with zero IQR falls back
to its standard deviation, then to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hgnas_ray.errors import DataError

LOG_SCALED_PROXIES = ("params", "macs", "synflow", "snip", "grad_norm")
IQR_PER_STD = 1.349  # IQR of the standard normal


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


class ZCNormalizer:
    """Robust per-component z-score of ZC vectors (see the module docstring).

    Attributes after `fit`: center (C,), scale (C,), n_fitted (finite rows used), n_excluded
    (rows with NaN/inf, left out).
    """

    method = "median_iqr"

    def __init__(self) -> None:
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.n_fitted = self.n_excluded = 0

    def fit(self, zc: np.ndarray) -> ZCNormalizer:
        zc = _as_matrix(zc)
        finite = np.isfinite(zc).all(axis=1)
        rows = zc[finite]
        if len(rows) == 0:
            raise DataError(f"cannot fit the ZC normaliser: all {len(zc)} rows have NaN/inf; "
                            "score some cells first")
        q25, median, q75 = np.percentile(rows, [25, 50, 75], axis=0)
        scale = (q75 - q25) / IQR_PER_STD
        std = rows.std(axis=0)
        scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
        self.center, self.scale = median, scale
        self.n_fitted, self.n_excluded = int(finite.sum()), int((~finite).sum())
        return self

    def transform(self, zc: np.ndarray) -> np.ndarray:
        """(N, C) -> (N, C) float32; NaN entries stay NaN."""
        center, scale = self._fitted()
        return ((_as_matrix(zc, len(center)) - center) / scale).astype(np.float32)

    def inverse_transform(self, zc: np.ndarray) -> np.ndarray:
        center, scale = self._fitted()
        return _as_matrix(zc, len(center)) * scale + center

    def state_dict(self) -> dict[str, Any]:
        center, scale = self._fitted()
        return {"method": self.method, "center": center.tolist(), "scale": scale.tolist(),
                "n_fitted": self.n_fitted, "n_excluded": self.n_excluded}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ZCNormalizer:
        if state.get("method") != cls.method:
            raise DataError(f"unsupported ZC normaliser method {state.get('method')!r}; "
                            f"expected {cls.method!r}")
        self = cls()
        self.center = np.asarray(state["center"], dtype=np.float64)
        self.scale = np.asarray(state["scale"], dtype=np.float64)
        self.n_fitted, self.n_excluded = int(state["n_fitted"]), int(state["n_excluded"])
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.center is None or self.scale is None:
            raise DataError("ZCNormalizer is not fitted: call fit(zc) or from_state_dict first")
        return self.center, self.scale

    def __repr__(self) -> str:
        return (f"ZCNormalizer(method={self.method!r}, n_fitted={self.n_fitted}, "
                f"n_excluded={self.n_excluded})")


def _as_matrix(zc: np.ndarray, columns: int | None = None) -> np.ndarray:
    zc = np.asarray(zc, dtype=np.float64)
    if zc.ndim != 2 or (columns is not None and zc.shape[1] != columns):
        want = f"(N, {columns})" if columns is not None else "(N, C)"
        raise DataError(f"ZC vectors must have shape {want}; got {zc.shape}")
    return zc
