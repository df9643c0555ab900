"""Writing a file so that a kill never leaves half of it: every exporter and report uses this."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".tmp"  # `.<name>.<pid>.tmp` beside the target until it is renamed


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)`, flush it to disk, then rename tmp to `path`: readers see the old file or the
    whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
