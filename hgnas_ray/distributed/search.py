"""Parallel evaluation for the search loop: a pool of Ray actors, each holding one scorer.

Why actors and not Ray Tune trials: one evaluation takes 0.1-2 s, far below a trial's start-up
cost, and the ask/tell loop wants each result in the driver as soon as it is ready. An actor
loads the task's probe batches once and then scores cells one call each, round robin; the loop
tells the strategy in ask order whatever order results come in, so a parallel run makes the
serial run's choices. A call that fails in Ray (a dead actor, a lost node) becomes an error
record for that cell; the search goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ray
from ray.exceptions import RayError
from ray.util import metrics

from hgnas_ray.corpus.scoring import CorpusScorer, failed_record
from hgnas_ray.distributed.runtime import check_gpus


@ray.remote
class _ScoringActor:
    def __init__(self, scoring: Mapping[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)  # one actor per CPU: avoid oversubscription
        self.scorer = CorpusScorer(scoring)

    def score(self, digest: str, genotype: str) -> dict[str, Any]:
        return self.scorer.score_one(digest, genotype)


def actor_pool_evaluate(scoring: Mapping[str, Any], workers: int, key: Callable[[Any], str],
                        text: Callable[[Any], str], num_cpus: float = 1.0,
                        num_gpus: float = 0.0) -> Callable[[Sequence[Any]], Iterator[dict]]:
    """An `Evaluate` for `run_search` backed by `workers` scoring actors (Ray must be up)."""
    check_gpus(num_gpus, "search evaluation")  # actors would otherwise wait for GPUs forever
    actor = _ScoringActor.options(num_cpus=num_cpus, num_gpus=num_gpus)
    actors = [actor.remote(dict(scoring)) for _ in range(workers)]
    proxies = list(scoring["proxies"])
    scored = metrics.Counter("hgnas_search_cells_scored", description="cells scored by search "
                             "evaluation actors", tag_keys=("status",))

    def evaluate(genotypes: Sequence[Any]) -> Iterator[dict[str, Any]]:
        items = [(key(g), text(g)) for g in genotypes]
        pending = {actors[i % workers].score.remote(*item): item for i, item in enumerate(items)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            digest, genotype = pending.pop(done[0])
            try:
                record = ray.get(done[0])
            except RayError as err:
                record = failed_record(proxies, f"{type(err).__name__}: {err}")
                record.update(hash=digest, genotype=genotype)
            scored.inc(1, tags={"status": str(record.get("status", "error"))})
            yield record

    return evaluate
