"""In-memory image datasets: ``TaskInfo`` (what a task is) and ``ArrayDataset`` (its data).

Images are held as one uint8 array (N, H, W, C) and labels as int64 (N,), both in numpy, so a
whole CIFAR-10 split is 150 MB and slicing a batch is cheap. Tensors are made on demand:

    x, y = dataset.batch(indices)   # x: float32 (B, C, H, W), normalised; y: int64 (B,)

``ArrayDataset`` is also a ``torch.utils.data.Dataset`` (``__getitem__`` gives one CHW tensor and
an int label), so it plugs into a ``DataLoader`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from hgnas_ray.errors import DataError

_STATS_CHUNK = 1 << 20  # pixels per chunk when computing channel statistics


@dataclass(frozen=True)
class TaskInfo:
    """What a model needs to know about a task; JSON-serialisable via ``dataclasses.asdict``.

    ``mean``/``std`` are per-channel statistics of pixel values scaled to [0, 1].
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()


class ArrayDataset(Dataset):
    """uint8 images (N, H, W, C) + int64 labels (N,) + their ``TaskInfo``.

    Shapes:
        images: (N, H, W, C) uint8; labels: (N,) int64 in [0, info.num_classes)
        batch(indices) -> x (B, C, H, W) float32 normalised, y (B,) int64
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: TaskInfo) -> None:
        _check_arrays(images, labels, info)
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.info = info
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch(np.array([index]))
        return x[0], int(y[0])

    def __repr__(self) -> str:
        return (f"ArrayDataset(name={self.info.name!r}, n={len(self)}, "
                f"input_shape={self.info.input_shape}, num_classes={self.info.num_classes})")

    def batch(self, indices: np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 NCHW images and int64 labels for ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx])).permute(0, 3, 1, 2)
        x = (x.float() / 255.0 - self._mean) / self._std
        return x.contiguous(), torch.from_numpy(self.labels[idx].copy())

    def subset(self, indices: np.ndarray | list[int]) -> ArrayDataset:
        """A new dataset holding the given rows (same ``info``), e.g. for a validation split."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.images[idx], self.labels[idx], self.info)


def _check_arrays(images: np.ndarray, labels: np.ndarray, info: TaskInfo) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"images must be uint8 (N, H, W, C); got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"labels must have shape ({len(images)},); got {labels.shape}")
    n, h, w, c = images.shape
    if info.input_shape != (c, h, w):
        raise DataError(f"info.input_shape {info.input_shape} does not match images (C, H, W) "
                        f"{(c, h, w)}")
    if len(info.mean) != c or len(info.std) != c:
        raise DataError(f"mean/std need {c} channel values; got {info.mean} / {info.std}")
    if n and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DataError(f"labels must lie in [0, {info.num_classes}); got range "
                        f"[{labels.min()}, {labels.max()}]")


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of uint8 NHWC images scaled to [0, 1]; a zero std becomes 1.

    Chunked, so a 50,000-image split never needs a float64 copy of itself.
    """
    pixels = images.reshape(-1, images.shape[-1])
    total = np.zeros(pixels.shape[1])
    squares = np.zeros(pixels.shape[1])
    for start in range(0, len(pixels), _STATS_CHUNK):
        chunk = pixels[start:start + _STATS_CHUNK].astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += (chunk * chunk).sum(axis=0)
    count = max(len(pixels), 1)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    std[std == 0] = 1.0  # constant channel: leave it centred but unscaled
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def make_info(name: str, images: np.ndarray, class_names: tuple[str, ...],
              stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> TaskInfo:
    """Build a ``TaskInfo`` for NHWC ``images``; computes the statistics when not given."""
    mean, std = stats if stats is not None else channel_stats(images)
    _, h, w, c = images.shape
    return TaskInfo(name=name, num_classes=len(class_names), input_shape=(c, h, w),
                    mean=tuple(mean), std=tuple(std), class_names=tuple(class_names))


def to_uint8_nhwc(images: np.ndarray, source: str) -> np.ndarray:
    """Accept (N, H, W), (N, H, W, C) or (N, C, H, W) images, uint8 or [0, 1] floats.

    Layout rule: a last axis of 1, 3 or 4 means NHWC; otherwise an axis 1 of 1, 3 or 4 means NCHW.
    """
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"{source}: images must be (N,H,W), (N,H,W,C) or (N,C,H,W); "
                        f"got shape {images.shape}")
    if images.shape[-1] not in (1, 3, 4):
        if images.shape[1] not in (1, 3, 4):
            raise DataError(f"{source}: cannot tell the channel axis of shape {images.shape}; "
                            "expected 1, 3 or 4 channels first (NCHW) or last (NHWC)")
        images = images.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(_to_uint8(images, source))


def _to_uint8(images: np.ndarray, source: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return images
    if images.size == 0:
        return images.astype(np.uint8)
    low, high = float(images.min()), float(images.max())
    if np.issubdtype(images.dtype, np.integer) and low >= 0 and high <= 255:
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return np.round(images * 255.0).astype(np.uint8)
    raise DataError(f"{source}: images must be uint8, integers in [0, 255] or floats in [0, 1]; "
                    f"got {images.dtype} in [{low}, {high}]")
