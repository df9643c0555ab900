"""Does the search pay off? A finished search run's chosen network against random networks of
the same budget, all trained from scratch with one short recipe (issue 10, item 5).

    python benchmarks/search_payoff.py --run RUN_DIR [--random 5] [--epochs 2]
        [--max-batches-per-epoch 30] [--train-subset N] [--test-limit 1000] [--seed 0]
        [--workers 2] [--out FILE.json]

- **Networks.** The chosen one is the run's `export/genotype.json`. `--random` more are drawn with
  `MacroHierarchy(task, budget, RandomCells()).sample` (seeded by `--seed`): the project's budget-
  aware `random` baseline, over the same macro space (same widths cap, same shrink-to-fit) the
  run's HL-Evo refinement searched, with uniform random cells instead of generated ones. It is
  preferred to `sample_within_budget` (plain rejection sampling), whose networks sit further
  below the budget (on CIFAR-10 at 1M params / 40M MACs: median 14M MACs against 21M), which
  would make the random baseline weaker for a reason that has nothing to do with the search.
- **Training.** Every network gets the run's own candidate recipe (`train.recipe` of its
  config.yaml: SGD Nesterov, lr, weight decay, crop + flip, cosine, the validation split carved
  from the training set) with `epochs`, `max_batches_per_epoch` and the seed replaced by the
  flags, from scratch (the run's trained weights are not reused), the same seed for all. Each
  network trains in its own process (`--workers` at a time, 1 thread each): plain processes, not
  Ray Tune, because ASHA must not stop anyone here, the weights must be at hand for the test
  split, and `--train-subset` has no Tune counterpart.
- **Test accuracy.** Top-1 on the first `--test-limit` images of a permutation of the task's test
  split seeded by the run's seed (the rule `export/metrics.json` uses; all of them when 0).
- **Proxy.** Every network is scored with the run's fitness on the run's probe batches (the
  settings the pipeline's `candidate_scoring(config)` decides: proxies, probe size and
  batches, class balance, seed);
  the Spearman of fitness vs test accuracy over chosen + random, and of fitness vs
  best_val_accuracy over the run's own `trained.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

RANDOM_SAMPLER = "MacroHierarchy(task, budget, RandomCells()).sample"


# ---------------------------------------------------------------------- pure summaries
def spearman(xs: Sequence[float | None], ys: Sequence[float | None]) -> dict[str, Any]:
    """Spearman's rho over the pairs where both values are finite; rho is None below 3 pairs
    or when one side is constant."""
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    n = len(pairs)
    if n < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return {"rho": None, "p": None, "n": n}
    result = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": n}


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Random mean +- std (sample std, ddof 1) and best, the chosen minus the random mean, the
    chosen's rank among all (1 = best; ties share the better rank) and the proxy Spearman.

    `rows`: one per network, {"kind": "chosen" | "random", "test_accuracy", "fitness"}; exactly
    one chosen; a network whose training failed has test_accuracy None."""
    chosen = [r for r in rows if r["kind"] == "chosen"]
    if len(chosen) != 1:
        raise ValueError(f"need exactly one chosen network; got {len(chosen)}")
    chosen_acc = chosen[0]["test_accuracy"]
    random_acc = [r["test_accuracy"] for r in rows
                  if r["kind"] == "random" and r["test_accuracy"] is not None]
    mean = float(np.mean(random_acc)) if random_acc else None
    std = float(np.std(random_acc, ddof=1)) if len(random_acc) > 1 else None
    measured = [r["test_accuracy"] for r in rows if r["test_accuracy"] is not None]
    rank = (1 + sum(a > chosen_acc for a in measured)) if chosen_acc is not None else None
    difference = (chosen_acc - mean) if chosen_acc is not None and mean is not None else None
    return {
        "chosen_test_accuracy": chosen_acc,
        "random_n": len(random_acc),
        "random_mean": mean,
        "random_std": std,
        "random_best": max(random_acc) if random_acc else None,
        "chosen_minus_random_mean": difference,
        "difference_in_random_stds": (difference / std if difference is not None and std
                                      else None),
        "chosen_rank": rank,
        "ranked_networks": len(measured),
        "spearman_fitness_vs_test_accuracy": spearman([r["fitness"] for r in rows],
                                                      [r["test_accuracy"] for r in rows]),
    }


