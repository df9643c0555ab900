"""Reading, writing and sampling genotypes of any space, as the CLI and jobs exchange them.

Text formats (one genotype per line): cells and macro networks as JSON objects (as `to_json`
prints them), NAS-Bench-201 cells as their standard arch string (or {"space": "nb201", "arch": s}).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgnas_ray.errors import GenotypeError, unknown_name
from hgnas_ray.space.cell import CellGenotype, _loads
from hgnas_ray.space.cell_sampling import mutate_cell, sample_cell
from hgnas_ray.space.macro import MacroGenotype, mutate_macro, sample_macro
from hgnas_ray.space.nb201 import Nb201Genotype, mutate_nb201, sample_nb201, to_node_form

Genotype = CellGenotype | MacroGenotype | Nb201Genotype
SPACES = ("cell", "macro", "nb201")
NB201_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3, "avg_pool_3x3": 3, "none": 0}


def genotype_from_dict(data: Any) -> Genotype:
    if not isinstance(data, dict):
        raise GenotypeError(f"a genotype is a JSON object or a NAS-Bench-201 string; got "
                            f"{type(data).__name__}")
    if "stages" in data or data.get("space") == "macro":
        return MacroGenotype.from_dict(data)
    if data.get("space") == "nb201" and "arch" in data:
        return Nb201Genotype.from_dict(data)
    if "ops" in data and "edges" in data:
        return CellGenotype.from_dict(data)
    raise GenotypeError(f"cannot tell the space of genotype with keys {sorted(data)}; a cell has "
                        "'ops', 'kernels', 'edges'; a macro network 'stem_channels', 'stages', "
                        "'final_channels'; a NAS-Bench-201 cell is an arch string '|op~0|+...'")


def parse_genotype(text: str) -> Genotype:
    """Parse one line: JSON for cell/macro genotypes, or a NAS-Bench-201 arch string."""
    text = text.strip()
    if not text:
        raise GenotypeError("empty genotype line")
    if text.startswith("|"):
        return Nb201Genotype.from_string(text)
    return genotype_from_dict(_loads(text, hint="; the line is not JSON and not a NAS-Bench-201 "
                                                "string ('|op~0|+...')"))


def format_genotype(genotype: Genotype) -> str:
    """The one-line text form `parse_genotype` reads."""
    if isinstance(genotype, Nb201Genotype):
        return genotype.to_string()
    return genotype.to_json()


def genotype_hash(genotype: Genotype) -> str:
    if isinstance(genotype, Nb201Genotype):
        return nb201_to_cell(genotype).hash
    return genotype.hash


def nb201_to_cell(genotype: Nb201Genotype) -> CellGenotype:
    """The 8-node form of a NAS-Bench-201 cell in the 'nb201' vocabulary (DESIGN 2.3)."""
    ops, edges = to_node_form(genotype)
    return CellGenotype(ops, tuple(NB201_KERNELS[op] for op in ops), edges, "nb201")


def sample_genotype(space: str, rng: np.random.Generator) -> Genotype:
    if space == "cell":
        return sample_cell(rng)
    if space == "macro":
        return sample_macro(rng)
    if space == "nb201":
        return sample_nb201(rng)
    raise unknown_name("space", space, SPACES)


def mutate_genotype(genotype: Genotype, rng: np.random.Generator) -> Genotype:
    if isinstance(genotype, CellGenotype):
        return mutate_cell(genotype, rng)
    if isinstance(genotype, MacroGenotype):
        return mutate_macro(genotype, rng)
    return mutate_nb201(genotype, rng)
