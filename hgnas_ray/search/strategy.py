"""The ask/tell strategy interface, its registry, and the two simple strategies.

A strategy proposes genotypes (`ask`), hears their evaluation records back in the order it
proposed them (`tell`), and can be saved and restored (`state_dict` / `load_state_dict`). It owns
its RNG, and the RNG is part of its state, so a restored strategy makes exactly the choices the
uninterrupted one would have made. Every proposal is new: a strategy never asks for a genotype
whose key (canonical hash) it asked for before, so each ask is one distinct evaluation.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hgnas_ray.errors import ConfigError, unknown_name
from hgnas_ray.search.fitness import Fitness
from hgnas_ray.search.spaces import SearchSpace

MAX_DRAWS_PER_PROPOSAL = 200  # a space this exhausted is treated as finished


@dataclass
class Evaluated:
    """One told evaluation as a strategy keeps it: key, genotype text, usable proxy values."""

    key: str
    text: str
    values: dict[str, float | None]

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"hash": self.key, "genotype": self.text}
        for proxy, value in self.values.items():
            record[proxy] = value
            record[f"{proxy}_status"] = "ok" if value is not None else "error"
        return record


class Strategy(ABC):
    """Base class: history, seen keys, RNG and (de)serialisation shared by all strategies."""

    name: ClassVar[str]

    def __init__(self, space: SearchSpace, fitness: Fitness, seed: int = 0) -> None:
        self.space, self.fitness, self.seed = space, fitness, int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.history: list[Evaluated] = []
        self.seen: dict[str, None] = {}  # keys ever proposed, in order (a dict keeps order)

    # ------------------------------------------------------------------ ask / tell
    def ask(self, n: int) -> list[Any]:
        """Up to `n` genotypes never proposed before (fewer only when the space runs out)."""
        if n < 1:
            raise ConfigError(f"ask needs n >= 1; got {n}")
        proposals = self._propose(n)
        for genotype in proposals:
            self.seen[self.space.key(genotype)] = None
        return proposals

    def tell(self, genotypes: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> None:
        """The records of the genotypes of one `ask`, in the order they were asked."""
        if len(genotypes) != len(records):
            raise ConfigError(f"tell got {len(genotypes)} genotypes and {len(records)} records")
        told = [Evaluated(self.space.key(g), self.space.to_text(g), _proxy_values(r, self.fitness))
                for g, r in zip(genotypes, records, strict=True)]
        self.history.extend(told)
        self._update(told)

    def is_new(self, genotype: Any) -> bool:
        return self.space.key(genotype) not in self.seen

    def fitness_of(self, items: Sequence[Evaluated]) -> np.ndarray:
        """Fitness of `items`, ranked against the whole history for rank aggregates."""
        if len(self.fitness.proxies) == 1:
            return self.fitness.scores([e.as_record() for e in items])
        index = {id(e): i for i, e in enumerate(self.history)}
        scores = self.fitness.scores([e.as_record() for e in self.history])
        return np.array([scores[index[id(e)]] for e in items])

    def best(self) -> Evaluated | None:
        if not self.history:
            return None
        return self.history[int(np.argmax(self.fitness_of(self.history)))]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.name, "seed": self.seed, "fitness": self.fitness.name,
                "rng": copy.deepcopy(self.rng.bit_generator.state),
                "seen": list(self.seen),
                "history": [[e.key, e.text, e.values] for e in self.history],
                "extra": self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("strategy") != self.name or state.get("fitness") != self.fitness.name:
            raise ConfigError(f"saved state is for strategy {state.get('strategy')!r} with "
                              f"fitness {state.get('fitness')!r}; this is {self.name!r} with "
                              f"{self.fitness.name!r}. Use another run folder")
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.seen = dict.fromkeys(state["seen"])
        self.history = [Evaluated(k, t, dict(v)) for k, t, v in state["history"]]
        self._load_extra_state(state.get("extra", {}))

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _propose(self, n: int) -> list[Any]: ...

    def _update(self, told: list[Evaluated]) -> None:  # noqa: B027 - optional hook
        """React to newly told evaluations (appended to `history` already)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:  # noqa: B027
        """Restore what `_extra_state` saved."""

    def _random_new(self, n: int, taken: set[str]) -> list[Any]:
        """Up to `n` uniform samples whose keys are neither seen nor in `taken`."""
        out = []
        for _ in range(n * MAX_DRAWS_PER_PROPOSAL):
            if len(out) == n:
                break
            genotype = self.space.sample(self.rng)
            key = self.space.key(genotype)
            if key not in self.seen and key not in taken:
                taken.add(key)
                out.append(genotype)
        return out


