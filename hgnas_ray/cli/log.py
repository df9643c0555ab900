"""Where the package's messages go when a command runs: plain lines on stderr.

Modules log through `logging.getLogger(__name__)` (all under "hgnas_ray") and configure
nothing; an entry point calls `configure_logging` once.

`--verbose` (every entry point) is `configure_logging(verbose=True)`: the package then logs at
DEBUG, and the libraries' own chatter is shown too. Without it, that chatter is hidden: the
FutureWarnings that torch, torch_geometric, torchvision and Ray print about their own internals
(e.g. torch_geometric's `torch.jit.script` deprecation at import), and, when Ray starts,
Ray's INFO/WARNING lines, its workers' output and Ray Data's INFO lines
(`hgnas_ray.distributed.runtime.init_ray` reads the package logger's level: DEBUG means verbose).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

PACKAGE_LOGGER = "hgnas_ray"
# modules whose FutureWarnings are about their own internals, not anything a user passed
LIBRARY_MODULES = r"(torch|torch_geometric|torchvision|ray)(\.|$)"
_python_showwarning = warnings.showwarning  # what `_show_warning` hands other warnings to


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (a test or a tool may replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: int = logging.INFO, verbose: bool = False) -> None:
    """Show the package's messages at `level` and above as plain lines ("%(message)s") on stderr;
    `verbose`: at DEBUG, with the libraries' chatter (module docstring), else without it. The
    package's own Python warnings (e.g. corrupt images skipped) show as one "hgnas: warning: ..."
    line each.

    Idempotent: one handler on the "hgnas_ray" logger however often it is called. Messages still
    propagate (to pytest's caplog, or to a handler the caller puts on the root logger).
    """
    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(logging.DEBUG if verbose else level)
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning, module=LIBRARY_MODULES)
    global _python_showwarning
    if warnings.showwarning is not _show_warning:
        _python_showwarning = warnings.showwarning
        warnings.showwarning = _show_warning
    if not any(isinstance(h, _StderrHandler) for h in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The package's own warnings (e.g. corrupt images skipped) as one "hgnas: warning: ..."
    line; any other warning as Python shows it."""
    if f"{os.sep}{PACKAGE_LOGGER}{os.sep}" not in str(filename):
        _python_showwarning(message, category, filename, lineno, file, line)
        return
    text = " ".join(str(message).split())
    print(f"hgnas: warning: {text}", file=file if file is not None else sys.stderr)


@contextlib.contextmanager
def quiet_logging(quiet: bool = True) -> Iterator[None]:
    """Within the block, only warnings and errors of the package are shown (`--quiet`)."""
    package = logging.getLogger(PACKAGE_LOGGER)
    level = package.level
    if quiet:
        package.setLevel(logging.WARNING)
    try:
        yield
    finally:
        package.setLevel(level)
