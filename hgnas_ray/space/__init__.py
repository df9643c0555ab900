"""Search spaces: cells (DESIGN 2.1), macro networks (2.2) and NAS-Bench-201 (2.3)."""

from __future__ import annotations

from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.cell_sampling import mutate_cell, sample_cell
from hgnas_ray.space.genotypes import (
    SPACES,
    Genotype,
    format_genotype,
    genotype_from_dict,
    genotype_hash,
    mutate_genotype,
    nb201_to_cell,
    parse_genotype,
    sample_genotype,
)
from hgnas_ray.space.macro import MacroGenotype, Stage, mutate_macro, sample_macro
from hgnas_ray.space.nb201 import Nb201Genotype
from hgnas_ray.space.vocab import OpVocabulary, get_vocabulary

__all__ = ["SPACES", "CellGenotype", "Genotype", "MacroGenotype", "Nb201Genotype",
           "OpVocabulary", "Stage", "format_genotype", "genotype_from_dict", "genotype_hash",
           "get_vocabulary", "mutate_cell", "mutate_genotype", "mutate_macro", "nb201_to_cell",
           "parse_genotype", "sample_cell", "sample_genotype", "sample_macro"]
