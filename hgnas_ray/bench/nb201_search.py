"""`hgnas bench nb201`: search strategies head to head on NAS-Bench-201, scored by ground truth.

Per seed, each method gets the same proxy fitness and the same budget of proxy evaluations (one
evaluation = one distinct cell scored on CIFAR-10 probe images; the generative method's corpus
is part of its budget). Every run is an ordinary resumable search (`run_search` over a
`RunStore`) behind one proxy-score cache, so a killed benchmark continues where it stopped and a
second benchmark with the same scoring setting scores nothing again.

With short training (`ShortTraining`, e.g. `hgnas bench nb201 --train-budget-s S`), each
search's top cells by its fitness (its *shortlist*) are then trained on CIFAR-10 training images
for at most S seconds each, and the method's trained choice is the one with the best validation
accuracy (a split of the training set). The training itself is injected (the CLI passes Ray Tune
trials with ASHA), so this module stays Ray-free; a finished shortlist's records are kept in
`work_dir/training/`, so a resumed benchmark does not train it again.

The NAS-Bench-201 accuracy table is opened only in `score_choices`, after every search has
chosen; the searches and the training never read it (a test checks this).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hgnas_ray.corpus.scoring import CorpusScorer, ScoringConfig
from hgnas_ray.errors import ConfigError, DataError, GenotypeError
from hgnas_ray.generator.cells import CellGenerator, PretrainConfig
from hgnas_ray.models import CCNFConfig
from hgnas_ray.models.gvae import GVAEConfig
from hgnas_ray.search.cache import ProxyCache, scoring_setting
from hgnas_ray.search.fitness import Fitness
from hgnas_ray.search.generative import GenerativeSearch
from hgnas_ray.search.loop import (
    ELAPSED_KEY,
    Evaluate,
    cached_evaluate,
    run_search,
    serial_evaluate,
)
from hgnas_ray.search.pretrained import CorpusPretrainer, SpaceGenerator
from hgnas_ray.search.spaces import GenotypeSpace
from hgnas_ray.search.store import RunStore
from hgnas_ray.search.strategy import Strategy, available_strategies, create_strategy
from hgnas_ray.training import TrainConfig

log = logging.getLogger(__name__)
METHODS = ("random", "evolution", "generative")
MIN_CELLS_PER_CLUSTER = PretrainConfig().min_cells_per_cluster
CHECKPOINTS = (10, 20, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1500, 2000)


@dataclass(frozen=True)
class Nb201BenchConfig:
    seeds: int = 10
    first_seed: int = 0
    evals: int = 1000  # proxy evaluations per method and seed, all counted
    fitness: str = "tcet"  # a proxy, or a rank aggregate such as "synflow+nwot+macs"
    methods: tuple[str, ...] = METHODS
    batch_size: int = 16  # genotypes per ask (evaluated in parallel)
    corpus_size: int = 300  # the generative method's own corpus, scored on the task
    condition: tuple[str, ...] | None = None  # generator conditions; None: fitness + params
    artifact: str | None = None  # a pretrained generator: corpus_size 0 ("amortised")
    population_size: int = 50
    sample_size: int = 10
    gvae_epochs: int = 60
    ccnf_epochs: int = 20
    clusters: int = 8
    train_top: int = 8  # with short training: the shortlist's size (top cells by fitness)

    def validate(self) -> Nb201BenchConfig:
        Fitness.parse(self.fitness)
        for method in self.methods:
            if method not in available_strategies():
                from hgnas_ray.errors import unknown_name
                raise unknown_name("method", method, available_strategies())
        if self.seeds < 1 or self.evals < 1 or self.batch_size < 1 or self.train_top < 1:
            raise ConfigError(f"need --seeds, --evals, the batch size and --train-top >= 1; got "
                              f"{self.seeds}, {self.evals}, {self.batch_size}, "
                              f"{self.train_top}")
        if "generative" in self.methods and self.artifact is None:
            smallest = self.smallest_corpus
            if self.corpus_size < smallest:
                raise ConfigError(f"the generative method's corpus of {self.corpus_size} cells "
                                  f"is too small for {self.clusters} clusters of at least "
                                  f"{MIN_CELLS_PER_CLUSTER} cells; use --corpus-size >= "
                                  f"{smallest} (cells whose scoring fails do not count)")
            if self.evals < self.corpus_size + self.batch_size:
                raise ConfigError(f"--evals {self.evals} leaves nothing to generate after the "
                                  f"generator's corpus of {self.corpus_size} cells; use --evals "
                                  f">= {self.corpus_size + self.batch_size} or a smaller corpus "
                                  f"(at least {smallest})")
        return self

    @property
    def smallest_corpus(self) -> int:
        return max(self.clusters, 2) * MIN_CELLS_PER_CLUSTER

    @property
    def fitness_proxies(self) -> tuple[str, ...]:
        return Fitness.parse(self.fitness).proxies

    @property
    def condition_proxies(self) -> tuple[str, ...]:
        if self.condition is not None:
            return tuple(self.condition)
        return tuple(dict.fromkeys((*self.fitness_proxies, "params")))

    @property
    def proxies(self) -> tuple[str, ...]:
        """Everything one evaluation scores (fitness and generator conditions)."""
        needed = self.fitness_proxies
        if "generative" in self.methods and self.artifact is None:
            needed = (*needed, *self.condition_proxies)
        return tuple(dict.fromkeys(needed))

    def pretrain_config(self, seed: int) -> PretrainConfig:
        return PretrainConfig(
            gvae=GVAEConfig(), ccnf=CCNFConfig(method="rk4", step_size=0.25, adjoint=False),
            gvae_train=TrainConfig(epochs=self.gvae_epochs, seed=seed, device="cpu"),
            ccnf_train=TrainConfig(epochs=self.ccnf_epochs, seed=seed, device="cpu"),
            proxies=self.condition_proxies, space="nb201", n_clusters=self.clusters,
            min_cells_per_cluster=MIN_CELLS_PER_CLUSTER, holdout_fraction=0.0, seed=seed)


@dataclass
class MethodRun:
    """One (method, seed) search: what it chose and what it spent."""

    method: str
    seed: int
    chosen: str  # the arch string it chose
    fitness: float
    evaluations: int
    wall_seconds: float  # of the search, across resumes (the generator's pretraining included)
    training_seconds: float = 0.0
    anytime: list[list[Any]] = field(default_factory=list)  # [evaluations, chosen arch]
    details: dict[str, Any] = field(default_factory=dict)
    test_accuracy: float | None = None
    anytime_accuracy: list[list[float]] = field(default_factory=list)
    shortlist: list[str] = field(default_factory=list)  # top cells by fitness, best first
    trained: list[dict[str, Any]] = field(default_factory=list)  # one record per shortlisted
    trained_choice: str | None = None  # the best of the shortlist by validation accuracy
    trained_test_accuracy: float | None = None


@dataclass(frozen=True)
class ShortTraining:
    """How shortlists are trained: `train(arch strings, experiment name)` returns one record per
    arch (`hgnas_ray.distributed.tune_train.train_candidates`'s records); `settings` (plain
    data) says with what, and its digest names the experiments, so other settings train anew."""

    settings: Mapping[str, Any]
    train: Callable[[Sequence[str], str], list[dict[str, Any]]]

    @property
    def digest(self) -> str:
        text = json.dumps(self.settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def local_evaluate(scoring: ScoringConfig) -> Evaluate:
    """In-process evaluation with one scorer (probe batches loaded once), on one torch thread
    as each Ray worker scores, so both give the same values; the rest of the process (the
    generator's pretraining and sampling) keeps its threads."""
    import torch

    scorer = CorpusScorer(scoring.to_dict())
    space = GenotypeSpace("nb201")

    def score(genotype: Any) -> dict[str, Any]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return scorer.score_one(space.key(genotype), space.to_text(genotype))
        finally:
            torch.set_num_threads(threads)

    return serial_evaluate(score)


def run_benchmark(config: Nb201BenchConfig, scoring: ScoringConfig, work_dir: Path,
                  cache_dir: Path, evaluate: Evaluate,
                  on_run: Callable[[MethodRun], None] | None = None,
                  pretrained: SpaceGenerator | None = None,
                  training: ShortTraining | None = None) -> list[MethodRun]:
    """Every (seed, method) search; resumes finished and half-finished runs from `work_dir`.

    `cache_dir` holds the proxy scores and the generators pretrained on each seed's corpus
    (keyed by corpus and configuration), both shared by every benchmark that uses it. With
    `training`, each search's shortlist is trained right after it (see the module doc).
    """
    config.validate()
    space = GenotypeSpace("nb201")
    if pretrained is None and config.artifact:
        pretrained = load_nb201_artifact(config.artifact)
    cache = ProxyCache(cache_dir, scoring_setting(scoring, "nb201"))
    cached = cached_evaluate(evaluate, cache, list(scoring.proxies), space.key, space.to_text)
    runs = []
    for seed in range(config.first_seed, config.first_seed + config.seeds):
        for method in config.methods:
            run = _run_method(config, method, seed, space, cached, work_dir, scoring,
                              cache_dir / "generators", pretrained)
            if training is not None:
                train_shortlist(run, training, work_dir / "training")
            runs.append(run)
            if on_run is not None:
                on_run(run)
    log.info("proxy cache %s: %d hits, %d misses", cache.path, cache.hits, cache.misses)
    return runs


def _run_method(config: Nb201BenchConfig, method: str, seed: int, space: GenotypeSpace,
                evaluate: Evaluate, work_dir: Path, scoring: ScoringConfig,
                generators: Path, pretrained: SpaceGenerator | None) -> MethodRun:
    fitness = Fitness.parse(config.fitness)
    strategy = _strategy(config, method, seed, space, fitness, generators, pretrained)
    meta = {"method": method, "seed": seed, "fitness": fitness.name, "evals": config.evals,
            "batch_size": config.batch_size, "scoring": scoring_setting(scoring, "nb201"),
            "options": _options_meta(config, method)}
    store = RunStore(work_dir / "runs" / f"{method}-seed{seed}", meta)
    run_search(strategy, evaluate, store, config.evals, config.batch_size,
               on_progress=lambda p: log.debug("%s seed %d: %d/%d", method, seed,
                                               p.evaluations, p.budget))
    seconds = float((store.load_state() or {}).get(ELAPSED_KEY, 0.0))
    best = strategy.best()
    details = dict(getattr(strategy, "counts", {}))
    if best is not None and isinstance(strategy, GenerativeSearch):
        details["chosen_from"] = strategy.kind.get(best.key)
    return MethodRun(method, seed, best.text if best else "",
                     float(strategy.fitness_of([best])[0]) if best else math.nan,
                     len(strategy.history), seconds,
                     anytime=anytime_choices(strategy), details=details,
                     shortlist=shortlist(strategy, config.train_top))


def load_nb201_artifact(path: str) -> SpaceGenerator:
    """A pretrained generator for the amortised variant; it must make NAS-Bench-201 cells."""
    generator = CellGenerator.load(path)
    if generator.space != "nb201":
        raise ConfigError(f"--artifact {path} makes {generator.space!r} cells; the NAS-Bench-201 "
                          "benchmark needs a generator pretrained on an 'nb201' corpus")
    return SpaceGenerator(generator)


def _strategy(config: Nb201BenchConfig, method: str, seed: int, space: GenotypeSpace,
              fitness: Fitness, generators: Path, pretrained: SpaceGenerator | None) -> Strategy:
    if method == "evolution":
        return create_strategy(method, space, fitness, seed,
                               population_size=config.population_size,
                               sample_size=config.sample_size)
    if method != "generative":
        return create_strategy(method, space, fitness, seed)
    if pretrained is not None:
        return create_strategy(method, space, fitness, seed, corpus_size=0,
                               generator_factory=lambda _: pretrained)
    factory = CorpusPretrainer(generators, "nb201", config.condition_proxies,
                               config.pretrain_config(seed))
    return create_strategy(method, space, fitness, seed, corpus_size=config.corpus_size,
                           generator_factory=factory)


def _options_meta(config: Nb201BenchConfig, method: str) -> dict[str, Any]:
    if method == "evolution":
        return {"population_size": config.population_size, "sample_size": config.sample_size}
    if method == "generative":
        defaults = GenerativeSearch.__init__.__kwdefaults__
        return {"corpus_size": 0 if config.artifact else config.corpus_size,
                "strategy_defaults": {k: v for k, v in defaults.items() if k not in
                                      ("generator_factory", "corpus_size")},
                "artifact": config.artifact,
                "pretrain": None if config.artifact else
                config.pretrain_config(0).to_dict() | {"seed": "per search seed"}}
    return {}


def anytime_choices(strategy: Strategy) -> list[list[Any]]:
    """[evaluations, the arch the strategy would choose then] at each checkpoint."""
    out = []
    n = len(strategy.history)
    for point in [c for c in CHECKPOINTS if c < n] + [n]:
        prefix = strategy.history[:point]
        scores = strategy.fitness.scores([e.as_record() for e in prefix])
        out.append([point, prefix[int(np.argmax(scores))].text])
    return out


# ---------------------------------------------------------------------- short training
def shortlist(strategy: Strategy, k: int) -> list[str]:
    """The `k` best evaluated cells by the search's fitness, best first (ties: first found)."""
    scores = strategy.fitness_of(strategy.history)
    order = np.argsort(-scores, kind="stable")
    return [strategy.history[i].text for i in order[:k] if np.isfinite(scores[i])]


def train_shortlist(run: MethodRun, training: ShortTraining, folder: Path) -> None:
    """Train `run.shortlist` (or reuse the records of a finished earlier call) and choose the
    best by validation accuracy; sets `trained`, `trained_choice` and `training_seconds` (the
    wall seconds of the call that trained it)."""
    name = f"{run.method}-seed{run.seed}-{training.digest}"
    marker = folder / f"{name}.json"
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    if saved.get("shortlist") != run.shortlist:
        start = time.perf_counter()
        records = training.train(run.shortlist, name)
        saved = {"shortlist": run.shortlist, "settings": dict(training.settings),
                 "wall_seconds": time.perf_counter() - start,
                 "records": [_trained(arch, r) for arch, r in
                             zip(run.shortlist, records, strict=True)]}
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(saved, indent=1, default=str))
    run.trained, run.training_seconds = saved["records"], float(saved["wall_seconds"])
    run.trained_choice = best_by_validation(run.trained)
    if run.trained_choice is None:
        log.warning("%s seed %d: no shortlisted cell finished an epoch of training; its "
                    "trained choice is empty", run.method, run.seed)


