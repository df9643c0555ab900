"""A cell genotype as a module (DESIGN 2.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hgnas_ray.nn.ops import create_op, projection
from hgnas_ray.space.cell import INPUT, OUTPUT, CellGenotype


class CellModule(nn.Module):
    """Runs a cell DAG: a node sums its parents' outputs, then applies its op.

    Ops whose only parent is the input take (c_in -> c_out, stride); every other op runs at
    c_out, stride 1, and the input is projected (ReLU, 1x1 conv with stride, BN) wherever it is
    summed with c_out tensors. A cell with no input->output path outputs zeros.

    Shapes:
        x: (N, c_in, H, W) -> (N, c_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, cell: CellGenotype, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.genotype = cell
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        self.parents = cell.parents()
        self.order = cell.used_nodes()
        self.node_ops = nn.ModuleDict()
        needs_projection = False
        for node in self.order:
            direct = self.parents[node] == [INPUT]
            op, kernel = cell.ops[node - 1], cell.kernels[node - 1]
            if direct:
                self.node_ops[str(node)] = create_op(op, c_in, c_out, stride, kernel)
            else:
                self.node_ops[str(node)] = create_op(op, c_out, c_out, 1, kernel)
                needs_projection |= INPUT in self.parents[node]
        needs_projection |= INPUT in self.parents[OUTPUT]
        self.same_shape = c_in == c_out and stride == 1
        self.input_projection = (projection(c_in, c_out, stride)
                                 if needs_projection and not self.same_shape else None)

    def forward(self, x: Tensor) -> Tensor:
        projected: Tensor | None = None
        states: dict[int, Tensor] = {}
        for node in (*self.order, OUTPUT):
            parents = self.parents[node]
            if node != OUTPUT and parents == [INPUT]:
                states[node] = self.node_ops[str(node)](x)
                continue
            if INPUT in parents and projected is None:
                projected = x if self.input_projection is None else self.input_projection(x)
            total = sum(projected if p == INPUT else states[p] for p in parents)
            states[node] = total if node == OUTPUT else self.node_ops[str(node)](total)
        if not self.parents[OUTPUT]:  # a disconnected cell (NAS-Bench-201 allows them)
            return self._zeros(x)
        return states[OUTPUT]

    def _zeros(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        size = (n, self.c_out, -(-h // self.stride), -(-w // self.stride))
        return torch.zeros(size, dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"c_in={self.c_in}, c_out={self.c_out}, stride={self.stride}, " \
               f"cell={self.genotype.hash}"
