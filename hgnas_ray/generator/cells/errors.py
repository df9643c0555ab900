"""Typed errors of the cell generator: a bad artifact and bad sampling requests."""

from __future__ import annotations

from hgnas_ray.errors import DataError, GenotypeError, HgnasError


class ArtifactError(DataError):
    """A cell-generator artifact is missing files, corrupt, or of an incompatible format."""


class SamplingError(HgnasError):
    """A sampling request the generator cannot serve (see the subclasses)."""


class ClusterIdError(SamplingError, IndexError):
    """A cluster id outside 0 .. number of clusters - 1."""


class ConditionError(SamplingError):
    """A condition vector of the wrong length, or with NaN/inf."""


class SpaceMismatchError(SamplingError, GenotypeError):
    """A cell from another space (vocabulary) than the artifact's."""
