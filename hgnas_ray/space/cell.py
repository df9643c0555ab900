"""The cell genotype: an 8-node DAG with operations on nodes (DESIGN 2.1).

Node 0 is the input, nodes 1-6 carry ops ("none" = unused), node 7 is the output. Edges go from
lower to higher index. A genotype is a frozen, hashable, JSON-serialisable value; `canonical()`
relabels it into a form shared by every isomorphic cell and `hash` identifies it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgnas_ray.errors import GenotypeError, HgnasError
from hgnas_ray.space.vocab import NONE, OpVocabulary, get_vocabulary

NUM_NODES = 8
INPUT, OUTPUT = 0, 7
OP_NODES = tuple(range(1, 7))


@dataclass(frozen=True)
class CellGenotype:
    """A cell: `ops[i]`/`kernels[i]` belong to node i + 1; `edges` are sorted (src, dst) pairs."""

    ops: tuple[str, ...]
    kernels: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]
    space: str = "cell"
    _hash: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(str(op) for op in self.ops))
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        edges = tuple(sorted({(int(i), int(j)) for i, j in self.edges}))
        object.__setattr__(self, "edges", edges)

    # ------------------------------------------------------------------ validity
    @property
    def vocab(self) -> OpVocabulary:
        return get_vocabulary(self.space)

    def validate(self) -> CellGenotype:
        """Raise `GenotypeError` naming the offending node or edge; return self when valid."""
        vocab = self.vocab
        if len(self.ops) != 6 or len(self.kernels) != 6:
            raise GenotypeError(f"a cell has 6 op nodes; got {len(self.ops)} ops and "
                                f"{len(self.kernels)} kernels")
        for node, op, k in zip(OP_NODES, self.ops, self.kernels, strict=True):
            _check_node(vocab, node, op, k)
        for i, j in self.edges:
            if not (0 <= i < j < NUM_NODES):
                raise GenotypeError(f"edge ({i}, {j}) is not allowed: edges go from a lower to a "
                                    f"higher node index in 0..7 (a cycle or a self-loop?)")
            for node in (i, j):
                if node in OP_NODES and self.ops[node - 1] == NONE:
                    raise GenotypeError(f"edge ({i}, {j}) touches node {node}, whose op is 'none'")
        self._check_connected(vocab)
        return self

    def _check_connected(self, vocab: OpVocabulary) -> None:
        parents, children = self.parents(), self.children()
        for node in self.used_nodes():
            if not parents[node]:
                raise GenotypeError(f"node {node} ({self.ops[node - 1]}) has no parent: every "
                                    "used node needs an edge from the input or an earlier node")
            if not children[node]:
                raise GenotypeError(f"node {node} ({self.ops[node - 1]}) has no child: it does "
                                    "not reach the output")
        if vocab.min_edges > 0 and not parents[OUTPUT]:
            raise GenotypeError("the output node has no parent")
        if len(self.edges) < vocab.min_edges or len(self.used_nodes()) < vocab.min_op_nodes:
            raise GenotypeError(
                f"a {self.space!r} cell needs >= {vocab.min_edges} edges and >= "
                f"{vocab.min_op_nodes} op nodes; got {len(self.edges)} edges and "
                f"{len(self.used_nodes())} op nodes")

    # ------------------------------------------------------------------ structure
    def used_nodes(self) -> tuple[int, ...]:
        return tuple(n for n in OP_NODES if self.ops[n - 1] != NONE)

    def parents(self) -> dict[int, list[int]]:
        result: dict[int, list[int]] = {n: [] for n in range(NUM_NODES)}
        for i, j in self.edges:
            result[j].append(i)
        return result

    def children(self) -> dict[int, list[int]]:
        result: dict[int, list[int]] = {n: [] for n in range(NUM_NODES)}
        for i, j in self.edges:
            result[i].append(j)
        return result

    def label(self, node: int) -> str:
        if node == INPUT:
            return "input"
        if node == OUTPUT:
            return "output"
        op = self.ops[node - 1]
        return op if op == NONE else f"{op}:{self.kernels[node - 1]}"

    def depth(self) -> int:
        """Number of op nodes on the longest input->output path."""
        longest = {INPUT: 0}
        for i, j in self.edges:  # sorted by source, and sources precede targets
            step = 0 if j == OUTPUT else 1
            longest[j] = max(longest.get(j, 0), longest.get(i, 0) + step)
        return longest.get(OUTPUT, 0)

    # ------------------------------------------------------------------ identity
    def canonical(self) -> CellGenotype:
        """The representative of this cell's isomorphism class (see `canonical_order`)."""
        order = canonical_order(self)
        relabel = {old: new for new, old in enumerate(order, start=1)}
        relabel[INPUT], relabel[OUTPUT] = INPUT, OUTPUT
        ops = [NONE] * 6
        kernels = [0] * 6
        for old, new in relabel.items():
            if old in OP_NODES:
                ops[new - 1], kernels[new - 1] = self.ops[old - 1], self.kernels[old - 1]
        edges = tuple((relabel[i], relabel[j]) for i, j in self.edges)
        return CellGenotype(tuple(ops), tuple(kernels), edges, self.space)

    @property
    def hash(self) -> str:
        """Isomorphism-invariant identity: 16 hex digits of SHA-256 of the canonical form."""
        if not self._hash:
            object.__setattr__(self, "_hash", canonical_hash(self.canonical()))
        return self._hash

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "ops": list(self.ops), "kernels": list(self.kernels),
                "edges": [list(e) for e in self.edges]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellGenotype:
        """Parse and validate; any malformed field raises `GenotypeError`."""
        if not isinstance(data, Mapping):
            raise GenotypeError(f"a cell genotype is a JSON object; got {type(data).__name__}")
        missing = {"ops", "kernels", "edges"} - set(data)
        if missing:
            raise GenotypeError(f"cell genotype lacks {sorted(missing)}; expected keys "
                                "'ops' (6 names), 'kernels' (6 ints), 'edges' ([[i, j], ...])")
        try:
            edges = [(strict_int(i, "edge end"), strict_int(j, "edge end"))
                     for i, j in data["edges"]]
            kernels = tuple(strict_int(k, "kernel") for k in data["kernels"])
            cell = cls(tuple(data["ops"]), kernels, tuple(edges), str(data.get("space", "cell")))
        except (TypeError, ValueError) as err:
            if isinstance(err, HgnasError):
                raise
            raise GenotypeError(f"malformed cell genotype {dict(data)!r}: {err}") from None
        return cell.validate()

    @classmethod
    def from_json(cls, text: str) -> CellGenotype:
        return cls.from_dict(_loads(text))

    def __str__(self) -> str:
        return self.to_json()


