"""Export a trained network as files another program can use without this package.

    export_model(out_dir, genotype, state_dict, task, *, accuracy, extra_metrics=None,
                 formats=("torchscript", "onnx"), device="auto", latency_batch_sizes=(1, 64),
                 latency_runs=10, skeleton=SkeletonSize()) -> metrics (the metrics.json dict)
    load_exported(out_dir, device="cpu") -> (genotype, network in eval mode with the weights)

Files in `out_dir` (e.g. run_dir/export), each written to a temporary file and renamed, so a kill
never leaves half a file; metrics.json comes last, so its presence means the export is complete:

    genotype.json        the genotype's dict (what `genotype_from_dict` and `--genotype` read)
                         plus "hash", "task" {num_classes, input_size, in_channels}, "skeleton"
    weights.safetensors  the state dict on the CPU (contiguous, no shared storage)
    model.pt             TorchScript, traced in eval mode on the CPU; `torch.jit.load` alone
                         runs it: (N, C, H, W) float images -> (N, num_classes) logits
    model.onnx           only when the optional `onnx` package is installed; otherwise metrics
                         record "onnx": "skipped: <reason>" under "formats"
    metrics.json         accuracy (percent or null), params, macs and flops (= 2 x macs, per
                         image, from the exact cost model), latency on the run's device, the
                         files written, the torch version, and `extra_metrics` under "extra"
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import math
import platform
import statistics
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hgnas_ray.errors import ConfigError, ExportError, unknown_name
from hgnas_ray.files import TMP_SUFFIX, write_atomic
from hgnas_ray.nn.builder import Genotype, SkeletonSize, TaskShape, build_network, genotype_cost
from hgnas_ray.nn.device import resolve_device
from hgnas_ray.space.genotypes import genotype_from_dict, genotype_hash

log = logging.getLogger(__name__)
FORMATS = ("torchscript", "onnx")
GENOTYPE_FILE, WEIGHTS_FILE, METRICS_FILE = "genotype.json", "weights.safetensors", "metrics.json"
FORMAT_FILES = {"torchscript": "model.pt", "onnx": "model.onnx"}
LATENCY_WARMUP = 3
DEFAULT_SKELETON = SkeletonSize()  # cell and NAS-Bench-201 genotypes only
METRIC_UNITS = {
    "accuracy": "percent, as the caller measured it (the search job: see extra.accuracy_is)",
    "params": "trainable parameters of the network (count; BN running statistics excluded)",
    "macs": "multiply-accumulates of one forward pass of one image",
    "flops": "FLOPs = 2 x MACs, one forward pass of one image",
    "latency": "milliseconds per forward pass of one batch, median over runs after warm-up",
}


def export_model(out_dir: str | Path, genotype: Genotype, state_dict: Mapping[str, Tensor],
                 task: TaskShape, *, accuracy: float | None,
                 extra_metrics: Mapping[str, Any] | None = None,
                 formats: Sequence[str] = FORMATS, device: str = "auto",
                 latency_batch_sizes: Sequence[int] = (1, 64), latency_runs: int = 10,
                 skeleton: SkeletonSize = DEFAULT_SKELETON) -> dict[str, Any]:
    """Write the export files (module doc) and return the metrics written to metrics.json.

    Raises ExportError when `state_dict` does not fit the genotype's network, and
    ConfigError/RegistryError for bad arguments (checked before anything is written)."""
    _check_arguments(accuracy, extra_metrics, formats, latency_batch_sizes, latency_runs)
    run_device = resolve_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out)
    model = _network(genotype, state_dict, task, skeleton)
    example = _images(task, 2)
    _write_json(out / GENOTYPE_FILE, genotype_record(genotype, task, skeleton))
    write_atomic(out / WEIGHTS_FILE, lambda tmp: save_file(
        cpu_tensors(state_dict), str(tmp), metadata={"hash": genotype_hash(genotype)}))
    written = {"torchscript": _export_torchscript, "onnx": _export_onnx}
    done = {name: written[name](model, example, out / FORMAT_FILES[name]) for name in formats}
    cost = genotype_cost(genotype, task, skeleton)
    metrics = {
        "hash": genotype_hash(genotype), "task": _task_dict(task),
        "accuracy": accuracy, "params": cost.params, "macs": cost.macs, "flops": 2 * cost.macs,
        "units": METRIC_UNITS,
        "latency": measure_latency(model, task, run_device, latency_batch_sizes, latency_runs),
        "formats": done,
        "files": [GENOTYPE_FILE, WEIGHTS_FILE]
                 + [FORMAT_FILES[n] for n in formats if done[n] == FORMAT_FILES[n]]
                 + [METRICS_FILE],
        "torch_version": torch.__version__, "extra": dict(extra_metrics or {}),
    }
    _write_json(out / METRICS_FILE, metrics)
    return metrics


def load_exported(out_dir: str | Path, device: str = "cpu") -> tuple[Genotype, nn.Module]:
    """The genotype and its network (eval mode, on `device`) with the exported weights."""
    out = Path(out_dir)
    for name in (GENOTYPE_FILE, WEIGHTS_FILE):
        if not (out / name).is_file():
            raise ExportError(f"{out / name} not found; {out} is not a finished export (run "
                              "export_model, or the search's export stage, again)")
    record = _read_json(out / GENOTYPE_FILE)
    genotype = genotype_from_dict(record)
    if record.get("hash") not in (None, genotype_hash(genotype)):
        raise ExportError(f"{out / GENOTYPE_FILE} names hash {record['hash']} but its genotype "
                          f"hashes to {genotype_hash(genotype)}; the file was edited")
    try:
        task = TaskShape(**record.get("task", {}))
        skeleton = SkeletonSize(**record.get("skeleton", {}))
    except TypeError as err:
        raise ExportError(f"{out / GENOTYPE_FILE} has a malformed task or skeleton: {err}; "
                          "export the model again") from None
    weights = load_file(str(out / WEIGHTS_FILE), device="cpu")
    model = _network(genotype, weights, task, skeleton)
    return genotype, model.to(resolve_device(device))


def genotype_record(genotype: Genotype, task: TaskShape, skeleton: SkeletonSize) -> dict:
    """genotype.json: the genotype's own dict (readable as a genotype) with its hash and task."""
    return {**genotype.to_dict(), "hash": genotype_hash(genotype), "task": _task_dict(task),
            "skeleton": {"channels": skeleton.channels,
                         "cells_per_stage": skeleton.cells_per_stage}}


