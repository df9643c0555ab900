"""Decoding: any adjacency/feature logits back into a valid cell (DESIGN 2.1).

The logits have the shapes of the encoding (`hgnas_ray.space.encoding`): adjacency (9, 9) and
features (9, 15), or (8, ...) without the global node. A node is used when its best op
probability reaches 0.5; adjacency is thresholded at 0.5; every used node gets a parent (its
most likely one) and every sink is joined to the output; ops and kernels are argmaxed over what
the vocabulary allows; if the vocabulary's floor (op nodes, edges) is not met, the most likely
missing nodes and edges are added. NAS-Bench-201 decodes to the most likely real NAS-Bench-201
cell instead (`hgnas_ray.space.nb201_cells`).
"""

from __future__ import annotations

import numpy as np
import torch

from hgnas_ray.errors import GenotypeError
from hgnas_ray.space.cell import INPUT, NUM_NODES, OP_NODES, OUTPUT, CellGenotype, cell_from_edges
from hgnas_ray.space.cell_sampling import prune
from hgnas_ray.space.encoding import ROLE_GLOBAL, as_float64
from hgnas_ray.space.nb201_cells import nb201_arch, nearest_nb201_cell
from hgnas_ray.space.vocab import KERNELS, get_vocabulary


def decode_cell(adj_logits: np.ndarray | torch.Tensor, feat_logits: np.ndarray | torch.Tensor,
                space: str = "cell") -> CellGenotype:
    """Any logits of shapes (9, 9) and (9, 15) (or (8, ...) without the global node) -> valid cell.

    The result is in canonical form. For "nb201" it is the real NAS-Bench-201 cell most likely
    under the logits (`nearest_nb201_cell`): the repair below would give 8-node cells that no
    arch string has.
    """
    if space == "nb201":
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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))