def canonical_hash(canon: CellGenotype) -> str:
    """`hash` of a cell given its canonical form (`cell.canonical()`, or what `sample_cell`
    returns), without computing that form again: the canonical form is its own canonical form."""
    payload = json.dumps([canon.space, canon.ops, canon.kernels, canon.edges])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def strict_int(value: Any, what: str) -> int:
    """An int from JSON, refusing floats and bools that `int()` would silently truncate."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GenotypeError(f"{what} must be an integer; got {value!r}")
    return int(value)


def _check_node(vocab: OpVocabulary, node: int, op: str, kernel: int) -> None:
    if op == NONE:
        if kernel != 0:
            raise GenotypeError(f"node {node} is 'none' but has kernel {kernel}; use 0")
        return
    if op not in vocab.ops:
        raise GenotypeError(f"node {node} has unknown op {op!r}; the {vocab.name!r} space allows "
                            f"{', '.join(vocab.ops)} or 'none'")
    allowed = vocab.allowed_kernels(op)
    if kernel not in allowed:
        raise GenotypeError(f"node {node} ({op}) has kernel {kernel}; allowed: {list(allowed)}")


MAX_JSON_DEPTH = 8  # a macro genotype nests 5 deep ({stages: [{cell: {edges: [[i, j]]}}]})


def _loads(text: str, hint: str = "") -> Any:
    """Parse a JSON genotype; anything that is not one (bad syntax, nesting deeper than any
    genotype, a number past Python's digit limit) is a `GenotypeError`, never another error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise GenotypeError(f"malformed JSON genotype {text[:60]!r}: {err.msg} at column "
                            f"{err.colno}{hint}") from None
    except RecursionError:
        raise GenotypeError(f"JSON genotype {text[:20]!r}... nests deeper than any genotype "
                            f"(at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError:  # json's only other failure: an integer past Python's digit limit
        raise GenotypeError(f"JSON genotype {text[:20]!r}... holds a number of more than "
                            f"{sys.get_int_max_str_digits()} digits") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise GenotypeError(f"JSON genotype {text[:20]!r}... nests deeper than any genotype "
                            f"(at most {MAX_JSON_DEPTH} levels)")
    return data


def _depth(data: Any) -> int:
    """Nesting depth of lists and objects, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:  # deeper is refused anyway: stop walking
                stack.extend((v, depth + 1) for v in
                             (value.values() if isinstance(value, dict) else value))
    return deepest


def canonical_order(cell: CellGenotype) -> tuple[int, ...]:
    """Order of the used op nodes that every isomorphic cell maps to the same encoding.

    Nodes are coloured by Weisfeiler-Lehman refinement over labels, parents and children; a
    topological order is then built by always taking the smallest available colour, branching
    only where equal colours tie, and the branch with the smallest encoding wins. The result is
    exact (not just a WL hash) because the branching explores every tie.
    """
    used = cell.used_nodes()
    colours = _wl_colours(cell)
    parents = cell.parents()
    best: tuple | None = None
    best_order: tuple[int, ...] = ()
    for order in _tie_orders(used, parents, colours):
        key = _encode(cell, order, colours)
        if best is None or key < best:
            best, best_order = key, order
    return best_order


def _wl_colours(cell: CellGenotype) -> dict[int, int]:
    nodes = (INPUT, *cell.used_nodes(), OUTPUT)
    parents, children = cell.parents(), cell.children()
    labels = {n: cell.label(n) for n in nodes}
    ranks = {lab: r for r, lab in enumerate(sorted(set(labels.values())))}
    colours = {n: ranks[labels[n]] for n in nodes}
    for _ in range(len(nodes)):
        sigs = {n: (colours[n], tuple(sorted(colours[p] for p in parents[n])),
                    tuple(sorted(colours[c] for c in children[n]))) for n in nodes}
        ranks2 = {sig: r for r, sig in enumerate(sorted(set(sigs.values())))}
        new = {n: ranks2[sigs[n]] for n in nodes}
        if len(set(new.values())) == len(set(colours.values())):
            return new
        colours = new
    return colours


def _tie_orders(used: Iterable[int], parents: dict[int, list[int]],
                colours: dict[int, int]) -> Iterable[tuple[int, ...]]:
    remaining = set(used)

    def extend(prefix: tuple[int, ...], placed: set[int]) -> Iterable[tuple[int, ...]]:
        if len(prefix) == len(remaining):
            yield prefix
            return
        ready = [n for n in remaining - placed
                 if all(p == INPUT or p in placed for p in parents[n])]
        low = min(colours[n] for n in ready)
        for n in sorted(n for n in ready if colours[n] == low):
            yield from extend((*prefix, n), placed | {n})

    yield from extend((), set())


def _encode(cell: CellGenotype, order: tuple[int, ...], colours: dict[int, int]) -> tuple:
    index = {old: new for new, old in enumerate(order, start=1)}
    index[INPUT], index[OUTPUT] = INPUT, OUTPUT
    edges = tuple(sorted((index[i], index[j]) for i, j in cell.edges))
    return tuple(colours[n] for n in order), edges


def cell_from_edges(ops: Mapping[int, tuple[str, int]], edges: Iterable[tuple[int, int]],
                    space: str = "cell") -> CellGenotype:
    """Build a cell from {node: (op, kernel)} for used nodes and an edge list (not validated)."""
    op_list = [NONE] * 6
    kernels = [0] * 6
    for node, (op, k) in ops.items():
        op_list[node - 1], kernels[node - 1] = op, k
    return CellGenotype(tuple(op_list), tuple(kernels), tuple(edges), space)
