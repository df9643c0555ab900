"""Image augmentations of the final-training recipes, each drawing from an explicit generator.

    random_resized_crop(x, generator) / random_flip(x, generator)     uint8 (B, C, H, W)
    auto_augment(x, generator, policy)                                uint8 (B, C, H, W)
    normalize(x, mean, std)                                           uint8 -> float32
    random_erasing(x, generator, probability)                         float32 (B, C, H, W)
    mixup(x, y, alpha, generator) -> (x, y, y_mixed, lam)

The pad-and-crop + flip of CIFAR is `candidates.augment_batch` (shared with candidate training).
Every call is reproducible from the generator's state and leaves torch's global RNG as it was:
torchvision's AutoAugment draws from the global RNG, so it runs inside `fork_rng`, seeded from
the generator. Tensors stay on the CPU (augmentation runs before the batch moves to a device).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

SEED_RANGE = 2**62
ERASE_AREA = (0.02, 1 / 3)  # share of the image one erased rectangle covers
ERASE_RATIO = (0.3, 1 / 0.3)  # its aspect ratio
CROP_AREA = (0.08, 1.0)  # random resized crop (Inception-style)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, SEED_RANGE, (1,), generator=generator))


@lru_cache(maxsize=4)
def _auto_augment(policy: str) -> v2.AutoAugment:
    return v2.AutoAugment(v2.AutoAugmentPolicy(policy))


def auto_augment(x: Tensor, generator: torch.Generator, policy: str = "cifar10") -> Tensor:
    """torchvision's AutoAugment with `policy` ("cifar10", "imagenet", "svhn"), a sub-policy
    drawn per image. Shapes: x uint8 (B, C, H, W), C in {1, 3} -> uint8 (B, C, H, W)."""
    transform = _auto_augment(policy)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(generator))
        return torch.stack([transform(image) for image in x])


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image flipped left-right with probability 1/2. Shapes: (B, C, H, W) -> same."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_resized_crop(x: Tensor, generator: torch.Generator) -> Tensor:
    """Per image a crop of 8-100 % of its area, aspect ratio 3/4-4/3, resized back to (H, W)
    (bilinear); a whole-image crop when no draw fits. Shapes: uint8 (B, C, H, W) -> same."""
    h, w = x.shape[-2:]
    out = []
    for image in x:
        top, left, ch, cw = _crop_box(h, w, generator)
        out.append(TF.resized_crop(image, top, left, ch, cw, [h, w], antialias=True))
    return torch.stack(out)


def _crop_box(h: int, w: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    for _ in range(CROP_TRIES):
        area = h * w * _uniform(generator, *CROP_AREA)
        ratio = math.exp(_uniform(generator, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            return top, left, ch, cw
    return 0, 0, h, w


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator))


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 (B, C, H, W) -> float32 (B, C, H, W): scaled to [0, 1], then (x - mean) / std."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean_t) / std_t


def random_erasing(x: Tensor, generator: torch.Generator, probability: float) -> Tensor:
    """Random erasing (Zhong et al.): with `probability` per image, one rectangle of 2-33 % of
    the area (aspect 0.3-3.3) is replaced by standard normal noise (the normalised scale).
    Shapes: float (B, C, H, W) -> float (B, C, H, W)."""
    b, _, h, w = x.shape
    erase = torch.rand(b, generator=generator) < probability
    area = h * w * (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * torch.rand(
        b, generator=generator))
    log_ratio = torch.empty(b).uniform_(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]),
                                        generator=generator)
    eh = (area / log_ratio.exp()).sqrt().round().clamp(1, h).long()  # (B,)
    ew = (area * log_ratio.exp()).sqrt().round().clamp(1, w).long()
    top = (torch.rand(b, generator=generator) * (h - eh + 1)).long()
    left = (torch.rand(b, generator=generator) * (w - ew + 1)).long()
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside_r = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (B, H)
    inside_c = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :] & erase[:, None, None])[:, None]
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return torch.where(mask, noise, x)


def mixup(x: Tensor, y: Tensor, alpha: float, generator: torch.Generator
          ) -> tuple[Tensor, Tensor, Tensor, float]:
    """mixup (Zhang et al.): x' = lam x + (1 - lam) x[perm], lam ~ Beta(alpha, alpha); the loss
    is lam CE(., y) + (1 - lam) CE(., y[perm]). alpha = 0: no mixing (lam = 1).
    Shapes: x float (B, ...), y (B,) -> x' (B, ...), y (B,), y[perm] (B,), lam."""
    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(np.random.default_rng(_seed(generator)).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=generator)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam
