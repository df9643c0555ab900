"""Random cells and cell mutation (DESIGN 2.1).

The sampler draws parents from the output backwards so nothing dangles, resolves `skip` nodes by
rewiring each skip node's parents to its children, prunes what no longer connects input to output,
and redraws until the cell meets its vocabulary's floor. Every random choice goes through the
caller's `numpy.random.Generator`.
"""

from __future__ import annotations

import numpy as np

from hgnas_ray.errors import GenotypeError
from hgnas_ray.space.cell import INPUT, NUM_NODES, OP_NODES, OUTPUT, CellGenotype, cell_from_edges
from hgnas_ray.space.vocab import NONE, SKIP, OpVocabulary, get_vocabulary

MAX_DRAWS = 10_000


def sample_cell(rng: np.random.Generator, space: str = "cell") -> CellGenotype:
    """Draw one valid cell, in canonical form."""
    vocab = get_vocabulary(space)
    for _ in range(MAX_DRAWS):
        ops, edges = _draw_raw(rng, vocab)
        ops, edges = resolve_skips(ops, edges)
        ops, edges = prune(ops, edges)
        cell = cell_from_edges(ops, edges, space)
        if _meets_floor(cell, vocab):
            return cell.canonical()
    raise GenotypeError(f"no valid {space!r} cell after {MAX_DRAWS} draws")  # pragma: no cover


def _draw_raw(rng: np.random.Generator, vocab: OpVocabulary
              ) -> tuple[dict[int, tuple[str, int]], set[tuple[int, int]]]:
    active = {OUTPUT}
    edges: set[tuple[int, int]] = set()
    for j in range(OUTPUT, 0, -1):  # output first, then nodes 6..1
        if j not in active:
            continue
        n_parents = int(rng.integers(1, j + 1))
        for p in rng.choice(j, size=n_parents, replace=False):
            edges.add((int(p), j))
            active.add(int(p))
    names = (*vocab.ops, SKIP)
    ops = {}
    for node in sorted(active & set(OP_NODES)):
        op = names[int(rng.integers(len(names)))]
        kernels = vocab.kernels[vocab.ops.index(op)] if op != SKIP else (0,)
        ops[node] = (op, int(kernels[int(rng.integers(len(kernels)))]))
    return ops, edges


def resolve_skips(ops: dict[int, tuple[str, int]], edges: set[tuple[int, int]]
                  ) -> tuple[dict[int, tuple[str, int]], set[tuple[int, int]]]:
    """Remove every skip node, connecting each of its parents to each of its children."""
    ops, edges = dict(ops), set(edges)
    for node in sorted(n for n, (op, _) in ops.items() if op == SKIP):
        parents = [i for i, j in edges if j == node]
        children = [j for i, j in edges if i == node]
        edges = {(i, j) for i, j in edges if node not in (i, j)}
        edges |= {(p, c) for p in parents for c in children}
        del ops[node]
    return ops, edges


def prune(ops: dict[int, tuple[str, int]], edges: set[tuple[int, int]]
          ) -> tuple[dict[int, tuple[str, int]], set[tuple[int, int]]]:
    """Keep only nodes on some input->output path (and drop nodes whose op is none)."""
    live = {n for n, (op, _) in ops.items() if op != NONE} | {INPUT, OUTPUT}
    edges = {(i, j) for i, j in edges if i in live and j in live}
    forward = _reach(INPUT, edges, forward=True)
    backward = _reach(OUTPUT, edges, forward=False)
    keep = (forward & backward) | {INPUT, OUTPUT}
    edges = {(i, j) for i, j in edges if i in keep and j in keep}
    return {n: v for n, v in ops.items() if n in keep and v[0] != NONE}, edges


def _reach(start: int, edges: set[tuple[int, int]], forward: bool) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        for i, j in edges:
            nxt = j if forward and i == node else i if not forward and j == node else None
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _meets_floor(cell: CellGenotype, vocab: OpVocabulary) -> bool:
    return (len(cell.edges) >= max(vocab.min_edges, 1)
            and len(cell.used_nodes()) >= vocab.min_op_nodes)


def mutate_cell(cell: CellGenotype, rng: np.random.Generator, max_tries: int = 200
                ) -> CellGenotype:
    """Change one node's parents, or one node's op or kernel ('none' adds or removes a node).

    Returns a valid cell with a different hash, in canonical form.
    """
    vocab = cell.vocab
    for _ in range(max_tries):
        ops = {n: (cell.ops[n - 1], cell.kernels[n - 1]) for n in cell.used_nodes()}
        edges = set(cell.edges)
        if rng.random() < 0.5:
            ops, edges = _mutate_op(ops, edges, rng, vocab)
        else:
            edges = _mutate_parents(ops, edges, rng)
        ops, edges = prune(ops, edges)
        child = cell_from_edges(ops, edges, cell.space)
        if _meets_floor(child, vocab) and _is_valid(child) and child.hash != cell.hash:
            return child.canonical()
    raise GenotypeError(f"could not mutate cell {cell} in {max_tries} tries")


def _mutate_op(ops, edges, rng, vocab):
    node = int(rng.choice(OP_NODES))
    choices = [c for c in vocab.choices if c != ops.get(node)]
    if node in ops:
        choices.append((NONE, 0))
    op, k = choices[int(rng.integers(len(choices)))]
    ops = dict(ops)
    if op == NONE:
        del ops[node]
        return ops, {(i, j) for i, j in edges if node not in (i, j)}
    if node not in ops:  # a new node: one parent below it, one child above it
        below = [n for n in (INPUT, *ops) if n < node]
        above = [n for n in (*ops, OUTPUT) if n > node]
        edges = edges | {(int(rng.choice(below)), node), (node, int(rng.choice(above)))}
    ops[node] = (op, k)
    return ops, edges


def _mutate_parents(ops, edges, rng):
    targets = [*ops, OUTPUT]
    node = int(rng.choice(targets))
    candidates = [n for n in (INPUT, *ops) if n < node]
    size = int(rng.integers(1, len(candidates) + 1))
    parents = {int(p) for p in rng.choice(candidates, size=size, replace=False)}
    return {(i, j) for i, j in edges if j != node} | {(p, node) for p in parents}


def _is_valid(cell: CellGenotype) -> bool:
    try:
        cell.validate()
    except GenotypeError:
        return False
    return True


def all_edges() -> list[tuple[int, int]]:
    return [(i, j) for j in range(1, NUM_NODES) for i in range(j)]
