"""Where the package's messages go when a command runs: plain lines on stderr.

Modules log through `logging.getLogger(__name__)` (all under "hgnas_ray") and configure
nothing; an entry point calls `configure_logging` once.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

PACKAGE_LOGGER = "hgnas_ray"


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


def configure_logging(level: int = logging.INFO) -> None:
    """Show the package's messages at `level` and above as plain lines ("%(message)s") on stderr.

    Idempotent: one handler on the "hgnas_ray" logger however often it is called. Messages still
    propagate (to pytest's caplog, or to a handler the caller puts on the root logger).
    """
    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)


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
