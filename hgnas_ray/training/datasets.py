"""Training data for the cell generator: cell graphs with (optional) normalised ZC vectors.

The ZC vectors are normalised upstream (`hgnas_ray.generator.cells.zc.ZCTransform`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from hgnas_ray.errors import DataError
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.encoding import cell_to_data


class CellGraphDataset(Dataset):
    """PyG `Data` objects of cells, each with `zc` (1, C): the normalised ZC vector, NaN when the
    cell is unlabelled. Batches (torch_geometric.loader.DataLoader) carry zc (B, C).

    `zc` is None (all cells unlabelled, `cond_dim` components) or an (N, C) array with NaN rows.
    """

    def __init__(self, cells: Sequence[CellGenotype], zc: np.ndarray | None = None,
                 cond_dim: int = 3) -> None:
        zc = np.full((len(cells), cond_dim), np.nan) if zc is None else np.asarray(zc)
        if zc.ndim != 2 or len(zc) != len(cells):
            raise DataError(f"zc must have shape ({len(cells)}, C), one row per cell; got "
                            f"{zc.shape}")
        self.zc = torch.tensor(zc, dtype=torch.float32)  # a copy: zc may be read-only
        self.graphs = []
        for cell, row in zip(cells, self.zc, strict=True):
            data = cell_to_data(cell)
            data.zc = row.unsqueeze(0)
            self.graphs.append(data)

    @property
    def labelled(self) -> torch.Tensor:
        """(N,) bool: which cells have a finite ZC vector."""
        return torch.isfinite(self.zc).all(dim=1)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int):
        return self.graphs[index]
