"""``.npz`` image files: reading users' files and writing prepared (cached) splits atomically.

Accepted keys, per file:
- ``images`` and ``labels`` (one split; images (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 or [0, 1]
  floats; integer labels), or ``<split>_images`` and ``<split>_labels`` for several splits;
- optional ``class_names`` (or ``<split>_class_names``), ``mean`` and ``std`` (per channel, [0, 1]
  scale), ``split`` (the split a single-split file holds).

A single-split file without a ``split`` key counts as the ``train`` split, so test data is never
handed out as training data by accident. Prepared files (``prepare_data``) hold ``images``,
``labels``, ``class_names``, ``mean``, ``std``, ``split``, ``source`` and ``format_version``.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path

import numpy as np

from hgnas_ray.data.arrays import ArrayDataset, make_info, to_uint8_nhwc
from hgnas_ray.data.images import ImageArrays
from hgnas_ray.errors import DataError

FORMAT_VERSION = 1
Stats = tuple[tuple[float, ...], tuple[float, ...]]


def write_prepared(path: Path, arrays: ImageArrays, split: str, stats: Stats,
                   source: str) -> Path:
    """Write one prepared split to ``path`` via a temp file + rename (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden name in the same folder (so the rename is atomic); open(..., "xb")
    # honours the umask, unlike mkstemp's 0600, so a shared cache stays readable.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as out:
            np.savez(out, images=arrays.images, labels=arrays.labels,
                     class_names=np.array(arrays.class_names, dtype=str),
                     mean=np.array(stats[0]), std=np.array(stats[1]), split=np.array(split),
                     source=np.array(source), format_version=np.array(FORMAT_VERSION))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_npz(path: Path, split: str, name: str, stats: Stats | None = None) -> ArrayDataset:
    """Load one split of an ``.npz`` file; ``stats`` overrides stored/computed mean and std."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels, class_names, stored = _select_split(npz, path, split)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}; the file is truncated or not an .npz, "
                        "write it again (or re-run `hgnas prepare-data`)") from exc
    images = to_uint8_nhwc(images, str(path))
    labels = _check_labels(labels, len(images), path)
    if class_names is None:
        class_names = tuple(str(i) for i in range(int(labels.max(initial=-1)) + 1))
    info = make_info(name, images, class_names, stats or stored)
    return ArrayDataset(images, labels, info)


def _select_split(npz, path: Path, split: str):
    keys = set(npz.files)
    if f"{split}_images" in keys:
        prefix = f"{split}_"
    elif "images" in keys:
        held = str(npz["split"]) if "split" in keys else "train"
        if held != split:
            raise DataError(f"{path} holds the {held!r} split only, not {split!r}; pass "
                            f"split={held!r}, or store '{split}_images'/'{split}_labels' keys, or "
                            "use one file per split")
        prefix = ""
    else:
        raise DataError(f"{path} has keys {sorted(keys)}; expected 'images' and 'labels' (or "
                        f"'{split}_images' and '{split}_labels')")
    if f"{prefix}labels" not in keys:
        raise DataError(f"{path} has '{prefix}images' but no '{prefix}labels' key")
    names_key = next((k for k in (f"{prefix}class_names", "class_names") if k in keys), None)
    class_names = tuple(str(c) for c in npz[names_key]) if names_key else None
    stored = ((tuple(npz["mean"].tolist()), tuple(npz["std"].tolist()))
              if {"mean", "std"} <= keys else None)
    return npz[f"{prefix}images"], npz[f"{prefix}labels"], class_names, stored


def _check_labels(labels: np.ndarray, n: int, path: Path) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (n,):
        raise DataError(f"{path}: labels must be {n} integers (one per image); got "
                        f"{labels.dtype} {labels.shape}")
    if n and labels.min() < 0:
        raise DataError(f"{path}: labels must be >= 0; got {labels.min()}")
    return labels.astype(np.int64)
