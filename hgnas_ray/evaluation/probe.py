"""Probe batches: a few batches of real task images that every evaluation of a task shares."""

from __future__ import annotations

from hgnas_ray.evaluation.evaluator import CPU_BATCH, Batch
from hgnas_ray.nn.builder import TaskShape


def load_probe(task: str, root: str | None = None, batch_size: int = CPU_BATCH,
               n_batches: int = 2, seed: int = 0, class_balanced: bool = False,
               download: bool = False) -> tuple[list[Batch], TaskShape]:
    """Probe batches of real task images (train split) and the task's shape.

    Two batches by default: zico needs >= 2; single-batch proxies use the first.
    """
    from hgnas_ray.data import load_task, probe_batches  # the data stack loads on first use

    dataset = load_task(task, "train", root=root, download=download)
    batches = probe_batches(dataset, n_batches, batch_size, seed=seed,
                            class_balanced=class_balanced)
    c, h, _ = dataset.info.input_shape
    return batches, TaskShape(dataset.info.num_classes, h, c)
