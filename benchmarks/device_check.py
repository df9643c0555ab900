"""The accelerator path, checked and timed against this machine's CPU in the same run (no Ray).

    python benchmarks/device_check.py --corpus SCORED_CORPUS --task TASK [--data ROOT] \\
        --out DIR [--cells 64] [--cpu-cells 8] [--gvae-epochs 3] [--ccnf-steps 3]

Sections, each timed on CUDA and on the CPU (all its cores) with the same inputs:
  proxies  the paper-sized scoring skeleton (16 channels, 5 cells per stage, batch 64) on the
           first --cells corpus cells on CUDA and the first --cpu-cells on the CPU: seconds per
           cell, and per proxy the largest relative difference between the two devices' values
           on the shared cells.
  gvae     G-VAE (default size) training epochs over the whole corpus, batch 64: seconds per
           epoch, final loss terms.
  ccnf     CCNF training steps at the paper's setting (dopri5, atol = rtol = 1e-5, adjoint,
           batch 64) on latents of the CUDA-trained G-VAE: seconds per step; then sampling 1,000
           latents at tau 0.4 and decoding them: seconds, distinct cells.
Without CUDA the CUDA columns are skipped (the script still runs, for a dry run on a laptop).
Results go to OUT/device_check.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from hgnas_ray.corpus.reading import load_scored_corpus
from hgnas_ray.evaluation import PAPER_BATCH, PAPER_SKELETON, Evaluator, load_probe
from hgnas_ray.generator.cells.zc import ZCTransform, default_log_scaled
from hgnas_ray.models import CCNF, GVAE, CCNFConfig, GVAEConfig
from hgnas_ray.training import CellGraphDataset, TrainConfig, train_ccnf, train_gvae
from hgnas_ray.training.gvae import gvae_latents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", required=True, help="scored corpus folder")
    parser.add_argument("--task", default="cifar10", help="task name or dataset path")
    parser.add_argument("--data", default=None, help="data root (default: HGNAS_DATA)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--cells", type=int, default=64)
    parser.add_argument("--cpu-cells", type=int, default=8)
    parser.add_argument("--gvae-epochs", type=int, default=3)
    parser.add_argument("--ccnf-steps", type=int, default=3)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    report: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                    "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name() if cuda else None}
    devices = (["cuda"] if cuda else []) + ["cpu"]
    corpus = load_scored_corpus(args.corpus)
    state: dict = {}
    for name, section in (("proxies", _proxies), ("gvae", _gvae), ("ccnf", _ccnf)):
        try:
            report[name] = section(args, corpus, devices, state)
        except Exception as err:  # report the failure and go on with the next section
            report[name] = {"error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc(limit=6)}
        (out / "device_check.json").write_text(json.dumps(report, indent=1, default=float))
        print(f"[{name}] {json.dumps(report[name], default=float)}", flush=True)
    return 0


def _proxies(args, corpus, devices, state) -> dict:
    proxies = corpus.proxies
    batches, task = load_probe(args.task, args.data, batch_size=PAPER_BATCH)
    result: dict = {"skeleton": str(PAPER_SKELETON), "batch": PAPER_BATCH, "proxies": proxies}
    values: dict[str, np.ndarray] = {}
    for device in devices:
        n = args.cells if device == "cuda" else args.cpu_cells
        scorer = Evaluator(proxies, batches, task, PAPER_SKELETON, device=device)
        scorer(corpus.cells[0])  # warm-up (CUDA context, kernels)
        start = _sync_time(device)
        records = [scorer(cell) for cell in corpus.cells[:n]]
        seconds = _sync_time(device) - start
        values[device] = np.array([[r[p] for p in proxies] for r in records], dtype=float)
        result[device] = {"cells": n, "s_per_cell": seconds / n,
                          "failed": int(sum(any(r[f"{p}_status"] != "ok" for p in proxies)
                                            for r in records))}
    if "cuda" in values:
        shared = min(len(values["cuda"]), len(values["cpu"]))
        a, b = values["cuda"][:shared], values["cpu"][:shared]
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
        result["max_rel_diff_cuda_vs_cpu"] = dict(zip(proxies, np.nanmax(rel, axis=0).tolist(),
                                                      strict=True))
        result["speedup"] = result["cpu"]["s_per_cell"] / result["cuda"]["s_per_cell"]
    return result


def _gvae(args, corpus, devices, state) -> dict:
    zc = ZCTransform(corpus.proxies, default_log_scaled(corpus.proxies)).fit(
        corpus.zc[corpus.labelled]).transform(corpus.zc)
    dataset = CellGraphDataset(corpus.cells, zc, cond_dim=len(corpus.proxies))
    result: dict = {"cells": len(dataset), "batch": 64}
    for device in devices:
        epochs = args.gvae_epochs if device == "cuda" else 1
        torch.manual_seed(0)
        model = GVAE(GVAEConfig(cond_dim=len(corpus.proxies)))
        times: list[float] = []
        last: dict = {}

        def record(epoch, metrics, _state, times=times, last=last, device=device):
            times.append(_sync_time(device))
            last.update(metrics)

        start = _sync_time(device)
        train_gvae(model, dataset, TrainConfig(epochs=epochs, batch_size=64, device=device),
                   record)
        # the first epoch includes moving the model and warming up kernels: report both
        epoch_times = np.diff([start, *times])
        result[device] = {"epochs": epochs, "first_epoch_s": float(epoch_times[0]),
                          "later_epoch_s": (float(epoch_times[1:].mean()) if epochs > 1
                                            else None),
                          "final": {k: round(float(v), 4) for k, v in last.items()}}
        if device == devices[0]:
            state["gvae"] = model
            state["dataset"] = dataset
            state["zc"] = zc
    cpu, gpu = result["cpu"], result.get("cuda")
    if gpu and gpu["later_epoch_s"]:
        result["speedup"] = cpu["first_epoch_s"] / gpu["later_epoch_s"]
    return result


def _ccnf(args, corpus, devices, state) -> dict:
    gvae = state["gvae"]
    mu, _ = gvae_latents(gvae, state["dataset"])
    labelled = corpus.labelled
    latents, conditions = mu[labelled], state["zc"][labelled]
    result: dict = {"setting": "dopri5, atol = rtol = 1e-5, adjoint, batch 64",
                    "pairs": len(latents)}
    for device in devices:
        steps = args.ccnf_steps if device == "cuda" else 1
        torch.manual_seed(0)
        config = CCNFConfig(latent_dim=gvae.config.latent_dim, cond_dim=conditions.shape[1])
        ccnf = CCNF(config)
        n = steps * 64
        times: list[float] = []
        losses: list[float] = []
        start = _sync_time(device)
        train_ccnf(ccnf, latents[:n], conditions[:n],
                   TrainConfig(epochs=1, batch_size=64, device=device),
                   lambda epoch, metrics, _s, losses=losses: losses.append(metrics["loss"]))
        times.append(_sync_time(device) - start)
        entry = {"steps": steps, "s_per_step": times[0] / steps, "loss": losses[-1]}
        if device == devices[0]:
            entry.update(_sample(ccnf.to(device), gvae.to(device), conditions, device,
                                 corpus.space))
        result[device] = entry
    if "cuda" in result:
        result["speedup"] = result["cpu"]["s_per_step"] / result["cuda"]["s_per_step"]
    return result


@torch.no_grad()
def _sample(ccnf, gvae, conditions, device, space: str) -> dict:
    ccnf.eval()
    gvae.eval()
    condition = torch.as_tensor(conditions.mean(axis=0), dtype=torch.float32, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    start = _sync_time(device)
    z = ccnf.sample(condition, n=1000, temperature=0.4, generator=generator)
    cells = gvae.decode_cells(z, space)  # the repairing decoder: always valid cells
    seconds = _sync_time(device) - start
    return {"sample_1000_s": seconds, "distinct": len({c.hash for c in cells})}


def _sync_time(device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


if __name__ == "__main__":
    sys.exit(main())
