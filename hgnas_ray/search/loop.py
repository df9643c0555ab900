"""The ask -> evaluate -> tell loop over a run store, with an optional proxy-score cache.

`evaluate` is any function from a list of genotypes to their flat records (each with `hash`),
yielded in any order: in-process (`serial_evaluate`) or on a Ray actor pool
(`hgnas_ray.distributed.search`). The loop tells the strategy in ask order, so a parallel run
makes the same choices as a serial one. Counting: one told genotype is one evaluation; a cache
hit saves the time of an evaluation, never its place in the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hgnas_ray.errors import ConfigError
from hgnas_ray.search.cache import ProxyCache
from hgnas_ray.search.store import RunStore
from hgnas_ray.search.strategy import Strategy

log = logging.getLogger(__name__)
Evaluate = Callable[[Sequence[Any]], Iterable[dict[str, Any]]]
ELAPSED_KEY = "elapsed_seconds"  # in state.json: wall time of the run so far, across resumes


@dataclass(frozen=True)
class Progress:
    """Passed to `on_progress` after each tell; `seconds` counts earlier attempts too."""

    evaluations: int
    budget: int
    best_fitness: float
    best_genotype: str
    seconds: float


def run_search(strategy: Strategy, evaluate: Evaluate, store: RunStore, budget: int,
               batch_size: int = 16,
               on_progress: Callable[[Progress], None] | None = None) -> list[dict[str, Any]]:
    """Run until `budget` evaluations were told (or the space runs out); return their records
    in the order they were told. Resumes from `store` when it holds an earlier state."""
    if budget < 1 or batch_size < 1:
        raise ConfigError(f"budget and batch_size must be >= 1; got {budget}, {batch_size}")
    state = store.load_state()
    if state is not None:
        strategy.load_state_dict(state)
    before = float((state or {}).get(ELAPSED_KEY, 0.0))  # seconds spent by earlier attempts
    start = time.perf_counter()
    while len(strategy.history) < budget:
        asked = strategy.ask(min(batch_size, budget - len(strategy.history)))
        if not asked:
            log.info("%s: the space has no new genotype left after %d evaluations",
                     strategy.name, len(strategy.history))
            break
        keys = [strategy.space.key(g) for g in asked]
        _evaluate_missing(evaluate, store, [g for g, k in zip(asked, keys, strict=True)
                                            if k not in store])
        strategy.tell(asked, [_record_of(store, k, g, strategy) for g, k in
                              zip(asked, keys, strict=True)])
        elapsed = before + time.perf_counter() - start
        store.save_state({**strategy.state_dict(), ELAPSED_KEY: elapsed})
        if on_progress is not None:
            on_progress(_progress(strategy, budget, elapsed))
    # a told cell whose stored line was lost keeps what the strategy knew of it
    return [store.get(e.key) or e.as_record() for e in strategy.history[:budget]]


def _evaluate_missing(evaluate: Evaluate, store: RunStore, todo: list[Any]) -> None:
    if not todo:
        return
    for record in evaluate(todo):
        store.append(record)


def _record_of(store: RunStore, key: str, genotype: Any, strategy: Strategy) -> dict[str, Any]:
    record = store.get(key)
    if record is None:  # the evaluator returned nothing for it: a failed evaluation
        record = {"hash": key, "genotype": strategy.space.to_text(genotype), "status": "error",
                  "error": "the evaluator returned no record for this genotype"}
        store.append(record)
    return record


def _progress(strategy: Strategy, budget: int, seconds: float) -> Progress:
    best = strategy.best()
    fitness = float(strategy.fitness_of([best])[0]) if best is not None else float("nan")
    return Progress(len(strategy.history), budget, fitness, best.text if best else "", seconds)


def serial_evaluate(evaluator: Callable[[Any], dict[str, Any]]) -> Evaluate:
    """Evaluate genotypes one after the other in this process."""
    def evaluate(genotypes: Sequence[Any]) -> Iterator[dict[str, Any]]:
        for genotype in genotypes:
            yield evaluator(genotype)
    return evaluate


def cached_evaluate(evaluate: Evaluate, cache: ProxyCache, proxies: Sequence[str],
                    key: Callable[[Any], str], text: Callable[[Any], str]) -> Evaluate:
    """`evaluate` behind `cache`: hits are answered from it, misses evaluated and stored."""
    def run(genotypes: Sequence[Any]) -> Iterator[dict[str, Any]]:
        misses = []
        for genotype in genotypes:
            hit = cache.get(key(genotype), proxies)
            if hit is None:
                misses.append(genotype)
            else:
                ok = all(hit[f"{p}_status"] == "ok" for p in proxies)
                yield {**hit, "genotype": text(genotype), "status": "ok" if ok else "partial",
                       "error": ""}
        for record in evaluate(misses) if misses else ():
            cache.put([record], proxies)
            yield record
    return run
