"""Macro networks (DESIGN 2.2): genotype, validity, sampling, mutation, budgets."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hgnas_ray.errors import BudgetError, GenotypeError
from hgnas_ray.nn.budget import Budget, minimum_cost, sample_within_budget
from hgnas_ray.nn.builder import TaskShape, genotype_cost
from hgnas_ray.nn.cost import Cost
from hgnas_ray.space import (
    CellGenotype,
    MacroGenotype,
    Stage,
    format_genotype,
    genotype_from_dict,
    mutate_genotype,
    mutate_macro,
    parse_genotype,
    sample_macro,
)
from hgnas_ray.space.cell import cell_from_edges
from hgnas_ray.space.macro import MAX_CELLS, _resize_stage, round_width

CELL = cell_from_edges({1: ("conv", 3), 2: ("sep_conv", 5)}, [(0, 1), (1, 2), (2, 7), (0, 7)])
OTHER_CELL = cell_from_edges({1: ("mbconv_e3", 5)}, [(0, 1), (1, 7), (0, 7)])


def macro(*stages: tuple[int, int, int], stem: int = 16, final: int = 64,
          cell: CellGenotype = CELL) -> MacroGenotype:
    """A macro genotype from (channels, stride, repeats) per stage, all with `cell`."""
    return MacroGenotype(stem, tuple(Stage(cell, c, s, r) for c, s, r in stages), final)


SMALL = macro((16, 1, 1), (32, 2, 2), final=64)


@pytest.fixture(scope="module")
def networks() -> list[MacroGenotype]:
    rng = np.random.default_rng(2024)
    return [sample_macro(rng) for _ in range(1_000)]


def _check_macro(genotype: MacroGenotype) -> None:
    assert genotype.validate() is genotype
    widths = [genotype.stem_channels, genotype.final_channels,
              *(s.channels for s in genotype.stages)]
    assert all(8 <= w <= 1024 and w % 8 == 0 for w in widths), widths
    assert genotype.stages
    assert all(s.stride in (1, 2) and 1 <= s.repeats <= 4 for s in genotype.stages)
    assert genotype.num_cells == sum(s.repeats for s in genotype.stages) <= MAX_CELLS == 19
    assert genotype.num_downsamples <= 3
    for stage in genotype.stages:
        assert stage.cell.space == "cell" and stage.cell.validate() is stage.cell


# ---------------------------------------------------------------------------- serialisation
def test_macro_round_trips_through_dict_and_json(networks) -> None:
    for genotype in [SMALL, *networks[:300]]:
        data = genotype.to_dict()
        assert data["space"] == "macro"
        assert json.loads(json.dumps(data)) == data
        assert MacroGenotype.from_dict(data) == genotype
        assert MacroGenotype.from_json(genotype.to_json()) == genotype
        assert genotype_from_dict(data) == genotype
        assert parse_genotype(format_genotype(genotype)) == genotype
        assert MacroGenotype.from_json(str(genotype)).hash == genotype.hash


def test_macro_is_hashable_and_hash_tracks_content() -> None:
    assert hash(SMALL) == hash(macro((16, 1, 1), (32, 2, 2), final=64))
    assert len({SMALL, macro((16, 1, 1), (32, 2, 2), final=64)}) == 1
    relabelled = cell_from_edges({4: ("conv", 3), 6: ("sep_conv", 5)},
                                 [(0, 4), (4, 6), (6, 7), (0, 7)])
    assert macro((16, 1, 1), (32, 2, 2), cell=relabelled).hash == SMALL.hash  # cells by hash
    variants = [macro((16, 1, 1), (32, 2, 2), final=72), macro((16, 1, 1), (32, 2, 2), stem=8),
                macro((16, 1, 1), (32, 1, 2)), macro((16, 1, 1), (32, 2, 3)),
                macro((16, 1, 1), (40, 2, 2)), macro((16, 1, 1), (32, 2, 2), cell=OTHER_CELL),
                macro((32, 2, 2), (16, 1, 1)), macro((16, 1, 1))]
    hashes = {v.hash for v in variants}
    assert len(hashes) == len(variants) and SMALL.hash not in hashes
    assert len(SMALL.hash) == 16


# ---------------------------------------------------------------------------- validity
@pytest.mark.parametrize(("genotype", "needles"), [
    (macro((12, 1, 1)), ["stage 0 channels", "12", "multiples of 8"]),
    (macro((16, 1, 1), (2048, 2, 1)), ["stage 1 channels", "2048", "[8, 1024]"]),
    (macro((0, 1, 1)), ["is 0"]),
    (macro((16, 1, 1), stem=4), ["stem channels", "4"]),
    (macro((16, 1, 1), final=1032), ["final channels", "1032"]),
    (macro((16, 3, 1)), ["stage 0 stride", "3", "1 or 2"]),
    (macro((16, 1, 1), (32, 0, 1)), ["stage 1 stride", "0"]),
    (macro((16, 1, 5)), ["stage 0 repeats", "5", "1..4"]),
    (macro((16, 1, 1), (16, 1, 0)), ["stage 1 repeats", "0"]),
    (macro((16, 1, 4), (32, 2, 4), (64, 2, 4), (64, 1, 4), (128, 2, 4)), ["20 cells", "19"]),
    (macro(), ["at least one stage"]),
])
def test_macro_validate_names_the_value(genotype: MacroGenotype, needles: list[str]) -> None:
    with pytest.raises(GenotypeError) as info:
        genotype.validate()
    for needle in needles:
        assert needle in str(info.value)
    with pytest.raises(GenotypeError):  # the same through the text boundary
        parse_genotype(genotype.to_json())


def test_macro_at_the_limits_is_valid() -> None:
    macro((8, 1, 4), (1024, 2, 4), (1024, 2, 4), (1024, 2, 4), (1024, 1, 3), stem=8,
          final=1024).validate()
    assert macro((8, 1, 4), (8, 1, 4), (8, 1, 4), (8, 1, 4), (8, 1, 3)).num_cells == 19


def test_macro_rejects_bad_stage_cells() -> None:
    nb201_cell = cell_from_edges({1: ("nor_conv_3x3", 3)}, [(0, 1), (1, 7)], "nb201")
    with pytest.raises(GenotypeError, match="'nb201' space"):
        macro((16, 1, 1), cell=nb201_cell).validate()
    data = SMALL.to_dict()
    data["stages"][1]["cell"]["ops"][0] = "fancy"
    with pytest.raises(GenotypeError, match="'fancy'"):
        MacroGenotype.from_dict(data)


@pytest.mark.parametrize("mangle", [
    lambda d: d.pop("stages"),
    lambda d: d.pop("final_channels"),
    lambda d: d.__setitem__("stages", 5),
    lambda d: d.__setitem__("stages", ["stage"]),
    lambda d: d["stages"][0].pop("cell"),
    lambda d: d["stages"][0].pop("repeats"),
    lambda d: d["stages"][0].__setitem__("channels", "wide"),
    lambda d: d.__setitem__("stem_channels", None),
])
def test_macro_from_dict_rejects_malformed(mangle) -> None:
    data = SMALL.to_dict()
    mangle(data)
    with pytest.raises(GenotypeError):
        MacroGenotype.from_dict(data)
    with pytest.raises(GenotypeError):
        parse_genotype(json.dumps(data))


def test_macro_malformed_json() -> None:
    with pytest.raises(GenotypeError, match="malformed JSON"):
        MacroGenotype.from_json('{"stem_channels": 16, "stages": [')
    with pytest.raises(GenotypeError, match="JSON object"):
        MacroGenotype.from_json("[16, 32]")


# ---------------------------------------------------------------------------- sampling
def test_thousand_sampled_networks_are_valid(networks) -> None:
    for genotype in networks:
        _check_macro(genotype)
        assert all(s.cell.canonical() == s.cell for s in genotype.stages)
        assert genotype.stem_channels in (8, 16, 24, 32)
    assert len({g.hash for g in networks}) == len(networks)
    assert {len(g.stages) for g in networks} == {1, 2, 3, 4, 5, 6}
    assert {s.repeats for g in networks for s in g.stages} == {1, 2, 3, 4}
    assert {s.stride for g in networks for s in g.stages} == {1, 2}


def test_sample_macro_respects_its_limits() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        genotype = sample_macro(rng, max_downsamples=1, max_stages=2, max_width=64)
        _check_macro(genotype)
        assert genotype.num_downsamples <= 1 and len(genotype.stages) <= 2
        assert all(s.channels <= 64 for s in genotype.stages)


def test_sample_macro_is_deterministic_per_seed() -> None:
    a = [sample_macro(np.random.default_rng(s)) for s in range(20)]
    b = [sample_macro(np.random.default_rng(s)) for s in range(20)]
    assert a == b and len({g.hash for g in a}) == 20


@pytest.mark.parametrize(("value", "expected"), [
    (7, 8), (8, 8), (12, 8), (16.9, 16), (1023, 1016), (1024, 1024), (2000, 1024), (0, 8),
])
def test_round_width(value: float, expected: int) -> None:
    assert round_width(value) == expected


# ---------------------------------------------------------------------------- mutation
def test_macro_mutation_returns_valid_different_networks(networks) -> None:
    rng = np.random.default_rng(0)
    for genotype in networks[:500]:
        child = mutate_macro(genotype, rng)
        _check_macro(child)
        assert child.hash != genotype.hash
        assert mutate_genotype(genotype, rng).hash != genotype.hash


def test_macro_mutation_respects_the_cell_cap() -> None:
    full = macro((16, 1, 4), (32, 2, 4), (64, 2, 4), (64, 1, 4), (128, 2, 3))
    assert full.validate().num_cells == 19
    rng = np.random.default_rng(1)
    children = [mutate_macro(full, rng) for _ in range(300)]
    for child in children:
        _check_macro(child)
    assert any(c.num_cells < 19 for c in children)  # shrinking is possible
    genotype = full  # a long random walk never breaks the cap either
    for _ in range(300):
        genotype = mutate_macro(genotype, rng)
        _check_macro(genotype)


def test_macro_mutation_keeps_at_least_one_stage() -> None:
    tiny = macro((16, 1, 1))
    rng = np.random.default_rng(2)
    for _ in range(200):
        child = mutate_macro(tiny, rng)
        _check_macro(child)
        assert child.hash != tiny.hash


def _edits_one_stage(parent: MacroGenotype, child: MacroGenotype) -> bool:
    """child = parent with stage i replaced by 0, 1 or 2 stages, for some i."""
    old, new = parent.stages, child.stages
    middle = len(new) - (len(old) - 1)
    if middle not in (0, 1, 2):
        return False
    return any(new[:i] == old[:i] and new[i + middle:] == old[i + 1:] for i in range(len(old)))


def test_macro_mutation_edits_one_stage() -> None:
    parent = macro((16, 1, 2), (32, 2, 2), (64, 2, 2), (128, 2, 2))
    rng = np.random.default_rng(5)
    for _ in range(200):
        child = mutate_macro(parent, rng)
        assert child.stem_channels == parent.stem_channels
        assert _edits_one_stage(parent, child)
    assert not _edits_one_stage(parent, macro((8, 1, 2), (32, 2, 2), (64, 2, 2), (256, 2, 2)))


def test_resize_stage() -> None:
    stage = Stage(CELL, 64, 2, 3)
    assert _resize_stage(stage, 0) == ()
    assert _resize_stage(stage, -1) == ()
    assert _resize_stage(stage, 1) == (replace(stage, repeats=1),)
    assert _resize_stage(stage, 4) == (replace(stage, repeats=4),)
    first, second = _resize_stage(stage, 5)
    assert first == Stage(CELL, 64, 2, 4)
    assert second == Stage(CELL, 64, 1, 1)  # the continuation runs at stride 1
    assert _resize_stage(stage, 6) == (Stage(CELL, 64, 2, 4), Stage(CELL, 64, 1, 2))


def test_macro_mutation_is_deterministic_per_seed(networks) -> None:
    a = [mutate_macro(g, np.random.default_rng(9)) for g in networks[:30]]
    b = [mutate_macro(g, np.random.default_rng(9)) for g in networks[:30]]
    assert a == b


# ---------------------------------------------------------------------------- budgets
def test_budget_allows() -> None:
    cost = Cost(params=1_000, macs=50_000)
    assert Budget().allows(cost) and not Budget().is_limited
    assert Budget(max_params=1_000).allows(cost)
    assert not Budget(max_params=999).allows(cost)
    assert Budget(max_macs=50_000).allows(cost)
    assert not Budget(max_macs=49_999).allows(cost)
    assert not Budget(max_params=10_000, max_macs=10).allows(cost)
    assert Budget(max_params=10_000, max_macs=10**6).allows(cost)
    assert Budget.from_floats(1e6, None) == Budget(max_params=1_000_000)
    assert Budget.from_floats(None, 2.5e8).max_macs == 250_000_000
    assert str(Budget(max_params=1_000_000)) == "params <= 1,000,000"
    assert "MACs <= 5" in str(Budget(max_params=3, max_macs=5))
    assert str(Budget()) == "unlimited"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_budget_from_floats_rejects_non_finite(value: float) -> None:
    with pytest.raises(BudgetError, match="finite"):
        Budget.from_floats(value, None)
    with pytest.raises(BudgetError, match="max_macs"):
        Budget.from_floats(None, value)


@pytest.mark.parametrize("kwargs", [{"max_params": 0}, {"max_macs": -5}])
def test_budget_rejects_non_positive_limits(kwargs) -> None:
    with pytest.raises(BudgetError, match="must be positive"):
        Budget(**kwargs)


def test_sample_within_budget_fits() -> None:
    task = TaskShape()
    budget = Budget(max_params=150_000, max_macs=30_000_000)
    rng = np.random.default_rng(0)
    for _ in range(2):
        genotype = sample_within_budget(rng, budget, task)
        _check_macro(genotype)
        cost = genotype_cost(genotype, task)
        assert cost.params <= 150_000 and cost.macs <= 30_000_000


def test_sample_within_budget_reports_the_closest_seen() -> None:
    task = TaskShape(num_classes=100)
    budget = Budget(max_params=2_000, max_macs=400_000)
    with pytest.raises(BudgetError) as info:
        sample_within_budget(np.random.default_rng(4), budget, task, max_draws=4)
    rng = np.random.default_rng(4)  # replay the same draws
    costs = [genotype_cost(sample_macro(rng), task) for _ in range(4)]
    closest = min(costs, key=budget.excess)  # the binding limit decides, not params alone
    message = str(info.value)
    assert "params <= 2,000" in message and "4 draws" in message
    assert f"{closest.params:,} params" in message and f"{closest.macs:,} MACs" in message


def test_impossible_budget_fails_at_once_with_the_lower_bound() -> None:
    task = TaskShape()
    min_params, min_macs = minimum_cost(task)
    assert min_params == 418  # stem 3x3 conv + BN, param-free cell, head BN/1x1 conv/BN, linear
    with pytest.raises(BudgetError, match="below what any macro network needs"):
        sample_within_budget(np.random.default_rng(0), Budget(max_params=min_params - 1), task)
    with pytest.raises(BudgetError, match="below what any macro network needs"):
        sample_within_budget(np.random.default_rng(0), Budget(max_macs=min_macs - 1), task)
