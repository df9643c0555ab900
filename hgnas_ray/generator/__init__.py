"""Generators of architectures. `hgnas_ray.generator.cells` is the cell generator (DESIGN 1, 4):
pretraining into a versioned artifact, and sampling from it; a macro-level generator will sit
beside it (`generator.macro`).

The cell generator's names are re-exported here, lazily (nothing is imported until a name is
used), so `from hgnas_ray.generator import CellGenerator` works; see `hgnas_ray.generator.cells`
for the API.
"""

from __future__ import annotations

import importlib

__all__ = ["ARTIFACT_FILE", "FORMAT_VERSION", "LOG_SCALED_PROXIES", "WEIGHT_FILES",
           "ArtifactError", "CellGenerator", "ClusterIdError", "ConditionError",
           "GenerationWarning", "LocalTrainers", "PretrainConfig", "SampleReport",
           "SamplingError", "ScoredCorpus", "SpaceMismatchError", "TrainOutcome", "Trainers",
           "ZCTransform", "load_scored_corpus", "nb201_arch", "pretrain_cells",
           "write_synthetic_scores"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("hgnas_ray.generator.cells"), name)
    raise AttributeError(f"module 'hgnas_ray.generator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
