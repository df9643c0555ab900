"""The one evaluator: flat records with the exact cost, proxies, and the optional forward check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hgnas_ray.errors import RegistryError
from hgnas_ray.evaluation import CPU_SKELETON, Evaluator
from hgnas_ray.nn.builder import TaskShape, genotype_cost
from hgnas_ray.space import format_genotype, genotype_hash, sample_genotype

TASK = TaskShape(num_classes=10, input_size=16, in_channels=3)


@pytest.fixture(scope="module")
def batches():
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 16, 16, generator=gen), torch.arange(8) % 10) for _ in range(2)]


@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_record_carries_the_exact_cost_and_each_proxy(space, batches):
    genotype = sample_genotype(space, np.random.default_rng(4))
    record = Evaluator(("params", "naswot"), batches, TASK)(genotype)
    cost = genotype_cost(genotype, TASK, CPU_SKELETON)
    assert list(record)[:5] == ["genotype", "hash", "params", "macs", "flops"]
    assert record["genotype"] == format_genotype(genotype)
    assert record["hash"] == genotype_hash(genotype)
    assert (record["params"], record["macs"], record["flops"]) == (cost.params, cost.macs,
                                                                  2 * cost.macs)
    assert record["params_status"] == "ok" and record["naswot_status"] == "ok"
    assert math.isfinite(record["naswot"]) and record["status"] == "ok" and record["error"] == ""
    assert record["seconds"] > 0 and "forward_ms" not in record


def test_forward_check_and_genotype_dicts(batches):
    genotype = sample_genotype("macro", np.random.default_rng(1))
    record = Evaluator(("zico",), batches, TASK, forward_check=True)(genotype.to_dict())
    assert record["genotype"] == format_genotype(genotype) and record["status"] == "ok"
    assert record["forward_ms"] > 0 and 0.0 <= record["accuracy_untrained"] <= 1.0


def test_a_bad_genotype_is_an_error_record(batches):
    record = Evaluator(("params", "snip"), batches, TASK, forward_check=True)("{not json")
    assert record["status"] == "error" and "GenotypeError" in record["error"]
    assert record["genotype"] == "{not json" and record["hash"] is None
    assert record["macs"] is None and record["flops"] is None
    assert math.isnan(record["params"]) and math.isnan(record["snip"])
    assert record["params_status"] == record["snip_status"] == "error"
    assert math.isnan(record["forward_ms"])


def test_unknown_proxy_is_refused(batches):
    with pytest.raises(RegistryError, match="flopz"):
        Evaluator(("flopz",), batches, TASK)
