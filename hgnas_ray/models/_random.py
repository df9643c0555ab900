"""Random draws through an explicit generator, on whatever device the generator lives on.

Drawing on the generator's device and then moving the result keeps a run reproducible whatever
the model's device: a CPU generator gives the same numbers on a laptop and on a GPU worker.
"""

from __future__ import annotations

import torch


def randn(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor
          ) -> torch.Tensor:
    """Standard normal noise of `shape`, on `like`'s device and dtype."""
    device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    return noise.to(like.device)


def rademacher(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor
               ) -> torch.Tensor:
    """Uniform +-1 noise of `shape`, on `like`'s device and dtype."""
    device = generator.device if generator is not None else like.device
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(device=like.device, dtype=like.dtype)
