"""Generator-driven search (DESIGN 1, step 3, at the cell level).

Phases, all inside one evaluation budget:
1. **corpus** (skipped when the generator was pretrained elsewhere, `corpus_size=0`): uniform
   random cells, scored on the task like any other evaluation. Then the generator is pretrained
   on them (`generator_factory`).
2. **generate**: each ask splits its cells between *cluster draws* (the CCNF conditioned on a
   cluster's mean ZC vector; clusters are chosen with probabilities that follow what the fitness
   measured on their earlier cells) and *refinement* (the CCNF conditioned on the predicted ZC
   vector of one of the best cells so far, DESIGN 4's mutation, at temperature 1.0). A draw that
   brings too few new cells is repeated at 2x and 4x its temperature; when the generator still
   runs out of new cells, space mutations of the best cells fill the ask ("fallback"). `kind`
   records which of these proposed each cell.

The generator is not part of the state: it is rebuilt by `generator_factory` from the corpus part
of the history, which is deterministic (the factory caches its artifact), so a restored strategy
continues exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from hgnas_ray.errors import ConfigError
from hgnas_ray.search.fitness import Fitness
from hgnas_ray.search.spaces import SearchSpace
from hgnas_ray.search.strategy import Evaluated, Strategy, register_strategy

CORPUS, GENERATE = "corpus", "generate"
NO_CLUSTER = -1  # cells that did not come from a cluster draw
KINDS = ("corpus", "cluster", "refine", "fallback")
# When a draw returns too few new cells (the generator concentrates on cells already seen), it
# is repeated at these multiples of its temperature before space mutations fill the ask.
TEMPERATURE_ESCALATION = (1.0, 2.0, 4.0)


class Generator(Protocol):
    """What the strategy needs of a conditional generator over the search space."""

    num_clusters: int

    def cluster_prior(self, fitness: Fitness) -> np.ndarray | None:
        """Fitness of each cluster's measured mean ZC vector (None: not measurable)."""

    def sample(self, n: int, *, cluster: int | None = None, like: Any = None,
               temperature: float | None = None, seed: int = 0,
               accept: Callable[[Any], bool] | None = None) -> list[Any]: ...


GeneratorFactory = Callable[[Sequence[Evaluated]], Generator]


