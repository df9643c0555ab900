"""Operation vocabularies of the node-labelled cell form (DESIGN 2.1 and 2.3).

A vocabulary names the ops a cell node may carry, the kernels each op allows, and the smallest
cell it accepts. The general space has 9 ops x kernels {1, 3, 5}; NAS-Bench-201 in its 8-node
form has 3 ops, each with its own fixed kernel, and accepts any connected cell (even one edge).
"""

from __future__ import annotations

from dataclasses import dataclass

from hgnas_ray.errors import unknown_name

NONE = "none"
SKIP = "skip"
KERNELS = (1, 3, 5)  # kernel one-hot slots of the node features, in this order
MAX_OP_SLOTS = 9  # op one-hot slots of the node features


@dataclass(frozen=True)
class OpVocabulary:
    """The ops, their kernels and the validity floor of one cell space."""

    name: str
    ops: tuple[str, ...]
    kernels: tuple[tuple[int, ...], ...]  # allowed kernels of ops[i]
    min_edges: int
    min_op_nodes: int

    def __post_init__(self) -> None:
        assert len(self.ops) == len(self.kernels) <= MAX_OP_SLOTS
        assert all(k in KERNELS for ks in self.kernels for k in ks)

    def allowed_kernels(self, op: str) -> tuple[int, ...]:
        if op not in self.ops:
            raise unknown_name(f"op of the {self.name!r} vocabulary", op, self.ops)
        return self.kernels[self.ops.index(op)]

    def op_index(self, op: str) -> int:
        self.allowed_kernels(op)
        return self.ops.index(op)

    @property
    def choices(self) -> tuple[tuple[str, int], ...]:
        """Every (op, kernel) pair a used node can carry."""
        return tuple((op, k) for op, ks in zip(self.ops, self.kernels, strict=True) for k in ks)


CELL_OPS = ("avg_pool", "conv", "sep_conv", "dil_conv", "mbconv_e2", "mbconv_e3", "mbconv_e6",
            "bconv_e0.5", "bconv_e0.25")

VOCABULARIES: dict[str, OpVocabulary] = {
    "cell": OpVocabulary("cell", CELL_OPS, (KERNELS,) * len(CELL_OPS), min_edges=3,
                         min_op_nodes=1),
    "nb201": OpVocabulary("nb201", ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"),
                          ((1,), (3,), (3,)), min_edges=0, min_op_nodes=0),
}


def get_vocabulary(name: str) -> OpVocabulary:
    if name not in VOCABULARIES:
        raise unknown_name("cell space", name, tuple(VOCABULARIES))
    return VOCABULARIES[name]
