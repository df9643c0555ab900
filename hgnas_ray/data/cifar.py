"""CIFAR-10/100: find a local copy, else download through torchvision when allowed.

Search order for split ``s`` of task ``t`` (data root R from ``--data``/``root=`` or
``HGNAS_DATA``; cache dir C from ``cache_dir=``, ``HGNAS_CACHE`` or ``~/.cache/hgnas_ray``):
1. the prepared cache ``C/t/s.npz`` (written by ``prepare_data``; loads in about a second);
2. an ImageFolder tree ``R/t/s/<class>/`` or ``R/s/<class>/``;
3. JPEG tarballs ``R/t/t_s_jpg.tar.gz`` or ``R/t_s_jpg.tar.gz`` (streamed; a few seconds);
4. the "python version" batches (``cifar-10-batches-py/``) in ``R``, ``R/t`` or
   ``C/torchvision``, read without running pickle code (``hgnas_ray.data.cifar_batches``);
5. a torchvision download into ``C/torchvision`` (its archive checked against torchvision's
   MD5), only with ``download=True``, then read as in 4.
Normalisation uses the published statistics of the original dataset for every source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hgnas_ray.data.arrays import ArrayDataset, make_info
from hgnas_ray.data.cifar_batches import (
    CIFAR10_LAYOUT,
    CIFAR100_LAYOUT,
    BatchLayout,
    read_cifar_batches,
)
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
    torchvision_class: str   # attribute of torchvision.datasets (the download)
    batches: BatchLayout     # the python-version batches the download unpacks
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarSpec("cifar10", 10, "CIFAR10", CIFAR10_LAYOUT,
                    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100 = CifarSpec("cifar100", 100, "CIFAR100", CIFAR100_LAYOUT,
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
        return (path / spec.batches.folder).is_dir()
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
        download_cifar(spec, target)
        return _to_dataset(spec, read_batches(spec, target, split))
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
        arrays = read_batches(spec, path, split)
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


def read_batches(spec: CifarSpec, root: Path, split: str) -> ImageArrays:
    """Read the python-version batches under ``root`` (no pickle code runs)."""
    return read_cifar_batches(root / spec.batches.folder, spec.batches, split, spec.num_classes)


def download_cifar(spec: CifarSpec, root: Path) -> None:
    """Fetch and unpack torchvision's archive of ``spec`` into ``root`` unless it is there."""
    import torchvision.datasets  # deferred: slow import, only needed for a download
    from torchvision.datasets.utils import download_and_extract_archive

    if (root / spec.batches.folder).is_dir():
        return
    source = getattr(torchvision.datasets, spec.torchvision_class)
    try:
        download_and_extract_archive(source.url, str(root), filename=source.filename,
                                     md5=source.tgz_md5)
    except (RuntimeError, OSError, ValueError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"could not download {spec.name} into {root}: {detail}; offline? point "
                        f"{DATA_ENV} (or --data) at a local copy, or run `hgnas prepare-data` "
                        "on one") from exc


def _not_found(spec: CifarSpec, split: str, candidates: list[tuple[str, Path]]) -> DataError:
    looked = "; ".join(f"{kind} {path}" for kind, path in candidates)
    no_root = "" if any(kind == "tree" for kind, _ in candidates) else (
        f"no data root given (--data / root=) and {DATA_ENV} is unset; ")
    return DataError(f"{spec.name} {split!r} split not found: {no_root}looked for {looked}. "
                     f"Fix: set {DATA_ENV} (or pass --data) to the folder containing {spec.name}/, "
                     f"run `hgnas prepare-data` (cache: {CACHE_ENV}), or allow a download "
                     "(--download / download=True)")
