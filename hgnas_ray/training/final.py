"""Final training of a chosen network with a paper recipe, on the project's one loop (no Ray).

    final_network(genotype, info, recipe, skeleton=SkeletonSize()) -> nn.Module (seeded)
    recipe_batches(data, recipe, rows=None) -> batches(generator) for `loop.fit`
    recipe_loss(model, recipe, device, teacher=None) -> loss_fn(batch, generator) for `loop.fit`
    train_final(model, data, recipe, config, callback=None, state=None, *, rows=None,
                teacher=None) -> loop state
    count_correct(model, data, rows, device, batch_size=256) -> (correct, total)
    read_genotype_file(path) -> (genotype, skeleton)   # export/genotype.json or one genotype
    read_teacher(path, info) -> TorchScript bytes       # checked: loads, maps images to logits
    write_results(out, metrics, state_dict)             # metrics.json + weights.safetensors

A batch is augmented on the CPU from the uint8 images: random crop (padded or resized) and flip,
AutoAugment, normalisation, random erasing, then mixup. It is (x, y, y_mixed, lam) and the loss
is lam CE(logits, y) + (1 - lam) CE(logits, y_mixed), both with label smoothing; with a teacher
(a TorchScript module mapping the same normalised images to logits over the same classes) the
loss is (1 - w) hard + w T^2 KL(softmax(teacher / T) || softmax(student / T)). Every random draw
comes from the loop's generator, so a resumed run sees the batches an uninterrupted one would.

`rows` restricts training to one worker's shard; `config.lr` is the initial learning rate (the
caller scales it with the global batch: `recipe.lr(workers * recipe.batch_size)`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgnas_ray.data import ArrayDataset, TaskInfo
from hgnas_ray.errors import ConfigError, GenotypeError
from hgnas_ray.files import write_atomic
from hgnas_ray.nn.builder import Genotype, SkeletonSize, TaskShape, build_network
from hgnas_ray.space.genotypes import genotype_from_dict, genotype_hash, parse_genotype
from hgnas_ray.training.augment import (
    auto_augment,
    mixup,
    normalize,
    random_erasing,
    random_flip,
    random_resized_crop,
)
from hgnas_ray.training.candidates import CosineSchedule, augment_batch
from hgnas_ray.training.config import TrainConfig
from hgnas_ray.training.loop import Callback, fit
from hgnas_ray.training.recipes import Recipe

Batch = tuple[Tensor, Tensor, Tensor, float]  # x (B, C, H, W) float, y (B,), y_mixed (B,), lam
METRICS_FILE, WEIGHTS_FILE = "metrics.json", "weights.safetensors"
DEFAULT_SKELETON = SkeletonSize()  # cell and NAS-Bench-201 genotypes only


def final_network(genotype: Genotype, info: TaskInfo, recipe: Recipe,
                  skeleton: SkeletonSize = DEFAULT_SKELETON) -> nn.Module:
    """The genotype's network for the task (squeeze-excite as the recipe says), its initial
    weights drawn from `recipe.seed` without touching the global RNG."""
    channels, height, _ = info.input_shape
    task = TaskShape(num_classes=info.num_classes, input_size=height, in_channels=channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        return build_network(genotype, task, skeleton, squeeze_excite=recipe.squeeze_excite)


def steps_per_epoch(n_rows: int, recipe: Recipe) -> int:
    """Full batches per epoch (a last partial batch is dropped), at most max_batches_per_epoch."""
    steps = max(1, n_rows // recipe.batch_size)
    return min(steps, recipe.max_batches_per_epoch or steps)


def augment_images(images: np.ndarray, labels: np.ndarray, info: TaskInfo, recipe: Recipe,
                   generator: torch.Generator) -> Batch:
    """The recipe's augmentation of uint8 NHWC `images`. Shapes: (B, H, W, C) -> Batch."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # uint8 (B, C, H, W)
    if recipe.crop == "pad":
        x = augment_batch(x, generator)  # pad 4, random crop, flip
    else:
        x = random_flip(random_resized_crop(x, generator), generator)
    if recipe.autoaugment is not None:
        x = auto_augment(x, generator, recipe.autoaugment)
    x = normalize(x, info.mean, info.std)
    if recipe.random_erasing > 0:
        x = random_erasing(x, generator, recipe.random_erasing)
    return mixup(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)), recipe.mixup_alpha,
                 generator)


