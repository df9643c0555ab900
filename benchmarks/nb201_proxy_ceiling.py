"""Study: score every distinct NAS-Bench-201 cell once and measure each proxy's ceiling.

A zero-training search that maximises a proxy can do no better than the proxy's best cell. This
script scores all 5,257 distinct cells (every arch string maps to one of them) with our proxies in
the benchmark's scoring setting, through the same proxy cache `hgnas bench nb201` uses (so it
also warms that cache), then reads the accuracy table, which a study may do, and reports per
proxy and rank aggregate:
  - Spearman with CIFAR-10 test accuracy over all 15,625 arch strings;
  - the accuracy of its best cell (mean over the arch strings of the top cell), the mean of its
    top 10 cells, the best of its top 10;
  - best-of-1,000 random arch strings chosen by the proxy (mean +- std over --draws draws),
    which is what random sampling + proxy should reach.

    python benchmarks/nb201_proxy_ceiling.py --data ../shared/data --out /tmp/ceiling.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from hgnas_ray.bench import Nb201Table
from hgnas_ray.corpus.scoring import CorpusScorer, ScoringConfig
from hgnas_ray.data.locations import resolve_cache_dir
from hgnas_ray.search.cache import ProxyCache, scoring_setting
from hgnas_ray.search.fitness import Fitness
from hgnas_ray.space import Nb201Genotype, genotype_hash
from hgnas_ray.space.nb201_cells import distinct_nb201_cells, nb201_arch

PROXIES = ("tcet", "synflow", "nwot", "snip_snr", "jacov", "params", "macs")
AGGREGATES = (("synflow", "nwot", "macs"), ("tcet", "synflow"), ("tcet", "nwot", "macs"),
              ("tcet", "snip_snr"), ("synflow", "nwot", "jacov", "macs"))
_SCORER: CorpusScorer | None = None


def _init(config: dict) -> None:
    import torch

    global _SCORER
    torch.set_num_threads(1)
    _SCORER = CorpusScorer(config)


def _score(item: tuple[str, str]) -> dict:
    return _SCORER.score_one(*item)


def fill_cache(cache: ProxyCache, config: ScoringConfig, workers: int) -> int:
    items = [(c.hash, nb201_arch(c).to_string()) for c in distinct_nb201_cells()]
    todo = [it for it in items if cache.get(it[0], config.proxies) is None]
    print(f"{len(items)} distinct cells, {len(todo)} to score", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(workers, _init, (config.to_dict(),)) as pool:
        for i, record in enumerate(pool.imap(_score, todo, chunksize=4), start=1):
            cache.put([record], config.proxies)
            if i % 200 == 0 or i == len(todo):
                print(f"[{i}/{len(todo)}] {time.perf_counter() - start:.0f}s", file=sys.stderr,
                      flush=True)
    return len(todo)


def class_scores(cache: ProxyCache, keys: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for p in PROXIES:
        values = []
        for k in keys:
            hit = cache.get(k, [p])
            values.append(hit[p] if hit and hit[f"{p}_status"] == "ok" else np.nan)
        out[p] = np.asarray(values, dtype=np.float64)
    return out


def ceiling(score: np.ndarray, cls: np.ndarray, acc: np.ndarray, draws: int) -> dict:
    """score: per arch string (NaN worst); cls: class id per arch string."""
    s = np.where(np.isnan(score), -np.inf, score)
    ids = np.unique(cls)
    cls_score = np.array([s[cls == i][0] for i in ids])
    cls_acc = np.array([acc[cls == i].mean() for i in ids])
    order = np.argsort(-cls_score, kind="stable")
    rng = np.random.default_rng(0)
    best_of = []
    for _ in range(draws):
        pick = rng.choice(len(s), 1000, replace=False)
        best_of.append(acc[pick[np.argmax(s[pick])]])
    finite = np.isfinite(s)
    return {"spearman": float(spearmanr(s[finite], acc[finite]).statistic),
            "best_cell": float(cls_acc[order[0]]), "top10_mean": float(cls_acc[order[:10]].mean()),
            "top10_best": float(cls_acc[order[:10]].max()),
            "random1000_mean": float(np.mean(best_of)), "random1000_std": float(np.std(best_of))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("HGNAS_DATA"))
    parser.add_argument("--table", default=None, help="default: DATA/nb201/nb201_cifar10.csv")
    parser.add_argument("--cache", default=None, help="default: HGNAS_CACHE/nb201_search")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = ScoringConfig(PROXIES, "cifar10", args.data, args.batch_size, 2, True,
                           args.channels, args.cells, 0, "cpu").validate()
    cache = ProxyCache(args.cache or resolve_cache_dir() / "nb201_search",
                       scoring_setting(config, "nb201"))
    start = time.perf_counter()
    scored = fill_cache(cache, config, args.workers)
    seconds = time.perf_counter() - start
    table = Nb201Table.load(args.table or Path(args.data) / "nb201")
    archs = [table.from_index(i).to_string() for i in range(len(table))]
    keys = [genotype_hash(Nb201Genotype.from_string(a)) for a in archs]
    cls = np.unique(keys, return_inverse=True)[1]
    acc = np.array([table.test_accuracy(a) for a in archs])
    by_class = class_scores(cache, keys)
    report = {"setting": cache.setting, "scored_now": scored, "score_seconds": seconds,
              "proxies": {p: ceiling(by_class[p], cls, acc, args.draws) for p in PROXIES}}
    for combo in AGGREGATES:  # ranked over the distinct cells, as the searches' fitness does
        cells = [{p: by_class[p][i] for p in combo} | {f"{p}_status": "ok" for p in combo}
                 for i in range(len(keys))]
        first = np.unique(cls, return_index=True)[1]  # one arch string per cell
        per_cell = Fitness(combo).scores([cells[i] for i in first])
        report["proxies"]["+".join(combo)] = ceiling(per_cell[cls], cls, acc, args.draws)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print("| proxy | Spearman vs acc | best cell | top-10 mean | best of top 10 | "
          "random best-of-1000 |\n|---|---|---|---|---|---|")
    for name, r in report["proxies"].items():
        print(f"| {name} | {r['spearman']:.3f} | {r['best_cell']:.2f} | {r['top10_mean']:.2f} | "
              f"{r['top10_best']:.2f} | {r['random1000_mean']:.2f} +- {r['random1000_std']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
