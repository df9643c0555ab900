"""Final training (`jobs/train.py`, `hgnas_ray.training.final`, the recipes).

Fast tests: the recipes hold the paper's values, the augmentations change images reproducibly
from a seed (and leave the global RNG alone), mixup / label smoothing / distillation change the
loss, squeeze-excite is opt-in, bad inputs are one-line errors before Ray starts. One Ray test
(one local Ray for the module): a 1-epoch run of 2 batches on digits with 1 Ray Train worker
writes metrics and weights, and the same command with --epochs 2 continues from epoch 1's
checkpoint. The corrupted-checkpoint test (a third Ray Train run) is marked slow.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hgnas_ray.data import TaskInfo, load_task
from hgnas_ray.errors import ConfigError, RegistryError
from hgnas_ray.nn.builder import TaskShape, build_network, genotype_cost
from hgnas_ray.nn.cost import count_params
from hgnas_ray.space.macro import MacroGenotype
from hgnas_ray.space.nb201 import Nb201Genotype
from hgnas_ray.training.augment import auto_augment, mixup, random_erasing
from hgnas_ray.training.final import (
    augment_images,
    distillation_loss,
    final_network,
    read_teacher,
    recipe_loss,
)
from hgnas_ray.training.recipes import RECIPES, get_recipe

JOB = Path(__file__).resolve().parents[1] / "jobs" / "train.py"
TINY = ('{"space": "macro", "stem_channels": 8, "stages": [{"cell": {"space": "cell", '
        '"ops": ["conv", "none", "none", "none", "none", "none"], "kernels": [3, 0, 0, 0, 0, '
        '0], "edges": [[0, 1], [0, 7], [1, 7]]}, "channels": 16, "stride": 2, "repeats": 1}], '
        '"final_channels": 32}')


def _job_main(argv):
    spec = importlib.util.spec_from_file_location("final_train_job", JOB)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job.main(argv)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits", "train")


@pytest.fixture()
def genotype_file(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text(TINY + "\n")
    return path


def _images(n=6, size=32, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)


# ---------------------------------------------------------------------- recipes
def test_recipes_hold_the_papers_values():
    cifar, imagenet = get_recipe("cifar"), get_recipe("imagenet")
    assert (cifar.epochs, imagenet.epochs) == (1440, 480)
    for recipe in (cifar, imagenet):
        assert (recipe.momentum, recipe.nesterov, recipe.lr_per_256) == (0.9, True, 0.1)
        assert recipe.schedule == "cosine" and recipe.label_smoothing == 0.1
        assert recipe.mixup_alpha == 0.2 and recipe.random_erasing > 0
        assert recipe.autoaugment is not None
        recipe.validate()
    assert (cifar.weight_decay, imagenet.weight_decay) == (5e-4, 4e-5)
    assert cifar.autoaugment == "cifar10" and cifar.crop == "pad"
    assert not cifar.squeeze_excite and imagenet.squeeze_excite
    assert cifar.lr(256) == pytest.approx(0.1) and cifar.lr(1024) == pytest.approx(0.4)
    assert set(RECIPES) == {"cifar", "imagenet"}
    with pytest.raises(RegistryError, match="cifar, imagenet"):
        get_recipe("mnist")
    assert cifar.replace(epochs=2, batch_size=None).epochs == 2  # None: not given
    with pytest.raises(ConfigError, match="epochs"):
        cifar.replace(epochs=0)
    with pytest.raises(ConfigError, match="unknown recipe field"):
        cifar.replace(warmup=5)


# ---------------------------------------------------------------------- augmentation
def test_recipe_augmentation_changes_images_and_is_reproducible_from_the_seed(digits):
    recipe = get_recipe("cifar").replace(mixup_alpha=0.0)
    images, labels = _images(), np.arange(6)
    info = TaskInfo("rgb", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    global_state = torch.get_rng_state()
    first = augment_images(images, labels, info, recipe, torch.Generator().manual_seed(1))
    again = augment_images(images, labels, info, recipe, torch.Generator().manual_seed(1))
    other = augment_images(images, labels, info, recipe, torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), global_state)  # AutoAugment ran in fork_rng
    plain = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])
    assert first[0].shape == plain.shape and not torch.allclose(first[0], plain)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    augmented = auto_augment(x, torch.Generator().manual_seed(0), "cifar10")
    assert augmented.dtype == torch.uint8 and augmented.shape == x.shape
    assert any(not torch.equal(a, b) for a, b in zip(augmented, x, strict=True))
    imagenet = get_recipe("imagenet").replace(mixup_alpha=0.0)
    resized = augment_images(images, labels, info, imagenet, torch.Generator().manual_seed(1))
    assert resized[0].shape == plain.shape and not torch.allclose(resized[0], plain)


def test_random_erasing_replaces_a_rectangle_per_image():
    x = torch.zeros(8, 3, 16, 16)
    erased = random_erasing(x, torch.Generator().manual_seed(0), probability=1.0)
    changed = (erased != 0).any(1)  # (B, H, W)
    assert all(changed[i].any() for i in range(8))
    area = changed.float().mean((1, 2))
    assert ((area > 0) & (area < 0.5)).all()  # one rectangle, 2-33 % of the image (+ rounding)
    assert torch.equal(random_erasing(x, torch.Generator(), probability=0.0), x)


def test_mixup_and_label_smoothing_change_the_loss_reproducibly():
    x, y = torch.randn(8, 3, 4, 4), torch.arange(8)
    mixed, ya, yb, lam = mixup(x, y, 0.2, torch.Generator().manual_seed(3))
    again = mixup(x, y, 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(mixed, again[0]) and lam == again[3] and 0 < lam < 1
    assert torch.equal(ya, y) and sorted(yb.tolist()) == y.tolist()  # yb: the permutation
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[yb])
    assert mixup(x, y, 0.0, torch.Generator())[3] == 1.0
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8))
    recipe = get_recipe("cifar")
    loss = recipe_loss(model, recipe, torch.device("cpu"))
    logits = model(mixed)
    with torch.no_grad():
        # lam ~ Beta(0.2, 0.2) is often near 0 or 1: the loss is checked at lam = 0.5
        mixed_loss = float(loss((mixed, ya, yb, 0.5), None)["loss"])
        plain = float(loss((mixed, ya, ya, 1.0), None)["loss"])
        expected = 0.5 * F.cross_entropy(logits, ya, label_smoothing=0.1) + 0.5 * \
            F.cross_entropy(logits, yb, label_smoothing=0.1)
        unsmoothed = recipe_loss(model, recipe.replace(label_smoothing=0.0), torch.device("cpu"))
        no_smoothing = float(unsmoothed((mixed, ya, ya, 1.0), None)["loss"])
    assert mixed_loss == pytest.approx(float(expected), rel=1e-5)
    assert mixed_loss != pytest.approx(plain) and plain != pytest.approx(no_smoothing)


def test_distillation_mixes_the_teachers_softened_logits_into_the_loss():
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        assert float(distillation_loss(student(x), student(x), 2.0)) == pytest.approx(0, abs=1e-6)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    recipe = get_recipe("imagenet").replace(distill_weight=0.25, distill_temperature=2.0)
    with torch.no_grad():
        terms = recipe_loss(student, recipe, torch.device("cpu"), teacher)((x, y, y, 1.0), None)
        soft = distillation_loss(student(x), teacher(x), 2.0)
    assert float(terms["distillation"]) == pytest.approx(float(soft), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(
        0.75 * float(terms["cross_entropy"]) + 0.25 * float(soft), rel=1e-5)


def test_a_torchscript_teacher_is_checked_against_the_task(tmp_path, digits):
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    path = tmp_path / "teacher.pt"
    torch.jit.trace(teacher, torch.zeros(2, 1, 8, 8)).save(str(path))
    data = read_teacher(path, digits.info)
    assert data == path.read_bytes()
    wrong = tmp_path / "wrong.pt"
    torch.jit.trace(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval(),
                    torch.zeros(2, 1, 8, 8)).save(str(wrong))
    with pytest.raises(ConfigError, match=r"not \(2, 10\) logits"):
        read_teacher(wrong, digits.info)


# ---------------------------------------------------------------------- squeeze-excite
def test_squeeze_excite_is_opt_in_and_counted(digits):
    genotype = MacroGenotype.from_json(TINY)
    task = TaskShape(10, 32, 3)
    plain, with_se = build_network(genotype, task), build_network(genotype, task,
                                                                  squeeze_excite=True)
    assert genotype_cost(genotype, task).params == count_params(plain)  # unchanged default
    cost = genotype_cost(genotype, task, squeeze_excite=True)
    assert cost.params == count_params(with_se) > count_params(plain)
    assert with_se(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert "squeeze_excite=True" in repr(with_se)
    net = final_network(genotype, digits.info, get_recipe("imagenet"))
    assert any(type(m).__name__ == "SqueezeExcite" for m in net.modules())
    with pytest.raises(ConfigError, match="NAS-Bench-201"):
        build_network(Nb201Genotype.from_string(
            "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"),
            squeeze_excite=True)


# ---------------------------------------------------------------------- bad input
def _one_line_error(capsys, argv, match):
    assert _job_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error:") and match in err[0], err
    return err[0]


def test_bad_inputs_are_one_line_errors_naming_the_fix(capsys, tmp_path, genotype_file):
    base = ["--recipe", "cifar", "--task", "digits", "--out", str(tmp_path / "out")]
    line = _one_line_error(capsys, ["--genotype", str(tmp_path / "missing.json"), *base],
                           "not found")
    assert "export/genotype.json" in line
    bad = tmp_path / "bad.json"
    bad.write_text('{"stem_channels": 8,')
    _one_line_error(capsys, ["--genotype", str(bad), *base], "not valid JSON")
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({**json.loads(TINY), "hash": "0" * 16}))
    _one_line_error(capsys, ["--genotype", str(edited), *base], "the file was edited")
    _one_line_error(capsys, ["--genotype", str(genotype_file), "--recipe", "cifar", "--data",
                             str(tmp_path / "nodata")], "is not a directory")
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"not a model")
    _one_line_error(capsys, ["--genotype", str(genotype_file), *base, "--teacher",
                             str(teacher)], "cannot load teacher")
    _one_line_error(capsys, ["--genotype", str(genotype_file), "--recipe", "imagenet"],
                    "needs --task")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- on Ray Train
def _train(genotype_file, out, epochs, *extra):
    return _job_main(["--genotype", str(genotype_file), "--recipe", "cifar", "--task", "digits",
                 "--epochs", str(epochs), "--max-batches-per-epoch", "2", "--batch-size", "16",
                 "--workers", "1", "--out", str(out), *extra])


@pytest.mark.ray
def test_one_epoch_on_ray_train_then_resume_for_a_second(local_ray, genotype_file, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "final"
    assert _train(genotype_file, out, 1) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in first["history"]] == [1] and first["epochs"] == 1
    assert 0 <= first["test_accuracy"] <= 100 and first["task"]["test_images"] == 359
    assert first["recipe"]["epochs"] == 1 and first["squeeze_excite"] is False
    weights = load_file(str(out / "weights.safetensors"))
    network = final_network(MacroGenotype.from_json(TINY), load_task("digits", "test").info,
                            get_recipe("cifar"))
    network.load_state_dict(weights)
    assert first["params"] == count_params(network)

    assert _train(genotype_file, out, 2) == 0  # the same command, one more epoch
    second = json.loads((out / "metrics.json").read_text())
    assert second["resumed_from"] == 1 and [e["epoch"] for e in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 1 kept, not trained again
    assert not torch.equal(load_file(str(out / "weights.safetensors"))["classifier.weight"],
                           weights["classifier.weight"])


@pytest.mark.ray
@pytest.mark.slow
def test_an_unreadable_latest_checkpoint_is_named_and_the_previous_one_used(
        local_ray, genotype_file, tmp_path, caplog):
    out = tmp_path / "final"
    assert _train(genotype_file, out, 2) == 0
    latest = out / "runs" / "final" / "epoch-00002" / "state.pt"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated
    assert _train(genotype_file, out, 3) == 0
    assert any("epoch-00002" in r.getMessage() and "unreadable" in r.getMessage()
               for r in caplog.records)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == 1 and [e["epoch"] for e in metrics["history"]] == [1, 2, 3]
    # the re-trained epoch 2 did not reuse the damaged folder's name
    assert list((out / "runs" / "final").glob("epoch-00002-r*"))