@register_strategy
class GenerativeSearch(Strategy):
    name = "generative"

    def __init__(self, space: SearchSpace, fitness: Fitness, seed: int = 0, *,
                 generator_factory: GeneratorFactory | None = None, corpus_size: int = 300,
                 refine_fraction: float = 0.5, elite: int = 10, cluster_beta: float = 8.0,
                 cluster_temperature: float = 0.4, refine_temperature: float = 1.0) -> None:
        super().__init__(space, fitness, seed)
        if generator_factory is None:
            raise ConfigError("the generative strategy needs a generator (a cell-generator "
                              "artifact, or a factory that pretrains one on the corpus)")
        if corpus_size < 0 or not 0.0 <= refine_fraction <= 1.0 or elite < 1:
            raise ConfigError(f"generative: need corpus_size >= 0, 0 <= refine_fraction <= 1, "
                              f"elite >= 1; got {corpus_size}, {refine_fraction}, {elite}")
        self.factory, self.corpus_size = generator_factory, corpus_size
        self.refine_fraction, self.elite, self.cluster_beta = refine_fraction, elite, cluster_beta
        self.cluster_temperature, self.refine_temperature = (cluster_temperature,
                                                             refine_temperature)
        self.origin: dict[str, int] = {}  # key -> cluster id it was drawn from (or NO_CLUSTER)
        self.kind: dict[str, str] = {}  # key -> which of KINDS proposed it
        self._generator: Generator | None = None

    @property
    def counts(self) -> dict[str, int]:
        """How many proposals each kind made."""
        values = list(self.kind.values())
        return {k: values.count(k) for k in KINDS}

    # ------------------------------------------------------------------ proposals
    @property
    def phase(self) -> str:
        return CORPUS if len(self.seen) < self.corpus_size else GENERATE

    def _propose(self, n: int) -> list[Any]:
        if self.phase == CORPUS:
            out = self._random_new(min(n, self.corpus_size - len(self.seen)), set())
            self.kind.update((self.space.key(g), "corpus") for g in out)
            return out
        if len(self.history) < min(self.corpus_size, len(self.seen)):
            raise ConfigError("the generative strategy needs its corpus told before it "
                              "generates: tell the corpus asks first")
        taken: set[str] = set()
        n_refine = int(round(self.refine_fraction * n)) if self.history else 0
        out = self._refine(n_refine, taken)
        out += self._cluster_draws(n - len(out), taken)
        out += self._fallback(n - len(out), taken)
        return out

    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = self.factory(self.history[:self.corpus_size])
        return self._generator

    def _accept(self, taken: set[str]) -> Callable[[Any], bool]:
        return lambda g: (k := self.space.key(g)) not in self.seen and k not in taken

    def _take(self, cells: list[Any], taken: set[str], origin: int, kind: str) -> list[Any]:
        kept = []
        for cell in cells:
            key = self.space.key(cell)
            if key in self.seen or key in taken:
                continue
            taken.add(key)
            self.origin[key], self.kind[key] = origin, kind
            kept.append(cell)
        return kept

    def _refine(self, n: int, taken: set[str]) -> list[Any]:
        out: list[Any] = []
        elite = self._elite()
        for _ in range(n):
            parent = elite[int(self.rng.integers(len(elite)))]
            cells = self._sample(1, like=self.space.from_text(parent.text),
                                 temperature=self.refine_temperature, taken=taken)
            out += self._take(cells, taken, NO_CLUSTER, "refine")
        return out

    def _cluster_draws(self, n: int, taken: set[str]) -> list[Any]:
        if n <= 0:
            return []
        counts = self.rng.multinomial(n, self.cluster_weights())
        out: list[Any] = []
        for cluster in np.flatnonzero(counts):
            cells = self._sample(int(counts[cluster]), cluster=int(cluster),
                                 temperature=self.cluster_temperature, taken=taken)
            out += self._take(cells, taken, int(cluster), "cluster")
        return out

    def _sample(self, n: int, *, taken: set[str], temperature: float,
                **condition: Any) -> list[Any]:
        out: list[Any] = []
        for factor in TEMPERATURE_ESCALATION:
            exclude = taken | {self.space.key(c) for c in out}
            seed = int(self.rng.integers(2**31 - 1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # too few new cells: escalate, then fall back
                out += self.generator().sample(n - len(out), seed=seed,
                                               temperature=temperature * factor,
                                               accept=self._accept(exclude), **condition)
            if len(out) >= n:
                break
        return out

    def _fallback(self, n: int, taken: set[str]) -> list[Any]:
        """Space mutations of elite cells, then uniform samples, when the generator is spent."""
        out: list[Any] = []
        elite = self._elite()
        for _ in range(n * 20):
            if len(out) == n or not elite:
                break
            parent = elite[int(self.rng.integers(len(elite)))]
            child = self.space.mutate(self.space.from_text(parent.text), self.rng)
            out += self._take([child], taken, NO_CLUSTER, "fallback")
        rest = self._random_new(n - len(out), taken)
        self.kind.update((self.space.key(g), "fallback") for g in rest)
        return out + rest

    # ------------------------------------------------------------------ cluster weights
    def _elite(self) -> list[Evaluated]:
        if not self.history:
            return []
        order = np.argsort(-self.fitness_of(self.history), kind="stable")
        return [self.history[i] for i in order[:self.elite]]

    def cluster_weights(self) -> np.ndarray:
        """Softmax over clusters of their mean fitness percentile (prior: measured means)."""
        k = self.generator().num_clusters
        score = np.full(k, 0.5)
        prior = self.generator().cluster_prior(self.fitness)
        if prior is not None and np.isfinite(prior).any():
            score = _percentiles(np.where(np.isfinite(prior), prior, -math.inf))
        if self.history:
            pct = _percentiles(self.fitness_of(self.history))
            sums, counts = np.zeros(k), np.zeros(k)
            for e, p in zip(self.history, pct, strict=True):
                c = self.origin.get(e.key, NO_CLUSTER)
                if c != NO_CLUSTER:
                    sums[c] += p
                    counts[c] += 1
            score = (score + sums) / (1 + counts)  # the prior counts as one observation
        logits = self.cluster_beta * (score - score.max())
        weights = np.exp(logits)
        return weights / weights.sum()

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict[str, Any]:
        return {"origin": dict(self.origin), "kind": dict(self.kind)}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.origin = {k: int(v) for k, v in extra.get("origin", {}).items()}
        self.kind = {k: str(v) for k, v in extra.get("kind", {}).items()}
        self._generator = None


def _percentiles(values: np.ndarray) -> np.ndarray:
    """Rank of each value in [0, 1] (1 = best); -inf ranks last."""
    if len(values) == 1:
        return np.ones(1)
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return order / (len(values) - 1)
