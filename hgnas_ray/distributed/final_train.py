"""Final training of a chosen network on Ray Train (V2): a thin `TorchTrainer` wrapper around
`hgnas_ray.training.final.train_final`, laid out as the generators' pretraining runs
(`hgnas_ray.distributed.pretrain`, whose docstring describes checkpoints and resume):

- N workers (one GPU each with `use_gpu`), the network wrapped by `prepare_model` (DDP when
  N > 1), built from the recipe's seed on every worker; the training images sharded by a fixed,
  padded stride, so every worker runs the same number of steps; `recipe.batch_size` is per
  worker and the learning rate is `recipe.lr(N x batch_size)`;
- after every epoch the test split is evaluated, sharded over the workers (hits summed), and
  rank 0 reports the epoch's metrics (train loss, cross-entropy, distillation term, test
  accuracy, learning rate, seconds) with a checkpoint of the loop state; `Result.metrics` and the
  run's history come from those;
- re-running with the same storage folder continues from the latest readable checkpoint (an
  unreadable one is named in a warning and the one before it is used); a run that already
  trained the epochs asked for is read back without starting workers; a storage folder of another
  genotype, task or recipe (other than its epoch count) is refused.

Only plain values cross to the workers: the genotype and the recipe as dicts, the images as numpy
arrays and the teacher as TorchScript bytes, put in the object store once.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import ray
import ray.train
import torch

from hgnas_ray.data import ArrayDataset, TaskInfo
from hgnas_ray.distributed.pretrain import (
    RayTrainers,
    RayTrainSettings,
    _Reporter,
    _shard_rows,
    _WorkerContext,
)
from hgnas_ray.generator.cells.pretrain import TrainOutcome
from hgnas_ray.nn.builder import Genotype, SkeletonSize
from hgnas_ray.space.genotypes import genotype_from_dict
from hgnas_ray.training.final import count_correct, final_network, loop_config, train_final
from hgnas_ray.training.recipes import Recipe

RUN_NAME = "final"
DEFAULT_SKELETON = SkeletonSize()  # cell and NAS-Bench-201 genotypes only


class RayFinalTrainer(RayTrainers):
    """Runs `train_final` on Ray Train workers; Ray must be initialised."""

    def final(self, payload: dict[str, Any], spec: dict[str, Any], recipe: Recipe,
              run: str = RUN_NAME) -> TrainOutcome:
        lr = recipe.lr(self.settings.workers * recipe.batch_size)
        return self._fit(_final_worker, payload, spec, loop_config(recipe, lr, "auto"), run)


def train_final_ray(genotype: Genotype, train: ArrayDataset, test: ArrayDataset,
                    recipe: Recipe, settings: RayTrainSettings, *,
                    teacher: bytes | None = None,
                    skeleton: SkeletonSize = DEFAULT_SKELETON) -> TrainOutcome:
    """Train `genotype`'s network on `train` with `recipe` (see the module doc); `teacher` is a
    TorchScript file's bytes. Returns the final weights and the per-epoch history."""
    recipe.validate()
    trainer = RayFinalTrainer(settings)
    trainer.begin(_fingerprint(genotype, train, test, recipe, teacher, skeleton))
    payload = {"train_images": train.images, "train_labels": train.labels,
               "test_images": test.images, "test_labels": test.labels,
               "info": asdict(train.info), "teacher": teacher}
    spec = {"genotype": genotype.to_dict(), "recipe": recipe.to_dict(),
            "skeleton": asdict(skeleton)}
    return trainer.final(payload, spec, recipe)


def _fingerprint(genotype: Genotype, train: ArrayDataset, test: ArrayDataset, recipe: Recipe,
                 teacher: bytes | None, skeleton: SkeletonSize) -> dict[str, Any]:
    """What a resumed run must share with the runs in the folder (the epoch count may change)."""
    return {"kind": "final_training", "genotype": genotype.to_dict(),
            "recipe": {k: v for k, v in recipe.to_dict().items() if k != "epochs"},
            "task": {"name": train.info.name, "input_shape": list(train.info.input_shape),
                     "num_classes": train.info.num_classes, "train_images": len(train),
                     "test_images": len(test)},
            "skeleton": asdict(skeleton),
            "teacher_sha256": hashlib.sha256(teacher).hexdigest() if teacher else None}


# ---------------------------------------------------------------------- on the workers
def _final_worker(config: dict[str, Any]) -> None:
    ctx = _WorkerContext(config)
    payload, spec = ray.get(config["payload"]), config["model"]
    recipe = Recipe(**{**spec["recipe"], "epochs": ctx.train.epochs})
    info = TaskInfo(**payload["info"])
    train = ArrayDataset(payload["train_images"], payload["train_labels"], info)
    test = ArrayDataset(payload["test_images"], payload["test_labels"], info)
    network = final_network(genotype_from_dict(spec["genotype"]), info, recipe,
                            SkeletonSize(**spec["skeleton"]))
    model = ray.train.torch.prepare_model(network)
    teacher = None
    if payload["teacher"] is not None:
        teacher = torch.jit.load(io.BytesIO(payload["teacher"]), map_location=ctx.device)
    state, history = ctx.restore(model)
    report = _EpochReport(ctx, history, network, test)
    train_final(model, train, recipe, ctx.worker_train, report, state,
                rows=_shard_rows(len(train), ctx.rank, ctx.world), teacher=teacher)


class _EpochReport:
    """The loop callback: adds test accuracy (sharded over workers), learning rate and seconds
    to the epoch's metrics, then reports through the pretraining `_Reporter`."""

    def __init__(self, ctx: _WorkerContext, history: list[dict[str, float]],
                 network: torch.nn.Module, test: ArrayDataset) -> None:
        self.ctx, self.network, self.test = ctx, network, test
        self.reporter = _Reporter(ctx, history)
        self.rows = np.arange(ctx.rank, len(test), ctx.world)  # no padding: exact counts
        self.start = time.perf_counter()

    def __call__(self, epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
        correct, total = count_correct(self.network, self.test, self.rows, self.ctx.device)
        counts = torch.tensor([correct, total], dtype=torch.float64, device=self.ctx.device)
        if self.ctx.world > 1:
            torch.distributed.all_reduce(counts)
        now = time.perf_counter()
        metrics = {**metrics, "test_accuracy": 100.0 * float(counts[0]) / max(float(counts[1]), 1),
                   "lr": float(state["optimizer"]["param_groups"][0]["lr"]),
                   "seconds": now - self.start}
        self.start = now
        self.reporter(epoch, metrics, state)
