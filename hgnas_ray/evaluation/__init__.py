"""The one evaluator: genotype -> network -> exact cost + zero-cost proxies -> flat record.

Public API (no Ray here; `hgnas_ray.distributed` runs it in Ray tasks and Ray Data actors):
    Evaluator(proxies, batches, task, skeleton, seed, device, forward_check) -> callable
    load_probe(task, root, batch_size, n_batches, seed, class_balanced) -> (batches, TaskShape)
    ScoringSetup, NETWORK_SIZES, scoring_setup(network, channels, cells, batch) (checked),
    check_setup(setup, names), check_seed(seed), check_device(name), default_setup(device),
    check_proxy_names(names)
    PAPER_SKELETON, CPU_SKELETON, PAPER_BATCH, CPU_BATCH, NB201_BENCHMARK
    COST_KEYS, NETWORK_KEYS: record keys (the evaluator module's docstring describes a record)
"""

from hgnas_ray.evaluation.evaluator import (
    COST_KEYS,
    CPU_BATCH,
    CPU_SKELETON,
    NB201_BENCHMARK,
    NETWORK_KEYS,
    NETWORK_SIZES,
    PAPER_BATCH,
    PAPER_SKELETON,
    Batch,
    Evaluator,
    ScoringSetup,
    check_device,
    check_proxy_names,
    check_seed,
    check_setup,
    default_setup,
    scoring_setup,
)
from hgnas_ray.evaluation.probe import load_probe

__all__ = ["COST_KEYS", "CPU_BATCH", "CPU_SKELETON", "NB201_BENCHMARK", "NETWORK_KEYS",
           "NETWORK_SIZES", "PAPER_BATCH", "PAPER_SKELETON", "Batch", "Evaluator", "ScoringSetup",
           "check_device", "check_proxy_names", "check_seed", "check_setup", "default_setup",
           "load_probe", "scoring_setup"]
