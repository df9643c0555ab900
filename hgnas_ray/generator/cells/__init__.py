"""The cell generator (DESIGN 1, 4): pretraining into a versioned artifact, and sampling from it.

Public API (no Ray here; `hgnas_ray.distributed.pretrain` trains on Ray Train):
    CellGenerator.load(path) -> CellGenerator         # .sample, .encode, .predict_condition,
                                                      # .clusters, .best_cluster
    PretrainConfig, pretrain_cells(corpus, out, config, trainers=None) -> manifest
    LocalTrainers, Trainers, TrainOutcome
    load_scored_corpus (from `hgnas_ray.corpus.reading`), ZCTransform, nb201_arch,
    write_synthetic_scores
    ArtifactError, SamplingError, ClusterIdError, ConditionError, SpaceMismatchError
Submodules import torch-geometric lazily where they can; `CellGenerator.load` needs it.
"""

from __future__ import annotations

from hgnas_ray.corpus.reading import ScoredCorpus, load_scored_corpus
from hgnas_ray.generator.cells.artifact import ARTIFACT_FILE, FORMAT_VERSION, WEIGHT_FILES
from hgnas_ray.generator.cells.cell_generator import (
    CellGenerator,
    GenerationWarning,
    SampleReport,
)
from hgnas_ray.generator.cells.errors import (
    ArtifactError,
    ClusterIdError,
    ConditionError,
    SamplingError,
    SpaceMismatchError,
)
from hgnas_ray.generator.cells.synthetic import write_synthetic_scores
from hgnas_ray.generator.cells.zc import LOG_SCALED_PROXIES, ZCTransform
from hgnas_ray.space.nb201_cells import nb201_arch

PRETRAIN_NAMES = ("LocalTrainers", "PretrainConfig", "TrainOutcome", "Trainers", "pretrain_cells")

__all__ = ["ARTIFACT_FILE", "FORMAT_VERSION", "LOG_SCALED_PROXIES", "WEIGHT_FILES",
           "ArtifactError", "CellGenerator", "ClusterIdError", "ConditionError",
           "GenerationWarning", "LocalTrainers", "PretrainConfig", "SampleReport",
           "SamplingError", "ScoredCorpus", "SpaceMismatchError", "TrainOutcome", "Trainers",
           "ZCTransform", "load_scored_corpus", "nb201_arch", "pretrain_cells",
           "write_synthetic_scores"]


def __getattr__(name: str):  # lazy: pretraining imports torch-geometric
    if name in PRETRAIN_NAMES:
        from hgnas_ray.generator.cells import pretrain

        return getattr(pretrain, name)
    raise AttributeError(f"module 'hgnas_ray.generator.cells' has no attribute {name!r}")
