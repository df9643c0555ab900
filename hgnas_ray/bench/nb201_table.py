"""The NAS-Bench-201 CIFAR-10 table (`nb201_cifar10.csv`): benchmark index and accuracies.

An oracle to score a search's result against, never an input to a search: so it lives with the
benchmarks, not with the space (`hgnas_ray.space.nb201` holds the genotype).
"""

from __future__ import annotations

import csv
from pathlib import Path

from hgnas_ray.errors import DataError, GenotypeError
from hgnas_ray.space.nb201 import Nb201Genotype

NB201_TABLE_FILE = "nb201_cifar10.csv"


class Nb201Table:
    """The NAS-Bench-201 CIFAR-10 table: benchmark index and accuracies of each cell.

    An oracle for scoring a search's result, never an input to it. Load with ``Nb201Table.load``.
    """

    def __init__(self, rows: list[tuple[int, str, float, float]]) -> None:
        self._arch_by_index: dict[int, str] = {}
        self._row_by_arch: dict[str, tuple[int, float, float]] = {}
        for index, arch, test, valid in rows:
            self._arch_by_index[index] = arch
            self._row_by_arch[arch] = (index, test, valid)

    @classmethod
    def load(cls, path: str | Path) -> Nb201Table:
        """Read ``nb201_cifar10.csv`` (``path`` is the file or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / NB201_TABLE_FILE
        if not path.is_file():
            raise DataError(
                f"NAS-Bench-201 table not found at {path}; pass the path of {NB201_TABLE_FILE} "
                "(columns index, arch_str, cifar10_test, cifar10_valid) or of its folder"
            )
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            try:
                rows = [
                    (int(r["index"]), r["arch_str"], float(r["cifar10_test"]),
                     float(r["cifar10_valid"]))
                    for r in reader
                ]
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(
                    f"{path} is not a NAS-Bench-201 table (need columns index, arch_str, "
                    f"cifar10_test, cifar10_valid): {err}"
                ) from err
        return cls(rows)

    def __len__(self) -> int:
        return len(self._arch_by_index)

    def index_of(self, genotype: Nb201Genotype | str) -> int:
        """The NAS-Bench-201 / NATS-Bench topology index of a cell."""
        return self._row(genotype)[0]

    def from_index(self, index: int) -> Nb201Genotype:
        """The cell with the given benchmark index."""
        if index not in self._arch_by_index:
            raise GenotypeError(
                f"no NAS-Bench-201 cell with index {index!r}; valid indices: 0..{len(self) - 1}"
            )
        return Nb201Genotype.from_string(self._arch_by_index[index])

    def test_accuracy(self, genotype: Nb201Genotype | str) -> float:
        """200-epoch CIFAR-10 test accuracy in percent."""
        return self._row(genotype)[1]

    def valid_accuracy(self, genotype: Nb201Genotype | str) -> float:
        """CIFAR-10 validation accuracy in percent (NASLib's NAS-Bench-201 data)."""
        return self._row(genotype)[2]

    def _row(self, genotype: Nb201Genotype | str) -> tuple[int, float, float]:
        if isinstance(genotype, str):
            genotype = Nb201Genotype.from_string(genotype)  # validates and canonicalises
        arch = genotype.to_string()
        if arch not in self._row_by_arch:
            raise GenotypeError(f"cell {arch!r} is not in this NAS-Bench-201 table")
        return self._row_by_arch[arch]
