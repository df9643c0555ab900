"""Cell clusters (DESIGN 4): a Gaussian mixture over the G-VAE's predicted condition vectors.

The cluster means are the conditions the CCNF generates from. The fitted mixture is kept as plain
arrays; `state_dict()` holds only lists, ints, floats and strings, so it saves as JSON or with
`torch.save` and loads with `torch.load(weights_only=True)`, never through pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgnas_ray.errors import DataError

FORMAT_VERSION = 1


class CellClusters:
    """A seeded `n_components`-component Gaussian mixture over condition vectors (N, C).

    After `fit`: `means` (K, C), `sizes` (K,) hard-assignment counts of the fitted points,
    `weights` (K,), and `measured_means` (K, M) - each cluster's mean *measured* ZC vector when
    `fit` was given them (NaN for a cluster with no finite measured row), else None.
    """

    def __init__(self, n_components: int = 32, seed: int = 0,
                 covariance_type: str = "full") -> None:
        self.n_components, self.seed, self.covariance_type = n_components, seed, covariance_type
        self._gmm = None
        self.sizes: np.ndarray | None = None
        self.measured_means: np.ndarray | None = None

    def fit(self, cond: np.ndarray, measured: np.ndarray | None = None) -> CellClusters:
        from sklearn.mixture import GaussianMixture

        cond = _as_matrix(cond, "cond")
        if not np.isfinite(cond).all():
            raise DataError("CellClusters.fit needs finite condition vectors; got "
                            f"{int((~np.isfinite(cond).all(axis=1)).sum())} rows with NaN/inf")
        if len(cond) < self.n_components:
            raise DataError(f"cannot fit {self.n_components} clusters to {len(cond)} points; "
                            "pass more cells or lower n_components")
        self._gmm = GaussianMixture(self.n_components, covariance_type=self.covariance_type,
                                    random_state=self.seed).fit(cond)
        labels = self._gmm.predict(cond)
        self.sizes = np.bincount(labels, minlength=self.n_components)
        self.measured_means = None if measured is None else _cluster_means(
            _as_matrix(measured, "measured", rows=len(cond)), labels, self.n_components)
        return self

    @property
    def means(self) -> np.ndarray:
        return self._fitted().means_

    @property
    def weights(self) -> np.ndarray:
        return self._fitted().weights_

    def predict(self, cond: np.ndarray) -> np.ndarray:
        """Cluster id of each condition vector. Shapes: (N, C) -> (N,) int."""
        return self._fitted().predict(_as_matrix(cond, "cond"))

    def state_dict(self) -> dict[str, Any]:
        gmm = self._fitted()
        return {"format_version": FORMAT_VERSION, "n_components": self.n_components,
                "seed": self.seed, "covariance_type": self.covariance_type,
                "weights": gmm.weights_.tolist(), "means": gmm.means_.tolist(),
                "covariances": gmm.covariances_.tolist(),
                "precisions_cholesky": gmm.precisions_cholesky_.tolist(),
                "sizes": self.sizes.tolist(),
                "measured_means": None if self.measured_means is None
                else self.measured_means.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> CellClusters:
        from sklearn.mixture import GaussianMixture

        if state.get("format_version") != FORMAT_VERSION:
            raise DataError(f"unsupported CellClusters state format "
                            f"{state.get('format_version')!r}; expected {FORMAT_VERSION}")
        self = cls(int(state["n_components"]), int(state["seed"]), str(state["covariance_type"]))
        gmm = GaussianMixture(self.n_components, covariance_type=self.covariance_type,
                              random_state=self.seed)
        for name in ("weights", "means", "covariances", "precisions_cholesky"):
            setattr(gmm, name + "_", np.asarray(state[name], dtype=np.float64))
        gmm.precisions_ = _precisions(gmm.precisions_cholesky_, self.covariance_type)
        gmm.n_features_in_ = gmm.means_.shape[1]
        gmm.converged_, gmm.n_iter_, gmm.lower_bound_ = True, 0, float("nan")
        self._gmm = gmm
        self.sizes = np.asarray(state["sizes"], dtype=np.int64)
        measured = state.get("measured_means")
        self.measured_means = None if measured is None else np.asarray(measured, np.float64)
        return self

    def _fitted(self):
        if self._gmm is None:
            raise DataError("CellClusters is not fitted: call fit(cond) or from_state_dict first")
        return self._gmm

    def __repr__(self) -> str:
        return (f"CellClusters(n_components={self.n_components}, seed={self.seed}, "
                f"covariance_type={self.covariance_type!r}, fitted={self._gmm is not None})")


def _as_matrix(x: np.ndarray, name: str, rows: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or (rows is not None and len(x) != rows):
        want = f"({rows}, M)" if rows is not None else "(N, C)"
        raise DataError(f"{name} must be a matrix of shape {want}; got shape {x.shape}")
    return x


def _cluster_means(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    finite = np.isfinite(values).all(axis=1)
    means = np.full((k, values.shape[1]), np.nan)
    for cluster in range(k):
        rows = values[finite & (labels == cluster)]
        if len(rows):
            means[cluster] = rows.mean(axis=0)
    return means


def _precisions(chol: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", chol, chol)
    if covariance_type == "tied":
        return chol @ chol.T
    return chol**2  # diag, spherical
