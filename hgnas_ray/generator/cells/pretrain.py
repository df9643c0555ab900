"""Pretraining the cell generator (DESIGN 4): corpus -> G-VAE -> clusters -> CCNF -> artifact.

The steps, in `pretrain_cells`:
 1. read the corpus and its ZC scores; cells without a finite, "ok" ZC vector are counted and
    kept unlabelled (reconstruction only; see `hgnas_ray.corpus.reading`);
 2. hold out a seeded `holdout_fraction` of the labelled cells (their hashes go in the artifact);
 3. fit the ZC transform (log1p of heavy-tailed proxies, then a robust z-score) on the training
    cells;
 4. train the G-VAE on the training cells;
 5. encode them: latents (posterior means) and predicted conditions;
 6. fit `CellClusters` on the predicted conditions (with each cluster's measured mean ZC);
 7. train the CCNF on (latent, normalised ZC) pairs - the measured ZC of labelled cells by
    default, or the predicted condition of every cell (`ccnf_condition="predicted"`);
 8. write the artifact (`hgnas_ray.generator.cells.artifact`).

Training runs through a `Trainers` object: `LocalTrainers` calls the plain loops in this process;
`hgnas_ray.distributed.pretrain.RayTrainers` runs the same loops on Ray Train workers (DDP,
checkpoints, resume). Only genotype JSON strings, arrays and config dataclasses cross to it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from hgnas_ray.config import from_dict, to_dict
from hgnas_ray.corpus.reading import ScoredCorpus, load_scored_corpus
from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.generator.cells.artifact import FORMAT_VERSION, write_artifact
from hgnas_ray.generator.cells.zc import ZCTransform, default_log_scaled
from hgnas_ray.models import CCNF, CCNFConfig, CellClusters
from hgnas_ray.models.gvae import GVAE, GVAEConfig
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.vocab import get_vocabulary
from hgnas_ray.training import CellGraphDataset, TrainConfig, train_ccnf
from hgnas_ray.training.gvae import gvae_latents, train_gvae

CCNF_CONDITIONS = ("measured", "predicted")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Everything `pretrain_cells` needs besides the corpus and the output folder.

    `gvae.cond_dim`, `ccnf.latent_dim` and `ccnf.cond_dim` are set from the proxies and the G-VAE
    when training starts. `TrainConfig.batch_size` is per worker under Ray Train.
    """

    gvae: GVAEConfig = GVAEConfig()
    ccnf: CCNFConfig = CCNFConfig()
    gvae_train: TrainConfig = TrainConfig()
    ccnf_train: TrainConfig = TrainConfig()
    proxies: tuple[str, ...] | None = None  # None: the corpus's scoring.json proxies
    space: str | None = None  # None: the corpus's space; else checked against it
    log_scaled: tuple[str, ...] | None = None  # None: the heavy-tailed proxies (zc.py)
    n_clusters: int = 32
    min_cells_per_cluster: int = 5  # fewer training cells per cluster: fewer clusters
    holdout_fraction: float = 0.05
    ccnf_condition: str = "measured"
    seed: int = 0  # the held-out split, the clusters and the models' initialisation

    def validate(self) -> PretrainConfig:
        if self.ccnf_condition not in CCNF_CONDITIONS:
            raise ConfigError(f"unknown ccnf_condition {self.ccnf_condition!r}; valid: "
                              f"{', '.join(CCNF_CONDITIONS)}")
        if not 0.0 <= self.holdout_fraction < 0.5:
            raise ConfigError(f"holdout_fraction must be in [0, 0.5); got {self.holdout_fraction}")
        if self.n_clusters < 1 or self.min_cells_per_cluster < 1:
            raise ConfigError(f"n_clusters and min_cells_per_cluster must be >= 1; got "
                              f"{self.n_clusters}, {self.min_cells_per_cluster}")
        for name in ("gvae_train", "ccnf_train"):
            if getattr(self, name).epochs < 1:
                raise ConfigError(f"{name}.epochs must be >= 1 (--max-epochs); got "
                                  f"{getattr(self, name).epochs}")
        for part in (self.gvae, self.ccnf, self.gvae_train, self.ccnf_train):
            part.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        return from_dict(cls, data)


