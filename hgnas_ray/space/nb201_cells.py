"""NAS-Bench-201 cells in their 8-node form: the distinct cells, their arch strings, and decoding
generator logits onto the most likely real NAS-Bench-201 cell.

Most 8-node cells of the "nb201" vocabulary are no NAS-Bench-201 cell at all (their wiring
does not come from the 4-node, 6-edge cell). The 15,625 arch strings fall onto 5,257 distinct
cells (isomorphic cells and cells differing only in dead or skip/none edges). Each distinct cell
maps back to the first of its strings in `enumerate_nb201` order. The table is built once per
process, on first use (a few seconds).

`nearest_nb201_cell` is the decoder for this space. It returns the distinct cell of highest
likelihood under the logits: independent Bernoulli edges over the 28 cell-node pairs, and per
op node a softmax over its op logits plus a fixed-0 "unused" logit - the G-VAE's reconstruction
terms, so a perfect decoder returns the encoded cell. The kernel logits are left out: here the op
fixes the kernel, so they would count the same evidence twice, and an unsure kernel head would
penalise every used node (an untrained model then decodes only the empty cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from hgnas_ray.errors import GenotypeError
from hgnas_ray.space.cell import NUM_NODES, OP_NODES, CellGenotype
from hgnas_ray.space.encoding import as_float64, cell_to_arrays
from hgnas_ray.space.genotypes import nb201_to_cell
from hgnas_ray.space.nb201 import Nb201Genotype, enumerate_nb201
from hgnas_ray.space.vocab import MAX_OP_SLOTS

_UPPER = np.triu_indices(NUM_NODES, 1)  # the 28 cell-node pairs i < j
_UNUSED = MAX_OP_SLOTS  # class index of an unused op node


@dataclass(frozen=True)
class _Table:
    cells: tuple[CellGenotype, ...]  # canonical 8-node forms, one per distinct cell
    archs: dict[str, str]  # canonical hash -> arch string
    edges: np.ndarray  # (N, 28) 0/1: the cells' edges over `_UPPER`
    op_classes: np.ndarray  # (N, 6) op slot per op node, `_UNUSED` where unused


@cache
def _table() -> _Table:
    archs: dict[str, str] = {}
    cells: list[CellGenotype] = []
    for genotype in enumerate_nb201():
        cell = nb201_to_cell(genotype).canonical()
        if cell.hash not in archs:
            archs[cell.hash] = genotype.to_string()
            cells.append(cell)
    edges = np.zeros((len(cells), len(_UPPER[0])))
    op_classes = np.full((len(cells), len(OP_NODES)), _UNUSED)
    for row, cell in enumerate(cells):
        adj, feats = cell_to_arrays(cell)
        edges[row] = adj[:NUM_NODES, :NUM_NODES][_UPPER]
        for node in cell.used_nodes():
            op_classes[row, node - OP_NODES[0]] = int(np.argmax(feats[node, :MAX_OP_SLOTS]))
    return _Table(tuple(cells), archs, edges, op_classes)


def distinct_nb201_cells() -> tuple[CellGenotype, ...]:
    """Every distinct NAS-Bench-201 cell in canonical 8-node form (5,257)."""
    return _table().cells


def nb201_arch(cell: CellGenotype) -> Nb201Genotype | None:
    """The NAS-Bench-201 cell whose 8-node form is `cell`, or None when there is none."""
    if cell.space != "nb201":
        raise GenotypeError(f"only cells of the 'nb201' vocabulary map to NAS-Bench-201 arch "
                            f"strings; got a {cell.space!r} cell")
    arch = _table().archs.get(cell.hash)
    return None if arch is None else Nb201Genotype.from_string(arch)


def nearest_nb201_cell(adj_logits: np.ndarray | torch.Tensor,
                       feat_logits: np.ndarray | torch.Tensor) -> CellGenotype:
    """The NAS-Bench-201 cell most likely under logits (9, 9)/(9, 15) (or (8, ...))."""
    table = _table()
    adj = _finite(adj_logits)[:NUM_NODES, :NUM_NODES][_UPPER]  # (28,)
    log_on, log_off = _log_sigmoid(adj), _log_sigmoid(-adj)
    edge_score = table.edges @ (log_on - log_off) + log_off.sum()  # (N,)
    ops = _finite(feat_logits)[OP_NODES[0]:OP_NODES[-1] + 1, :MAX_OP_SLOTS]  # (6, 9)
    ops = np.concatenate([ops, np.zeros((len(OP_NODES), 1))], axis=1)  # + the "unused" logit
    log_probs = ops - _logsumexp(ops)  # (6, 10)
    op_score = log_probs[np.arange(len(OP_NODES)), table.op_classes].sum(axis=1)  # (N,)
    return table.cells[int(np.argmax(edge_score + op_score))]


def _finite(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.nan_to_num(as_float64(x), nan=0.0, posinf=50.0, neginf=-50.0)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return top + np.log(np.exp(x - top).sum(axis=1, keepdims=True))
