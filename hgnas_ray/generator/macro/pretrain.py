"""Pretraining the sequence generator on HL-Evo histories into a versioned artifact.

Steps: read the cell artifact's manifest (cluster count, digest) -> read the histories -> keep
the best networks per (task, budget) setting -> token rows -> train the transformer through the
single training loop (in this process, or on Ray Train through
`hgnas_ray.distributed.macro_pretrain`) -> write the artifact. An artifact folder whose manifest
records the same inputs (fingerprint) and at least the epochs asked for is left as it is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from hgnas_ray.config import from_dict, to_dict
from hgnas_ray.corpus.shards import read_json
from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.generator.cells.artifact import ARTIFACT_FILE
from hgnas_ray.generator.cells.errors import ArtifactError
from hgnas_ray.generator.macro.artifact import (
    FORMAT_VERSION,
    cell_artifact_digest,
    write_artifact,
)
from hgnas_ray.generator.macro.dataset import (
    read_history_records,
    select_top,
    token_matrix,
    tokens_digest,
)
from hgnas_ray.models.seqgen.model import SeqGen, SeqGenConfig
from hgnas_ray.models.seqgen.vocab import SeqVocabulary
from hgnas_ray.training import TrainConfig
from hgnas_ray.training.seqgen import train_seqgen

logger = logging.getLogger(__name__)
GRID_FILE = "grid.json"  # written by `write_histories`: settings, config, cell artifact


@dataclass(frozen=True)
class MacroPretrainConfig:
    """What `pretrain_macro` needs besides its folders. `model.vocab_size` is set from the
    cell artifact's cluster count; `train.batch_size` is per worker under Ray Train."""

    model: SeqGenConfig = SeqGenConfig()
    train: TrainConfig = TrainConfig(epochs=30, lr=1e-3, batch_size=64, weight_decay=0.01,
                                     grad_clip=1.0)
    top_fraction: float = 0.25  # of each setting's distinct, finite, within-budget networks
    min_per_setting: int = 8  # ... but at least this many (or all there are)

    def validate(self) -> MacroPretrainConfig:
        if not 0.0 < self.top_fraction <= 1.0 or self.min_per_setting < 1:
            raise ConfigError(f"top_fraction must be in (0, 1] and min_per_setting >= 1; got "
                              f"{self.top_fraction}, {self.min_per_setting}")
        if self.train.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1 (--max-epochs); got "
                              f"{self.train.epochs}")
        self.model.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MacroPretrainConfig:
        return from_dict(cls, data)


@dataclass
class SeqGenOutcome:
    """A trained state dict (CPU tensors, plain keys) and the per-epoch metrics."""

    state: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    resumed_from: int = 0

    @property
    def epochs(self) -> int:
        return int(self.history[-1]["epoch"]) if self.history else 0


class SeqGenTrainer(Protocol):
    """How the transformer gets trained (in this process, or on Ray Train)."""

    def begin(self, fingerprint: dict[str, Any]) -> None: ...

    def seqgen(self, tokens: np.ndarray, model: SeqGenConfig, train: TrainConfig,
               run: str) -> SeqGenOutcome: ...

    def describe(self) -> dict[str, Any]: ...


