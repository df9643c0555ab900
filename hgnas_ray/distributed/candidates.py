"""Evaluate candidates in parallel as Ray tasks, streaming results back as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ray
from ray.util import metrics

from hgnas_ray.config import RayConfig
from hgnas_ray.distributed.runtime import init_ray
from hgnas_ray.evaluation import Evaluator


@ray.remote
def _evaluate_remote(evaluator: Evaluator, genotype: dict) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # one task per CPU: avoid oversubscription
    return evaluator(genotype)


def evaluate_many(genotypes: Iterable[dict], evaluator: Evaluator, num_cpus: float = 1.0,
                  num_gpus: float = 0.0,
                  on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
    """Run `evaluator` on every genotype dict as a Ray task; call `on_result` with each flat
    record as it finishes. The evaluator (with its probe batches) is put in the object store
    once."""
    evaluator_ref = ray.put(evaluator)
    remote = _evaluate_remote.options(num_cpus=num_cpus, num_gpus=num_gpus)
    pending = [remote.remote(evaluator_ref, g) for g in genotypes]
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


def ray_evaluate_many(config: RayConfig) -> Callable[..., None]:
    """The search job's `EvaluateMany` on Ray (`hgnas_ray.search.job`): starts Ray in-process
    or joins `config.address` when there is something to evaluate, then runs one Ray task per
    genotype with `config`'s CPUs and GPUs per candidate."""

    def evaluate(genotypes: Sequence[dict], evaluator: Evaluator,
                 on_result: Callable[[dict[str, Any]], None]) -> None:
        init_ray(config)
        evaluate_many(genotypes, evaluator, config.cpus_per_candidate, config.gpus_per_candidate,
                      on_result)

    return evaluate
