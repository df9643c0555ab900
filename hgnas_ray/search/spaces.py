"""What a search strategy needs of a search space: sample, mutate, identify, (de)serialise.

`GenotypeSpace` serves the project's spaces (cell, macro, nb201); tests plug in toy spaces with a
closed-form score through the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hgnas_ray.errors import GenotypeError, unknown_name
from hgnas_ray.space import (
    SPACES,
    CellGenotype,
    MacroGenotype,
    Nb201Genotype,
    format_genotype,
    genotype_hash,
    mutate_genotype,
    parse_genotype,
    sample_genotype,
)

_TYPES = {"cell": CellGenotype, "macro": MacroGenotype, "nb201": Nb201Genotype}


class SearchSpace(Protocol):
    name: str

    def sample(self, rng: np.random.Generator) -> Any: ...

    def mutate(self, genotype: Any, rng: np.random.Generator) -> Any: ...

    def key(self, genotype: Any) -> str:
        """Identity: two genotypes with one key are one architecture (evaluated once)."""

    def to_text(self, genotype: Any) -> str: ...

    def from_text(self, text: str) -> Any: ...


@dataclass(frozen=True)
class GenotypeSpace:
    """One of the project's spaces; keys are canonical hashes (isomorphic cells share one)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in SPACES:
            raise unknown_name("space", self.name, SPACES)

    def sample(self, rng: np.random.Generator) -> Any:
        return sample_genotype(self.name, rng)

    def mutate(self, genotype: Any, rng: np.random.Generator) -> Any:
        return mutate_genotype(genotype, rng)

    def key(self, genotype: Any) -> str:
        return genotype_hash(genotype)

    def to_text(self, genotype: Any) -> str:
        return format_genotype(genotype)

    def from_text(self, text: str) -> Any:
        genotype = parse_genotype(text)
        if not isinstance(genotype, _TYPES[self.name]):
            raise GenotypeError(f"{text[:80]!r} is not a genotype of the {self.name!r} space")
        return genotype
