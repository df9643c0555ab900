"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): genotype and string format.

A NAS-Bench-201 cell is a 4-node DAG with an operation on each of its 6 edges ``(a -> b)``,
``a < b``; node ``b`` sums its incoming edges, node 3 is the cell output. The standard string
lists the edges grouped by target node::

    |op(0->1)~0|+|op(0->2)~0|op(1->2)~1|+|op(0->3)~0|op(1->3)~1|op(2->3)~2|

``to_node_form`` maps a cell onto the 8-node node-labelled form of the general cell space
(input, one node per edge op, output) as plain tuples.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgnas_ray.errors import GenotypeError

NB201_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)
# (source, target) of each edge, in the order of the standard string.
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NB201_NUM_CELLS = len(NB201_OPS) ** len(NB201_EDGES)  # 15,625

_FORMAT_HELP = (
    "expected the NAS-Bench-201 format "
    "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with op in: " + ", ".join(NB201_OPS)
)
_NODE_INPUT, _NODE_OUTPUT = 0, len(NB201_EDGES) + 1  # 8-node form: 0 = input, 7 = output


@dataclass(frozen=True)
class Nb201Genotype:
    """One NAS-Bench-201 cell: the op on each of the 6 edges, in ``NB201_EDGES`` order.

    Frozen, hashable and JSON-serialisable through ``to_dict``/``from_dict``.
    """

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.ops, list):  # accept a list, store a tuple (keeps it hashable)
            object.__setattr__(self, "ops", tuple(self.ops))
        self.validate()

    def validate(self) -> None:
        """Raise GenotypeError unless ``ops`` holds 6 valid NAS-Bench-201 op names."""
        if not isinstance(self.ops, tuple) or len(self.ops) != len(NB201_EDGES):
            raise GenotypeError(
                f"a NAS-Bench-201 genotype needs a tuple of {len(NB201_EDGES)} ops (one per edge "
                f"{NB201_EDGES}); got {self.ops!r}"
            )
        for edge, op in zip(NB201_EDGES, self.ops, strict=True):
            if op not in NB201_OPS:
                raise GenotypeError(
                    f"unknown NAS-Bench-201 op {op!r} on edge {edge[0]}->{edge[1]}; "
                    f"valid ops: {', '.join(NB201_OPS)}"
                )

    @classmethod
    def from_string(cls, arch_str: str) -> Nb201Genotype:
        """Parse the standard string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        if not isinstance(arch_str, str):
            raise GenotypeError(f"expected a NAS-Bench-201 string, got {type(arch_str).__name__}")
        groups = arch_str.strip().split("+")
        if len(groups) != 3:
            raise GenotypeError(
                f"{arch_str!r} has {len(groups)} '+'-separated node groups, need 3; {_FORMAT_HELP}"
            )
        ops: list[str] = []
        for target, group in enumerate(groups, start=1):
            ops.extend(_parse_group(arch_str, group, target))
        return cls(tuple(ops))

    def to_string(self) -> str:
        """The standard NAS-Bench-201 string (the ``arch_str`` of the benchmark tables)."""
        parts = []
        for target in (1, 2, 3):
            items = [
                f"{op}~{src}"
                for (src, dst), op in zip(NB201_EDGES, self.ops, strict=True)
                if dst == target
            ]
            parts.append("|" + "|".join(items) + "|")
        return "+".join(parts)

    def __str__(self) -> str:
        return self.to_string()

    def to_dict(self) -> dict[str, str]:
        return {"space": "nb201", "arch": self.to_string()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Nb201Genotype:
        if not isinstance(data, dict) or data.get("space") != "nb201" or "arch" not in data:
            raise GenotypeError(
                f"expected a dict {{'space': 'nb201', 'arch': <NAS-Bench-201 string>}}, "
                f"got {data!r}"
            )
        return cls.from_string(data["arch"])


def _parse_group(arch_str: str, group: str, target: int) -> list[str]:
    """Parse ``|op~0|op~1|`` (the edges into node ``target``) into its ops."""
    if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
        raise GenotypeError(
            f"node group {group!r} of {arch_str!r} must start and end with '|'; {_FORMAT_HELP}"
        )
    items = group[1:-1].split("|")
    if len(items) != target:
        raise GenotypeError(
            f"node {target} of {arch_str!r} has {len(items)} incoming edges ({group!r}), need "
            f"{target} (from nodes {', '.join(map(str, range(target)))}); {_FORMAT_HELP}"
        )
    ops = []
    for source, item in enumerate(items):
        op, sep, src = item.partition("~")
        if not sep or src != str(source):
            raise GenotypeError(
                f"edge {item!r} into node {target} of {arch_str!r} must read '<op>~{source}' "
                f"(edges into a node are listed by source node 0..{target - 1}); {_FORMAT_HELP}"
            )
        if op not in NB201_OPS:
            raise GenotypeError(
                f"unknown NAS-Bench-201 op {op!r} in {arch_str!r}; valid ops: "
                f"{', '.join(NB201_OPS)}"
            )
        ops.append(op)
    return ops


def enumerate_nb201() -> Iterator[Nb201Genotype]:
    """All 15,625 cells, in lexicographic order of op ids (``NB201_OPS`` order) over the edges."""
    for ops in itertools.product(NB201_OPS, repeat=len(NB201_EDGES)):
        yield Nb201Genotype(ops)


def sample_nb201(rng: np.random.Generator) -> Nb201Genotype:
    """A cell drawn uniformly from the 15,625."""
    ids = rng.integers(len(NB201_OPS), size=len(NB201_EDGES))
    return Nb201Genotype(tuple(NB201_OPS[i] for i in ids))


def mutate_nb201(genotype: Nb201Genotype, rng: np.random.Generator) -> Nb201Genotype:
    """Change the op of one uniformly chosen edge to a different, uniformly chosen op."""
    edge = int(rng.integers(len(NB201_EDGES)))
    others = [op for op in NB201_OPS if op != genotype.ops[edge]]
    ops = list(genotype.ops)
    ops[edge] = others[int(rng.integers(len(others)))]
    return Nb201Genotype(tuple(ops))


def to_node_form(
    genotype: Nb201Genotype,
) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """Map a cell onto the 8-node node-labelled form (node 0 input, 1-6 ops, 7 output).

    Node ``k`` (1..6) carries the op of NAS-Bench-201 edge ``NB201_EDGES[k - 1]``. Its parents are
    the nodes of the edges ending where it starts (node 0 for edges leaving the cell input), its
    children the nodes of the edges starting where it ends (node 7 for edges into the output).
    Then ``none`` nodes are dropped with their edges, ``skip_connect`` nodes are replaced by edges
    from each of their parents to each of their children, and nodes not on an input-to-output
    path are pruned.

    Returns ``(ops, edges)``: ``ops`` is a 6-tuple with ``"none"`` for every removed node, and
    ``edges`` a sorted tuple of ``(i, j)`` pairs, ``i < j``; an input->output edge ``(0, 7)`` is a
    residual connection. A cell whose output does not depend on its input (e.g. all ``none``)
    maps to all-``none`` ops and an empty edge set.
    """
    ops = list(genotype.ops)
    edges = _raw_node_edges()
    for node, op in enumerate(genotype.ops, start=1):
        if op == "none":
            edges = {(i, j) for i, j in edges if node not in (i, j)}
    for node, op in enumerate(genotype.ops, start=1):
        if op == "skip_connect":
            parents = {i for i, j in edges if j == node}
            children = {j for i, j in edges if i == node}
            edges = {(i, j) for i, j in edges if node not in (i, j)}
            edges |= {(p, c) for p in parents for c in children}
            ops[node - 1] = "none"
    keep = _reachable(edges, _NODE_INPUT, forward=True) & _reachable(
        edges, _NODE_OUTPUT, forward=False
    )
    edges = {(i, j) for i, j in edges if i in keep and j in keep}
    ops = [op if node in keep else "none" for node, op in enumerate(ops, start=1)]
    assert all(i < j for i, j in edges)
    return tuple(ops), tuple(sorted(edges))


def _raw_node_edges() -> set[tuple[int, int]]:
    """Edges of the 8-node form before any op is resolved (every edge-node present)."""
    edges = set()
    for node, (src, dst) in enumerate(NB201_EDGES, start=1):
        if src == 0:
            edges.add((_NODE_INPUT, node))
        if dst == 3:
            edges.add((node, _NODE_OUTPUT))
        for child, (child_src, _) in enumerate(NB201_EDGES, start=1):
            if child_src == dst:
                edges.add((node, child))
    return edges


def _reachable(edges: set[tuple[int, int]], start: int, forward: bool) -> set[int]:
    step: dict[int, list[int]] = {}
    for i, j in edges:
        a, b = (i, j) if forward else (j, i)
        step.setdefault(a, []).append(b)
    seen, stack = {start}, [start]
    while stack:
        for nxt in step.get(stack.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen
