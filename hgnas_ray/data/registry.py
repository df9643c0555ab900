"""The task registry and its factory, ``load_task``.

A task loader is a function ``(TaskRequest) -> ArrayDataset`` registered under a name with
``@register_task(name)``. ``load_task`` accepts a registered name or a path:

- a ``.npz`` file -> the ``npz`` loader;
- a directory holding ``<split>.npz`` (e.g. a ``prepare_data`` output folder) -> that file;
- any other directory -> the ``imagefolder`` loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hgnas_ray.data.arrays import ArrayDataset
from hgnas_ray.errors import DataError, RegistryError, unknown_name


@dataclass(frozen=True)
class TaskRequest:
    """What a loader is asked for; ``root`` is as the caller gave it (not yet resolved)."""

    split: str = "train"
    root: str | Path | None = None
    download: bool = False
    cache_dir: str | Path | None = None


TaskLoader = Callable[[TaskRequest], ArrayDataset]
_TASKS: dict[str, TaskLoader] = {}


def register_task(name: str) -> Callable[[TaskLoader], TaskLoader]:
    """Decorator registering a task loader under ``name``."""
    def add(loader: TaskLoader) -> TaskLoader:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is already registered")  # programming error
        _TASKS[name] = loader
        return loader
    return add


def available_tasks() -> list[str]:
    """Sorted names of the registered tasks."""
    return sorted(_TASKS)


def load_task(name_or_path: str | Path, split: str = "train", root: str | Path | None = None,
              download: bool = False, cache_dir: str | Path | None = None) -> ArrayDataset:
    """Load one split of a task as an ``ArrayDataset``.

    Args:
        name_or_path: a registered name (see ``available_tasks()``) or a path (see module doc).
        split: ``"train"`` or ``"test"`` (ImageFolder trees and .npz files may name others).
        root: data root or, for ``imagefolder``/``npz``, the directory/file itself; defaults to
            the ``HGNAS_DATA`` environment variable.
        download: allow torchvision to download CIFAR into the cache dir when not found locally.
        cache_dir: prepared-array cache; defaults to ``HGNAS_CACHE`` or ``~/.cache/hgnas_ray``.
    """
    if isinstance(name_or_path, str) and name_or_path in _TASKS:
        return _TASKS[name_or_path](TaskRequest(split, root, download, cache_dir))
    path = Path(name_or_path).expanduser()
    if path.exists():
        loader, path = _loader_for_path(path, split)
        return loader(TaskRequest(split, path, download, cache_dir))
    if isinstance(name_or_path, Path) or "/" in name_or_path or path.suffix:
        raise DataError(f"dataset path {str(path)!r} does not exist; pass an ImageFolder "
                        "directory, a .npz file, or one of: " + ", ".join(available_tasks()))
    error = unknown_name("dataset", name_or_path, available_tasks())
    raise RegistryError(f"{error}; or pass a path to an ImageFolder directory or a .npz file")


def _loader_for_path(path: Path, split: str) -> tuple[TaskLoader, Path]:
    if path.is_dir() and (path / f"{split}.npz").is_file():
        return _TASKS["npz"], path / f"{split}.npz"
    if path.is_dir():
        return _TASKS["imagefolder"], path
    if path.suffix.lower() == ".npz":
        return _TASKS["npz"], path
    raise DataError(f"{path} is neither a directory nor a .npz file; pass an ImageFolder "
                    "directory or a .npz with 'images' and 'labels'")
