"""Does a cheap NAS-Bench-201 network rank cells like the benchmark's own network?

Scores the same random distinct cells with the exact network (16 channels, 5 cells per stage,
probe batch 64) and with cheaper settings, on the same CIFAR-10 images, and reports per proxy the
Spearman between each cheap setting and the exact one, and each setting's Spearman with the
CIFAR-10 test accuracy (read from the table: a study, not a search). Resumable: scores go to
CSV files in --out-dir, one per setting, and cells already there are skipped.

    python benchmarks/nb201_network_setting.py --data ../shared/data --cells 150 --out-dir /tmp/ns
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from hgnas_ray.bench import Nb201Table
from hgnas_ray.corpus.scoring import CorpusScorer, ScoringConfig
from hgnas_ray.space import genotype_hash
from hgnas_ray.space.nb201 import sample_nb201

PROXIES = ("tcet", "synflow", "nwot", "snip_snr", "jacov", "params", "snip", "grad_norm")
SETTINGS = {"exact": (16, 5, 64), "c8_1_32": (8, 1, 32), "c16_1_64": (16, 1, 64)}


def cells(n: int, seed: int) -> list[str]:
    rng, seen, out = np.random.default_rng(seed), set(), []
    while len(out) < n:
        g = sample_nb201(rng)
        if genotype_hash(g) not in seen:
            seen.add(genotype_hash(g))
            out.append(g.to_string())
    return out


def score_setting(name: str, archs: list[str], data: str, out_dir: Path) -> dict[str, dict]:
    channels, per_stage, batch = SETTINGS[name]
    path = out_dir / f"{name}.csv"
    done = {}
    if path.is_file():
        with path.open() as handle:
            done = {row["arch"]: row for row in csv.DictReader(handle)}
    todo = [a for a in archs if a not in done]
    if todo:
        config = ScoringConfig(PROXIES, "cifar10", data, batch, 2, True, channels, per_stage)
        scorer = CorpusScorer(config.validate().to_dict())
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, ["arch", *PROXIES])
            if new:
                writer.writeheader()
            start = time.perf_counter()
            for i, arch in enumerate(todo, start=1):
                record = scorer.score_one("", arch)
                row = {"arch": arch, **{p: record[p] for p in PROXIES}}
                writer.writerow(row)
                handle.flush()
                done[arch] = row
                if i % 25 == 0:
                    print(f"{name}: {i}/{len(todo)} {time.perf_counter() - start:.0f}s",
                          file=sys.stderr, flush=True)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("HGNAS_DATA"))
    parser.add_argument("--cells", type=int, default=150)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archs = cells(args.cells, args.seed)
    scores = {name: score_setting(name, archs, args.data, out_dir) for name in SETTINGS}
    table = Nb201Table.load(Path(args.data) / "nb201")
    acc = [table.test_accuracy(a) for a in archs]
    print(f"{len(archs)} cells | proxy | setting | Spearman vs exact | Spearman vs accuracy")
    for proxy in PROXIES:
        exact = [float(scores["exact"][a][proxy]) for a in archs]
        for name in SETTINGS:
            values = [float(scores[name][a][proxy]) for a in archs]
            vs_exact = spearmanr(values, exact, nan_policy="omit").statistic
            vs_acc = spearmanr(values, acc, nan_policy="omit").statistic
            print(f"| {proxy} | {name} | {vs_exact:.3f} | {vs_acc:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
