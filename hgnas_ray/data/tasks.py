"""The built-in tasks: ``cifar10``, ``cifar100``, ``digits``, ``imagefolder`` and ``npz``.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), always
  available offline; 1 channel, pixel values 0..16 rescaled to 0..255. Every 5th image (index % 5
  == 4) is ``test`` (359), the rest ``train`` (1,438). Statistics over all images.
- ``imagefolder``: ``root/<split>/<class>/<image>``, or ``root/<class>/<image>`` as the ``train``
  split; images converted to RGB, statistics computed over the loaded split.
- ``npz``: see ``hgnas_ray.data.npzfile`` for the accepted keys.
- ``cifar10``/``cifar100``: see ``hgnas_ray.data.cifar`` for where they are looked for.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from hgnas_ray.data.arrays import ArrayDataset, make_info
from hgnas_ray.data.cifar import CIFAR10, CIFAR100, load_cifar
from hgnas_ray.data.images import SPLIT_NAMES, read_image_tree
from hgnas_ray.data.locations import DATA_ENV
from hgnas_ray.data.npzfile import read_npz
from hgnas_ray.data.registry import TaskRequest, register_task
from hgnas_ray.errors import ConfigError, DataError

DIGITS_TEST_EVERY = 5


@register_task("cifar10")
def cifar10(request: TaskRequest) -> ArrayDataset:
    return load_cifar(CIFAR10, request.split, request.root, request.download, request.cache_dir)


@register_task("cifar100")
def cifar100(request: TaskRequest) -> ArrayDataset:
    return load_cifar(CIFAR100, request.split, request.root, request.download, request.cache_dir)


@register_task("digits")
def digits(request: TaskRequest) -> ArrayDataset:
    if request.split not in ("train", "test"):
        raise ConfigError(f"digits has splits train, test; got {request.split!r}")
    images, labels = _digits_arrays()
    is_test = np.arange(len(labels)) % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
    keep = is_test if request.split == "test" else ~is_test
    info = make_info("digits", images, tuple(str(d) for d in range(10)))
    return ArrayDataset(images[keep], labels[keep], info)


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # deferred: sklearn import is slow

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    images.flags.writeable = False  # shared by every call through the cache
    return images, bunch.target.astype(np.int64)


@register_task("imagefolder")
def imagefolder(request: TaskRequest) -> ArrayDataset:
    base = _given_path(request, "imagefolder", "an ImageFolder directory")
    if not base.is_dir():
        raise DataError(f"image folder {str(base)!r} does not exist or is not a directory")
    present = [s for s in SPLIT_NAMES if (base / s).is_dir()]
    if request.split in present:
        arrays = read_image_tree(base / request.split)
    elif present:
        raise DataError(f"{base} has split folders {', '.join(present)} but no "
                        f"{request.split!r}; pass split= one of them")
    elif request.split == "train":
        arrays = read_image_tree(base)
    else:
        raise DataError(f"{base} has no split folders, so it is read as the 'train' split only; "
                        f"to load {request.split!r} add {base}/{request.split}/<class>/ folders")
    info = make_info(base.name, arrays.images, arrays.class_names)
    return ArrayDataset(arrays.images, arrays.labels, info)


@register_task("npz")
def npz(request: TaskRequest) -> ArrayDataset:
    path = _given_path(request, "npz", "a .npz file")
    if path.is_dir() and (path / f"{request.split}.npz").is_file():
        path = path / f"{request.split}.npz"
    if not path.is_file():
        raise DataError(f"npz file {str(path)!r} not found; pass a .npz with 'images' and "
                        "'labels', or a folder holding <split>.npz")
    name = path.parent.name if path.stem in SPLIT_NAMES else path.stem
    return read_npz(path, request.split, name)


def _given_path(request: TaskRequest, task: str, what: str) -> Path:
    if request.root is not None and str(request.root) != "":
        return Path(request.root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    raise DataError(f"the {task} task needs {what}: pass it as the path (load_task(path)), as "
                    f"root= / --data, or set {DATA_ENV}")
