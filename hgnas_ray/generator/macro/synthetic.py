"""Synthetic HL-Evo histories for tests and smoke runs: no network is built or scored.

`write_synthetic_histories` writes one JSONL file per (task, budget) setting in the history
format (`hgnas_ray.generator.macro.dataset`): random networks within the budget (`sample_macro`
rejection-sampled on exact costs), random cluster ids, and a fitness that is a deterministic
function of the layout (it rewards using the budget and a few clusters) plus seeded noise, so a
generator trained on them has a signal to learn. Every 10th record is a failed one (NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hgnas_ray.nn.budget import Budget, sample_within_budget
from hgnas_ray.nn.cost_model import macro_cost


def synthetic_fitness(params: int, macs: int, clusters: Sequence[int], budget: Budget,
                      rng: np.random.Generator) -> float:
    used = max(params / budget.max_params if budget.max_params else 0.0,
               macs / budget.max_macs if budget.max_macs else 0.0)
    favourite = sum(c % 4 == 0 for c in clusters) / max(len(clusters), 1)
    return float(used + favourite + 0.05 * rng.standard_normal())


def write_synthetic_histories(folder: str | Path, settings: Sequence[tuple], per_setting: int,
                              num_clusters: int, seed: int = 0) -> Path:
    """`settings`: (TaskShape, Budget) pairs; writes folder/setting-<i>.jsonl for each."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index, (task, budget) in enumerate(settings):
        lines = []
        for evaluation in range(per_setting):
            genotype = sample_within_budget(rng, budget, task)
            clusters = [int(c) for c in rng.integers(num_clusters, size=len(genotype.stages))]
            cost = macro_cost(genotype, task)
            fitness = synthetic_fitness(cost.params, cost.macs, clusters, budget, rng)
            record = {"task": {"num_classes": task.num_classes, "input_size": task.input_size,
                               "in_channels": task.in_channels},
                      "budget": {"max_params": budget.max_params, "max_macs": budget.max_macs},
                      "genotype": genotype.to_dict(), "clusters": clusters,
                      "fitness": math.nan if evaluation % 10 == 9 else fitness,
                      "params": cost.params, "macs": cost.macs, "evaluation": evaluation}
            lines.append(json.dumps(record))
        (folder / f"setting-{index}.jsonl").write_text("\n".join(lines) + "\n")
    return folder