def cpu_tensors(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached contiguous CPU copies, one storage each: safetensors refuses shared or strided
    tensors (tied weights, views), and a CUDA state dict must not be saved as CUDA."""
    return {key: value.detach().to("cpu", copy=True).contiguous()
            for key, value in state_dict.items()}


def measure_latency(model: nn.Module, task: TaskShape, device: torch.device,
                    batch_sizes: Sequence[int], runs: int) -> dict[str, Any]:
    """Median milliseconds of a forward pass per batch size on `device` (eval, no grad), after
    LATENCY_WARMUP passes; a batch size that runs out of device memory is recorded as skipped."""
    model = copy.deepcopy(model).eval().to(device)
    median_ms: dict[str, float | str] = {}
    for batch in batch_sizes:
        try:
            median_ms[str(batch)] = _median_ms(model, _images(task, batch).to(device), runs)
        except torch.OutOfMemoryError:
            median_ms[str(batch)] = "skipped: out of memory"
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"device": str(device), "device_name": _device_name(device),
            "torch_threads": torch.get_num_threads(), "warmup": LATENCY_WARMUP, "runs": runs,
            "median_ms": median_ms}


def remove_stale_tmp(folder: str | Path) -> int:
    """Delete temporary files a killed export left in `folder`; return how many."""
    stale = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


# ---------------------------------------------------------------------- arguments and building
def _check_arguments(accuracy: float | None, extra: Mapping[str, Any] | None,
                     formats: Sequence[str], batch_sizes: Sequence[int], runs: int) -> None:
    """The one gate for export_model's arguments, before any file is written."""
    for name in formats:
        if name not in FORMATS:
            raise unknown_name("export format", name, FORMATS)
    if accuracy is not None and not (isinstance(accuracy, int | float) and math.isfinite(accuracy)
                                     and 0 <= accuracy <= 100):
        raise ConfigError(f"accuracy must be None or a percentage in [0, 100]; got {accuracy!r}")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes) or runs < 1:
        raise ConfigError(f"latency batch sizes must be ints >= 1 and runs >= 1; got "
                          f"{list(batch_sizes)!r} and {runs!r}")
    try:
        json.dumps(dict(extra or {}), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"extra_metrics must be JSON-serialisable without NaN/inf: {err}; "
                          "pass plain numbers (None for a missing value) and strings") from None


def _network(genotype: Genotype, state_dict: Mapping[str, Tensor], task: TaskShape,
             skeleton: SkeletonSize) -> nn.Module:
    model = build_network(genotype, task, skeleton)
    try:
        model.load_state_dict({k: v.detach().cpu() for k, v in state_dict.items()}, strict=True)
    except RuntimeError as err:
        raise ExportError(f"the weights do not fit genotype {genotype_hash(genotype)} on task "
                          f"{_task_dict(task)}: {err}; pass the state dict of the network "
                          "build_network(genotype, task) made") from None
    return model.eval()


def _images(task: TaskShape, batch: int) -> Tensor:
    """A fixed random batch (N, C, H, W): tracing and timing need inputs, not real images."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, *task.input_shape, generator=generator)



def _task_dict(task: TaskShape) -> dict[str, int]:
    return {"num_classes": task.num_classes, "input_size": task.input_size,
            "in_channels": task.in_channels}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


@torch.inference_mode()
def _median_ms(model: nn.Module, images: Tensor, runs: int) -> float:
    times = []
    for step in range(LATENCY_WARMUP + runs):
        _synchronize(images.device)
        start = time.perf_counter()
        model(images)
        _synchronize(images.device)
        if step >= LATENCY_WARMUP:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------- formats
def _export_torchscript(model: nn.Module, example: Tensor, path: Path) -> str:
    """Trace on the CPU in eval mode (the traced graph keeps the batch dimension free)."""
    with warnings.catch_warnings():  # torch marks jit as deprecated; it is still the format
        warnings.simplefilter("ignore", FutureWarning)  # that loads without Python classes
        traced = torch.jit.trace(model.cpu().eval(), example)
        write_atomic(path, lambda tmp: torch.jit.save(traced, str(tmp)))
    return path.name


def _export_onnx(model: nn.Module, example: Tensor, path: Path) -> str:
    """model.onnx, or why not: the `onnx` package is optional and not a dependency."""
    if importlib.util.find_spec("onnx") is None:
        reason = "skipped: the onnx package is not installed (pip install onnx to export it)"
        log.info("ONNX export %s", reason)
        return reason
    axes = {"images": {0: "batch"}, "logits": {0: "batch"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            write_atomic(path, lambda tmp: torch.onnx.export(
                model.cpu().eval(), (example,), str(tmp), dynamo=False, input_names=["images"],
                output_names=["logits"], dynamic_axes=axes, opset_version=17))
    except (RuntimeError, ImportError, ValueError) as err:  # recorded: the other files stand
        log.warning("ONNX export failed: %s", err)
        return f"failed: {type(err).__name__}: {err}"
    return path.name





def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"cannot read {path}: {err}; export the model again") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path} holds a {type(data).__name__}, not a genotype object")
    return data