@dataclass
class TrainOutcome:
    """A trained model's state dict (CPU tensors, plain keys) and its per-epoch metrics."""

    state: dict[str, torch.Tensor]
    history: list[dict[str, float]]  # {"epoch": e, <metric>: value, ...} per epoch trained
    resumed_from: int = 0  # epochs already done by an earlier run this one continued

    @property
    def epochs(self) -> int:
        return int(self.history[-1]["epoch"]) if self.history else 0


class Trainers(Protocol):
    """How the two models get trained (in this process, or on Ray Train)."""

    def begin(self, fingerprint: dict[str, Any]) -> None:
        """Called once before training with what the runs depend on (for resume checks)."""

    def gvae(self, cells: list[str], zc: np.ndarray, model: GVAEConfig, train: TrainConfig,
             run: str) -> TrainOutcome: ...

    def ccnf(self, latents: np.ndarray, conditions: np.ndarray, model: CCNFConfig,
             train: TrainConfig, run: str) -> TrainOutcome: ...

    def describe(self) -> dict[str, Any]: ...


def seeded_model(factory: Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
    """Build a model with its initial weights drawn from `seed`, leaving the global RNG as it
    was (so every worker, and every rerun, starts from the same weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


class LocalTrainers:
    """Train in this process with the plain loops (no checkpoints: a killed run starts over)."""

    def begin(self, fingerprint: dict[str, Any]) -> None:
        return None

    def gvae(self, cells: list[str], zc: np.ndarray, model: GVAEConfig, train: TrainConfig,
             run: str) -> TrainOutcome:
        dataset = CellGraphDataset([CellGenotype.from_json(c) for c in cells], zc, model.cond_dim)
        net = seeded_model(lambda: GVAE(model), train.seed)
        history: list[dict[str, float]] = []
        state = train_gvae(net, dataset, train, self._recorder(run, history))
        return TrainOutcome(state["model"], history)

    def ccnf(self, latents: np.ndarray, conditions: np.ndarray, model: CCNFConfig,
             train: TrainConfig, run: str) -> TrainOutcome:
        net = seeded_model(lambda: CCNF(model), train.seed)
        history: list[dict[str, float]] = []
        state = train_ccnf(net, latents, conditions, train, self._recorder(run, history))
        return TrainOutcome(state["model"], history)

    def _recorder(self, run: str, history: list[dict[str, float]]):
        def record(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
            history.append({"epoch": epoch, **metrics})
            logger.info("%s: epoch %d loss %.4f", run, epoch, metrics.get("loss", float("nan")))
        return record

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "workers": 0}


@dataclass
class _Stopwatch:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)


def pretrain_cells(corpus_dir: str | Path, out_dir: str | Path, config: PretrainConfig,
                   trainers: Trainers | None = None) -> dict[str, Any]:
    """Run every step (see the module docstring); return the artifact manifest. Progress goes
    to this module's logger."""
    config.validate()
    trainers = trainers or LocalTrainers()
    clock = _Stopwatch()
    with clock.time("load_corpus"):
        corpus = load_scored_corpus(corpus_dir, config.proxies, config.space)
    _report_data(corpus)
    train_rows, heldout_rows = split_holdout(corpus, config.holdout_fraction, config.seed)
    log_scaled = config.log_scaled if config.log_scaled is not None \
        else default_log_scaled(corpus.proxies)
    with clock.time("fit_normaliser"):
        transform = ZCTransform(corpus.proxies, log_scaled).fit(corpus.zc[train_rows])
    zc_norm = transform.transform(corpus.zc)
    trainers.begin(_fingerprint(config, corpus, train_rows, log_scaled))
    gvae_config = replace(config.gvae, cond_dim=len(corpus.proxies))
    with clock.time("train_gvae"):
        gvae_out = trainers.gvae([corpus.cells[i].to_json() for i in train_rows],
                                 zc_norm[train_rows], gvae_config, config.gvae_train, run="gvae")
    gvae = GVAE(gvae_config)
    gvae.load_state_dict(gvae_out.state)
    with clock.time("encode"):
        latents, predicted = _encode(gvae, [corpus.cells[i] for i in train_rows])
    with clock.time("fit_clusters"):
        clusters = fit_clusters(predicted, corpus.zc[train_rows], config)
    z, c = _ccnf_pairs(latents, predicted, zc_norm[train_rows], config.ccnf_condition)
    ccnf_config = replace(config.ccnf, latent_dim=gvae_config.latent_dim,
                          cond_dim=len(corpus.proxies))
    with clock.time("train_ccnf"):
        ccnf_out = trainers.ccnf(z, c, ccnf_config, config.ccnf_train,
                                 run=f"ccnf-after-gvae-epoch{gvae_out.epochs}")
    heldout = _heldout_metrics(gvae, [corpus.cells[i] for i in heldout_rows],
                               zc_norm[heldout_rows], corpus.proxies)
    manifest = _manifest(corpus_dir, config, corpus, transform, clusters, gvae_config, ccnf_config,
                         train_rows, heldout_rows, len(z), gvae_out, ccnf_out, heldout,
                         trainers.describe())
    with clock.time("write_artifact"):
        manifest["timings_seconds"] = clock.seconds
        write_artifact(out_dir, manifest, {"gvae": gvae_out.state, "ccnf": ccnf_out.state})
    logger.info("wrote the cell-generator artifact to %s", out_dir)
    return manifest


def _report_data(corpus: ScoredCorpus) -> None:
    summary = corpus.summary()
    logger.info("corpus: %d %s cells, %d with a finite ZC vector of %s", summary["cells"],
                corpus.space, summary["labelled"], list(corpus.proxies))
    if summary["unlabelled"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in corpus.excluded.items())
        logger.info("excluded from the ZC targets (kept for reconstruction only): %d cells (%s)",
                    summary["unlabelled"], reasons)
    if summary["labelled"] == 0:
        raise DataError(f"no cell of the corpus has a finite, 'ok' ZC vector of "
                        f"{list(corpus.proxies)} ({corpus.excluded}); score the corpus first or "
                        "pick other --proxies")


def split_holdout(corpus: ScoredCorpus, fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, held out): a seeded `fraction` of the labelled cells is held out.

    The draw is over the labelled cells sorted by hash, so it does not depend on shard order.
    """
    labelled = np.flatnonzero(corpus.labelled)
    by_hash = labelled[np.argsort(np.asarray(corpus.hashes, dtype=object)[labelled],
                                  kind="stable")]
    count = int(round(fraction * len(by_hash)))
    heldout = np.sort(np.random.default_rng(seed).permutation(by_hash)[:count])
    train = np.setdiff1d(np.arange(len(corpus.cells)), heldout)
    return train, heldout


def fit_clusters(predicted: np.ndarray, measured: np.ndarray,
                 config: PretrainConfig) -> CellClusters:
    """`config.n_clusters` components, fewer when there are fewer than
    `min_cells_per_cluster` training cells per component."""
    count = min(config.n_clusters, len(predicted) // config.min_cells_per_cluster)
    if count < 1:
        raise DataError(f"{len(predicted)} training cells cannot form a single cluster (need >= "
                        f"{config.min_cells_per_cluster}); use a larger corpus")
    if count < config.n_clusters:
        logger.info("fitting %d clusters instead of %d: %d training cells allow at most one per "
                    "%d cells", count, config.n_clusters, len(predicted),
                    config.min_cells_per_cluster)
    return CellClusters(count, seed=config.seed).fit(predicted, measured)


def _encode(gvae: GVAE, cells: Sequence[CellGenotype]) -> tuple[np.ndarray, np.ndarray]:
    mu, cond = gvae_latents(gvae, CellGraphDataset(cells, cond_dim=gvae.config.cond_dim))
    return mu.numpy(), cond.numpy()


def _ccnf_pairs(latents: np.ndarray, predicted: np.ndarray, zc_norm: np.ndarray, source: str
                ) -> tuple[np.ndarray, np.ndarray]:
    if source == "predicted":
        return latents, predicted
    labelled = np.isfinite(zc_norm).all(axis=1)
    return latents[labelled], zc_norm[labelled]


def _heldout_metrics(gvae: GVAE, cells: list[CellGenotype], zc_norm: np.ndarray,
                     proxies: Sequence[str]) -> dict[str, Any]:
    """Condition-head R^2 per proxy on the held-out cells (normalised units); None below 2."""
    if len(cells) < 2:
        return {"cells": len(cells), "condition_r2": None}
    _, predicted = _encode(gvae, cells)
    residual = ((predicted - zc_norm) ** 2).sum(axis=0)
    total = ((zc_norm - zc_norm.mean(axis=0)) ** 2).sum(axis=0)
    r2 = [None if t == 0 else float(1 - r / t) for r, t in zip(residual, total, strict=True)]
    return {"cells": len(cells), "condition_r2": dict(zip(proxies, r2, strict=True))}


def _fingerprint(config: PretrainConfig, corpus: ScoredCorpus, train_rows: np.ndarray,
                 log_scaled: Sequence[str]) -> dict[str, Any]:
    """What the training runs depend on, except the epoch counts (more epochs may resume)."""
    settings = config.to_dict()
    for part in ("gvae_train", "ccnf_train"):
        settings[part].pop("epochs")
        settings[part].pop("device")
    digest = hashlib.sha256()
    for row in train_rows:
        digest.update(corpus.hashes[row].encode())
        digest.update(np.ascontiguousarray(corpus.zc[row]).tobytes())
    # the format version: checkpoints of another model architecture cannot be resumed
    return {"format_version": FORMAT_VERSION, "config": settings, "space": corpus.space,
            "proxies": list(corpus.proxies),
            "log_scaled": list(log_scaled), "train_cells": len(train_rows),
            "train_data_sha256": digest.hexdigest()}


def _manifest(corpus_dir, config, corpus, transform, clusters, gvae_config, ccnf_config,
              train_rows, heldout_rows, ccnf_cells, gvae_out, ccnf_out, heldout, trainer
              ) -> dict[str, Any]:
    vocab = get_vocabulary(corpus.space)
    cluster_state = clusters.state_dict()
    cluster_state["n_requested"] = config.n_clusters
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "space": corpus.space,
        "vocabulary": {"name": vocab.name, "ops": list(vocab.ops),
                       "kernels": [list(k) for k in vocab.kernels],
                       "min_edges": vocab.min_edges, "min_op_nodes": vocab.min_op_nodes},
        "gvae_config": to_dict(gvae_config), "ccnf_config": to_dict(ccnf_config),
        "proxies": list(corpus.proxies), "zc_transform": transform.state_dict(),
        "clusters": cluster_state,
        "heldout_hashes": [corpus.hashes[i] for i in heldout_rows],
        "data": {"corpus": str(Path(corpus_dir).resolve()), **corpus.summary(),
                 "train_cells": len(train_rows), "heldout_cells": len(heldout_rows),
                 "ccnf_cells": ccnf_cells, "ccnf_condition": config.ccnf_condition},
        "training": {"gvae": {"epochs": gvae_out.epochs, "resumed_from": gvae_out.resumed_from,
                              "history": gvae_out.history},
                     "ccnf": {"epochs": ccnf_out.epochs, "resumed_from": ccnf_out.resumed_from,
                              "history": ccnf_out.history},
                     "heldout": heldout, "trainer": trainer},
        "pretrain_config": config.to_dict(),
    }
