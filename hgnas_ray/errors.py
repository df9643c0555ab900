"""Typed errors raised at the package's boundaries.

Every message says what was received, what is allowed, and how to fix it. The CLI turns any
``HgnasError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class HgnasError(ValueError):
    """Base class for every user-facing error of hgnas-ray."""


class GenotypeError(HgnasError):
    """A genotype (cell, macro network, NAS-Bench-201 string) is malformed or out of range."""


class BudgetError(HgnasError):
    """A request cannot be met within the given parameter/MAC budget."""


class ConfigError(HgnasError):
    """A configuration value or command-line option is invalid."""


class DataError(HgnasError):
    """A dataset is missing, unreadable or has the wrong shape."""


class ClusterError(HgnasError):
    """The Ray cluster cannot be reached, or can never provide what a stage asks for."""


class ExportError(HgnasError):
    """An exported model cannot be written or read (weights not matching, files missing)."""


class RegistryError(HgnasError, KeyError):
    """An unknown name was looked up in a registry (ops, proxies, datasets, ...)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> RegistryError:
    """Build the standard error for an unknown registry name, listing the valid names."""
    return RegistryError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")
