"""Option types and checks shared by the subcommands: a bad value is one line and exit code 2,
before any work starts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from hgnas_ray.config import MAX_SEED
from hgnas_ray.errors import ConfigError


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [low, high] (high None: no upper bound)."""
    if low == 1:
        allowed = "a positive integer" + (f" <= {high}" if high is not None else "")
    else:
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # not a number, or more digits than Python converts
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text[:40]!r}") from None
        if value < low or (high is not None and value > high):
            shown = str(value) if len(text) <= 40 else text[:37] + "..."
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {shown}")
        return value

    return parse


seed = bounded_int(0, MAX_SEED)  # argparse type of a --seed


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """`path` as a folder to write into: in UTF-8, and it, or its nearest existing parent, must
    be a folder.

    A file there would otherwise surface as NotADirectoryError/FileExistsError deep in a write.
    """
    path = Path(path).expanduser()
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 (os.fsdecode's surrogates)
        raise ConfigError(f"{option} {str(path)!r} is not a UTF-8 path, which Parquet and JSON "
                          "files need; pass a folder name in UTF-8") from None
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                what = "is a file" if existing == path else f"lies under the file {existing}"
                raise ConfigError(f"{option} {path} {what}; pass a folder path (it is created "
                                  "if missing)")
            break
    return path
