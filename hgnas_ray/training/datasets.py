"""Training data for the cell generator: cell graphs with (optional) ZC vectors, and the ZC
normaliser.

`ZCNormalizer` is a robust z-score per component: (x - median) / (IQR / 1.349), so the scale
matches the standard deviation on Gaussian data while a few extreme proxy values cannot stretch
it. It is fitted on the finite rows only; rows with any NaN/inf (unlabelled cells) are counted and
excluded, and stay NaN through `transform`. A component with zero IQR falls back to its standard
deviation, then to 1. Heavy-tailed proxies (synflow, params) are best log-scaled upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hgnas_ray.errors import DataError
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.encoding import cell_to_data

IQR_PER_STD = 1.349  # IQR of the standard normal


class CellGraphDataset(Dataset):
    """PyG `Data` objects of cells, each with `zc` (1, C): the normalised ZC vector, NaN when the
    cell is unlabelled. Batches (torch_geometric.loader.DataLoader) carry zc (B, C).

    `zc` is None (all cells unlabelled, `cond_dim` components) or an (N, C) array with NaN rows.
    """

    def __init__(self, cells: Sequence[CellGenotype], zc: np.ndarray | None = None,
                 cond_dim: int = 3) -> None:
        zc = np.full((len(cells), cond_dim), np.nan) if zc is None else np.asarray(zc)
        if zc.ndim != 2 or len(zc) != len(cells):
            raise DataError(f"zc must have shape ({len(cells)}, C), one row per cell; got "
                            f"{zc.shape}")
        self.zc = torch.tensor(zc, dtype=torch.float32)  # a copy: zc may be read-only
        self.graphs = []
        for cell, row in zip(cells, self.zc, strict=True):
            data = cell_to_data(cell)
            data.zc = row.unsqueeze(0)
            self.graphs.append(data)

    @property
    def labelled(self) -> torch.Tensor:
        """(N,) bool: which cells have a finite ZC vector."""
        return torch.isfinite(self.zc).all(dim=1)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int):
        return self.graphs[index]


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