def _proxy_values(record: Mapping[str, Any], fitness: Fitness) -> dict[str, float | None]:
    """Every proxy the record holds (a generator may be conditioned on more than the fitness)."""
    names = [k[: -len("_status")] for k in record if k.endswith("_status")]
    return Fitness.values_of(record, dict.fromkeys((*fitness.proxies, *names)))


_STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    if cls.name in _STRATEGIES:
        raise ValueError(f"strategy {cls.name!r} is already registered")
    _STRATEGIES[cls.name] = cls
    return cls


def available_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def create_strategy(name: str, space: SearchSpace, fitness: Fitness, seed: int = 0,
                    **options: Any) -> Strategy:
    """A registered strategy by name; `options` are its keyword arguments."""
    if name not in _STRATEGIES:
        raise unknown_name("strategy", name, available_strategies())
    try:
        return _STRATEGIES[name](space, fitness, seed, **options)
    except TypeError as err:
        raise ConfigError(f"strategy {name!r}: {err}") from None


@register_strategy
class RandomSearch(Strategy):
    """Uniform samples from the space, each new."""

    name = "random"

    def _propose(self, n: int) -> list[Any]:
        return self._random_new(n, set())


@register_strategy
class RegularizedEvolution(Strategy):
    """Aging evolution (Real et al., AAAI 2019): random until the population is full, then each
    child mutates the fittest of `sample_size` random members; the oldest member dies."""

    name = "evolution"

    def __init__(self, space: SearchSpace, fitness: Fitness, seed: int = 0,
                 population_size: int = 50, sample_size: int = 10,
                 max_mutation_tries: int = 50) -> None:
        super().__init__(space, fitness, seed)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ConfigError(f"evolution needs population_size >= 2 and 1 <= sample_size <= "
                              f"population_size; got {population_size}, {sample_size}")
        self.population_size, self.sample_size = population_size, sample_size
        self.max_mutation_tries = max_mutation_tries
        self.population: list[int] = []  # indices into history, oldest first

    def _propose(self, n: int) -> list[Any]:
        if len(self.population) < self.population_size:  # fill the population, no more
            return self._random_new(min(n, self.population_size - len(self.population)), set())
        taken: set[str] = set()
        fitness = self.fitness_of([self.history[i] for i in self.population])
        children = []
        for _ in range(n):
            picks = self.rng.choice(len(self.population), self.sample_size, replace=False)
            parent = self.history[self.population[int(picks[np.argmax(fitness[picks])])]]
            child = self._mutate_new(self.space.from_text(parent.text), taken)
            if child is None:
                children += self._random_new(1, taken)
            else:
                children.append(child)
        return children

    def _mutate_new(self, parent: Any, taken: set[str]) -> Any | None:
        for _ in range(self.max_mutation_tries):
            child = self.space.mutate(parent, self.rng)
            key = self.space.key(child)
            if key not in self.seen and key not in taken:
                taken.add(key)
                return child
        return None

    def _update(self, told: list[Evaluated]) -> None:
        start = len(self.history) - len(told)
        self.population.extend(range(start, len(self.history)))
        del self.population[:max(0, len(self.population) - self.population_size)]

    def _extra_state(self) -> dict[str, Any]:
        return {"population": list(self.population)}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.population = [int(i) for i in extra.get("population", [])]
