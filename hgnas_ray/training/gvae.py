"""Training the G-VAE, and reading latents and predicted conditions out of a trained one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader as TorchDataLoader
from torch_geometric.loader import DataLoader

from hgnas_ray.models.gvae import GVAE
from hgnas_ray.training.config import TrainConfig, resolve_device
from hgnas_ray.training.loop import Callback, fit


def train_gvae(model: GVAE, data: Sequence[Any] | TorchDataLoader, config: TrainConfig,
               callback: Callback | None = None, state: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Train the G-VAE on cell graphs; see `hgnas_ray.training.loop` for callback and state.

    `data` is a `CellGraphDataset` (or any sequence of cell `Data`), shuffled each epoch by the
    loop's generator; or a ready DataLoader (e.g. with a distributed sampler), used as given -
    then its own sampler decides the order and resuming reproduces only what that sampler does.
    """
    device = resolve_device(config.device)
    model.to(device)

    def batches(generator: torch.Generator):
        if isinstance(data, TorchDataLoader):
            return data
        return DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator)

    def loss_fn(batch, generator: torch.Generator) -> dict[str, Tensor]:
        return model(batch.to(device), generator)

    return fit(model, batches, loss_fn, config, callback, state)


@torch.no_grad()
def gvae_latents(model: GVAE, data: Sequence[Any], batch_size: int = 256,
                 device: str = "auto") -> tuple[Tensor, Tensor]:
    """Posterior means and predicted (normalised) ZC vectors of every cell, in dataset order.

    Shapes: -> mu (N, latent_dim), condition (N, cond_dim), both on the CPU.
    """
    target = resolve_device(device)
    model.to(target).eval()
    mus, conds = [], []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        mu, _ = model.encode(batch.to(target))
        mus.append(mu.cpu())
        conds.append(model.predict_condition(mu).cpu())
    return torch.cat(mus), torch.cat(conds)
