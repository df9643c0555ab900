"""From the 8-node form back to NAS-Bench-201 arch strings, where a cell has one.

The generator decodes NAS-Bench-201 cells in their 8-node form (vocabulary "nb201"); many 8-node
cells of that vocabulary are no NAS-Bench-201 cell at all. The inverse map is a table from the
canonical hash of every arch string's 8-node form (`nb201_to_cell`) to one arch string: the 15,625
strings fall onto 5,257 distinct cells (isomorphic cells and cells differing only in dead or
skip/none edges), and each gets the first of its strings in `enumerate_nb201` order. Built once
per process, on first use (about a second).
"""

from __future__ import annotations

from functools import cache

from hgnas_ray.errors import GenotypeError
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.genotypes import nb201_to_cell
from hgnas_ray.space.nb201 import Nb201Genotype, enumerate_nb201


@cache
def _arch_by_hash() -> dict[str, str]:
    table: dict[str, str] = {}
    for genotype in enumerate_nb201():
        table.setdefault(nb201_to_cell(genotype).hash, genotype.to_string())
    return table


def nb201_arch(cell: CellGenotype) -> Nb201Genotype | None:
    """The NAS-Bench-201 cell whose 8-node form is `cell`, or None when there is none."""
    if cell.space != "nb201":
        raise GenotypeError(f"only cells of the 'nb201' vocabulary map to NAS-Bench-201 arch "
                            f"strings; got a {cell.space!r} cell")
    arch = _arch_by_hash().get(cell.hash)
    return None if arch is None else Nb201Genotype.from_string(arch)
