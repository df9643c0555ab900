"""The training loops' configuration (a frozen dataclass, validated like every config)."""

from __future__ import annotations

from dataclasses import dataclass

from hgnas_ray.errors import ConfigError
from hgnas_ray.nn.device import resolve_device


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0  # seeds the loop's generator (shuffling and model noise)
    device: str = "auto"  # "auto": "cuda" when available, else "cpu"; or any torch device string
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global gradient norm; None: no clipping

    def validate(self) -> TrainConfig:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError(f"training needs epochs >= 0, batch_size >= 1 and lr > 0; got "
                              f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None; got {self.grad_clip}")
        resolve_device(self.device)
        return self
