"""Macro level benchmark (issue 9): the sequence generator against HL-Evo and random networks.

For each (task, budget) setting of the small pretraining grid:
- **generator**: `--samples` networks from `MacroGenerator.sample`: parse validity, budget
  satisfaction (within budget; share using >= 80% of it), uniqueness; then the first
  `--generated-evals` of them are scored in order;
- **HL-Evo**: a fresh search (seed `--seed`, not a pretraining seed) of `--hlevo-evals`
  evaluations, cells from the same cell generator's clusters;
- **random**: `--random-evals` random networks within the budget (uniform random cells).
All three are scored the way the pretraining histories were (seeded Gaussian probes of the task's
shape, the same fitness), so their scores compare. The ratio the method exists for is the number
of generated networks scored before one reaches HL-Evo's best, over the number of evaluations
HL-Evo needed to reach it.

`--throughput` instead measures HL-Evo's networks scored per second through the Ray actor pool
with 1 and 2 workers (CIFAR-10 probes, so it needs HGNAS_DATA).

    python benchmarks/macro_search.py --artifact DIR --cell-artifact DIR --out results.json
    python benchmarks/macro_search.py --throughput --cell-artifact DIR
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hgnas_ray.cli.log import configure_logging
from hgnas_ray.evaluation import Evaluator
from hgnas_ray.generator.cells import CellGenerator
from hgnas_ray.nn.builder import genotype_cost
from hgnas_ray.search import Fitness, RunStore, create_strategy, run_search, serial_evaluate
from hgnas_ray.search.histories import SMALL_GRID, HistoryConfig, probe_batches
from hgnas_ray.search.loop import ELAPSED_KEY
from hgnas_ray.search.macro_space import MacroHierarchy, RandomCells
from hgnas_ray.search.pretrained import GeneratorCells
from hgnas_ray.space import MacroGenotype

USED_SHARE = 0.8  # "uses >= 80% of the budget"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", help="macro-generator artifact")
    p.add_argument("--cell-artifact", required=True, help="cell-generator artifact")
    p.add_argument("--settings", default="all",
                   help="comma-separated indices into the small grid (default all)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--generated-evals", type=int, default=20)
    p.add_argument("--hlevo-evals", type=int, default=100)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--random-evals", type=int, default=30)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--min-budget-share", type=float, default=0.0,
                   help="the generator keeps only networks using this share of the budget")
    p.add_argument("--seed", type=int, default=99)
    p.add_argument("--throughput", action="store_true")
    p.add_argument("--throughput-evals", type=int, default=24)
    p.add_argument("--work-dir", default="/tmp/hgnas_macro_bench")
    p.add_argument("--out", help="write the results as JSON here")
    return p.parse_args(argv)


def scorer(setting, config: HistoryConfig, seed: int) -> Evaluator:
    fitness = Fitness.parse(config.fitness)
    return Evaluator(fitness.proxies, probe_batches(setting.task, config.probe_batch,
                                                    config.probe_batches, seed),
                     setting.task, seed=seed)


def fitness_of(records, config: HistoryConfig) -> list[float]:
    return [float(v) for v in Fitness.parse(config.fitness).scores(records)]


def evals_to_reach(scores: list[float], target: float) -> int | None:
    """1-based index of the first score >= target (None: never)."""
    for index, value in enumerate(scores, 1):
        if value >= target:
            return index
    return None


def run_hlevo(setting, cells, config, args, work: Path) -> dict:
    space = MacroHierarchy(setting.task, setting.budget, cells, max_width=config.max_width)
    strategy = create_strategy("hl-evo", space, Fitness.parse(config.fitness), seed=args.seed,
                               population_size=args.population)
    store = RunStore(work / f"hlevo_{setting.name}_{args.seed}", {"bench": setting.name})
    records = run_search(strategy, serial_evaluate(scorer(setting, config, args.seed)), store,
                         args.hlevo_evals, config.batch_size)
    scores = fitness_of(records, config)
    best = max(scores)
    seconds = store.load_state()[ELAPSED_KEY]  # across resumes of the run
    return {"evaluations": len(records), "seconds": round(seconds, 1),
            "best": best, "evals_to_best": evals_to_reach(scores, best),
            "best_params": records[int(np.argmax(scores))]["params"]}


def run_random(setting, config, args) -> dict:
    space = MacroHierarchy(setting.task, setting.budget, RandomCells(),
                           max_width=config.max_width)
    rng = np.random.default_rng(args.seed)
    evaluate = scorer(setting, config, args.seed)
    start = time.perf_counter()
    records = [evaluate(space.sample(rng)) for _ in range(args.random_evals)]
    scores = fitness_of(records, config)
    return {"evaluations": len(records), "seconds": round(time.perf_counter() - start, 1),
            "best": max(scores), "median": float(np.median(scores))}


def run_generator(setting, generator, config, args, hlevo_best: float) -> dict:
    start = time.perf_counter()
    samples = generator.sample(setting.task, setting.budget, args.samples,
                               temperature=args.temperature, seed=args.seed,
                               min_budget_share=args.min_budget_share)
    sample_seconds = time.perf_counter() - start
    valid, fits, used = 0, 0, 0
    for genotype in samples:
        genotype = MacroGenotype.from_dict(genotype.to_dict())  # parses and validates
        valid += 1
        cost = genotype_cost(genotype, setting.task)
        fits += setting.budget.allows(cost)
        used += _share(cost, setting.budget) >= USED_SHARE
    evaluate = scorer(setting, config, args.seed)
    start = time.perf_counter()
    records = [evaluate(g) for g in samples[:args.generated_evals]]
    scores = fitness_of(records, config)
    n = len(samples)
    return {"samples": n, "sample_seconds": round(sample_seconds, 1),
            "validity": valid / max(n, 1), "within_budget": fits / max(n, 1),
            "uses_80pct": used / max(n, 1),
            "unique": len({g.hash for g in samples}) / max(n, 1),
            "evaluations": len(records), "eval_seconds": round(time.perf_counter() - start, 1),
            "best": max(scores), "median": float(np.median(scores)),
            "evals_to_hlevo_best": evals_to_reach(scores, hlevo_best)}


def _share(cost, budget) -> float:
    shares = [cost.params / budget.max_params if budget.max_params else 0.0,
              cost.macs / budget.max_macs if budget.max_macs else 0.0]
    return max(shares)


def head_to_head(args) -> list[dict]:
    from hgnas_ray.generator.macro import MacroGenerator

    config = HistoryConfig()
    generator = MacroGenerator.load(args.artifact, cell_artifact=args.cell_artifact)
    cells = GeneratorCells(CellGenerator.load(args.cell_artifact), pool_size=config.pool_size,
                           seed=args.seed)
    indices = range(len(SMALL_GRID)) if args.settings == "all" else \
        [int(i) for i in args.settings.split(",")]
    work = Path(args.work_dir)
    results = []
    for index in indices:
        setting = SMALL_GRID[index]
        hlevo = run_hlevo(setting, cells, config, args, work)
        row = {"setting": setting.name, **setting.to_dict(),
               "min_budget_share": args.min_budget_share, "hlevo": hlevo,
               "random": run_random(setting, config, args),
               "generator": run_generator(setting, generator, config, args, hlevo["best"])}
        reach = row["generator"]["evals_to_hlevo_best"]
        row["ratio"] = None if reach is None else reach / hlevo["evals_to_best"]
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def throughput(args) -> list[dict]:
    """HL-Evo networks scored per second through the Ray actor pool, 1 and 2 workers."""
    import ray

    from hgnas_ray.distributed.search import actor_pool_evaluate

    setting = SMALL_GRID[0]  # 10 classes, 32x32: CIFAR-10's shape
    config = HistoryConfig()
    scoring = {"proxies": [config.fitness], "task": "cifar10", "batch_size": config.probe_batch,
               "probe_batches": 1, "seed": args.seed}
    cells = GeneratorCells(CellGenerator.load(args.cell_artifact), pool_size=config.pool_size,
                           seed=args.seed)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False)
    rows = []
    try:
        for workers in (1, 2):
            space = MacroHierarchy(setting.task, setting.budget, cells,
                                   max_width=config.max_width)
            strategy = create_strategy("hl-evo", space, Fitness.parse(config.fitness),
                                       seed=args.seed, population_size=args.population)
            evaluate = actor_pool_evaluate(scoring, workers, space.key, space.to_text)
            list(evaluate([space.sample(np.random.default_rng(0))]))  # actors up, probe loaded
            store = RunStore(Path(args.work_dir) / f"tp_{workers}_{time.time_ns()}", {})
            start = time.perf_counter()
            run_search(strategy, evaluate, store, args.throughput_evals, 2 * workers)
            seconds = time.perf_counter() - start
            rows.append({"workers": workers, "evaluations": args.throughput_evals,
                         "seconds": round(seconds, 1),
                         "networks_per_s": round(args.throughput_evals / seconds, 3)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        ray.shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    torch.set_num_threads(1)
    if args.throughput:
        results = throughput(args)
    else:
        if not args.artifact:
            print("error: --artifact (a macro-generator artifact) is needed", file=sys.stderr)
            return 2
        results = head_to_head(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=_plain))
    return 0


def _plain(value):
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


if __name__ == "__main__":
    sys.exit(main())
