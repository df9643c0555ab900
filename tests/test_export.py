"""Exported models: files, reloading without hgnas_ray (TorchScript, ONNX when available),
weights round trip, metrics and argument errors. A tiny macro network on 16 px images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hgnas_ray.errors import ConfigError, ExportError, RegistryError
from hgnas_ray.nn.builder import TaskShape, build_network, genotype_cost
from hgnas_ray.nn.cost import count_params
from hgnas_ray.nn.export import (
    FORMAT_FILES,
    cpu_tensors,
    export_model,
    load_exported,
    remove_stale_tmp,
)
from hgnas_ray.space import MacroGenotype, Stage, sample_cell
from hgnas_ray.space.genotypes import genotype_from_dict

TASK = TaskShape(num_classes=7, input_size=16, in_channels=3)
LATENCY = {"latency_batch_sizes": (1, 4), "latency_runs": 2}


def _genotype() -> MacroGenotype:
    cell = sample_cell(np.random.default_rng(3))
    return MacroGenotype(8, (Stage(cell, 16, 2, 1), Stage(cell, 16, 1, 2)), 24).validate()


def _random_network(genotype: MacroGenotype) -> torch.nn.Module:
    """Random weights and BN statistics, so eval-mode export and reloading both matter."""
    model = build_network(genotype, TASK)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                noise = torch.rand(value.shape, generator=generator)
                value.copy_(noise + 0.5 if key.endswith("running_var") else noise - 0.5)
    return model.eval()


def _images(batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, *TASK.input_shape, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    genotype = _genotype()
    model = _random_network(genotype)
    out = tmp_path_factory.mktemp("run") / "export"
    metrics = export_model(out, genotype, model.state_dict(), TASK, accuracy=71.5,
                           extra_metrics={"trial": "t1"}, device="cpu", **LATENCY)
    return out, genotype, model, metrics


def test_files_are_written_and_no_temporary_file_is_left(exported):
    out, _, _, metrics = exported
    assert set(metrics["files"]) <= {p.name for p in out.iterdir()}
    assert {"genotype.json", "weights.safetensors", "model.pt", "metrics.json"} <= set(
        metrics["files"])
    assert not list(out.glob(".*"))
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_genotype_json_is_a_readable_genotype_with_hash_and_task(exported):
    out, genotype, _, _ = exported
    record = json.loads((out / "genotype.json").read_text())
    assert genotype_from_dict(record) == genotype
    assert record["hash"] == genotype.hash
    assert record["task"] == {"num_classes": 7, "input_size": 16, "in_channels": 3}


def test_metrics_count_the_cost_model_and_name_the_units(exported):
    _, genotype, model, metrics = exported
    cost = genotype_cost(genotype, TASK)
    assert metrics["macs"] == cost.macs and metrics["params"] == cost.params
    assert metrics["flops"] == 2 * metrics["macs"] == 2 * cost.macs
    assert metrics["params"] == count_params(model)
    assert "2 x MACs" in metrics["units"]["flops"]
    assert metrics["accuracy"] == 71.5 and metrics["extra"] == {"trial": "t1"}
    latency = metrics["latency"]
    assert latency["device"] == "cpu" and latency["torch_threads"] >= 1
    assert set(latency["median_ms"]) == {"1", "4"}
    assert all(ms > 0 for ms in latency["median_ms"].values())


def _run_without_hgnas_ray(code: str, cwd: Path) -> None:
    """Run `code` in a fresh interpreter where `import hgnas_ray` fails."""
    prelude = ("import sys\nsys.modules['hgnas_ray'] = None\ntry:\n    import hgnas_ray\n"
               "    raise SystemExit('hgnas_ray is importable')\nexcept ImportError:\n    pass\n")
    result = subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_torchscript_reloads_without_hgnas_ray_and_reproduces_the_logits(exported, tmp_path):
    out, _, model, _ = exported
    images = _images(5)  # another batch size than the trace's
    with torch.no_grad():
        torch.save({"images": images, "logits": model(images)}, tmp_path / "ref.pt")
    _run_without_hgnas_ray(
        "import torch\n"
        f"model = torch.jit.load({str(out / 'model.pt')!r})\n"
        f"ref = torch.load({str(tmp_path / 'ref.pt')!r})\n"
        "with torch.no_grad():\n    logits = model(ref['images'])\n"
        "assert logits.shape == (5, 7), logits.shape\n"
        "assert torch.allclose(logits, ref['logits'], atol=1e-5), "
        "(logits - ref['logits']).abs().max()\n", tmp_path)


def test_onnx_reloads_without_hgnas_ray_and_reproduces_the_logits(exported, tmp_path):
    out, _, model, metrics = exported
    if metrics["formats"]["onnx"] != FORMAT_FILES["onnx"]:
        pytest.skip(f"no model.onnx in this environment: {metrics['formats']['onnx']}")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    images = _images(5)
    with torch.no_grad():
        np.savez(tmp_path / "ref.npz", images=images.numpy(), logits=model(images).numpy())
    _run_without_hgnas_ray(
        "import numpy as np, onnxruntime\n"
        f"session = onnxruntime.InferenceSession({str(out / 'model.onnx')!r})\n"
        f"ref = np.load({str(tmp_path / 'ref.npz')!r})\n"
        "logits = session.run(None, {'images': ref['images']})[0]\n"
        "assert np.allclose(logits, ref['logits'], atol=1e-4)\n", tmp_path)


def test_weights_reload_into_a_fresh_network(exported):
    out, genotype, model, _ = exported
    images = _images()
    fresh = build_network(genotype, TASK)
    fresh.load_state_dict(load_file(str(out / "weights.safetensors")))
    loaded_genotype, loaded = load_exported(out)
    assert loaded_genotype == genotype and not loaded.training
    with torch.no_grad():
        expected = model(images)
        assert torch.allclose(fresh.eval()(images), expected, atol=1e-6)
        assert torch.allclose(loaded(images), expected, atol=1e-6)


def test_shared_and_strided_tensors_are_saved(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {"a": base, "b": base, "t": base.t()}  # shared storage and a transposed view
    save_file(cpu_tensors(tensors), str(tmp_path / "w.safetensors"))
    loaded = load_file(str(tmp_path / "w.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_a_second_export_replaces_the_files_and_removes_stale_temporaries(exported, tmp_path):
    _, genotype, model, _ = exported
    out = tmp_path / "export"
    out.mkdir()
    (out / ".model.pt.999.tmp").write_bytes(b"half a file")
    metrics = export_model(out, genotype, model.state_dict(), TASK, accuracy=None,
                           formats=("torchscript",), device="auto", **LATENCY)
    assert metrics["accuracy"] is None and "onnx" not in metrics["formats"]
    assert not list(out.glob(".*")) and remove_stale_tmp(out) == 0
    assert metrics["latency"]["device"] in ("cpu", "cuda")


def test_weights_of_another_network_are_refused_before_anything_is_written(tmp_path):
    genotype = _genotype()
    other = MacroGenotype(8, (Stage(genotype.stages[0].cell, 32, 2, 1),), 24)
    state = build_network(other, TASK).state_dict()
    with pytest.raises(ExportError, match="do not fit"):
        export_model(tmp_path, genotype, state, TASK, accuracy=50.0, **LATENCY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, error, match", [
    ({"formats": ("tflite",)}, RegistryError, "onnx, torchscript"),
    ({"accuracy": float("nan")}, ConfigError, "percentage"),
    ({"accuracy": 0.5, "extra_metrics": {"x": float("nan")}}, ConfigError, "NaN"),
    ({"latency_batch_sizes": (0,)}, ConfigError, "batch sizes"),
    ({"device": "gpu0"}, ConfigError, "invalid device"),
])
def test_bad_arguments_are_typed_errors(tmp_path, kwargs, error, match):
    genotype = _genotype()
    arguments = {"accuracy": 50.0, **kwargs}
    with pytest.raises(error, match=match):
        export_model(tmp_path / "x", genotype, {}, TASK, **arguments)
    assert not (tmp_path / "x").exists()


def test_loading_an_unfinished_export_names_the_missing_file(tmp_path):
    with pytest.raises(ExportError, match="genotype.json not found"):
        load_exported(tmp_path)
