"""Search strategies on a toy space with a closed-form score; run store, cache, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hgnas_ray.errors import ConfigError, DataError, RegistryError
from hgnas_ray.search.cache import ProxyCache
from hgnas_ray.search.fitness import Fitness
from hgnas_ray.search.generative import GenerativeSearch  # noqa: F401 (registers it)
from hgnas_ray.search.loop import cached_evaluate, run_search, serial_evaluate
from hgnas_ray.search.spaces import GenotypeSpace
from hgnas_ray.search.store import RunStore
from hgnas_ray.search.strategy import available_strategies, create_strategy

LENGTH, LEVELS = 4, 6  # 1,296 genotypes
TARGET = (5, 0, 3, 2)


class ToySpace:
    """Integer vectors; the score 'params' peaks at TARGET (closed form)."""

    name = "toy"

    def sample(self, rng):
        return tuple(int(v) for v in rng.integers(LEVELS, size=LENGTH))

    def mutate(self, genotype, rng):
        i = int(rng.integers(LENGTH))
        step = int(rng.choice([-1, 1]))
        out = list(genotype)
        out[i] = min(LEVELS - 1, max(0, out[i] + step))
        return tuple(out)

    def key(self, genotype):
        return "".join(map(str, genotype))

    def to_text(self, genotype):
        return self.key(genotype)

    def from_text(self, text):
        return tuple(int(c) for c in text)


def toy_score(genotype) -> float:
    return -float(sum(abs(a - b) for a, b in zip(genotype, TARGET, strict=True)))


def toy_evaluator(genotype) -> dict:
    key = ToySpace().key(genotype)
    return {"hash": key, "genotype": key, "status": "ok", "params": toy_score(genotype),
            "params_status": "ok", "macs": -abs(genotype[0] - TARGET[0]), "macs_status": "ok"}


class ToyGenerator:
    """Clusters = value of the first coordinate; `like` perturbs two coordinates."""

    num_clusters = LEVELS

    def cluster_prior(self, fitness):
        return None

    def sample(self, n, *, cluster=None, like=None, temperature=None, seed=0, accept=None):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(20 * n):
            if len(out) == n:
                break
            if like is not None:
                cell = list(like)
                for i in rng.choice(LENGTH, 2, replace=False):
                    cell[i] = min(LEVELS - 1, max(0, cell[i] + int(rng.choice([-1, 1]))))
                cell = tuple(cell)
            else:
                cell = (cluster,) + tuple(int(v) for v in rng.integers(LEVELS, size=LENGTH - 1))
            if (accept is None or accept(cell)) and cell not in out:
                out.append(cell)
        return out


def make(name, seed=0, **options):
    if name == "generative":
        options.setdefault("generator_factory", lambda corpus: ToyGenerator())
        options.setdefault("corpus_size", 30)
    return create_strategy(name, ToySpace(), Fitness.parse("params"), seed, **options)


def test_registry_lists_strategies_and_rejects_unknown_names():
    assert {"random", "evolution", "generative"} <= set(available_strategies())
    with pytest.raises(RegistryError, match="evolution"):
        make("annealing")
    with pytest.raises(ConfigError, match="population_size"):
        make("evolution", population_size=1)
    with pytest.raises(ConfigError, match="generator"):
        create_strategy("generative", ToySpace(), Fitness.parse("params"))


def test_fitness_parses_and_rejects():
    assert Fitness.parse("synflow+nwot").proxies == ("synflow", "nwot")
    with pytest.raises(RegistryError, match="synflow"):
        Fitness.parse("synflo")
    records = [{"a": 1}, {"params": 3.0, "params_status": "ok"},
               {"params": math.nan, "params_status": "nonfinite"}]
    scores = Fitness.parse("params").scores(records)
    assert scores[1] == 3.0 and scores[0] == scores[2] == -math.inf


def test_rank_aggregate_sums_ranks():
    fit = Fitness.parse("params+macs")
    recs = [{"params": 1, "macs": 3}, {"params": 2, "macs": 2}, {"params": 3, "macs": 1},
            {"params": 3, "macs": 3}]
    scores = fit.scores([{**r, "params_status": "ok", "macs_status": "ok"} for r in recs])
    assert int(np.argmax(scores)) == 3
    assert scores[0] == scores[2]


@pytest.mark.parametrize("name,bound", [("random", 1296), ("evolution", 400),
                                        ("generative", 400)])
def test_each_strategy_finds_the_optimum_within_a_bound(tmp_path, name, bound):
    strategy = make(name, seed=3)
    records = run_search(strategy, serial_evaluate(toy_evaluator),
                         RunStore(tmp_path, {"strategy": name}), budget=bound, batch_size=8)
    keys = [r["hash"] for r in records]
    assert len(keys) == len(set(keys)), "an evaluation was repeated"
    assert ToySpace().key(TARGET) in keys
    assert strategy.best().text == ToySpace().key(TARGET)


@pytest.mark.parametrize("name", ["random", "evolution", "generative"])
def test_kill_and_resume_repeats_the_trajectory_without_repeating_evaluations(tmp_path, name):
    budget = 120
    reference = run_search(make(name, seed=7), serial_evaluate(toy_evaluator),
                           RunStore(tmp_path / "ref", {}), budget=budget, batch_size=8)

    calls: list[str] = []

    class Killed(Exception):
        pass

    def dying(genotypes):
        for g in genotypes:
            if len(calls) == 45:  # mid-batch: the 6th batch dies after 5 of its 8
                raise Killed
            calls.append(ToySpace().key(g))
            yield toy_evaluator(g)

    with pytest.raises(Killed):
        run_search(make(name, seed=7), dying, RunStore(tmp_path / "run", {}), budget=budget,
                   batch_size=8)

    def counting(genotypes):
        for g in genotypes:
            calls.append(ToySpace().key(g))
            yield toy_evaluator(g)

    resumed = run_search(make(name, seed=7), counting, RunStore(tmp_path / "run", {}),
                         budget=budget, batch_size=8)
    assert [r["hash"] for r in resumed] == [r["hash"] for r in reference]
    assert sorted(calls) == sorted(r["hash"] for r in reference)  # each evaluated exactly once


def test_state_dict_round_trips_through_json():
    a = make("evolution", seed=1, population_size=10, sample_size=3)
    for _ in range(5):
        asked = a.ask(4)
        a.tell(asked, [toy_evaluator(g) for g in asked])
    b = make("evolution", seed=1, population_size=10, sample_size=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert a.ask(6) == b.ask(6)
    with pytest.raises(ConfigError, match="another run folder"):
        make("random").load_state_dict(a.state_dict())


def test_run_store_refuses_other_settings_and_skips_corrupt_lines(tmp_path, caplog):
    store = RunStore(tmp_path, {"seed": 1})
    store.append(toy_evaluator((1, 1, 1, 1)))
    store.append(toy_evaluator((2, 2, 2, 2)))
    with (tmp_path / "evaluations.jsonl").open("a") as f:
        f.write('{"hash": "33')  # cut short by a kill
    again = RunStore(tmp_path, {"seed": 1})
    assert len(again) == 2 and "line 3" in caplog.text
    again.append(toy_evaluator((4, 4, 4, 4)))  # after the torn line: closed first, kept whole
    assert "4444" in RunStore(tmp_path, {"seed": 1})
    with pytest.raises(ConfigError, match="differs in: seed"):
        RunStore(tmp_path, {"seed": 2})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        RunStore(tmp_path / "file", {})


def test_cache_answers_hits_and_survives_a_corrupt_line(tmp_path, caplog):
    setting = {"space": "toy", "batch": 8}
    cache = ProxyCache(tmp_path, setting)
    evaluated: list[str] = []

    def counting(genotypes):
        for g in genotypes:
            evaluated.append(ToySpace().key(g))
            yield toy_evaluator(g)

    space = ToySpace()
    run = cached_evaluate(counting, cache, ["params"], space.key, space.to_text)
    cells = [(0, 0, 0, 0), (1, 2, 3, 4)]
    first = {r["hash"]: r["params"] for r in run(cells)}
    with cache.path.open("a") as f:
        f.write("not json\n")
    cache2 = ProxyCache(tmp_path, setting)
    run2 = cached_evaluate(counting, cache2, ["params"], space.key, space.to_text)
    second = {r["hash"]: r["params"] for r in run2(cells + [(5, 5, 5, 5)])}
    assert evaluated == ["0000", "1234", "5555"]
    assert all(second[k] == v for k, v in first.items())
    assert "line 3 is corrupt" in caplog.text
    assert ProxyCache(tmp_path, {**setting, "batch": 16}).get("0000", ["params"]) is None


def test_genotype_space_round_trips_nb201():
    space = GenotypeSpace("nb201")
    rng = np.random.default_rng(0)
    g = space.sample(rng)
    assert space.from_text(space.to_text(g)) == g
    with pytest.raises(RegistryError, match="nb201"):
        GenotypeSpace("nb202")


def test_cache_imports_a_corpus_scored_with_its_setting_and_refuses_others(tmp_path):
    from hgnas_ray.corpus.scoring import (
        SCORING_FILE,
        ScoringConfig,
        default_scores_dir,
        records_to_table,
    )
    from hgnas_ray.corpus.shards import shard_name, write_json_atomic, write_table_atomic
    from hgnas_ray.search.cache import scoring_setting

    scoring = ScoringConfig(("synflow", "params")).validate()
    scores = default_scores_dir(tmp_path / "corpus")
    rows = [{"hash": f"h{i}", "genotype": "g", "synflow": float(i), "synflow_status": "ok",
             "params": 10.0, "params_status": "ok", "status": "ok", "error": "", "seconds": 0.1}
            for i in range(5)]
    write_table_atomic(records_to_table(rows, scoring.proxies), scores / shard_name(0))
    manifest = {"settings": scoring.result_key(), "network": scoring.network(),
                "devices": ["cpu"]}
    write_json_atomic(manifest, scores / SCORING_FILE)
    (scores / shard_name(1)).write_bytes(b"not parquet")  # a corrupt shard is skipped
    cache = ProxyCache(tmp_path / "cache", scoring_setting(scoring, "nb201"))
    assert cache.add_corpus_scores(tmp_path / "corpus") == 5
    assert cache.get("h3", ["synflow"])["synflow"] == 3.0
    other = ScoringConfig(("synflow",), batch_size=64).validate()
    with pytest.raises(DataError, match="differs in: batch_size"):
        ProxyCache(tmp_path / "c2", scoring_setting(other, "nb201")).add_corpus_scores(scores)
    # scored on a GPU, or by a version whose records held the reduced network's costs: refused
    for changed, message in (({"devices": ["cuda"]}, "scored on"),
                             ({"network": None}, "older hgnas-ray")):
        edited = {k: v for k, v in {**manifest, **changed}.items() if v is not None}
        write_json_atomic(edited, scores / SCORING_FILE)
        with pytest.raises(DataError, match=message):
            ProxyCache(tmp_path / "c3", scoring_setting(scoring, "nb201")).add_corpus_scores(
                scores)
