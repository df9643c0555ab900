"""Pretraining the sequence generator on Ray Train (V2): a thin `TorchTrainer` wrapper around
the plain loop `train_seqgen`, laid out exactly as the cell generator's runs
(`hgnas_ray.distributed.pretrain`, whose docstring describes checkpoints and resume):

- N workers, the model wrapped by `prepare_model` (DDP when N > 1), built from the same seed on
  every worker; token rows sharded by a fixed, padded stride (every worker gets the same number
  of batches, as DDP needs); `TrainConfig.batch_size` is per worker;
- after every epoch the metrics are averaged over workers and rank 0 reports them with a
  checkpoint of the loop's state (epoch, model without the DDP prefix, optimizer, every worker's
  generator, metric history); the other ranks report the metrics only;
- a worker starts from `ray.train.get_checkpoint()` when there is one (worker restarts, or the
  same `RunConfig(storage_path, name)` run again after the job was killed); a run that already
  trained the epochs asked for is read back from its latest checkpoint without starting workers;
  a runs folder made from other inputs is refused.

Only plain values cross to the workers: the token matrix (numpy, put in the object store once)
and config dicts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train

from hgnas_ray.distributed.pretrain import (
    RayTrainers,
    RayTrainSettings,
    _Reporter,
    _shard_rows,
    _WorkerContext,
)
from hgnas_ray.generator.macro.pretrain import (
    MacroPretrainConfig,
    SeqGenOutcome,
    pretrain_macro,
    seeded_seqgen,
)
from hgnas_ray.models.seqgen.model import SeqGenConfig
from hgnas_ray.training import TrainConfig
from hgnas_ray.training.seqgen import train_seqgen


class RaySeqGenTrainer(RayTrainers):
    """`hgnas_ray.generator.macro.pretrain.SeqGenTrainer` on Ray Train; Ray must be up."""

    def seqgen(self, tokens: np.ndarray, model: SeqGenConfig, train: TrainConfig,
               run: str) -> SeqGenOutcome:
        payload = {"tokens": np.asarray(tokens, dtype=np.int64)}
        outcome = self._fit(_seqgen_worker, payload, asdict(model), train, run)
        return SeqGenOutcome(outcome.state, outcome.history, outcome.resumed_from)


def pretrain_macro_ray(histories_dir: str | Path, cell_artifact: str | Path,
                       out_dir: str | Path, config: MacroPretrainConfig,
                       settings: RayTrainSettings) -> dict[str, Any]:
    """`pretrain_macro` with the transformer trained on Ray Train."""
    return pretrain_macro(histories_dir, cell_artifact, out_dir, config,
                          RaySeqGenTrainer(settings))


def _seqgen_worker(config: dict[str, Any]) -> None:
    ctx = _WorkerContext(config)
    tokens = ray.get(config["payload"])["tokens"]
    rows = _shard_rows(len(tokens), ctx.rank, ctx.world)
    model = ray.train.torch.prepare_model(seeded_seqgen(SeqGenConfig(**config["model"]),
                                                        ctx.train.seed))
    state, history = ctx.restore(model)
    train_seqgen(model, tokens[rows], ctx.worker_train, _Reporter(ctx, history), state)