def recipe_batches(data: ArrayDataset, recipe: Recipe, rows: np.ndarray | None = None
                   ) -> Callable[[torch.Generator], Iterator[Batch]]:
    """One epoch of augmented batches over `rows` of `data` (all rows when None), shuffled by
    the loop's generator."""
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    steps, size = steps_per_epoch(len(rows), recipe), recipe.batch_size

    def batches(generator: torch.Generator) -> Iterator[Batch]:
        order = rows[torch.randperm(len(rows), generator=generator).numpy()]
        for step in range(steps):
            index = order[step * size:(step + 1) * size]
            yield augment_images(data.images[index], data.labels[index], data.info, recipe,
                                 generator)

    return batches


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T^2 KL(softmax(teacher / T) || softmax(student / T)), mean over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def recipe_loss(model: nn.Module, recipe: Recipe, device: torch.device,
                teacher: nn.Module | None = None
                ) -> Callable[[Batch, torch.Generator], dict[str, Tensor]]:
    """The loss of a Batch: mixed, label-smoothed cross-entropy, distilled when a teacher is
    given. Reports "loss", "cross_entropy" and (with a teacher) "distillation"."""
    smoothing = recipe.label_smoothing

    def loss_fn(batch: Batch, _generator: torch.Generator) -> dict[str, Tensor]:
        x, y, y_mixed = (t.to(device, non_blocking=True) for t in batch[:3])
        lam = batch[3]
        logits = model(x)
        hard = lam * F.cross_entropy(logits, y, label_smoothing=smoothing)
        if lam < 1.0:
            hard = hard + (1.0 - lam) * F.cross_entropy(logits, y_mixed,
                                                        label_smoothing=smoothing)
        if teacher is None:
            return {"loss": hard, "cross_entropy": hard.detach()}
        with torch.no_grad():
            target = teacher(x)
        soft = distillation_loss(logits, target, recipe.distill_temperature)
        w = recipe.distill_weight
        return {"loss": (1.0 - w) * hard + w * soft, "cross_entropy": hard.detach(),
                "distillation": soft.detach()}

    return loss_fn


def loop_config(recipe: Recipe, lr: float, device: str, seed_offset: int = 0) -> TrainConfig:
    """`loop.fit`'s config for a recipe: its epochs and gradient clipping, the given initial
    learning rate, and the loop generator seeded with recipe.seed + seed_offset (e.g. a rank)."""
    return TrainConfig(epochs=recipe.epochs, lr=lr, batch_size=recipe.batch_size,
                       seed=recipe.seed + seed_offset, device=device,
                       weight_decay=recipe.weight_decay, grad_clip=recipe.grad_clip)


def train_final(model: nn.Module, data: ArrayDataset, recipe: Recipe, config: TrainConfig,
                callback: Callback | None = None, state: Mapping[str, Any] | None = None, *,
                rows: np.ndarray | None = None, teacher: nn.Module | None = None
                ) -> dict[str, Any]:
    """Train `model` (already on config.device) with the recipe's optimizer, cosine schedule,
    augmentation and loss; resume from `state`. Returns the loop's final state."""
    recipe.validate()
    device = torch.device(config.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    n_rows = len(data) if rows is None else len(rows)
    scheduler = CosineSchedule(optimizer, recipe.epochs * steps_per_epoch(n_rows, recipe))
    if teacher is not None:
        teacher = teacher.to(device).eval()
    return fit(model, recipe_batches(data, recipe, rows), recipe_loss(model, recipe, device,
                                                                      teacher),
               config, callback, state, optimizer=optimizer, scheduler=scheduler)


@torch.no_grad()
def count_correct(model: nn.Module, data: ArrayDataset, rows: np.ndarray | None,
                  device: torch.device, batch_size: int = 256) -> tuple[int, int]:
    """Top-1 hits and images over `rows` of `data` (all when None), in eval mode."""
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(rows), batch_size):
        x, y = data.batch(rows[start:start + batch_size])
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    model.train(was_training)
    return correct, len(rows)


