"""The one evaluator: genotype -> network -> exact cost + zero-cost proxies -> flat record.

Public API (no Ray here; `hgnas_ray.distributed` runs it in Ray tasks and Ray Data actors):
    Evaluator(proxies, batches, task, skeleton, seed, device, forward_check) -> callable
    load_probe(task, root, batch_size, n_batches, seed, class_balanced) -> (batches, TaskShape)
    ScoringSetup, default_setup(device), check_proxy_names(names)
    PAPER_SKELETON, CPU_SKELETON, PAPER_BATCH, CPU_BATCH
"""

from hgnas_ray.evaluation.evaluator import (
    COST_KEYS,
    CPU_BATCH,
    CPU_SKELETON,
    PAPER_BATCH,
    PAPER_SKELETON,
    Batch,
    Evaluator,
    ScoringSetup,
    check_proxy_names,
    default_setup,
)
from hgnas_ray.evaluation.probe import load_probe

__all__ = ["COST_KEYS", "CPU_BATCH", "CPU_SKELETON", "PAPER_BATCH", "PAPER_SKELETON", "Batch",
           "Evaluator", "ScoringSetup", "check_proxy_names", "default_setup", "load_probe"]
