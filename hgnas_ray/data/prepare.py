"""``prepare_data``: turn image files into cached uint8 arrays that load in about a second.

Sources (``source`` argument):
- a task name such as ``"cifar10"``: the folder ``<data root>/cifar10`` (data root from ``root=``
  / ``--data`` or ``HGNAS_DATA``), read as a path below;
- a tarball (.tar.gz, .tgz, .tar) of ImageFolder trees, e.g. ``cifar10_test_jpg.tar.gz`` whose
  members are ``cifar10/test/<class>/<n>.jpg``; streamed, never extracted;
- a directory holding such tarballs (e.g. the CIFAR-10 folder with the train and test tarballs);
- an ImageFolder tree with split folders (``<dir>/<split>/<class>/``) or without
  (``<dir>/<class>/``, prepared as the ``train`` split).

Output: ``<out>/<split>.npz`` per split (keys in ``hgnas_ray.data.npzfile``), ``out`` defaulting to
``<cache dir>/<task>`` with the cache dir from ``cache_dir=``, ``HGNAS_CACHE`` or
``~/.cache/hgnas_ray``; ``load_task(task)`` finds CIFAR there automatically, and
``load_task(out, split)`` loads any prepared folder. Each file is written to a temp file and
renamed, so an interrupted run leaves no partial file. When a ``train`` split is prepared, its
channel statistics are stored in every split's file, so all splits are normalised alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from hgnas_ray.data.arrays import channel_stats
from hgnas_ray.data.images import (
    SPLIT_NAMES,
    ImageArrays,
    is_tarball,
    read_image_tree,
    read_tarball_samples,
    stack_samples,
)
from hgnas_ray.data.locations import DATA_ENV, resolve_cache_dir, resolve_data_root
from hgnas_ray.data.npzfile import write_prepared
from hgnas_ray.errors import DataError


def prepare_data(source: str | Path, out: str | Path | None = None, *, task: str | None = None,
                 splits: Iterable[str] | None = None, root: str | Path | None = None,
                 cache_dir: str | Path | None = None, skip_corrupt: bool = False,
                 progress: bool = True) -> dict[str, Path]:
    """Prepare the splits of ``source`` as ``.npz`` files; returns ``{split: path}``.

    Args:
        source: task name, tarball, folder of tarballs, or ImageFolder tree (module docstring).
        out: output folder; default ``<cache dir>/<task>``.
        task: task name for the default output folder; default inferred from ``source``
            (``cifar10`` for ``.../cifar10`` or ``cifar10_test_jpg.tar.gz``).
        splits: only these splits (default: every split found); a missing one is an error.
        root: data root used when ``source`` is a task name; default ``HGNAS_DATA``.
        cache_dir: cache folder used when ``out`` is not given.
        skip_corrupt: skip undecodable images (and warn with the count) instead of raising.
        progress: show a progress bar on stderr.
    """
    path = _source_path(source, root)
    wanted = None if splits is None else tuple(splits)
    arrays = read_splits(path, wanted, skip_corrupt, progress)
    _check_same_classes(arrays, path)
    out_dir = (Path(out).expanduser() if out is not None
               else resolve_cache_dir(cache_dir) / (task or task_name(path)))
    train_stats = channel_stats(arrays["train"].images) if "train" in arrays else None
    return {split: write_prepared(out_dir / f"{split}.npz", data, split,
                                  train_stats or channel_stats(data.images), str(path))
            for split, data in sorted(arrays.items())}


def _source_path(source: str | Path, root: str | Path | None) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path
    if isinstance(source, Path) or "/" in source or path.suffix:
        raise DataError(f"data source {str(path)!r} does not exist; pass an ImageFolder folder, "
                        "a tarball of one, or a task name such as 'cifar10'")
    data_root = resolve_data_root(root)
    if data_root is None:
        raise DataError(f"cannot find {source!r}: no data root given (--data / root=) and "
                        f"{DATA_ENV} is unset; set one to the folder containing {source}/, or "
                        "pass the path of the images themselves")
    if not (data_root / source).is_dir():
        raise DataError(f"{data_root / source} not found; point --data / {DATA_ENV} at the "
                        f"folder containing {source}/, or pass the path of the images")
    return data_root / source


def read_splits(path: Path, splits: tuple[str, ...] | None, skip_corrupt: bool = False,
                progress: bool = True) -> dict[str, ImageArrays]:
    """Read every wanted split found at ``path`` (tarball, folder of tarballs, or tree)."""
    tarballs = ([path] if is_tarball(path) else
                sorted(p for p in path.iterdir() if is_tarball(p)) if path.is_dir() else [])
    split_dirs = [s for s in SPLIT_NAMES if (path / s).is_dir()]
    if tarballs:
        found = _read_tarballs(tarballs, splits, skip_corrupt, progress)
    elif split_dirs:
        found = {s: read_image_tree(path / s, skip_corrupt, progress)
                 for s in split_dirs if splits is None or s in splits}
    elif path.is_dir():
        found = {"train": read_image_tree(path, skip_corrupt, progress)}
    else:
        raise DataError(f"{path} is neither a directory nor a tarball (.tar.gz, .tgz, .tar)")
    missing = [s for s in (splits or ()) if s not in found]
    if missing or not found:
        raise DataError(f"{path}: split(s) {', '.join(missing) or '(any)'} not found; it holds "
                        f"{', '.join(sorted(found)) or 'no splits'}")
    return found


def _read_tarballs(tarballs: list[Path], splits: tuple[str, ...] | None, skip_corrupt: bool,
                   progress: bool) -> dict[str, ImageArrays]:
    samples: dict[str, list] = {}
    for tarball in tarballs:
        for split, found in read_tarball_samples(tarball, splits, skip_corrupt,
                                                 progress).items():
            samples.setdefault(split, []).extend(found)
    names = ", ".join(str(t) for t in tarballs)
    return {split: stack_samples(found, f"{names} (split {split!r})")
            for split, found in samples.items()}


def _check_same_classes(arrays: dict[str, ImageArrays], path: Path) -> None:
    by_split = {split: data.class_names for split, data in arrays.items()}
    if len(set(by_split.values())) > 1:
        detail = "; ".join(f"{s}: {len(c)} ({', '.join(c[:3])}, ...)" for s, c in by_split.items())
        raise DataError(f"{path}: splits have different classes ({detail}); every split needs "
                        "the same class folders, or labels would not match across splits")


def task_name(path: Path) -> str:
    """Default task name: ``cifar10`` for ``.../cifar10``, ``cifar10_test_jpg.tar.gz``, ...."""
    name = re.sub(r"\.(tar\.gz|tgz|tar)$", "", path.name, flags=re.IGNORECASE)
    name = re.split(r"[_.-](?:" + "|".join(SPLIT_NAMES) + r")(?:[_.-]|$)", name)[0]
    if not name or name in SPLIT_NAMES:
        name = path.resolve().parent.name
    return name
