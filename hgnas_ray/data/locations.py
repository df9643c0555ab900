"""Where data and the prepared-array cache live; nothing here is hard-coded to one machine.

- data root: the ``root`` argument (the CLI's ``--data``) > the ``HGNAS_DATA`` environment
  variable > none.
- cache dir: the ``cache_dir`` argument > ``HGNAS_CACHE`` > ``~/.cache/hgnas_ray``.
  Prepared splits are ``<cache dir>/<task>/<split>.npz``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hgnas_ray.errors import DataError

DATA_ENV = "HGNAS_DATA"
CACHE_ENV = "HGNAS_CACHE"


def resolve_data_root(root: str | Path | None) -> Path | None:
    """The data root: ``root`` if given, else ``$HGNAS_DATA``, else None.

    A root that is given but is not a directory is an error, not a silent fallback.
    """
    if root is not None and str(root) != "":
        path, origin = Path(root).expanduser(), "data root (--data / root=)"
    elif os.environ.get(DATA_ENV):
        path, origin = Path(os.environ[DATA_ENV]).expanduser(), f"{DATA_ENV}"
    else:
        return None
    if not path.is_dir():
        raise DataError(f"{origin} {str(path)!r} is not a directory; point it at the folder "
                        "holding your datasets (e.g. the one containing cifar10/)")
    return path


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The prepared-array cache: ``cache_dir`` > ``$HGNAS_CACHE`` > ``~/.cache/hgnas_ray``."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "hgnas_ray"


def prepared_path(task: str, split: str, cache_dir: str | Path | None = None) -> Path:
    """Path of a prepared split in the cache (it may not exist)."""
    return resolve_cache_dir(cache_dir) / task / f"{split}.npz"
