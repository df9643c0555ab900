"""The search job: `python jobs/search.py --config jobs/configs/demo.yaml` (or `ray job submit`).

Current stage (foundation): a real end-to-end slice of the search. It loads the task's images,
samples macro networks within the budget, and evaluates each as a Ray task: build, count exact
params/MACs, run the network on a real probe batch, score it with zero-cost proxies. Results
stream into `<storage_path>/<run_name>/candidates.jsonl`; a re-run skips candidates already
there. The generative stages (cell generator, sequence generator, HL-Evo, candidate training)
replace the random sampler in later milestones.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from hgnas_ray.config import load_config, save_config
from hgnas_ray.data import load_task, probe_batches
from hgnas_ray.errors import HgnasError
from hgnas_ray.evaluation import Evaluator
from hgnas_ray.nn.budget import Budget, sample_within_budget
from hgnas_ray.nn.builder import TaskShape
from hgnas_ray.search.config import SearchConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (see jobs/configs/demo.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set sample.num_candidates=8")
    parser.add_argument("--smoke-test", action="store_true",
                        help="4 candidates, small probe batch: a quick end-to-end check")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.set)
    if args.smoke_test:
        overrides += ["sample.num_candidates=4", "data.probe_size=16"]
    try:
        config = load_config(SearchConfig, args.config, overrides)
        return run(config)
    except HgnasError as err:
        print(f"search: error: {err}", file=sys.stderr)
        return 2


def run(config: SearchConfig) -> int:
    run_dir = config.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    dataset = load_task(config.data.task, "train", root=config.data.root,
                        download=config.data.download)
    info = dataset.info
    task = TaskShape(info.num_classes, info.input_shape[1], info.input_shape[0])
    batches = probe_batches(dataset, config.data.probe_batches, config.data.probe_size,
                            seed=config.sample.seed, class_balanced=config.data.class_balanced)
    print(f"task {info.name}: {len(dataset)} images, {info.num_classes} classes, input "
          f"{info.input_shape}; results in {run_dir}", flush=True)
    candidates = _sample_candidates(config, task)
    results_path = run_dir / "candidates.jsonl"
    done = _finished_hashes(results_path)
    todo = [g for h, g in candidates if h not in done]
    print(f"{len(candidates)} candidates within budget, {len(done)} already evaluated, "
          f"{len(todo)} to go", flush=True)
    if todo:
        _evaluate(config, todo, batches, task, results_path)
    ranking = _rank(results_path, config.sample.rank_by)
    (run_dir / "ranking.json").write_text(json.dumps(ranking, indent=1))
    _print_ranking(ranking, config.sample.rank_by)
    return 0


def _sample_candidates(config: SearchConfig, task: TaskShape) -> list[tuple[str, dict]]:
    rng = np.random.default_rng(config.sample.seed)
    budget = Budget(config.budget.max_params, config.budget.max_macs)
    seen: dict[str, dict] = {}
    while len(seen) < config.sample.num_candidates:
        genotype = sample_within_budget(rng, budget, task)
        seen.setdefault(genotype.hash, genotype.to_dict())
    return list(seen.items())


def _finished_hashes(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    hashes = set()
    for line in path.read_text().splitlines():
        try:
            hashes.add(json.loads(line)["hash"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut short by a kill: that candidate runs again
    return hashes


def _evaluate(config: SearchConfig, todo: list[dict], batches, task: TaskShape,
              results_path: Path) -> None:
    from hgnas_ray.distributed.candidates import evaluate_many
    from hgnas_ray.distributed.runtime import init_ray

    init_ray(config.ray)
    evaluator = Evaluator(config.sample.proxies, batches, task, seed=config.sample.seed,
                          forward_check=True)
    start, count = time.perf_counter(), 0
    with results_path.open("a") as sink:
        def on_result(record: dict) -> None:
            nonlocal count
            count += 1
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            print(f"[{count}/{len(todo)}] {record.get('hash', '?')} {record['status']} "
                  f"params={record.get('params', '?')} "
                  f"{config.sample.rank_by}={record.get(config.sample.rank_by)} "
                  f"({time.perf_counter() - start:.1f}s)", flush=True)

        evaluate_many(todo, evaluator, config.ray.cpus_per_candidate,
                      config.ray.gpus_per_candidate, on_result)


def _rank(path: Path, rank_by: str) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scored = [r for r in records if r["status"] != "error"]  # "partial": some proxy failed

    def key(record: dict) -> float:
        value = record.get(rank_by)
        return -math.inf if value is None or math.isnan(value) else value

    ranked = sorted(scored, key=key, reverse=True)
    return [{"rank": i + 1, "hash": r["hash"], rank_by: r.get(rank_by),
             "params": r["params"], "macs": r["macs"], "flops": r["flops"],
             "genotype": r["genotype"]} for i, r in enumerate(ranked)] + \
        [{"rank": None, "hash": r.get("hash"), "error": r.get("error")} for r in records
         if r["status"] == "error"]


def _print_ranking(ranking: list[dict], rank_by: str) -> None:
    print(f"\nranked by {rank_by} (higher is better; MACs per sample, FLOPs = 2 x MACs):")
    for row in ranking[:10]:
        if row["rank"] is None:
            print(f"  failed {row['hash']}: {row['error']}")
            continue
        print(f"  #{row['rank']:<3} {row['hash']}  {rank_by}={row[rank_by]:.3f}  "
              f"params={row['params']:,}  MACs={row['macs']:,}")


if __name__ == "__main__":
    sys.exit(main())
