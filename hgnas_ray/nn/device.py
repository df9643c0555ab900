"""The torch device a name means: every model, trainer and exporter resolves names here."""

from __future__ import annotations

import torch

from hgnas_ray.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """"auto" -> the current CUDA device when one is available, else the CPU (never a
    hard-coded cuda:0); any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"invalid device {name!r} ({err}); use 'auto', 'cpu', 'cuda' or "
                          "'cuda:<index>'") from None
