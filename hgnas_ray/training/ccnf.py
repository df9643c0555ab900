"""Training the CCNF by maximum likelihood on G-VAE latents and their condition vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from hgnas_ray.errors import DataError
from hgnas_ray.models.ccnf import CCNF
from hgnas_ray.training.config import TrainConfig, resolve_device
from hgnas_ray.training.loop import Callback, fit


def train_ccnf(ccnf: CCNF, latents: Tensor | np.ndarray, conditions: Tensor | np.ndarray,
               config: TrainConfig, callback: Callback | None = None,
               state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the CCNF to (latent, condition) pairs; see `hgnas_ray.training.loop` for callback and
    state. Metrics: "loss" (mean negative log-likelihood, nats per latent) and "end_time".

    Shapes: latents (N, latent_dim), conditions (N, cond_dim), all finite (use the G-VAE's
    predicted conditions, which every cell has).
    """
    z, c = _pairs(latents, conditions)
    device = resolve_device(config.device)
    ccnf.to(device)
    dtype = next(ccnf.parameters()).dtype
    flow = getattr(ccnf, "module", ccnf)  # the CCNF itself when wrapped (DDP)

    def batches(generator: torch.Generator):
        order = torch.randperm(len(z), generator=generator)
        for index in order.split(config.batch_size):
            yield z[index], c[index]

    def loss_fn(batch, generator: torch.Generator) -> dict[str, Tensor]:
        zb, cb = (t.to(device=device, dtype=dtype) for t in batch)
        return {"loss": ccnf(zb, cb, generator), "end_time": flow.end_time.detach()}

    return fit(ccnf, batches, loss_fn, config, callback, state)


def _pairs(latents, conditions) -> tuple[Tensor, Tensor]:
    z = torch.as_tensor(latents, dtype=torch.float32)
    c = torch.as_tensor(conditions, dtype=torch.float32)
    if z.dim() != 2 or c.dim() != 2 or len(z) != len(c):
        raise DataError(f"latents (N, D) and conditions (N, C) must be matrices with one row per "
                        f"cell; got {tuple(z.shape)} and {tuple(c.shape)}")
    bad = int((~torch.isfinite(z).all(dim=1) | ~torch.isfinite(c).all(dim=1)).sum())
    if bad:
        raise DataError(f"{bad} of {len(z)} (latent, condition) rows have NaN/inf; train the "
                        "CCNF on the G-VAE's predicted conditions or drop those rows")
    return z, c
