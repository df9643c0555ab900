"""Cells as graphs for the generative models, and the repairing decoder (DESIGN 2.1).

Encoding: the 8 cell nodes plus a virtual *global* node (index 8) joined to every node, with
self-loops: a 9x9 adjacency. Each node has 15 features: 9 op one-hots (slot = index of the op in
the cell's vocabulary), 3 role flags (input, output, global) and 3 kernel one-hots (1, 3, 5).
Unused nodes have all-zero features and only their self-loop and global links.

Decoding turns any adjacency/feature logits back into a valid cell: a node is used when its best
op probability reaches 0.5; adjacency is thresholded at 0.5; every used node gets a parent (its
most likely one) and every sink is joined to the output; ops and kernels are argmaxed over what the
vocabulary allows; if the vocabulary's floor (op nodes, edges) is not met, the most likely missing
nodes and edges are added. NAS-Bench-201 decodes to the most likely real NAS-Bench-201 cell
instead (`hgnas_ray.space.nb201_cells`).
"""

from __future__ import annotations

import numpy as np
import torch

from hgnas_ray.errors import GenotypeError
from hgnas_ray.space.cell import INPUT, NUM_NODES, OP_NODES, OUTPUT, CellGenotype, cell_from_edges
from hgnas_ray.space.cell_sampling import prune
from hgnas_ray.space.vocab import KERNELS, MAX_OP_SLOTS, get_vocabulary

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


def decode_cell(adj_logits: np.ndarray | torch.Tensor, feat_logits: np.ndarray | torch.Tensor,
                space: str = "cell") -> CellGenotype:
    """Any logits of shapes (9, 9) and (9, 15) (or (8, ...) without the global node) -> valid cell.

    The result is in canonical form. For "nb201" it is the real NAS-Bench-201 cell most likely
    under the logits (`nearest_nb201_cell`): the repair below would give 8-node cells that no
    arch string has.
    """
    if space == "nb201":
        from hgnas_ray.space.nb201_cells import nearest_nb201_cell  # it imports this module

        return nearest_nb201_cell(adj_logits, feat_logits)
    adj = _sigmoid(as_float64(adj_logits))[:NUM_NODES, :NUM_NODES]
    feats = _sigmoid(as_float64(feat_logits))[:NUM_NODES]
    vocab = get_vocabulary(space)
    op_probs = feats[:, : len(vocab.ops)]
    used = [n for n in OP_NODES if op_probs[n].max() >= 0.5]
    if len(used) < vocab.min_op_nodes:
        spare = sorted((n for n in OP_NODES if n not in used), key=lambda n: -op_probs[n].max())
        used = sorted(used + spare[: vocab.min_op_nodes - len(used)])
    edges = _repair_edges(adj, used)
    ops = {n: _best_op(feats[n], vocab) for n in used}
    edges = _meet_edge_floor(adj, used, edges, max(vocab.min_edges, 1))
    ops, edges = prune(ops, edges)
    return cell_from_edges(ops, edges, space).validate().canonical()


def read_cell(adj_logits: np.ndarray | torch.Tensor, feat_logits: np.ndarray | torch.Tensor,
              space: str = "cell") -> CellGenotype | None:
    """The cell the logits state outright, without repair: nodes whose best op probability
    reaches 0.5, the edges among them (and the input and output) at probability >= 0.5, ops and
    kernels argmaxed as in `decode_cell`. None when that is no valid cell of `space` (for
    NAS-Bench-201: no real NAS-Bench-201 cell). Canonical form."""
    adj = _sigmoid(as_float64(adj_logits))[:NUM_NODES, :NUM_NODES]
    feats = _sigmoid(as_float64(feat_logits))[:NUM_NODES]
    vocab = get_vocabulary(space)
    used = [n for n in OP_NODES if feats[n, : len(vocab.ops)].max() >= 0.5]
    nodes = [INPUT, *used, OUTPUT]
    edges = [(i, j) for i in nodes for j in nodes if i < j and adj[i, j] >= 0.5]
    ops = {n: _best_op(feats[n], vocab) for n in used}
    try:
        cell = cell_from_edges(ops, edges, space).validate().canonical()
    except GenotypeError:
        return None
    if space == "nb201":
        from hgnas_ray.space.nb201_cells import nb201_arch

        return cell if nb201_arch(cell) is not None else None
    return cell


def _repair_edges(adj: np.ndarray, used: list[int]) -> set[tuple[int, int]]:
    nodes = [INPUT, *used, OUTPUT]
    edges = {(i, j) for i in nodes for j in nodes if i < j and adj[i, j] >= 0.5}
    for j in [*used, OUTPUT]:  # every used node (and the output) gets a parent
        if not any(b == j for _, b in edges):
            below = [i for i in nodes if i < j]
            edges.add((max(below, key=lambda i: adj[i, j]), j))
    for i in used:  # every sink feeds the output
        if not any(a == i for a, _ in edges):
            edges.add((i, OUTPUT))
    return edges


def _meet_edge_floor(adj, used, edges, floor):
    nodes = [INPUT, *used, OUTPUT]
    spare = sorted(((i, j) for i in nodes for j in nodes if i < j and (i, j) not in edges),
                   key=lambda e: -adj[e])
    return edges | set(spare[: max(0, floor - len(edges))])


def _best_op(node_probs: np.ndarray, vocab) -> tuple[str, int]:
    op = vocab.ops[int(np.argmax(node_probs[: len(vocab.ops)]))]
    allowed = vocab.allowed_kernels(op)
    kernel_probs = node_probs[ROLE_GLOBAL + 1:]
    return op, max(allowed, key=lambda k: kernel_probs[KERNELS.index(k)])


def as_float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))