def run_spearman(trained: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fitness vs best_val_accuracy over the run's trained candidates that reported an epoch
    (ASHA-stopped ones included, at the epochs they reached)."""
    usable = [r for r in trained if r.get("status") in ("ok", "stopped")]
    result = spearman([r.get("fitness") for r in usable],
                      [r.get("best_val_accuracy") for r in usable])
    return {**result, "trained": len(trained),
            "stopped_by_asha": sum(r.get("status") == "stopped" for r in usable)}


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table, one line per network, best test accuracy first."""
    def cell(value: Any, fmt: str) -> str:
        return "failed" if value is None else format(value, fmt)

    lines = ["| network | hash | params | MACs | fitness | test acc. (%) | train s |",
             "|---|---|---|---|---|---|---|"]
    ordered = sorted(rows, key=lambda r: -(r["test_accuracy"] if r["test_accuracy"] is not None
                                            else -math.inf))
    for r in ordered:
        lines.append(f"| {r['kind']} | {r['hash'][:10]} | {r['params']:,} | {r['macs']:,} | "
                     f"{cell(r['fitness'], '.4g')} | {cell(r['test_accuracy'], '.2f')} | "
                     f"{cell(r['train_seconds'], '.0f')} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the run
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="a finished search run folder")
    p.add_argument("--random", type=int, default=5, help="random networks within the budget")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-batches-per-epoch", type=int, default=30)
    p.add_argument("--train-subset", type=int, default=None,
                   help="train on this many images of the training part (seeded); default all")
    p.add_argument("--test-limit", type=int, default=1000,
                   help="test images (a permutation seeded by the run's seed); 0: all")
    p.add_argument("--seed", type=int, default=0,
                   help="the random networks' draws and every network's training seed")
    p.add_argument("--workers", type=int, default=2, help="networks trained at once")
    p.add_argument("--out", type=Path, help="JSON results (default RUN/search_payoff.json)")
    args = p.parse_args(argv)
    for name in ("random", "epochs", "max_batches_per_epoch", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.test_limit < 0 or (args.train_subset is not None and args.train_subset < 1):
        p.error("--test-limit must be >= 0 and --train-subset >= 1")
    return args


def load_run(run_dir: Path) -> dict[str, Any]:
    """The run's config, the chosen genotype (dict), its metrics and the trained records."""
    from hgnas_ray.config import load_config
    from hgnas_ray.search.config import SearchConfig

    genotype_path, config_path = run_dir / "export" / "genotype.json", run_dir / "config.yaml"
    for path in (genotype_path, config_path):
        if not path.is_file():
            raise SystemExit(f"{path} not found: --run must be a finished search run folder "
                             "(one with config.yaml and export/)")
    trained_path, metrics_path = run_dir / "trained.json", run_dir / "export" / "metrics.json"
    return {
        "config": load_config(SearchConfig, config_path),
        "chosen": json.loads(genotype_path.read_text()),
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
        "trained": json.loads(trained_path.read_text()) if trained_path.is_file() else [],
        "candidates": [json.loads(line) for line in
                       (run_dir / "candidates.jsonl").read_text().splitlines() if line.strip()]
        if (run_dir / "candidates.jsonl").is_file() else [],
    }


def task_shape(config):
    from hgnas_ray.data import load_task
    from hgnas_ray.nn.builder import TaskShape

    info = load_task(config.data.task, "train", root=config.data.root,
                     download=config.data.download).info
    return TaskShape(info.num_classes, info.input_shape[1], info.input_shape[0])


def draw_random(config, task, n: int, seed: int) -> list:
    from hgnas_ray.nn.budget import Budget
    from hgnas_ray.search.macro_space import MacroHierarchy, RandomCells

    budget = Budget(config.budget.max_params, config.budget.max_macs)
    space = MacroHierarchy(task, budget, RandomCells())
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def scoring_settings(config) -> dict[str, Any]:
    """The pipeline's own scoring settings for this config."""
    from hgnas_ray.search.pipeline import candidate_scoring

    return candidate_scoring(config)


def score_networks(genotypes: Sequence, config) -> list[dict[str, Any]]:
    """Each genotype's proxy record and `fitness` (a rank aggregate ranks over these)."""
    from hgnas_ray.corpus.scoring import CorpusScorer
    from hgnas_ray.search.fitness import Fitness
    from hgnas_ray.space.genotypes import format_genotype, genotype_hash

    scorer = CorpusScorer(scoring_settings(config))
    records = []
    for genotype in genotypes:
        records.append(scorer.score_one(genotype_hash(genotype), format_genotype(genotype)))
        log(f"scored {records[-1]['hash'][:10]}: {records[-1].get('status')} "
            f"({records[-1].get('seconds', float('nan')):.1f} s)")
    scores = Fitness.parse(config.generate.fitness).scores(records)
    return [{**r, "fitness": float(s) if np.isfinite(s) else None}
            for r, s in zip(records, scores, strict=True)]


def recipe_for(config, args: argparse.Namespace):
    """The run's candidate recipe, shortened by the flags; the same for every network."""
    return replace(config.train.recipe, epochs=args.epochs,
                   max_batches_per_epoch=args.max_batches_per_epoch, seed=args.seed,
                   budget_s=None, device="cpu").validate()


# ---------------------------------------------------------------------- training (workers)
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def train_and_test(job: dict[str, Any]) -> dict[str, Any]:
    """One network: train with the recipe from scratch, then top-1 on the test subset."""
    from hgnas_ray.training.candidates import (
        TaskConfig,
        build_candidate,
        evaluate_accuracy,
        split_train_val,
        train_candidate,
    )

    task, recipe = TaskConfig(**job["task"]), job["recipe"]
    train, val = split_train_val(task.load("train"), recipe)
    if job["train_subset"]:
        keep = np.random.default_rng(recipe.split_seed).permutation(len(train))
        train = train.subset(np.sort(keep[:job["train_subset"]]))
    final: dict[str, Any] = {}

    def on_epoch(epoch: int, report: dict[str, Any], state: dict[str, Any]) -> None:
        final.update(model=state["model"])
        log(f"network {job['index']}: epoch {epoch}, val {report['val_accuracy']:.1f}%, "
            f"{report['seconds']:.0f} s")

    result = train_candidate(job["genotype"], train, val, recipe, callback=on_epoch)
    out = {"index": job["index"], "status": result.status, "error": result.error,
           "epochs": result.epochs, "val_accuracy": result.val_accuracy,
           "train_seconds": result.seconds, "test_accuracy": None,
           "curve": [[h["epoch"], h["val_accuracy"]] for h in result.history]}
    if result.status == "ok":
        test = task.load("test")
        model = build_candidate(job["genotype"], test.info, recipe)
        model.load_state_dict(final["model"])
        out["test_accuracy"] = evaluate_accuracy(model, test.subset(np.sort(job["test_rows"])),
                                                 next(model.parameters()).device)
    return out


def train_all(jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    results = {}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(1,)) as pool:
        # the costliest first, so the last to finish is a cheap one
        order = sorted(jobs, key=lambda job: -job["macs"])
        futures = [pool.submit(train_and_test, job) for job in order]
        for future in as_completed(futures):
            r = future.result()
            results[r["index"]] = r
            log(f"trained network {r['index']}: {r['status']}, test {r['test_accuracy']}, "
                f"{r['train_seconds']:.0f} s ({len(results)}/{len(jobs)})")
    return [results[i] for i in range(len(jobs))]


def test_rows(config, limit: int) -> list[int]:
    """The test images: a permutation seeded by the run's seed, cut to `limit` (0: all)."""
    from hgnas_ray.data import load_task

    n = len(load_task(config.data.task, "test", root=config.data.root,
                      download=config.data.download))
    order = np.random.default_rng(config.seed).permutation(n)
    return [int(i) for i in (order[:limit] if limit else order)]


class LoadSampler:
    """The 1-minute load average, sampled every `every` seconds in a daemon thread."""

    def __init__(self, every: float = 30.0) -> None:
        import threading

        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every,), daemon=True)
        self._thread.start()

    def _sample(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        return {"mean": round(float(np.mean(self.samples)), 2),
                "max": round(max(self.samples), 2), "samples": len(self.samples)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    from hgnas_ray.nn.builder import genotype_cost
    from hgnas_ray.space.genotypes import genotype_from_dict, genotype_hash

    args = parse_args(argv)
    start, load = time.perf_counter(), LoadSampler()
    run = load_run(args.run)
    config = run["config"]
    task = task_shape(config)
    chosen = genotype_from_dict({k: v for k, v in run["chosen"].items()
                                 if k not in ("hash", "task", "skeleton")})
    genotypes = [chosen, *draw_random(config, task, args.random, args.seed)]
    kinds = ["chosen"] + ["random"] * args.random
    log(f"scoring {len(genotypes)} networks with {config.generate.fitness}")
    scored = score_networks(genotypes, config)
    recipe = recipe_for(config, args)
    rows_test = test_rows(config, args.test_limit)
    task_cfg = {"task": config.data.task, "root": config.data.root, "cache_dir": None,
                "download": config.data.download}
    jobs = [{"index": i, "genotype": g.to_dict(), "task": task_cfg, "recipe": recipe,
             "train_subset": args.train_subset, "test_rows": rows_test,
             "macs": genotype_cost(g, task).macs} for i, g in enumerate(genotypes)]
    log(f"training {len(jobs)} networks, {args.workers} at a time")
    trained = train_all(jobs, args.workers)
    rows = []
    for kind, genotype, record, result in zip(kinds, genotypes, scored, trained, strict=True):
        cost = genotype_cost(genotype, task)
        rows.append({"kind": kind, "hash": genotype_hash(genotype), "params": cost.params,
                     "macs": cost.macs, "fitness": record["fitness"],
                     "proxy_status": record.get("status"), **result,
                     "genotype": genotype.to_json()})
    return finish(args, run, rows, recipe, len(rows_test), start, load.stop())


def finish(args, run, rows, recipe, n_test, start, load) -> dict[str, Any]:
    config = run["config"]
    in_run = {c["hash"]: c.get("fitness") for c in run["candidates"]}
    chosen = rows[0]
    report = {
        "run": str(args.run.resolve()), "task": config.data.task,
        "budget": {"max_params": config.budget.max_params, "max_macs": config.budget.max_macs},
        "fitness": config.generate.fitness, "scoring": scoring_settings(config),
        "random_sampler": RANDOM_SAMPLER, "seed": args.seed,
        "recipe": recipe.to_dict(), "train_subset": args.train_subset,
        "test_images": n_test,
        "test_images_rule": f"the first N of a permutation of the test split seeded by the "
                            f"run's seed ({config.seed})",
        "chosen_fitness_in_run": in_run.get(chosen["hash"]),
        "chosen_fitness_rescored": chosen["fitness"],
        "chosen_accuracy_in_run": run["metrics"].get("accuracy"),
        "networks": rows, "summary": summarize(rows),
        "run_trained_spearman": run_spearman(run["trained"]),
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_1min": load, "cpus": os.cpu_count(),
    }
    out = args.out or args.run / "search_payoff.json"
    out.write_text(json.dumps(report, indent=1))
    print(format_table(rows))
    print(json.dumps({k: report[k] for k in ("summary", "run_trained_spearman",
                                             "chosen_fitness_in_run", "chosen_fitness_rescored",
                                             "seconds",
                                             "load_average_1min")}, indent=1))
    log(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
