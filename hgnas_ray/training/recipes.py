"""The paper's final-training recipes, as frozen values (no Ray here).

    get_recipe("cifar" | "imagenet") -> Recipe;  RECIPES: {name: Recipe}
    recipe.replace(epochs=2, ...) -> a validated copy;  recipe.lr(global_batch) -> float

Both recipes (HGENNAS retrains its networks with the ZenNAS scripts): SGD with Nesterov momentum
0.9, learning rate 0.1 per 256 images (scaled linearly by the global batch: workers x per-worker
batch), cosine decay to zero over every step, label smoothing 0.1, mixup (alpha 0.2), random
erasing, AutoAugment and random crop + horizontal flip.

- ``cifar``: 1440 epochs, weight decay 5e-4, AutoAugment's CIFAR-10 policy, crop after 4-pixel
  zero padding.
- ``imagenet``: 480 epochs, weight decay 4e-5, squeeze-excite after every cell, AutoAugment's
  ImageNet policy, random resized crop; distillation from a teacher when one is given (KL
  divergence of the temperature-softened logits, weighted `distill_weight`, mixed with the
  hard loss weighted 1 - `distill_weight`).

Our choices where the list above is silent, stated so they can be changed: 64 images per worker
(CIFAR) and 128 (ImageNet); random erasing with probability 0.25 per image (area 2-33 %,
normal noise); no warm-up; weight decay on every parameter; distillation at temperature 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from hgnas_ray.errors import ConfigError, unknown_name

LR_REFERENCE_BATCH = 256  # the learning rate is given per this many images
AUTOAUGMENT_POLICIES = ("cifar10", "imagenet", "svhn")
CROPS = ("pad", "resized")


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    weight_decay: float
    batch_size: int = 64  # per worker; the global batch is workers x batch_size
    lr_per_256: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "cosine"  # to zero, stepped after every optimizer step
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.2  # lambda ~ Beta(alpha, alpha); 0 turns mixup off
    random_erasing: float = 0.25  # probability per image; 0 turns it off
    autoaugment: str | None = "cifar10"  # torchvision AutoAugmentPolicy name; None: off
    crop: str = "pad"  # "pad": 4-pixel zero padding + random crop; "resized": random resized
    #                    crop (scale 8-100 %); either is followed by a random horizontal flip
    squeeze_excite: bool = False
    distill_weight: float = 0.5  # share of the distillation term when a teacher is given
    distill_temperature: float = 1.0
    grad_clip: float | None = None
    seed: int = 0  # weights, batch order, augmentation
    max_batches_per_epoch: int | None = None  # short epochs for a test

    def lr(self, global_batch: int) -> float:
        """The initial learning rate for `global_batch` images per optimizer step."""
        return self.lr_per_256 * global_batch / LR_REFERENCE_BATCH

    def validate(self) -> Recipe:
        counts = {"epochs": self.epochs, "batch_size": self.batch_size,
                  "max_batches_per_epoch": self.max_batches_per_epoch or 1}
        bad = {k: v for k, v in counts.items() if v < 1}
        if bad:
            raise ConfigError(f"recipe {self.name!r} needs these >= 1: got {bad}")
        shares = {"label_smoothing": self.label_smoothing, "random_erasing": self.random_erasing,
                  "distill_weight": self.distill_weight}
        if not (self.lr_per_256 > 0 and 0 <= self.momentum < 1 and self.weight_decay >= 0
                and self.mixup_alpha >= 0 and self.distill_temperature > 0
                and all(0 <= v <= 1 for v in shares.values()) and self.label_smoothing < 1):
            raise ConfigError(
                f"recipe {self.name!r} needs lr_per_256 > 0, 0 <= momentum < 1, weight_decay >= "
                f"0, mixup_alpha >= 0, distill_temperature > 0 and label_smoothing, "
                f"random_erasing, distill_weight in [0, 1] (label_smoothing < 1); got "
                f"{self.to_dict()}")
        if self.schedule != "cosine":
            raise unknown_name("schedule", self.schedule, ("cosine",))
        if self.autoaugment is not None and self.autoaugment not in AUTOAUGMENT_POLICIES:
            raise unknown_name("AutoAugment policy", self.autoaugment, AUTOAUGMENT_POLICIES)
        if self.crop not in CROPS:
            raise unknown_name("crop", self.crop, CROPS)
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None; got {self.grad_clip}")
        if not 0 <= self.seed <= 2**63 - 1:
            raise ConfigError(f"seed must lie in [0, 2**63 - 1]; got {self.seed}")
        return self

    def replace(self, **changes: Any) -> Recipe:
        """A validated copy with `changes` (None values are ignored: 'not given')."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown recipe field(s) {unknown}; valid: {sorted(known)}")
        given = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **given).validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    "cifar": Recipe(name="cifar", epochs=1440, weight_decay=5e-4, autoaugment="cifar10",
                    crop="pad"),
    "imagenet": Recipe(name="imagenet", epochs=480, weight_decay=4e-5, batch_size=128,
                       autoaugment="imagenet", crop="resized", squeeze_excite=True),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise unknown_name("recipe", name, tuple(RECIPES))
    return RECIPES[name]
