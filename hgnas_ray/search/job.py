"""The search job's loop, without Ray: sample candidates within the budget, skip those already
evaluated, evaluate the rest, rank them.

Current stage (foundation): a real end-to-end slice of the search. It loads the task's images,
samples distinct macro networks within the budget, and evaluates each with the one
`hgnas_ray.evaluation.Evaluator` (build, exact params/MACs, a forward pass on a real probe
batch, the zero-cost proxies). How the evaluations run is the caller's: `run_search_job` takes
an `EvaluateMany` (`jobs/search.py` passes the Ray one, `hgnas_ray.distributed.candidates`; a
test can pass `evaluate_serially`). Results stream into `<storage>/<run_name>/candidates.jsonl`
(one flat record per line); a re-run skips candidates already there. `ranking.json` and
`config.yaml` go beside it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hgnas_ray.config import save_config
from hgnas_ray.evaluation import Evaluator
from hgnas_ray.nn.budget import Budget, sample_within_budget
from hgnas_ray.nn.builder import TaskShape
from hgnas_ray.search.config import SearchConfig

logger = logging.getLogger(__name__)

Record = dict[str, Any]
# (genotype dicts, evaluator, on_result): evaluate each, call on_result with each flat record
EvaluateMany = Callable[[Sequence[dict], Evaluator, Callable[[Record], None]], object]
RESULTS_FILE, RANKING_FILE, CONFIG_FILE = "candidates.jsonl", "ranking.json", "config.yaml"


def evaluate_serially(genotypes: Sequence[dict], evaluator: Evaluator,
                      on_result: Callable[[Record], None]) -> None:
    """An `EvaluateMany` in this process, one genotype after another."""
    for genotype in genotypes:
        on_result(evaluator(genotype))


def run_search_job(config: SearchConfig, evaluate_many: EvaluateMany) -> list[Record]:
    """Run (or resume) the job of `config`; return the ranking (also in ranking.json)."""
    from hgnas_ray.data import load_task, probe_batches  # the data stack loads on first use

    run_dir = config.run_dir()
    dataset = load_task(config.data.task, "train", root=config.data.root,
                        download=config.data.download)
    info = dataset.info
    task = TaskShape(info.num_classes, info.input_shape[1], info.input_shape[0])
    batches = probe_batches(dataset, config.data.probe_batches, config.data.probe_size,
                            seed=config.sample.seed, class_balanced=config.data.class_balanced)
    logger.info("task %s: %d images, %d classes, input %s; results in %s", info.name,
                len(dataset), info.num_classes, info.input_shape, run_dir)
    candidates = sample_candidates(config, task)
    # the run folder appears only once the data loaded and the candidates fit the budget
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_FILE)
    results_path = run_dir / RESULTS_FILE
    done = finished_hashes(results_path)
    todo = [g for h, g in candidates if h not in done]
    logger.info("%d candidates within budget, %d already evaluated, %d to go", len(candidates),
                len(done), len(todo))
    if todo:
        evaluator = Evaluator(config.sample.proxies, batches, task, seed=config.sample.seed,
                              forward_check=True)
        _evaluate(todo, evaluator, evaluate_many, results_path, config.sample.rank_by)
    ranking = rank(results_path, config.sample.rank_by)
    (run_dir / RANKING_FILE).write_text(json.dumps(ranking, indent=1))
    return ranking


def sample_candidates(config: SearchConfig, task: TaskShape) -> list[tuple[str, dict]]:
    """`sample.num_candidates` distinct (hash, genotype dict) pairs within the budget, seeded."""
    rng = np.random.default_rng(config.sample.seed)
    budget = Budget(config.budget.max_params, config.budget.max_macs)
    seen: dict[str, dict] = {}
    while len(seen) < config.sample.num_candidates:
        genotype = sample_within_budget(rng, budget, task)
        seen.setdefault(genotype.hash, genotype.to_dict())
    return list(seen.items())


def finished_hashes(path: Path) -> set[str]:
    """Hashes of the candidates already in a results file."""
    if not path.is_file():
        return set()
    hashes = set()
    for line in path.read_text().splitlines():
        try:
            hashes.add(json.loads(line)["hash"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut short by a kill: that candidate runs again
    return hashes


def _evaluate(todo: list[dict], evaluator: Evaluator, evaluate_many: EvaluateMany,
              results_path: Path, rank_by: str) -> None:
    start, count = time.perf_counter(), 0
    with results_path.open("a") as sink:
        def on_result(record: Record) -> None:
            nonlocal count
            count += 1
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            logger.info("[%d/%d] %s %s params=%s %s=%s (%.1fs)", count, len(todo),
                        record.get("hash") or "?", record["status"], record.get("params", "?"),
                        rank_by, record.get(rank_by), time.perf_counter() - start)

        evaluate_many(todo, evaluator, on_result)


def rank(path: Path, rank_by: str) -> list[Record]:
    """Scored records (status ok or partial) by `rank_by`, best first (NaN last), then the
    failed ones (rank None)."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scored = [r for r in records if r["status"] != "error"]

    def key(record: Record) -> float:
        value = record.get(rank_by)
        return -math.inf if value is None or math.isnan(value) else value

    ranked = sorted(scored, key=key, reverse=True)
    return [{"rank": i + 1, "hash": r["hash"], rank_by: r.get(rank_by),
             "params": r["params"], "macs": r["macs"], "flops": r["flops"],
             "genotype": r["genotype"]} for i, r in enumerate(ranked)] + \
        [{"rank": None, "hash": r.get("hash"), "error": r.get("error")} for r in records
         if r["status"] == "error"]


def format_ranking(ranking: list[Record], rank_by: str, top: int = 10) -> str:
    """The ranking's first `top` rows as the job prints them."""
    lines = [f"\nranked by {rank_by} (higher is better; MACs per sample, FLOPs = 2 x MACs):"]
    for row in ranking[:top]:
        if row["rank"] is None:
            lines.append(f"  failed {row['hash']}: {row['error']}")
            continue
        lines.append(f"  #{row['rank']:<3} {row['hash']}  {rank_by}={row[rank_by]:.3f}  "
                     f"params={row['params']:,}  MACs={row['macs']:,}")
    return "\n".join(lines)
