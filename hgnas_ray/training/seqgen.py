"""Training the sequence generator: next-token cross-entropy on layout sequences."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hgnas_ray.errors import DataError
from hgnas_ray.models.seqgen.model import sequence_loss
from hgnas_ray.training.config import TrainConfig, resolve_device
from hgnas_ray.training.loop import Callback, fit


def train_seqgen(model: nn.Module, tokens: Tensor | np.ndarray, config: TrainConfig,
                 callback: Callback | None = None, state: dict[str, Any] | None = None,
                 pad_id: int = 0) -> dict[str, Any]:
    """Fit `model` (a `SeqGen`, or one wrapped by DDP) to right-padded token rows; see
    `hgnas_ray.training.loop` for callback and state. Metrics: "loss" (nats per layout token)
    and "token_accuracy".

    Shapes: tokens (N, T) int64, each row prompt + layout + padding.
    """
    rows = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    if rows.dim() != 2 or len(rows) == 0:
        raise DataError(f"training needs a non-empty (N, T) matrix of token ids; got shape "
                        f"{tuple(rows.shape)}")
    device = resolve_device(config.device)
    model.to(device)

    def batches(generator: torch.Generator):
        order = torch.randperm(len(rows), generator=generator)
        for index in order.split(config.batch_size):
            batch = rows[index]
            used = int((batch != pad_id).sum(dim=1).max())  # trim the common padding
            yield batch[:, :used]

    def loss_fn(batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        return sequence_loss(model, batch.to(device), pad_id)

    return fit(model, batches, loss_fn, config, callback, state)
