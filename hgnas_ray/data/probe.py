"""Deterministic probe batches for zero-cost proxies.

Every draw uses its own ``numpy.random.default_rng(seed)``: the same (dataset, size, seed,
class_balanced) always gives the same batch, on any machine. ``probe_batches`` returns disjoint
batches (no image repeats across them), as ZiCo's gradient statistics need >= 2 different batches.

Class balance: each batch holds ``size // k`` images of each of the k classes present, and the
``size % k`` remaining slots go one each to classes in round-robin order, continuing from batch to
batch (batch 0 gives them to classes 0..r-1, batch 1 to r..2r-1, ...). Batches are shuffled, so
they are never sorted by class.
"""

from __future__ import annotations

import numpy as np
import torch

from hgnas_ray.data.arrays import ArrayDataset
from hgnas_ray.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]  # x (B, C, H, W) float32 normalised, y (B,) int64


def probe_batch(dataset: ArrayDataset, size: int = 64, seed: int = 0,
                class_balanced: bool = False) -> Batch:
    """One probe batch (x, y) of ``size`` images drawn without replacement."""
    return probe_batches(dataset, 1, size, seed, class_balanced)[0]


def probe_batches(dataset: ArrayDataset, n_batches: int, size: int = 64, seed: int = 0,
                  class_balanced: bool = False) -> list[Batch]:
    """``n_batches`` disjoint probe batches (x, y) of ``size`` images each."""
    indices = probe_indices(dataset.labels, n_batches, size, seed, class_balanced)
    return [dataset.batch(row) for row in indices]


def probe_indices(labels: np.ndarray, n_batches: int, size: int, seed: int = 0,
                  class_balanced: bool = False) -> np.ndarray:
    """Dataset row indices of shape (n_batches, size); see the module docstring for the rules."""
    _check_request(len(labels), n_batches, size)
    rng = np.random.default_rng(seed)
    if not class_balanced:
        return rng.choice(len(labels), n_batches * size, replace=False).reshape(n_batches, size)
    classes = np.unique(labels)
    extra = size % len(classes)
    counts = np.stack([_round_robin(len(classes), size, b * extra) for b in range(n_batches)])
    pools = [_draw_class(labels, c, int(n), rng)
             for c, n in zip(classes, counts.sum(0), strict=True)]
    taken = np.zeros(len(classes), dtype=np.int64)
    rows = []
    for batch_counts in counts:  # (k,) images per class in this batch
        row = np.concatenate([pool[start:start + n]
                              for pool, start, n in zip(pools, taken, batch_counts, strict=True)])
        taken += batch_counts
        rows.append(rng.permutation(row))
    return np.stack(rows)


def _round_robin(n_classes: int, size: int, offset: int) -> np.ndarray:
    """Per-class counts for one batch: size // k each, extras to classes from ``offset % k`` on."""
    counts = np.full(n_classes, size // n_classes, dtype=np.int64)
    extra = size % n_classes
    counts[(offset + np.arange(extra)) % n_classes] += 1
    return counts


def _draw_class(labels: np.ndarray, label: int, n: int, rng: np.random.Generator) -> np.ndarray:
    pool = np.flatnonzero(labels == label)
    if n > len(pool):
        raise ConfigError(f"class-balanced probe batches need {n} images of class {label}, "
                          f"which has {len(pool)}; use fewer or smaller batches, or "
                          "class_balanced=False")
    return rng.choice(pool, n, replace=False)


def _check_request(n_images: int, n_batches: int, size: int) -> None:
    if n_batches < 1 or size < 1:
        raise ConfigError(f"probe batches need n_batches >= 1 and size >= 1; got {n_batches}, "
                          f"{size}")
    if n_batches * size > n_images:
        raise ConfigError(f"{n_batches} probe batch(es) of {size} need {n_batches * size} "
                          f"distinct images but the dataset has {n_images}; use fewer or "
                          "smaller batches")
