"""HL-Evo: on a toy hierarchical space with a closed-form score, and on budgeted macro networks
(random cells, and a tiny cell generator's clusters). No Ray, no network is run: fitness is a
closed form or an exact cost."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hgnas_ray.errors import BudgetError, ConfigError
from hgnas_ray.generator.cells import CellGenerator
from hgnas_ray.generator.cells.pretrain import pretrain_cells
from hgnas_ray.nn.budget import Budget
from hgnas_ray.nn.builder import TaskShape, genotype_cost
from hgnas_ray.search import Fitness, RunStore, create_strategy, run_search
from hgnas_ray.search.hlevo import LEVEL_NETWORK, LEVEL_SPACE, HLEvolution
from hgnas_ray.search.macro_space import MacroHierarchy, RandomCells
from hgnas_ray.search.pretrained import GeneratorCells
from hgnas_ray.space import MacroGenotype

# ---------------------------------------------------------------------- a toy hierarchy
# A network is 4 integers in 0..49; its layout is 4 cluster ids in 0..9 (cluster c holds the
# values 5c..5c+4). Score: minus the squared distance to TARGET, so the optimum is unique.
TARGET = (37, 12, 48, 3)
SIZE, CLUSTERS, WIDTH = 50, 10, 5


class ToyHierarchy:
    name = "toy"

    def sample(self, rng):
        return tuple(int(v) for v in rng.integers(SIZE, size=4))

    def mutate(self, genotype, rng):
        return self.mutate_network(genotype, rng)

    def key(self, genotype):
        return ",".join(map(str, genotype))

    def to_text(self, genotype):
        return self.key(genotype)

    def from_text(self, text):
        return tuple(int(v) for v in text.split(","))

    def sample_layout(self, rng):
        return [int(c) for c in rng.integers(CLUSTERS, size=4)]

    def mutate_layout(self, layout, rng):
        child = list(layout)
        child[int(rng.integers(4))] = int(rng.integers(CLUSTERS))
        return child

    def instantiate(self, layout, rng):
        return tuple(int(c * WIDTH + rng.integers(WIDTH)) for c in layout)

    def mutate_network(self, genotype, rng):
        child = list(genotype)
        i = int(rng.integers(4))
        child[i] = int(np.clip(child[i] + rng.choice([-2, -1, 1, 2]), 0, SIZE - 1))
        return tuple(child)


def toy_score(genotype) -> float:
    return -float(sum((a - b) ** 2 for a, b in zip(genotype, TARGET, strict=True)))


def toy_evaluate(counter=None):
    def evaluate(genotypes):
        for g in genotypes:
            if counter is not None:
                counter.append(g)
            yield {"hash": ToyHierarchy().key(g), "genotype": ToyHierarchy().to_text(g),
                   "synflow": toy_score(g), "synflow_status": "ok", "status": "ok"}
    return evaluate


def _store(tmp_path, name: str) -> RunStore:
    return RunStore(tmp_path / name, {"test": name})


def _run(space, evaluate, tmp_path, budget, name="run", batch_size=8, **options):
    strategy = create_strategy("hl-evo", space, Fitness.parse("synflow"), seed=3, **options)
    records = run_search(strategy, evaluate, _store(tmp_path, name), budget, batch_size)
    return strategy, records


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_toy_optimum_within_a_bounded_number_of_evaluations(seed):
    """50^4 = 6.25M networks (random search: a 1.6e-4 chance in 1,000 draws); HL-Evo reaches the
    unique optimum within 1,000 evaluations (seeds 0-9 needed 312-616)."""
    strategy = HLEvolution(ToyHierarchy(), Fitness.parse("synflow"), seed=seed,
                           population_size=16, space_evaluations=200)
    evaluate = toy_evaluate()
    while len(strategy.history) < 1000:
        asked = strategy.ask(16)
        strategy.tell(asked, list(evaluate(asked)))
        if max(e.values["synflow"] for e in strategy.history) == 0.0:
            break
    assert strategy.best().text == ",".join(map(str, TARGET)), \
        f"best {strategy.best().text} after {len(strategy.history)} evaluations"
    assert strategy.counts["space"] == 200


def test_level_one_evolves_layouts_then_level_two_networks(tmp_path):
    strategy, _ = _run(ToyHierarchy(), toy_evaluate(), tmp_path, 120, population_size=10,
                       space_evaluations=50)
    levels = [strategy.level[e.key] for e in strategy.history]
    assert levels == [LEVEL_SPACE] * 50 + [LEVEL_NETWORK] * 70
    assert all(e.key in strategy.layouts for e in strategy.history[:50])
    # the populations hold the fittest members: nothing outside is better than the worst inside
    for level in (LEVEL_SPACE, LEVEL_NETWORK):
        members = strategy.populations[level]
        assert len(members) == 10
    scores = strategy.fitness_of(strategy.history)
    space_members = strategy.populations[LEVEL_SPACE]
    outside = [scores[i] for i in range(50) if i not in space_members]
    assert min(scores[i] for i in space_members) >= max(outside)


def test_resume_continues_exactly_and_evaluates_nothing_twice(tmp_path):
    calls: list = []
    _, whole = _run(ToyHierarchy(), toy_evaluate(), tmp_path, 90, "whole", population_size=8,
                    space_evaluations=30)
    # asks of 8 (6 at the level boundary): 8, 16, 24, 30, 38, 46, ... so stop after one of them
    _run(ToyHierarchy(), toy_evaluate(calls), tmp_path, 46, "split", population_size=8,
         space_evaluations=30)
    strategy, resumed = _run(ToyHierarchy(), toy_evaluate(calls), tmp_path, 90, "split",
                             population_size=8, space_evaluations=30)
    assert [r["hash"] for r in resumed] == [r["hash"] for r in whole]
    assert len(calls) == 90 and len({ToyHierarchy().key(g) for g in calls}) == 90
    state = json.loads((tmp_path / "split" / "state.json").read_text())
    assert state["strategy"] == "hl-evo" and len(state["extra"]["layouts"]) == 30


def test_hl_evo_refuses_a_flat_space_and_bad_settings():
    from hgnas_ray.search import GenotypeSpace

    with pytest.raises(ConfigError, match="hierarchical space"):
        create_strategy("hl-evo", GenotypeSpace("cell"), Fitness.parse("synflow"))
    with pytest.raises(ConfigError, match="population_size"):
        create_strategy("hl-evo", ToyHierarchy(), Fitness.parse("synflow"), population_size=1)


# ---------------------------------------------------------------------- macro networks
CIFAR = TaskShape(num_classes=10, input_size=32)


def cost_evaluate(space: MacroHierarchy, counter=None):
    """Fitness = parameter count (exact), so the best network sits near the budget."""
    def evaluate(genotypes):
        for g in genotypes:
            if counter is not None:
                counter.append(g)
            cost = space.cost(g)
            yield {"hash": g.hash, "genotype": g.to_json(), "params": cost.params,
                   "params_status": "ok", "macs": cost.macs, "status": "ok"}
    return evaluate


def test_macro_hl_evo_never_proposes_over_budget_and_approaches_it(tmp_path):
    budget = Budget(max_params=300_000, max_macs=40_000_000)
    space = MacroHierarchy(CIFAR, budget, RandomCells(), max_width=128)
    asked: list = []
    strategy = create_strategy("hl-evo", space, Fitness.parse("params"), seed=0,
                               population_size=12, space_evaluations=40)
    records = run_search(strategy, cost_evaluate(space, asked), _store(tmp_path, "m"), 100, 10)
    assert len(records) == 100 and len(asked) == 100
    for genotype in asked:
        cost = genotype_cost(genotype, CIFAR)  # exact (equal to the traced count)
        assert cost.params <= budget.max_params and cost.macs <= budget.max_macs
        MacroGenotype.from_json(genotype.to_json())  # valid and round-trips
    best = max(r["params"] for r in records)
    first = max(r["params"] for r in records[:12])
    assert best >= first and best >= 0.6 * budget.max_params


def test_random_and_evolution_are_budget_aware_over_macro_networks(tmp_path):
    budget = Budget(max_params=150_000)
    space = MacroHierarchy(CIFAR, budget, RandomCells(), max_width=64)
    for name in ("random", "evolution"):
        options = {"population_size": 8, "sample_size": 3} if name == "evolution" else {}
        strategy = create_strategy(name, space, Fitness.parse("params"), seed=1, **options)
        records = run_search(strategy, cost_evaluate(space), _store(tmp_path, name), 24, 8)
        assert all(r["params"] <= budget.max_params for r in records)


def test_an_impossible_budget_names_the_smallest_feasible_cost():
    with pytest.raises(BudgetError, match=r">= [\d,]+ params"):
        MacroHierarchy(CIFAR, Budget(max_params=100))


def test_layout_mutation_keeps_the_space_rules():
    space = MacroHierarchy(CIFAR, Budget(), RandomCells())
    rng = np.random.default_rng(0)
    layout = space.sample_layout(rng)
    for _ in range(300):
        child = space.mutate_layout(layout, rng)
        assert child is not None and child != layout
        stages = child["stages"]
        assert 1 <= len(stages) and sum(s[3] for s in stages) <= 19
        assert all(1 <= s[3] <= 4 and s[2] in (1, 2) and s[1] % 8 == 0 for s in stages)
        assert sum(s[2] == 2 for s in stages) <= 3
        layout = child


# ---------------------------------------------------------------------- with a cell generator
@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    from test_generator import TINY

    from hgnas_ray.corpus import CorpusSpec, build_corpus
    from hgnas_ray.generator import write_synthetic_scores

    corpus = tmp_path_factory.mktemp("corpus")
    build_corpus(corpus, CorpusSpec("cell", 40, seed=1, shard_size=20), progress=False)
    write_synthetic_scores(corpus)
    out = tmp_path_factory.mktemp("artifact")
    pretrain_cells(corpus, out, TINY)
    return out


@pytest.fixture(scope="module")
def tiny_generator(tiny_artifact):
    return CellGenerator.load(tiny_artifact)


def test_generator_clusters_fill_stages_and_regenerate_cells(tiny_generator, tmp_path):
    cells = GeneratorCells(tiny_generator, pool_size=4, seed=0)
    space = MacroHierarchy(CIFAR, Budget(max_params=400_000), cells, max_width=64)
    strategy = create_strategy("hl-evo", space, Fitness.parse("params"), seed=0,
                               population_size=4, space_evaluations=8)
    records = run_search(strategy, cost_evaluate(space), _store(tmp_path, "g"), 16, 4)
    assert len(records) == 16
    for e in strategy.history[:8]:  # level one: each stage's cell is from its layout's cluster
        # (clusters_of may name another cluster: one cell can be drawn by two clusters)
        genotype = space.from_text(e.text)
        layout = strategy.layouts[e.key]
        pools = [{c.hash for c in cells.pool(s[0])} for s in layout["stages"]]
        assert all(st.cell.hash in pool for st, pool in zip(genotype.stages, pools, strict=True))
    assert all(0 <= k < tiny_generator.num_clusters
               for e in strategy.history for k in space.clusters_of(space.from_text(e.text)))
    cell = space.from_text(strategy.history[0].text).stages[0].cell
    regenerated = cells.regenerate(cell, np.random.default_rng(0))
    assert regenerated is not None and regenerated.hash != cell.hash


def test_histories_of_a_two_setting_grid_resume_and_refuse_another_grid(tiny_artifact, tmp_path):
    from hgnas_ray.search.histories import (
        HistoryConfig,
        HistorySetting,
        read_histories,
        write_histories,
    )

    artifact = tiny_artifact
    settings = [HistorySetting(TaskShape(10, 16), Budget(max_params=60_000)),
                HistorySetting(TaskShape(100, 16, 1), Budget(max_macs=4_000_000))]
    config = HistoryConfig(fitness="params", evaluations=6, population=3, space_evaluations=3,
                           probe_batch=4, max_width=32, pool_size=3, batch_size=3)
    out = write_histories(tmp_path / "h", settings, artifact, config)
    rows = read_histories(out)
    assert len(rows) == 12
    for row in rows:
        genotype = MacroGenotype.from_dict(row["genotype"])
        task, budget = TaskShape(**row["task"]), Budget(**row["budget"])
        assert Budget(**row["budget"]).allows(genotype_cost(genotype, task))
        assert len(row["clusters"]) == len(genotype.stages)
        assert row["fitness"] == row["params"]  # fitness "params" is the exact count
        assert budget in (s.budget for s in settings)
    # a finished grid is not re-run; another grid in the same folder is refused
    (out / "runs").rename(out / "runs_moved")
    write_histories(out, settings, artifact, config)
    assert not (out / "runs").exists()
    with pytest.raises(ConfigError, match="another grid"):
        write_histories(out, settings[:1], artifact, config)
    # more evaluations continue each search from its run store: the first 6 lines stay
    (out / "runs_moved").rename(out / "runs")
    write_histories(out, settings, artifact, replace(config, evaluations=9))
    longer = read_histories(out)
    assert len(longer) == 18
    first = [r for r in longer if r["task"] == rows[0]["task"]][:6]
    assert [r["genotype"] for r in first] == [r["genotype"] for r in rows[:6]]
