"""The one evaluator: flat records with the exact cost, proxies, and the optional forward check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hgnas_ray.errors import ConfigError, RegistryError
from hgnas_ray.evaluation import (
    CPU_SKELETON,
    NB201_BENCHMARK,
    NETWORK_KEYS,
    Evaluator,
    check_device,
    scoring_setup,
)
from hgnas_ray.nn.builder import SkeletonSize, TaskShape, genotype_cost
from hgnas_ray.space import Nb201Genotype, format_genotype, genotype_hash, sample_genotype

TASK = TaskShape(num_classes=10, input_size=16, in_channels=3)


@pytest.fixture(scope="module")
def batches():
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 16, 16, generator=gen), torch.arange(8) % 10) for _ in range(2)]


@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_record_carries_the_exact_cost_and_each_proxy(space, batches):
    genotype = sample_genotype(space, np.random.default_rng(4))
    record = Evaluator(("params", "naswot"), batches, TASK)(genotype)
    cost = genotype_cost(genotype, TASK, NB201_BENCHMARK if space == "nb201" else CPU_SKELETON)
    assert list(record)[:9] == ["genotype", "hash", "params", "macs", "flops", *NETWORK_KEYS]
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


# The NAS-Bench-201 cell of issue 12: the benchmark's network has 157,306 parameters (CIFAR-10).
ARCH = "|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_1x1~2|"


def test_record_names_the_network_the_proxies_ran_on():
    """Regression (issue 12): an NAS-Bench-201 cell scored in a reduced network reported that
    network's params (23,106) as if they were the cell's; the cost is the benchmark network's
    and the record says which network the proxies saw."""
    gen = torch.Generator().manual_seed(0)
    cifar = [(torch.randn(8, 3, 32, 32, generator=gen), torch.arange(8)) for _ in range(2)]
    reduced = SkeletonSize(8, 1)
    record = Evaluator(("params", "snip"), cifar, TaskShape(), reduced)(ARCH)
    assert record["params"] == 157_306 == genotype_cost(Nb201Genotype.from_string(ARCH)).params
    assert record["params"] != genotype_cost(Nb201Genotype.from_string(ARCH), TaskShape(),
                                             reduced).params
    assert {k: record[k] for k in NETWORK_KEYS} == {
        "network_channels": 8, "network_cells_per_stage": 1, "probe_batch_size": 8,
        "device": "cpu"}


@pytest.mark.parametrize("space, channels", [("cell", 4), ("macro", None)])
def test_cells_cost_their_skeleton_and_macro_networks_themselves(space, channels, batches):
    genotype = sample_genotype(space, np.random.default_rng(2))
    skeleton = SkeletonSize(4, 1)
    record = Evaluator(("params",), batches, TASK, skeleton)(genotype)
    assert record["params"] == genotype_cost(genotype, TASK, skeleton).params
    assert record["network_channels"] == channels
    assert record["network_cells_per_stage"] == (1 if channels else None)


def test_an_error_record_still_names_batch_and_device(batches):
    record = Evaluator(("params",), batches, TASK)("{not json")
    assert record["network_channels"] is None and record["probe_batch_size"] == 8
    assert record["device"] == "cpu"


def test_network_sizes_are_named_and_overridable():
    full, reduced = scoring_setup("full"), scoring_setup("reduced")
    assert (full.skeleton, full.batch_size) == (SkeletonSize(16, 5), 64)
    assert (reduced.skeleton, reduced.batch_size) == (SkeletonSize(8, 1), 32)
    assert scoring_setup("reduced", channels=4, batch_size=16).skeleton == SkeletonSize(4, 1)
    with pytest.raises(RegistryError, match="valid names: full, reduced"):
        scoring_setup("tiny")


@pytest.mark.parametrize("values, message", [
    ({"channels": -8}, r"--skeleton-channels must be an integer in \[1, 256\].*got -8"),
    ({"channels": 999_999_999}, r"--skeleton-channels .*got 999999999"),
    ({"cells_per_stage": 0}, r"--skeleton-cells must be an integer in \[1, 6\]"),
    ({"cells_per_stage": 99_999_999}, r"--skeleton-cells"),
    ({"batch_size": 1}, r"--batch-size must be an integer in \[2, 1024\]"),
    ({"batch_size": 10**9}, r"--batch-size"),
])
def test_out_of_range_network_values_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        scoring_setup("full", **values)


def test_device_names_are_checked():
    assert check_device("cpu") == "cpu"
    assert check_device(None) in ("cpu", "cuda")
    for bad in ("foo", "mps", "", "cuda:x"):
        with pytest.raises(ConfigError, match="--device must be cpu, cuda or cuda:N"):
            check_device(bad)
    assert check_device("cuda:3", require_local=False) == "cuda:3"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available on this machine; use "
                                              "--device cpu"):
            check_device("cuda")