# ---------------------------------------------------------------------- files
def read_genotype_file(path: str | Path) -> tuple[Genotype, SkeletonSize]:
    """The genotype in `path`: a search's export/genotype.json (the genotype's dict, optionally
    with "hash" and "skeleton"), or one genotype as `hgnas space sample` prints it."""
    path = Path(path)
    fix = ("pass the genotype.json a search exported (<run>/export/genotype.json) or a file "
           "holding one genotype as `hgnas space sample` prints it")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"genotype file {path} not found; {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read genotype file {path} ({err}); {fix}") from None
    if not text.strip().startswith("{"):
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) != 1:
            raise GenotypeError(f"{path} holds {len(lines)} lines; {fix}")
        return parse_genotype(lines[0]), SkeletonSize()
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise GenotypeError(f"{path} is not valid JSON ({err}); {fix}") from None
    genotype = _genotype_in(record, path, fix)
    try:
        skeleton = SkeletonSize(**record.get("skeleton", {}))
    except TypeError as err:
        raise GenotypeError(f"{path} has a malformed skeleton ({err}); {fix}") from None
    return genotype, skeleton


def _genotype_in(record: Any, path: Path, fix: str) -> Genotype:
    try:
        genotype = genotype_from_dict(record)
    except GenotypeError as err:
        raise GenotypeError(f"{path}: {err}; {fix}") from None
    if record.get("hash") not in (None, genotype_hash(genotype)):
        raise GenotypeError(f"{path} names hash {record['hash']} but its genotype hashes to "
                            f"{genotype_hash(genotype)}: the file was edited; {fix}")
    return genotype


def read_teacher(path: str | Path, info: TaskInfo) -> bytes:
    """The bytes of a TorchScript teacher, after checking that it loads and maps two of the
    task's (normalised) images to (2, num_classes) logits."""
    path = Path(path)
    fix = ("pass a TorchScript file of a classifier over the task's classes, saved with "
           "torch.jit.save (e.g. torch.jit.trace(model.eval(), images).save('teacher.pt'))")
    try:
        data = path.read_bytes()
        teacher = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    except FileNotFoundError:
        raise ConfigError(f"teacher file {path} not found; {fix}") from None
    except (OSError, RuntimeError, ValueError) as err:
        raise ConfigError(f"cannot load teacher {path} as TorchScript "
                          f"({_first_line(err)}); {fix}") from None
    images = torch.zeros(2, *info.input_shape)
    try:
        with torch.no_grad():
            logits = teacher(images)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(f"teacher {path} fails on the task's images of shape "
                          f"{tuple(images.shape)} ({_first_line(err)}); {fix}") from None
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (2, info.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ConfigError(f"teacher {path} maps 2 images to {shape}, not (2, "
                          f"{info.num_classes}) logits; {fix}")
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def write_results(out: str | Path, metrics: Mapping[str, Any],
                  state_dict: Mapping[str, Tensor]) -> None:
    """`out`/weights.safetensors (the state dict on the CPU), then `out`/metrics.json; each is
    written to a temporary file and renamed, so metrics.json means the results are complete."""
    from safetensors.torch import save_file  # deferred: only the writer needs it

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    write_atomic(out / WEIGHTS_FILE, lambda tmp: save_file(weights, str(tmp)))
    text = json.dumps(metrics, indent=1, allow_nan=False) + "\n"
    write_atomic(out / METRICS_FILE, lambda tmp: tmp.write_text(text))
