"""CIFAR-10/100: find a local copy, else download through torchvision when allowed.

Search order for split ``s`` of task ``t`` (data root R from ``--data``/``root=`` or
``HGNAS_DATA``; cache dir C from ``cache_dir=``, ``HGNAS_CACHE`` or ``~/.cache/hgnas_ray``):
1. the prepared cache ``C/t/s.npz`` (written by ``prepare_data``; loads in about a second);
2. an ImageFolder tree ``R/t/s/<class>/`` or ``R/s/<class>/``;
3. JPEG tarballs ``R/t/t_s_jpg.tar.gz`` or ``R/t_s_jpg.tar.gz`` (streamed; a few seconds);
4. torchvision's pickled batches in ``R``, ``R/t`` or ``C/torchvision``;
5. a torchvision download into ``C/torchvision``, only with ``download=True``.
Normalisation uses the published statistics of the original dataset for every source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgnas_ray.data.arrays import ArrayDataset, make_info
from hgnas_ray.data.images import ImageArrays, read_image_tree, read_tarball_samples, stack_samples
from hgnas_ray.data.locations import (
    CACHE_ENV,
    DATA_ENV,
    prepared_path,
    resolve_cache_dir,
    resolve_data_root,
)
from hgnas_ray.data.npzfile import read_npz
from hgnas_ray.errors import ConfigError, DataError


@dataclass(frozen=True)
class CifarSpec:
    name: str
    num_classes: int
    torchvision_class: str   # attribute of torchvision.datasets
    torchvision_folder: str  # the folder torchvision unpacks its pickles into
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarSpec("cifar10", 10, "CIFAR10", "cifar-10-batches-py",
                    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100 = CifarSpec("cifar100", 100, "CIFAR100", "cifar-100-python",
                     (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
CIFAR_SPLITS = ("train", "test")


def candidate_sources(spec: CifarSpec, split: str, root: str | Path | None,
                      cache_dir: str | Path | None) -> list[tuple[str, Path]]:
    """(kind, path) pairs in search order; kind is prepared, tree, tarball or torchvision."""
    found = [("prepared", prepared_path(spec.name, split, cache_dir))]
    data_root = resolve_data_root(root)
    tarball = f"{spec.name}_{split}_jpg.tar.gz"
    if data_root is not None:
        found += [("tree", data_root / spec.name / split), ("tree", data_root / split),
                  ("tarball", data_root / spec.name / tarball), ("tarball", data_root / tarball),
                  ("torchvision", data_root), ("torchvision", data_root / spec.name)]
    found.append(("torchvision", resolve_cache_dir(cache_dir) / "torchvision"))
    return found


def source_exists(spec: CifarSpec, kind: str, path: Path) -> bool:
    if kind == "torchvision":
        return (path / spec.torchvision_folder).is_dir()
    return path.is_dir() if kind == "tree" else path.is_file()


def load_cifar(spec: CifarSpec, split: str, root: str | Path | None, download: bool,
               cache_dir: str | Path | None, progress: bool = True) -> ArrayDataset:
    """Load ``split`` of a CIFAR task from the first source found (see module docstring)."""
    if split not in CIFAR_SPLITS:
        raise ConfigError(f"{spec.name} has splits {', '.join(CIFAR_SPLITS)}; got {split!r}")
    candidates = candidate_sources(spec, split, root, cache_dir)
    for kind, path in candidates:
        if source_exists(spec, kind, path):
            return _from_source(spec, kind, path, split, progress)
    if download:
        target = resolve_cache_dir(cache_dir) / "torchvision"
        return _to_dataset(spec, read_torchvision(spec, target, split, download=True))
    raise _not_found(spec, split, candidates)


def _from_source(spec: CifarSpec, kind: str, path: Path, split: str,
                 progress: bool) -> ArrayDataset:
    if kind == "prepared":
        dataset = read_npz(path, split, spec.name, (spec.mean, spec.std))
        return _check_classes(spec, dataset, path)
    if kind == "tree":
        arrays = read_image_tree(path, progress=progress)
    elif kind == "tarball":
        samples = read_tarball_samples(path, [split], progress=progress).get(split, [])
        arrays = stack_samples(samples, f"{path} (split {split!r})")
    else:
        arrays = read_torchvision(spec, path, split, download=False)
    return _check_classes(spec, _to_dataset(spec, arrays), path)


def _to_dataset(spec: CifarSpec, arrays: ImageArrays) -> ArrayDataset:
    info = make_info(spec.name, arrays.images, arrays.class_names, (spec.mean, spec.std))
    return ArrayDataset(arrays.images, arrays.labels, info)


def _check_classes(spec: CifarSpec, dataset: ArrayDataset, path: Path) -> ArrayDataset:
    if dataset.info.num_classes != spec.num_classes or dataset.info.input_shape != (3, 32, 32):
        raise DataError(f"{path} holds {dataset.info.num_classes} classes of shape "
                        f"{dataset.info.input_shape}, not {spec.name}'s {spec.num_classes} of "
                        "(3, 32, 32); point the data root at a real copy or move that folder")
    return dataset


def read_torchvision(spec: CifarSpec, root: Path, split: str, download: bool) -> ImageArrays:
    """Read (and, with ``download``, fetch) torchvision's pickled batches under ``root``."""
    import torchvision.datasets  # deferred: slow import, only needed for this source

    dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
    try:
        dataset = dataset_class(root=str(root), train=split == "train", download=download)
    except (RuntimeError, OSError, ValueError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        action = "download" if download else "read"
        raise DataError(f"could not {action} {spec.name} in {root}: {detail}; offline? point "
                        f"{DATA_ENV} (or --data) at a local copy, or run `hgnas prepare-data` "
                        "on one") from exc
    labels = np.asarray(dataset.targets, dtype=np.int64)
    return ImageArrays(np.asarray(dataset.data, dtype=np.uint8), labels, tuple(dataset.classes))


def _not_found(spec: CifarSpec, split: str, candidates: list[tuple[str, Path]]) -> DataError:
    looked = "; ".join(f"{kind} {path}" for kind, path in candidates)
    no_root = "" if any(kind == "tree" for kind, _ in candidates) else (
        f"no data root given (--data / root=) and {DATA_ENV} is unset; ")
    return DataError(f"{spec.name} {split!r} split not found: {no_root}looked for {looked}. "
                     f"Fix: set {DATA_ENV} (or pass --data) to the folder containing {spec.name}/, "
                     f"run `hgnas prepare-data` (cache: {CACHE_ENV}), or allow a download "
                     "(--download / download=True)")