def seeded_seqgen(config: SeqGenConfig, seed: int) -> SeqGen:
    """A SeqGen whose initial weights come from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SeqGen(config)


class LocalSeqGenTrainer:
    """Train in this process (no checkpoints: a killed run starts over)."""

    def begin(self, fingerprint: dict[str, Any]) -> None:
        return None

    def seqgen(self, tokens: np.ndarray, model: SeqGenConfig, train: TrainConfig,
               run: str) -> SeqGenOutcome:
        net = seeded_seqgen(model, train.seed)
        history: list[dict[str, float]] = []

        def record(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
            history.append({"epoch": epoch, **metrics})
            logger.info("%s: epoch %d loss %.4f", run, epoch, metrics.get("loss", float("nan")))

        state = train_seqgen(net, tokens, train, record)
        return SeqGenOutcome(state["model"], history)

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "workers": 0}


def cell_artifact_info(path: str | Path) -> dict[str, Any]:
    """Folder, digest and cluster count of a cell artifact, read from its manifest only."""
    path = Path(path).expanduser().resolve()
    digest = cell_artifact_digest(path)
    try:
        manifest = read_json(path / ARTIFACT_FILE, "cell-generator manifest")
        clusters = int(manifest["clusters"]["n_components"])
    except (DataError, KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"{path} is not a readable cell-generator artifact ({err}); pass the "
                            "folder `hgnas pretrain cells --out` wrote") from None
    if manifest.get("space") != "cell":
        raise ArtifactError(f"cell artifact {path} makes {manifest.get('space')!r} cells; macro "
                            "networks need a generator of the 'cell' space")
    return {"path": str(path), "sha256": digest, "num_clusters": clusters}


def check_histories_cell_artifact(histories_dir: str | Path, cells: dict[str, Any]) -> None:
    """Refuse histories whose grid.json names another cell artifact (when that one exists)."""
    grid = Path(histories_dir) / GRID_FILE
    if not grid.is_file():
        return
    recorded = read_json(grid, "histories grid").get("cell_artifact")
    if recorded is None or not (Path(recorded) / ARTIFACT_FILE).is_file():
        return
    if cell_artifact_digest(recorded) != cells["sha256"]:
        raise ArtifactError(f"the histories in {histories_dir} were written with the cell "
                            f"artifact {recorded}, not {cells['path']}: their cluster ids name "
                            "that artifact's clusters; pass --cell-artifact " + str(recorded))


def pretrain_macro(histories_dir: str | Path, cell_artifact: str | Path, out_dir: str | Path,
                   config: MacroPretrainConfig, trainer: SeqGenTrainer | None = None
                   ) -> dict[str, Any]:
    """Train on the histories and write the artifact; return its manifest. An artifact already
    in `out_dir` made from the same inputs with at least as many epochs is returned as is."""
    config.validate()
    trainer = trainer or LocalSeqGenTrainer()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    cells = cell_artifact_info(cell_artifact)
    check_histories_cell_artifact(histories_dir, cells)
    vocab = SeqVocabulary(cells["num_clusters"])
    data = read_history_records(histories_dir, vocab.num_clusters)
    kept, dropped = select_top(data.records, config.top_fraction, config.min_per_setting)
    if not kept:
        raise DataError(f"no usable network in {histories_dir} (dropped: {dropped}, "
                        f"{data.dropped}); the histories hold no finite, within-budget network")
    tokens = token_matrix(kept, vocab)
    model_config = config.model.with_vocab(len(vocab))
    fingerprint = _fingerprint(config, cells, tokens)
    seconds["read_data"] = round(time.perf_counter() - start, 3)
    existing = _up_to_date(out_dir, fingerprint, config.train.epochs)
    if existing is not None:
        logger.info("%s is up to date (same inputs, %d epochs); nothing to do", out_dir,
                    existing["training"]["epochs"])
        return existing
    logger.info("training on %d networks of %d settings (%s)", len(kept),
                len({r.setting for r in kept}), data.summary()["settings"])
    trainer.begin(fingerprint)
    start = time.perf_counter()
    outcome = trainer.seqgen(tokens, model_config, config.train, run="seqgen")
    seconds["train"] = round(time.perf_counter() - start, 3)
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "vocabulary": vocab.state_dict(), "model_config": to_dict(model_config),
        "cell_artifact": {"path": cells["path"], "sha256": cells["sha256"]},
        "data": {"histories": str(Path(histories_dir).resolve()), **data.summary(),
                 "selected": len(kept), "dropped_before_selection": dropped},
        "training": {"epochs": outcome.epochs, "resumed_from": outcome.resumed_from,
                     "history": outcome.history, "trainer": trainer.describe()},
        "pretrain_config": config.to_dict(), "fingerprint": fingerprint,
        "timings_seconds": seconds,
    }
    write_artifact(out_dir, manifest, outcome.state)
    logger.info("wrote the macro-generator artifact to %s", out_dir)
    return manifest


def _fingerprint(config: MacroPretrainConfig, cells: dict[str, Any], tokens: np.ndarray
                 ) -> dict[str, Any]:
    """What training depends on, except the epoch count (more epochs may resume)."""
    settings = config.to_dict()
    settings["train"].pop("epochs")
    settings["train"].pop("device")
    return {"format_version": FORMAT_VERSION, "config": settings,
            "cell_artifact_sha256": cells["sha256"], "sequences": len(tokens),
            "tokens_sha256": tokens_digest(tokens)}


def _up_to_date(out_dir: str | Path, fingerprint: dict[str, Any], epochs: int
                ) -> dict[str, Any] | None:
    path = Path(out_dir) / ARTIFACT_FILE
    if not path.is_file():
        return None
    try:
        manifest = read_json(path, "artifact manifest")
    except DataError:
        return None
    same = manifest.get("fingerprint") == fingerprint \
        and manifest.get("format_version") == FORMAT_VERSION
    return manifest if same and manifest["training"]["epochs"] >= epochs else None


def with_epochs(config: MacroPretrainConfig, epochs: int | None) -> MacroPretrainConfig:
    return config if epochs is None else replace(config, train=replace(config.train,
                                                                       epochs=epochs))


__all__ = ["LocalSeqGenTrainer", "MacroPretrainConfig", "SeqGenOutcome", "SeqGenTrainer",
           "cell_artifact_info", "pretrain_macro", "seeded_seqgen", "with_epochs"]
