"""`CellGenerator`: a loaded cell-generator artifact - sample, encode, predict conditions.

Conditions are ZC vectors. The API takes and returns them in the proxies' original units (as the
corpus's score columns hold them) unless `normalized=True`, in which case they are the normalised
vectors the models work in (see `hgnas_ray.generator.cells.zc`).

Sampling (DESIGN 4): z(T) ~ N(0, tau^2 I), integrated back through the CCNF under the requested
condition, decoded by the G-VAE into a valid cell (the decoder repairs anything invalid), then
deduplicated by canonical hash. Temperature tau defaults to 0.4 for cluster- and
condition-conditioned sampling and 1.0 for `like=` (mutation-style) sampling.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hgnas_ray.config import from_dict
from hgnas_ray.errors import ConfigError, DataError, RegistryError, unknown_name
from hgnas_ray.generator.cells.artifact import read_artifact
from hgnas_ray.generator.cells.errors import (
    ArtifactError,
    ClusterIdError,
    ConditionError,
    SpaceMismatchError,
)
from hgnas_ray.generator.cells.zc import ZCTransform
from hgnas_ray.models import CCNF, CCNFConfig, CellClusters
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.genotypes import nb201_to_cell
from hgnas_ray.space.nb201 import Nb201Genotype
from hgnas_ray.space.vocab import get_vocabulary

CLUSTER_TEMPERATURE = 0.4
LIKE_TEMPERATURE = 1.0
DRAWS_PER_CELL = 10  # default max_draws = this x n (at least MIN_MAX_DRAWS)
MIN_MAX_DRAWS = 64
# Cells drawn per ODE solve at least: a solve of 64 latents costs about what one of 8 costs on
# a CPU (the MLP is overhead-bound at these sizes), and a concentrated generator needs many
# draws per new cell, so small chunks multiply the solves (measured: 8x fewer solves per
# NAS-Bench-201 search step).
MIN_CHUNK = 64


class GenerationWarning(UserWarning):
    """Fewer unique cells than asked for within the draw limit."""


@dataclass
class SampleReport:
    """What a `sample` call drew: kept cells, and the draws that were not kept."""

    cells: list[CellGenotype]
    requested: int
    draws: int = 0
    duplicates: int = 0  # same canonical hash as a kept cell (or as the `like=` cell)
    rejected: int = 0  # refused by the `accept` predicate

    @property
    def complete(self) -> bool:
        return len(self.cells) == self.requested


class CellGenerator:
    """G-VAE + CCNF + clusters + ZC transform of one space. Build with `CellGenerator.load`."""

    def __init__(self, gvae, ccnf: CCNF, transform: ZCTransform, clusters: CellClusters,
                 space: str, manifest: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.gvae = gvae.to(self.device).eval()
        self.ccnf = ccnf.to(self.device).eval()
        self.transform, self.cluster_model, self.space = transform, clusters, space
        self.manifest = manifest or {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> CellGenerator:
        """Read an artifact folder (safetensors + JSON only; nothing is unpickled)."""
        from hgnas_ray.models.gvae import GVAE, GVAEConfig  # torch-geometric: slow import

        manifest, weights = read_artifact(path)
        space = manifest["space"]
        _check_vocabulary(path, space, manifest["vocabulary"])
        try:
            gvae = GVAE(from_dict(GVAEConfig, manifest["gvae_config"]))
            gvae.load_state_dict(weights["gvae"])
            ccnf = CCNF(from_dict(CCNFConfig, manifest["ccnf_config"]))
            ccnf.load_state_dict(weights["ccnf"])
            transform = ZCTransform.from_state_dict(manifest["zc_transform"])
            clusters = CellClusters.from_state_dict(manifest["clusters"])
        except (ConfigError, DataError, RuntimeError, KeyError, TypeError) as err:
            raise ArtifactError(f"artifact {path} does not fit this hgnas-ray's models "
                                f"({type(err).__name__}: {err}); write it again with "
                                "`hgnas pretrain cells`") from None
        return cls(gvae, ccnf, transform, clusters, space, manifest, device)

    # ------------------------------------------------------------------ properties
    @property
    def proxies(self) -> tuple[str, ...]:
        return self.transform.proxies

    @property
    def num_clusters(self) -> int:
        return self.cluster_model.n_components

    @property
    def heldout_hashes(self) -> list[str]:
        return list(self.manifest.get("heldout_hashes", []))

    # ------------------------------------------------------------------ encoding
    def as_cells(self, cells: Sequence[CellGenotype | Nb201Genotype]) -> list[CellGenotype]:
        """The 8-node cells of this generator's space (NAS-Bench-201 genotypes are mapped)."""
        out = []
        for cell in cells:
            if isinstance(cell, Nb201Genotype) and self.space == "nb201":
                cell = nb201_to_cell(cell)
            if not isinstance(cell, CellGenotype):
                raise SpaceMismatchError(f"expected a {self.space!r} cell; got a "
                                         f"{type(cell).__name__} (this generator makes cells of "
                                         f"the {self.space!r} space)")
            if cell.space != self.space:
                raise SpaceMismatchError(f"this generator was trained on {self.space!r} cells; "
                                         f"got a cell of the {cell.space!r} space. Use an "
                                         f"artifact trained on {cell.space!r} cells")
            out.append(cell)
        return out

    @torch.no_grad()
    def encode(self, cells: Sequence[CellGenotype | Nb201Genotype]) -> np.ndarray:
        """Posterior means. Shapes: N cells -> (N, latent_dim) float32."""
        return self._encode(self.as_cells(cells)).cpu().numpy()

    @torch.no_grad()
    def predict_condition(self, cells: Sequence[CellGenotype | Nb201Genotype],
                          normalized: bool = False) -> np.ndarray:
        """Predicted ZC vectors, in the proxies' units (or normalised). N cells -> (N, C)."""
        cond = self.gvae.predict_condition(self._encode(self.as_cells(cells))).cpu().numpy()
        return cond if normalized else self.transform.inverse(cond)

    def _encode(self, cells: list[CellGenotype]) -> torch.Tensor:
        from torch_geometric.data import Batch

        from hgnas_ray.space.encoding import cell_to_data

        if not cells:
            return torch.zeros(0, self.gvae.config.latent_dim, device=self.device)
        batch = Batch.from_data_list([cell_to_data(c) for c in cells]).to(self.device)
        mu, _ = self.gvae.encode(batch)
        return mu

    # ------------------------------------------------------------------ clusters
    def clusters(self) -> list[dict[str, Any]]:
        """One dict per cluster: id, size (training cells), weight, mean condition (proxy
        units and normalised) and measured mean ZC (proxy units; None where unmeasured)."""
        model = self.cluster_model
        means = np.asarray(model.means)
        in_units = self.transform.inverse(means)
        measured = model.measured_means if model.measured_means is not None \
            else np.full(means.shape, np.nan)
        return [{"id": k, "size": int(model.sizes[k]), "weight": float(model.weights[k]),
                 "mean_condition": dict(zip(self.proxies, map(float, in_units[k]), strict=True)),
                 "mean_condition_normalized": [float(v) for v in means[k]],
                 "measured_mean_zc": {p: float(v) if np.isfinite(v) else None
                                      for p, v in zip(self.proxies, measured[k], strict=True)}}
                for k in range(model.n_components)]

    def assign_clusters(self, cells: Sequence[CellGenotype | Nb201Genotype]) -> np.ndarray:
        """The cluster of each cell: the GMM component of its predicted condition. (N,) int."""
        if not cells:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.cluster_model.predict(self.predict_condition(cells,
                                                                            normalized=True)))

    def best_cluster(self, proxy: str | None = None) -> int:
        """The cluster with the highest measured mean of `proxy` (default: the first proxy);
        the predicted mean condition decides where no cluster has a measured mean."""
        proxy = proxy or self.proxies[0]
        if proxy not in self.proxies:
            raise unknown_name("proxy of this generator", proxy, self.proxies)
        column = self.proxies.index(proxy)
        model = self.cluster_model
        measured = model.measured_means
        scores = None if measured is None else measured[:, column]
        if scores is None or not np.isfinite(scores).any():
            scores = np.asarray(model.means)[:, column]
        return int(np.nanargmax(scores))

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, cluster: int | None = None,
               condition: Sequence[float] | None = None,
               like: CellGenotype | Nb201Genotype | None = None, temperature: float | None = None,
               seed: int = 0, normalized: bool = False,
               accept: Callable[[CellGenotype], bool] | None = None,
               max_draws: int | None = None) -> list[CellGenotype]:
        """`n` valid cells, distinct by canonical hash, conditioned on exactly one of:
        `cluster` (a cluster id), `condition` (a ZC vector, proxy units unless `normalized`) or
        `like` (a cell: its predicted condition; the cell itself is never returned).

        Draws continue until `n` cells are kept or `max_draws` (default max(10 n, 64)) cells were
        drawn; then the cells found are returned with a `GenerationWarning`. `accept` may refuse
        cells (e.g. ones over a budget). Same arguments and seed, same cells.
        """
        return self.sample_report(n, cluster=cluster, condition=condition, like=like,
                                  temperature=temperature, seed=seed, normalized=normalized,
                                  accept=accept, max_draws=max_draws).cells

    def sample_report(self, n: int, *, cluster: int | None = None,
                      condition: Sequence[float] | None = None,
                      like: CellGenotype | Nb201Genotype | None = None,
                      temperature: float | None = None, seed: int = 0, normalized: bool = False,
                      accept: Callable[[CellGenotype], bool] | None = None,
                      max_draws: int | None = None) -> SampleReport:
        """`sample`, plus the counts of draws, duplicates and rejections."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"n must be an integer >= 0; got {n!r}")
        target, exclude = self._target(cluster, condition, like, normalized)
        tau = _temperature(temperature, like is not None)
        limit = max(DRAWS_PER_CELL * int(n), MIN_MAX_DRAWS) if max_draws is None else max_draws
        report = SampleReport([], int(n))
        seen = set(exclude)
        generator = torch.Generator().manual_seed(int(seed))
        while len(report.cells) < n and report.draws < limit:
            size = min(max(2 * (n - len(report.cells)), MIN_CHUNK), limit - report.draws)
            report.draws += size
            for cell in self._draw(target, size, tau, generator):
                if accept is not None and not accept(cell):
                    report.rejected += 1
                elif cell.hash in seen:
                    report.duplicates += 1
                else:
                    seen.add(cell.hash)
                    report.cells.append(cell)
                    if len(report.cells) == n:
                        break
        if not report.complete:
            warnings.warn(f"found {len(report.cells)} of {n} unique cells in {report.draws} draws "
                          f"({report.duplicates} duplicates, {report.rejected} rejected); raise "
                          "max_draws or the temperature for more", GenerationWarning,
                          stacklevel=2)
        return report

    @torch.no_grad()
    def _draw(self, target: np.ndarray, size: int, temperature: float,
              generator: torch.Generator) -> list[CellGenotype]:
        cond = torch.as_tensor(target, dtype=torch.float32, device=self.device)
        z = self.ccnf.sample(cond, n=size, temperature=temperature, generator=generator)
        return self.gvae.decode_cells(z, self.space)

    def _target(self, cluster, condition, like, normalized) -> tuple[np.ndarray, list[str]]:
        """The normalised condition (C,) to sample under, and hashes never to return."""
        given = [name for name, v in (("cluster", cluster), ("condition", condition),
                                      ("like", like)) if v is not None]
        if len(given) != 1:
            raise ConfigError(f"pass exactly one of cluster=, condition=, like=; got "
                              f"{given or 'none'}")
        if cluster is not None:
            return np.asarray(self.cluster_model.means)[self._cluster_id(cluster)], []
        if like is not None:
            (cell,) = self.as_cells([like])
            return self.predict_condition([cell], normalized=True)[0], [cell.hash]
        return self.normalize_condition(condition, normalized), []

    def _cluster_id(self, cluster: Any) -> int:
        if isinstance(cluster, bool) or not isinstance(cluster, (int, np.integer)):
            raise ClusterIdError(f"cluster must be an integer id; got {cluster!r}")
        if not 0 <= int(cluster) < self.num_clusters:
            raise ClusterIdError(f"cluster {int(cluster)} is out of range: this generator has "
                                 f"{self.num_clusters} clusters (ids 0..{self.num_clusters - 1}); "
                                 "see CellGenerator.clusters() or `hgnas generate cells "
                                 "--list-clusters`")
        return int(cluster)

    def normalize_condition(self, condition: Sequence[float], normalized: bool = False
                            ) -> np.ndarray:
        """A condition vector (C,) in proxy units (or already normalised) -> normalised (C,)."""
        try:
            vector = np.asarray(condition, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConditionError(f"condition must be a vector of {len(self.proxies)} numbers "
                                 f"({', '.join(self.proxies)}); got {condition!r}") from None
        if vector.shape != (len(self.proxies),):
            raise ConditionError(f"condition must have {len(self.proxies)} components, one per "
                                 f"proxy ({', '.join(self.proxies)}); got shape {vector.shape}")
        if not np.isfinite(vector).all():
            raise ConditionError(f"condition must be finite; got {vector.tolist()}")
        if normalized:
            return vector.astype(np.float32)
        try:
            return self.transform.transform(vector[None])[0]
        except DataError as err:
            raise ConditionError(f"condition {vector.tolist()}: {err}") from None

    def __repr__(self) -> str:
        return (f"CellGenerator(space={self.space!r}, proxies={self.proxies}, "
                f"clusters={self.num_clusters}, latent_dim={self.gvae.config.latent_dim})")


def _temperature(value: float | None, like: bool) -> float:
    if value is None:
        return LIKE_TEMPERATURE if like else CLUSTER_TEMPERATURE
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
        raise ConfigError(f"temperature must be a number > 0; got {value!r}")
    return float(value)


def _check_vocabulary(path: str | Path, space: str, saved: dict[str, Any]) -> None:
    try:
        vocab = get_vocabulary(space)
    except RegistryError as err:  # a space this version does not know
        raise ArtifactError(f"artifact {path} is for the unknown space {space!r}: {err}") from None
    if list(vocab.ops) != list(saved.get("ops", [])):
        raise ArtifactError(f"artifact {path} was trained with the {space!r} op vocabulary "
                            f"{saved.get('ops')}; this hgnas-ray's is {list(vocab.ops)}. Write "
                            "the artifact again with `hgnas pretrain cells`")
