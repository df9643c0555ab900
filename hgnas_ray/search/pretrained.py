"""The cell generator as a search component: pretrain it on a search's own corpus, and adapt it
to a search space.

`CorpusPretrainer` is a `GeneratorFactory` for `GenerativeSearch`: it writes the corpus
evaluations (cells and their scores) as a regular corpus folder, pretrains the cell generator on
it in-process (`pretrain_cells`), and caches the artifact under a fingerprint of the corpus and
the configuration, so a resumed search loads it instead of training again.
`SpaceGenerator` turns a `CellGenerator`'s 8-node cells into genotypes of the search space;
`GeneratorCells` makes its clusters the cell source of macro search (HL-Evo).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hgnas_ray.corpus.schema import CellRow, rows_to_table
from hgnas_ray.corpus.scoring import SCORING_FILE, default_scores_dir, records_to_table
from hgnas_ray.corpus.shards import CELLS_DIR, shard_name, write_json_atomic, write_table_atomic
from hgnas_ray.errors import ConfigError
from hgnas_ray.generator.cells import CellGenerator, PretrainConfig, pretrain_cells
from hgnas_ray.generator.cells.cell_generator import GenerationWarning
from hgnas_ray.search.fitness import Fitness
from hgnas_ray.search.strategy import Evaluated
from hgnas_ray.space import CellGenotype, Nb201Genotype, nb201_to_cell
from hgnas_ray.space.nb201_cells import nb201_arch

log = logging.getLogger(__name__)
ARTIFACT_FILE = "artifact.json"


class SpaceGenerator:
    """A `CellGenerator` that returns genotypes of the search space ('cell' or 'nb201')."""

    def __init__(self, generator: CellGenerator) -> None:
        self.cells = generator
        self.num_clusters = generator.num_clusters

    def cluster_prior(self, fitness: Fitness) -> np.ndarray | None:
        """Fitness of each cluster's measured mean ZC vector, when the generator was
        conditioned on every fitness proxy."""
        if not set(fitness.proxies) <= set(self.cells.proxies):
            return None
        means = [c["measured_mean_zc"] for c in self.cells.clusters()]
        records = [{p: m[p] for p in fitness.proxies} for m in means]
        return fitness.scores(records)

    def sample(self, n: int, *, cluster: int | None = None, like: Any = None,
               temperature: float | None = None, seed: int = 0,
               accept: Callable[[Any], bool] | None = None) -> list[Any]:
        gate = None if accept is None else (lambda cell: accept(self._to_space(cell)))
        cells = self.cells.sample(n, cluster=cluster, like=like, temperature=temperature,
                                  seed=seed, accept=gate)
        return [self._to_space(c) for c in cells]

    def _to_space(self, cell: CellGenotype) -> Any:
        if self.cells.space != "nb201":
            return cell
        arch = nb201_arch(cell)
        if arch is None:
            raise ConfigError("the NAS-Bench-201 generator decoded a cell with no arch string")
        return arch


class GeneratorCells:
    """A `CellGenerator`'s clusters as the cell source of macro search (`MacroHierarchy`).

    Each cluster's cells come from a pool of `pool_size` CCNF draws at `temperature`, made on
    first use with a seed fixed by (seed, cluster), so the pool is the same in a resumed search
    and draws cost one ODE solve per cluster, not one per network. Regeneration is the CCNF
    conditioned on the cell's predicted ZC vector (DESIGN 4's mutation) at `like_temperature`.
    """

    def __init__(self, generator: CellGenerator, pool_size: int = 16, temperature: float = 0.4,
                 like_temperature: float = 1.0, seed: int = 0) -> None:
        if generator.space != "cell":
            raise ConfigError(f"macro networks use cells of the 'cell' space; this generator "
                              f"makes {generator.space!r} cells. Use an artifact trained on a "
                              "'cell' corpus")
        self.generator, self.pool_size, self.seed = generator, pool_size, seed
        self.temperature, self.like_temperature = temperature, like_temperature
        self.num_clusters = generator.num_clusters
        self.pools: dict[int, list[CellGenotype]] = {}
        self.known: dict[str, int] = {}  # cell hash -> cluster, for cells drawn from a pool

    def pool(self, cluster: int) -> list[CellGenotype]:
        if cluster not in self.pools:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GenerationWarning)  # a smaller pool still works
                cells = self.generator.sample(self.pool_size, cluster=cluster,
                                              temperature=self.temperature,
                                              seed=self.seed * 100_003 + cluster)
            if not cells:
                raise ConfigError(f"cluster {cluster} of the cell generator produced no cell")
            self.pools[cluster] = cells
            for cell in cells:  # a cell two clusters drew keeps the first one's id
                self.known.setdefault(cell.hash, cluster)
        return self.pools[cluster]

    def draw(self, cluster: int, rng: np.random.Generator) -> CellGenotype:
        cells = self.pool(cluster)
        return cells[int(rng.integers(len(cells)))]

    def regenerate(self, cell: CellGenotype, rng: np.random.Generator) -> CellGenotype | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GenerationWarning)
            cells = self.generator.sample(1, like=cell, temperature=self.like_temperature,
                                          seed=int(rng.integers(2**31 - 1)))
        return cells[0] if cells else None

    def cluster_of(self, cells: list[CellGenotype]) -> list[int]:
        unknown = [c for c in cells if c.hash not in self.known]
        if unknown:
            assigned = self.generator.assign_clusters(unknown)
            self.known.update((c.hash, int(k)) for c, k in zip(unknown, assigned, strict=True))
        return [self.known[c.hash] for c in cells]


@dataclass
class CorpusPretrainer:
    """Pretrain a cell generator on the corpus part of a search (see the module docstring)."""

    root: Path
    space: str
    proxies: tuple[str, ...]
    config: PretrainConfig = field(default_factory=PretrainConfig)
    device: str = "cpu"
    trained: list[Path] = field(default_factory=list)  # artifacts this factory trained

    def __call__(self, corpus: Sequence[Evaluated]) -> SpaceGenerator:
        usable = [e for e in corpus if all(e.values.get(p) is not None for p in self.proxies)]
        if len(usable) < 2 * self.config.min_cells_per_cluster:
            raise ConfigError(f"the generator's corpus has {len(usable)} usable cells; it needs "
                              f"at least {2 * self.config.min_cells_per_cluster}: raise the "
                              "corpus size")
        folder = Path(self.root) / self._fingerprint(corpus)
        artifact = folder / "artifact"
        if not (artifact / ARTIFACT_FILE).is_file():
            self._write_corpus(folder / "corpus", corpus)
            log.info("pretraining the cell generator on %d corpus cells -> %s", len(corpus),
                     artifact)
            pretrain_cells(folder / "corpus", artifact, self.config)
            self.trained.append(artifact)
        return SpaceGenerator(CellGenerator.load(artifact, device=self.device))

    def _fingerprint(self, corpus: Sequence[Evaluated]) -> str:
        data = {"space": self.space, "proxies": list(self.proxies),
                "config": self.config.to_dict(),
                "corpus": [[e.key, e.text, e.values] for e in corpus]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def _write_corpus(self, folder: Path, corpus: Sequence[Evaluated]) -> None:
        rows = [CellRow(e.key, e.text, self._cell(e.text)) for e in corpus]
        name = shard_name(0)
        write_table_atomic(rows_to_table(rows), folder / CELLS_DIR / name)
        records = [{"hash": e.key, "genotype": e.text, "status": "ok", "error": "",
                    "seconds": 0.0, **{p: e.values.get(p) for p in self.proxies},
                    **{f"{p}_status": "ok" if e.values.get(p) is not None else "error"
                       for p in self.proxies}} for e in corpus]
        scores = default_scores_dir(folder)
        write_table_atomic(records_to_table(records, self.proxies), scores / name)
        write_json_atomic({"corpus": str(folder.resolve()),
                           "settings": {"proxies": list(self.proxies), "source": "search"}},
                          scores / SCORING_FILE)

    def _cell(self, text: str) -> CellGenotype:
        if self.space == "nb201":
            return nb201_to_cell(Nb201Genotype.from_string(text)).canonical()
        return CellGenotype.from_json(text).canonical()
