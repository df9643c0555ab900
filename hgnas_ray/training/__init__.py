"""Plain training loops of the cell generator's models (no Ray; the distributed layer wraps them).

One epoch loop (`loop.fit`) reports through a callback with a checkpointable state; `train_gvae`
and `train_ccnf` adapt it to each model. `train_gvae`/`gvae_latents` import torch-geometric, so
they load lazily.
"""

from __future__ import annotations

from hgnas_ray.training.ccnf import train_ccnf
from hgnas_ray.training.config import TrainConfig, resolve_device
from hgnas_ray.training.datasets import CellGraphDataset
from hgnas_ray.training.loop import fit, load_training_state, training_state

__all__ = ["CellGraphDataset", "TrainConfig", "fit", "gvae_latents",
           "load_training_state", "resolve_device", "train_ccnf", "train_gvae", "training_state"]


def __getattr__(name: str):  # lazy: torch-geometric takes seconds to import
    if name in ("train_gvae", "gvae_latents"):
        from hgnas_ray.training import gvae

        return getattr(gvae, name)
    raise AttributeError(f"module 'hgnas_ray.training' has no attribute {name!r}")
