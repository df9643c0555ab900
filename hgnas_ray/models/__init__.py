"""The cell generator's models (DESIGN 4): the G-VAE, the cell clusters (GMM) and the CCNF.

Plain torch / torch-geometric / scikit-learn; training loops live in `hgnas_ray.training`.
torch-geometric is imported by `hgnas_ray.models.gvae` only, so importing this package is cheap
until a G-VAE is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hgnas_ray.models.ccnf import CCNF, CCNFConfig, ConcatSquashLinear
from hgnas_ray.models.clusters import CellClusters

if TYPE_CHECKING:  # pragma: no cover
    from hgnas_ray.models.gvae import GVAE, GVAEConfig

__all__ = ["CCNF", "GVAE", "CCNFConfig", "CellClusters", "ConcatSquashLinear", "GVAEConfig"]


def __getattr__(name: str):  # lazy: torch-geometric takes seconds to import
    if name in ("GVAE", "GVAEConfig"):
        from hgnas_ray.models import gvae

        return getattr(gvae, name)
    raise AttributeError(f"module 'hgnas_ray.models' has no attribute {name!r}")
