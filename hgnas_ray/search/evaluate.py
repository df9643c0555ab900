"""Evaluate one candidate without training: build it, count it, run it on real images, score it.

Only plain data crosses in and out (a genotype dict, tensors, a result dict), so the same function
runs in-process or as a Ray task. A failure of any kind becomes an error record: one bad candidate
never ends a job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from hgnas_ray.errors import HgnasError
from hgnas_ray.nn.builder import TaskShape, build_network, genotype_cost
from hgnas_ray.proxies import score
from hgnas_ray.space import format_genotype, genotype_from_dict, genotype_hash

Batch = tuple[torch.Tensor, torch.Tensor]


def evaluate_candidate(genotype: dict[str, Any], batches: Sequence[Batch], task: TaskShape,
                       proxies: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """{hash, genotype, params, macs, flops, forward_ms, accuracy_untrained, proxies, status}."""
    record: dict[str, Any] = {"genotype": genotype, "status": "ok"}
    try:
        parsed = genotype_from_dict(genotype)
        record.update(hash=genotype_hash(parsed), genotype_text=format_genotype(parsed))
        record.update(genotype_cost(parsed, task).to_dict())
        torch.manual_seed(seed)
        network = build_network(parsed, task)
        record.update(_forward_check(network, batches[0]))
        results = score(network, list(batches), list(proxies), seed=seed)
    except (HgnasError, RuntimeError, ValueError) as err:
        record.update(status="error", error=f"{type(err).__name__}: {err}")
        return record
    record["proxies"] = {name: {"value": r.value, "status": r.status, "seconds": r.seconds}
                         for name, r in results.items()}
    return record


def _forward_check(network: torch.nn.Module, batch: Batch) -> dict[str, float]:
    x, y = batch
    network.eval()
    start = time.perf_counter()
    with torch.no_grad():
        logits = network(x)
    elapsed = time.perf_counter() - start
    if logits.shape != (x.shape[0], network.classifier.out_features):
        raise RuntimeError(f"network output has shape {tuple(logits.shape)}")
    accuracy = float((logits.argmax(1) == y).float().mean())
    return {"forward_ms": 1000 * elapsed, "accuracy_untrained": accuracy}
