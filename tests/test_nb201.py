"""NAS-Bench-201 space: genotype strings, benchmark table, node form, and the network's costs."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from hgnas_ray.bench import Nb201Table
from hgnas_ray.errors import DataError, GenotypeError
from hgnas_ray.nn.cost import count_macs, count_params
from hgnas_ray.nn.nb201 import Nb201Network, Zero
from hgnas_ray.space.nb201 import (
    NB201_OPS,
    Nb201Genotype,
    enumerate_nb201,
    mutate_nb201,
    sample_nb201,
    to_node_form,
)

# Index 6111, the best cell (94.373 % test; index 13714 ties): its last edge is a 1x1 conv.
BEST = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
ALL_SKIP = ("|skip_connect~0|+|skip_connect~0|skip_connect~1|"
            "+|skip_connect~0|skip_connect~1|skip_connect~2|")
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
CIFAR = (3, 32, 32)


@pytest.fixture(scope="module")
def table(nb201_dir: Path) -> Nb201Table:
    return Nb201Table.load(nb201_dir)


@pytest.fixture(scope="module")
def reference_rows(nb201_dir: Path) -> list[dict[str, str]]:
    with (nb201_dir / "zc_reference_cifar10_1000.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _cost(genotype: Nb201Genotype) -> tuple[int, int]:
    """(parameters, MACs) of the benchmark-sized network, built on the meta device."""
    with torch.device("meta"):
        net = Nb201Network(genotype)
    net.eval()  # same counts; BN's meta kernel is much faster in eval mode
    return sum(p.numel() for p in net.parameters()), count_macs(net, CIFAR)


# ---------------------------------------------------------------- genotype, strings, enumeration


def test_enumeration_is_complete_unique_and_round_trips() -> None:
    cells = list(enumerate_nb201())
    assert len(cells) == 15_625 == len(set(cells))
    strings = [g.to_string() for g in cells]
    assert len(set(strings)) == 15_625
    assert all(Nb201Genotype.from_string(s) == g for s, g in zip(strings, cells, strict=True))
    assert list(enumerate_nb201()) == cells  # deterministic order


def test_string_format_and_dict_round_trip() -> None:
    g = Nb201Genotype.from_string(BEST)
    assert g.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect",
                     "nor_conv_3x3", "nor_conv_1x1")
    assert g.to_string() == str(g) == BEST
    data = json.loads(json.dumps(g.to_dict()))
    assert data == {"space": "nb201", "arch": BEST}
    assert Nb201Genotype.from_dict(data) == g
    assert hash(g) == hash(Nb201Genotype(list(g.ops)))  # a list is stored as a tuple


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "need 3"),
        ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "need 2"),
        ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|", "need 3"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'conv_5x5'"),
        ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "'<op>~0'"),
        ("|nor_conv_3x3~0|+|none~1|none~0|+|none~0|none~1|none~2|", "'<op>~0'"),
        ("|nor_conv_3x3|+|none~0|none~1|+|none~0|none~1|none~2|", "'<op>~0'"),
        ("nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '|'"),
        ("", "need 3"),
    ],
)
def test_parse_errors_say_what_was_received_and_what_is_allowed(arch: str, expected: str) -> None:
    with pytest.raises(GenotypeError) as info:
        Nb201Genotype.from_string(arch)
    message = str(info.value)
    assert expected in message
    assert repr(arch) in message
    assert all(op in message for op in NB201_OPS)


def test_invalid_genotypes_are_rejected() -> None:
    with pytest.raises(GenotypeError, match="valid ops: none, skip_connect"):
        Nb201Genotype(("nor_conv_3x3",) * 5 + ("sep_conv_3x3",))
    with pytest.raises(GenotypeError, match="6 ops"):
        Nb201Genotype(("none",) * 5)
    with pytest.raises(GenotypeError, match="'space': 'nb201'"):
        Nb201Genotype.from_dict({"space": "cell", "arch": BEST})
    with pytest.raises(GenotypeError, match="expected a NAS-Bench-201 string"):
        Nb201Genotype.from_string(None)  # type: ignore[arg-type]


def test_sample_and_mutate_use_the_given_generator() -> None:
    a = [sample_nb201(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(0)
    samples = {sample_nb201(rng) for _ in range(300)}
    assert len(samples) > 290
    for g in itertools.islice(samples, 100):
        child = mutate_nb201(g, rng)
        changed = [i for i in range(6) if child.ops[i] != g.ops[i]]
        assert len(changed) == 1
    assert mutate_nb201(a[0], np.random.default_rng(3)) == mutate_nb201(
        a[0], np.random.default_rng(3)
    )


# ---------------------------------------------------------------- benchmark table


@pytest.mark.data
def test_table_indices_and_strings_round_trip(table: Nb201Table) -> None:
    assert len(table) == 15_625
    enumerated = {g.to_string() for g in enumerate_nb201()}
    for index in range(15_625):
        g = table.from_index(index)
        arch = g.to_string()
        assert Nb201Genotype.from_string(arch).to_string() == arch
        assert table.index_of(g) == table.index_of(arch) == index
        enumerated.discard(arch)
    assert not enumerated  # the table holds exactly the enumerated space


@pytest.mark.data
def test_table_best_cell_and_errors(table: Nb201Table, tmp_path: Path) -> None:
    assert table.from_index(6111).to_string() == BEST
    assert table.test_accuracy(BEST) == pytest.approx(94.373, abs=1e-3)
    assert 0 < table.valid_accuracy(BEST) <= 100
    with pytest.raises(GenotypeError, match="valid indices: 0..15624"):
        table.from_index(15_625)
    with pytest.raises(DataError, match="not found"):
        Nb201Table.load(tmp_path)


# ---------------------------------------------------------------- node form


def test_node_form_hand_checked_examples() -> None:
    c1, c3 = "nor_conv_1x1", "nor_conv_3x3"
    assert to_node_form(Nb201Genotype.from_string(BEST)) == (
        (c3, c3, c3, "none", c3, c1),
        ((0, 1), (0, 2), (0, 7), (1, 3), (1, 5), (2, 6), (3, 6), (5, 7), (6, 7)),
    )
    # Every edge an op: the raw 8-node wiring.
    assert to_node_form(Nb201Genotype((c3,) * 6)) == (
        (c3,) * 6,
        ((0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 6), (3, 6), (4, 7), (5, 7), (6, 7)),
    )
    assert to_node_form(Nb201Genotype.from_string(ALL_SKIP)) == (("none",) * 6, ((0, 7),))
    assert to_node_form(Nb201Genotype.from_string(ALL_NONE)) == (("none",) * 6, ())
    # A chain of skips collapses onto the one op: 0 -skip-> 1 -skip-> 2 -conv1x1-> 3.
    chain = "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_1x1~2|"
    assert to_node_form(Nb201Genotype.from_string(chain)) == (
        ("none",) * 5 + ("nor_conv_1x1",), ((0, 6), (6, 7))
    )
    # Input disconnected from the output (node 2 gets nothing): empty, everything pruned.
    cut = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"
    assert to_node_form(Nb201Genotype.from_string(cut)) == (("none",) * 6, ())


def test_node_form_is_always_a_valid_pruned_dag() -> None:
    for g in enumerate_nb201():
        ops, edges = to_node_form(g)
        assert len(ops) == 6 and all(op not in ("skip_connect",) for op in ops)
        assert list(edges) == sorted(set(edges))
        assert all(0 <= i < j <= 7 for i, j in edges)
        used = {n for edge in edges for n in edge} - {0, 7}
        assert used == {k for k, op in enumerate(ops, start=1) if op != "none"}
        assert not edges or (edges[0][0] == 0 and edges[-1][1] == 7)


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("arch", [BEST, ALL_SKIP, ALL_NONE,
                                  "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|"
                                  "+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"])
def test_forward_backward_small_network(arch: str) -> None:
    torch.manual_seed(0)
    net = Nb201Network(arch, num_classes=7, channels=4, cells_per_stage=1)
    x = torch.randn(3, 3, 16, 16)
    logits = net(x)
    assert logits.shape == (3, 7)
    logits.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if arch != ALL_NONE:  # all-none cells output zeros: no gradient reaches the stem
        assert net.stem[0].weight.grad.abs().sum() > 0


def test_every_edge_op_is_instantiated_and_repr_names_hyperparameters() -> None:
    net = Nb201Network(ALL_NONE, channels=4, cells_per_stage=2)
    cells = [c for c in net.cells if hasattr(c, "layers")]
    assert len(cells) == 6 and len(net.cells) == 8  # 3 stages x 2 cells + 2 reduction blocks
    assert all(len(c.layers) == 6 and all(isinstance(op, Zero) for op in c.layers)
               for c in cells)
    text = repr(net)
    for item in (f"arch={ALL_NONE}", "num_classes=10", "channels=4", "cells_per_stage=2"):
        assert item in text


def test_parameter_count_closed_form() -> None:
    # Cell-free network at C=16, N=5: stem 3*16*9 + 32; reductions 16->32 and 32->64 (two
    # conv3x3 + BN each, 1x1 shortcut); final BN 128; classifier 64*10 + 10.
    skeleton = 464 + (4608 + 64 + 9216 + 64 + 512) + (18432 + 128 + 36864 + 128 + 2048) + 128 + 650
    with torch.device("meta"):
        net = Nb201Network(ALL_NONE)
    assert count_params(net) == skeleton == 73_306
    # Each nor_conv_3x3 edge adds 9*C^2 + 2C per cell, over 5 cells at C = 16, 32, 64.
    per_edge = 5 * sum(9 * c * c + 2 * c for c in (16, 32, 64))
    g = Nb201Genotype(("nor_conv_3x3",) + ("none",) * 5)
    assert _cost(g)[0] == skeleton + per_edge


def _conv_counts(genotype: Nb201Genotype) -> tuple[int, int]:
    return genotype.ops.count("nor_conv_1x1"), genotype.ops.count("nor_conv_3x3")


def _representative(genotype: Nb201Genotype) -> Nb201Genotype:
    """The cell with the same conv counts, convs first, the rest ``none``."""
    n1, n3 = _conv_counts(genotype)
    ops = ("nor_conv_1x1",) * n1 + ("nor_conv_3x3",) * n3 + ("none",) * (6 - n1 - n3)
    return Nb201Genotype(ops)


def test_cost_depends_only_on_the_number_of_conv_edges() -> None:
    # Every edge op is built at the cell's width and stride, wherever it sits, and none, skip and
    # pool have no parameters and no conv/linear MACs. Justifies memoising the check below.
    rng = np.random.default_rng(1)
    for _ in range(3):
        g = sample_nb201(rng)
        free = [op for op in NB201_OPS if not op.startswith("nor_conv")]
        other = Nb201Genotype(tuple(
            op if op.startswith("nor_conv") else free[int(rng.integers(3))]
            for op in rng.permutation(g.ops)
        ))
        assert _cost(g) == _cost(other) == _cost(_representative(g))


@pytest.mark.data
def test_params_and_macs_match_nasbench_suite_zero(reference_rows: list[dict[str, str]]) -> None:
    memo: dict[tuple[int, int], tuple[int, int]] = {}
    mismatched, ours, theirs = [], [], []
    for row in reference_rows:
        g = Nb201Genotype.from_string(row["arch_str"])
        if _conv_counts(g) not in memo:
            memo[_conv_counts(g)] = _cost(_representative(g))
        params, macs = memo[_conv_counts(g)]
        if round(params / 1e6, 6) != float(row["params"]):
            mismatched.append(row["arch_str"])
        ours.append(macs)
        theirs.append(float(row["flops"]))
    assert len(reference_rows) == 1000 and not mismatched
    assert spearmanr(ours, theirs).statistic >= 0.99


@pytest.mark.data
@pytest.mark.slow
def test_params_and_macs_match_reference_cell_by_cell(
    reference_rows: list[dict[str, str]],
) -> None:
    costs = [_cost(Nb201Genotype.from_string(row["arch_str"])) for row in reference_rows]
    assert all(round(p / 1e6, 6) == float(row["params"])
               for (p, _), row in zip(costs, reference_rows, strict=True))
    rho = spearmanr([m for _, m in costs], [float(r["flops"]) for r in reference_rows]).statistic
    assert rho >= 0.99