def _trained(arch: str, record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("status", "best_val_accuracy", "val_accuracy", "epochs", "seconds", "error", "curve")
    return {"arch": arch, **{k: record.get(k) for k in keys}}


def best_by_validation(trained: Sequence[Mapping[str, Any]]) -> str | None:
    """The arch with the best validation accuracy among trials that were not failed (ASHA's
    stopped ones count at the accuracy they reached); ties go to the better fitness rank."""
    usable = [t for t in trained
              if t["status"] != "failed" and t.get("best_val_accuracy") is not None]
    if not usable:
        return None
    return max(usable, key=lambda t: t["best_val_accuracy"])["arch"]  # max keeps the first


# ---------------------------------------------------------------------- scoring (oracle)
def score_choices(runs: Sequence[MethodRun], table_path: Path | None) -> bool:
    """Look up the accuracy of every choice; False (and nothing set) without a table."""
    from hgnas_ray.bench import Nb201Table

    if table_path is None:
        return False
    try:
        table = Nb201Table.load(table_path)
    except DataError as err:
        log.warning("the choices cannot be scored: %s", err)
        return False
    for run in runs:
        run.test_accuracy = _accuracy(table, run.chosen)
        run.anytime_accuracy = [[n, a] for n, arch in run.anytime
                                if (a := _accuracy(table, arch)) is not None]
        for trained in run.trained:
            trained["test_accuracy"] = _accuracy(table, trained["arch"])
        run.trained_test_accuracy = (_accuracy(table, run.trained_choice)
                                     if run.trained_choice else None)
    return True


def _accuracy(table: Any, arch: str) -> float | None:
    try:
        return table.test_accuracy(arch) if arch else None
    except GenotypeError as err:  # a partial table: the choice stays unscored
        log.warning("cannot score %s: %s", arch, err)
        return None


def summarize(runs: Sequence[MethodRun], config: Nb201BenchConfig) -> dict[str, Any]:
    """Per method: accuracy mean/std over seeds, evaluations, seconds, mean anytime curve, and
    the evaluation count at which each method matches random's final mean accuracy."""
    out: dict[str, Any] = {}
    for method in config.methods:
        mine = [r for r in runs if r.method == method]
        acc = [r.test_accuracy for r in mine if r.test_accuracy is not None]
        out[method] = {
            "seeds": len(mine),
            "accuracy_mean": float(np.mean(acc)) if acc else None,
            "accuracy_std": float(np.std(acc)) if acc else None,
            "evaluations_mean": float(np.mean([r.evaluations for r in mine])),
            "wall_seconds_mean": float(np.mean([r.wall_seconds for r in mine])),
            "anytime_mean": _mean_curve(mine),
        }
        if any(r.trained for r in mine):
            out[method]["training"] = _training_summary(mine)
    target = out.get("random", {}).get("accuracy_mean")
    for stats in out.values():
        stats["evals_to_match_random"] = _first_reaching(stats["anytime_mean"], target)
    return out


def _training_summary(runs: Sequence[MethodRun]) -> dict[str, Any]:
    """With-training accuracy, the shortlist's own ceiling (its best cell by the table), how
    validation accuracy after short training ranks the shortlist (Spearman vs the table's test
    accuracy, per run, then averaged), and the training stage's wall time."""
    acc = [r.trained_test_accuracy for r in runs if r.trained_test_accuracy is not None]
    ceiling = [max(a) for r in runs
               if (a := [t["test_accuracy"] for t in r.trained
                         if t.get("test_accuracy") is not None])]
    rhos = [rho for r in runs if (rho := _val_test_spearman(r.trained)) is not None]
    trials = [t for r in runs for t in r.trained]
    return {
        "accuracy_mean": float(np.mean(acc)) if acc else None,
        "accuracy_std": float(np.std(acc)) if acc else None,
        "shortlist_best_mean": float(np.mean(ceiling)) if ceiling else None,
        "val_test_spearman_mean": float(np.mean(rhos)) if rhos else None,
        "val_test_spearman_runs": len(rhos),
        "trials": len(trials),
        "trials_by_status": {s: sum(t["status"] == s for t in trials)
                             for s in ("ok", "stopped", "failed")},
        "epochs_mean": float(np.mean([t["epochs"] or 0 for t in trials])) if trials else 0.0,
        "wall_seconds_total": float(sum(r.training_seconds for r in runs)),
        "wall_seconds_mean": float(np.mean([r.training_seconds for r in runs])),
    }


def _val_test_spearman(trained: Sequence[Mapping[str, Any]]) -> float | None:
    pairs = [(t["best_val_accuracy"], t["test_accuracy"]) for t in trained
             if t["status"] != "failed" and t.get("best_val_accuracy") is not None
             and t.get("test_accuracy") is not None]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs])[0])


def _mean_curve(runs: Sequence[MethodRun]) -> list[list[float]]:
    curves = [dict((int(n), a) for n, a in r.anytime_accuracy) for r in runs]
    if not curves or not all(curves):
        return []
    points = sorted(set.intersection(*(set(c) for c in curves)))
    return [[p, float(np.mean([c[p] for c in curves]))] for p in points]


def _first_reaching(curve: list[list[float]], target: float | None) -> int | None:
    if target is None:
        return None
    for n, acc in curve:
        if acc >= target - 1e-9:
            return int(n)
    return None


def to_json(runs: Sequence[MethodRun], config: Nb201BenchConfig, scoring: ScoringConfig,
            summary: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {"config": asdict(config), "scoring": scoring_setting(scoring, "nb201"),
            "summary": summary, "runs": [asdict(r) for r in runs], **extra}
