"""Read the CIFAR "python version" batches (`cifar-10-batches-py/`, `cifar-100-python/`) without
running arbitrary pickle code.

Those files are Python pickles: `pickle.load` on a file planted in a data root could run any
code. They are read here by an unpickler that resolves only the three names a pickled uint8
numpy array needs (`numpy...multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`, object
dtypes refused); any other global in the stream is a `DataError`. What comes out is then
checked: a dict with uint8 `data` of shape (N, 3072) and N integer labels in range.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hgnas_ray.data.images import ImageArrays
from hgnas_ray.errors import DataError

try:
    from numpy._core.multiarray import _reconstruct  # numpy >= 2
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct


@dataclass(frozen=True)
class BatchLayout:
    """File names and keys of one dataset's python-version batches."""

    folder: str
    splits: dict[str, tuple[str, ...]]
    labels_key: str
    meta_file: str
    names_key: str


CIFAR10_LAYOUT = BatchLayout(
    "cifar-10-batches-py",
    {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    "labels", "batches.meta", "label_names")
CIFAR100_LAYOUT = BatchLayout("cifar-100-python", {"train": ("train",), "test": ("test",)},
                              "fine_labels", "meta", "fine_label_names")
IMAGE_VALUES = 3 * 32 * 32


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object dtypes are refused")
    return dtype


_ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _plain_dtype}


class _ArrayUnpickler(pickle.Unpickler):
    """Plain values (dicts, lists, strings, numbers) and numpy arrays; no other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def load_batch_file(path: Path) -> Any:
    """The value pickled in `path`, read with the allow-list unpickler (module docstring)."""
    try:
        data = path.read_bytes()
        # latin1: the batches were pickled by Python 2; numpy reads its array bytes this way
        return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"{path} is missing; the CIFAR batches folder is incomplete, copy it "
                        "again or use another source") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RecursionError) as err:
        raise DataError(f"{path} is not a CIFAR batch file ({type(err).__name__}: "
                        f"{str(err)[:120]}); it was not loaded. Replace the folder with a "
                        "real copy, or remove it") from None


def read_cifar_batches(folder: Path, layout: BatchLayout, split: str,
                       num_classes: int) -> ImageArrays:
    """Images (N, 32, 32, 3) uint8, labels and class names of `split` from `folder`."""
    images, labels = [], []
    for name in layout.splits[split]:
        batch = _check_batch(load_batch_file(folder / name), folder / name, layout, num_classes)
        images.append(batch[0])
        labels.append(batch[1])
    names = _class_names(folder / layout.meta_file, layout, num_classes)
    stacked = np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ImageArrays(np.ascontiguousarray(stacked), np.concatenate(labels), names)


def _check_batch(batch: Any, path: Path, layout: BatchLayout,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    data = batch.get("data") if isinstance(batch, dict) else None
    raw_labels = batch.get(layout.labels_key) if isinstance(batch, dict) else None
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != IMAGE_VALUES or not isinstance(raw_labels, list)):
        raise DataError(f"{path} is not a CIFAR batch: expected a dict with uint8 'data' of shape "
                        f"(N, {IMAGE_VALUES}) and a list '{layout.labels_key}'; replace the "
                        "folder with a real copy, or remove it")
    if len(raw_labels) != len(data) or not all(
            type(v) is int and 0 <= v < num_classes for v in raw_labels):
        raise DataError(f"{path}: '{layout.labels_key}' must hold {len(data)} integers in "
                        f"[0, {num_classes}); replace the folder with a real copy, or remove it")
    return data, np.asarray(raw_labels, dtype=np.int64)


def _class_names(path: Path, layout: BatchLayout, num_classes: int) -> tuple[str, ...]:
    meta = load_batch_file(path)
    names = meta.get(layout.names_key) if isinstance(meta, dict) else None
    if (not isinstance(names, list) or len(names) != num_classes
            or not all(isinstance(n, str) for n in names)):
        raise DataError(f"{path} does not list {num_classes} class names under "
                        f"'{layout.names_key}'; replace the folder with a real copy, or remove it")
    return tuple(names)
