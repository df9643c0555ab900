"""Evaluate candidates in parallel as Ray tasks, streaming results back as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ray
from ray.util import metrics

from hgnas_ray.nn.builder import TaskShape
from hgnas_ray.search.evaluate import evaluate_candidate


@ray.remote
def _evaluate_remote(genotype: dict, batches: list, task: TaskShape, proxies: Sequence[str],
                     seed: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # one task per CPU: avoid oversubscription
    return evaluate_candidate(genotype, batches, task, proxies, seed)


def evaluate_many(genotypes: Iterable[dict], batches: list, task: TaskShape,
                  proxies: Sequence[str], seed: int, num_cpus: float = 1.0, num_gpus: float = 0.0,
                  on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
    """Run `evaluate_candidate` on every genotype; call `on_result` as each one finishes."""
    batches_ref = ray.put(batches)
    remote = _evaluate_remote.options(num_cpus=num_cpus, num_gpus=num_gpus)
    pending = [remote.remote(g, batches_ref, task, tuple(proxies), seed) for g in genotypes]
    evaluated = metrics.Counter("hgnas_candidates_evaluated",
                                description="candidates built, costed and scored",
                                tag_keys=("status",))
    results = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        record = ray.get(done[0])
        evaluated.inc(1, tags={"status": record["status"]})
        results.append(record)
        if on_result is not None:
            on_result(record)
    return results
