"""Cells as graphs for the generative models (DESIGN 2.1); the decoder is `space.decoding`.

Encoding: the 8 cell nodes plus a virtual *global* node (index 8) joined to every node, with
self-loops: a 9x9 adjacency. Each node has 15 features: 9 op one-hots (slot = index of the op in
the cell's vocabulary), 3 role flags (input, output, global) and 3 kernel one-hots (1, 3, 5).
Unused nodes have all-zero features and only their self-loop and global links.
"""

from __future__ import annotations

import numpy as np
import torch

from hgnas_ray.space.cell import INPUT, OUTPUT, CellGenotype
from hgnas_ray.space.vocab import KERNELS, MAX_OP_SLOTS

GLOBAL = 8
GRAPH_NODES = 9
NUM_FEATURES = MAX_OP_SLOTS + 3 + len(KERNELS)  # 15
ROLE_INPUT, ROLE_OUTPUT, ROLE_GLOBAL = MAX_OP_SLOTS, MAX_OP_SLOTS + 1, MAX_OP_SLOTS + 2


def cell_to_arrays(cell: CellGenotype) -> tuple[np.ndarray, np.ndarray]:
    """Dense encoding. Shapes: adjacency (9, 9) float32, features (9, 15) float32."""
    adj = np.zeros((GRAPH_NODES, GRAPH_NODES), dtype=np.float32)
    for i, j in cell.edges:
        adj[i, j] = 1.0
    adj[GLOBAL, :] = adj[:, GLOBAL] = 1.0
    np.fill_diagonal(adj, 1.0)
    feats = np.zeros((GRAPH_NODES, NUM_FEATURES), dtype=np.float32)
    feats[INPUT, ROLE_INPUT] = feats[OUTPUT, ROLE_OUTPUT] = feats[GLOBAL, ROLE_GLOBAL] = 1.0
    vocab = cell.vocab
    for node in cell.used_nodes():
        feats[node, vocab.op_index(cell.ops[node - 1])] = 1.0
        feats[node, ROLE_GLOBAL + 1 + KERNELS.index(cell.kernels[node - 1])] = 1.0
    return adj, feats


def cell_to_data(cell: CellGenotype):
    """A `torch_geometric.data.Data` with x (9, 15), edge_index (2, E) and adj (1, 9, 9)."""
    from torch_geometric.data import Data  # imported here: torch-geometric is slow to import

    adj, feats = cell_to_arrays(cell)
    src, dst = np.nonzero(adj)
    edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long)
    return Data(x=torch.from_numpy(feats), edge_index=edge_index,
                adj=torch.from_numpy(adj).unsqueeze(0), num_nodes=GRAPH_NODES)


def as_float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Logits (a tensor on any device, or an array) as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
