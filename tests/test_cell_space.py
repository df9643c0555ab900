"""The cell space (DESIGN 2.1): genotype, validity, identity, sampling, mutation, encoding."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hgnas_ray.errors import GenotypeError, RegistryError
from hgnas_ray.space import (
    CellGenotype,
    Nb201Genotype,
    format_genotype,
    genotype_from_dict,
    get_vocabulary,
    mutate_cell,
    nb201_to_cell,
    parse_genotype,
    sample_cell,
    sample_genotype,
)
from hgnas_ray.space.cell import INPUT, OP_NODES, OUTPUT, cell_from_edges
from hgnas_ray.space.cell_sampling import all_edges, prune, resolve_skips
from hgnas_ray.space.decoding import decode_cell, read_cell
from hgnas_ray.space.encoding import (
    GLOBAL,
    NUM_FEATURES,
    ROLE_GLOBAL,
    ROLE_INPUT,
    ROLE_OUTPUT,
    cell_to_arrays,
    cell_to_data,
)
from hgnas_ray.space.nb201 import sample_nb201
from hgnas_ray.space.nb201_cells import distinct_nb201_cells, nb201_arch
from hgnas_ray.space.vocab import CELL_OPS, KERNELS, MAX_OP_SLOTS, NONE, SKIP

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(max_examples=200, deadline=None)


def make_cell(nodes: dict[int, tuple[str, int]], edges, space: str = "cell") -> CellGenotype:
    return cell_from_edges(nodes, edges, space)


# A small valid cell: 0 -> 1 (conv 3) -> 2 (sep_conv 5) -> 7, plus the residual 0 -> 7.
CHAIN = make_cell({1: ("conv", 3), 2: ("sep_conv", 5)}, [(0, 1), (1, 2), (2, 7), (0, 7)])


@pytest.fixture(scope="module")
def cells() -> list[CellGenotype]:
    rng = np.random.default_rng(2024)
    return [sample_cell(rng) for _ in range(10_000)]


# ---------------------------------------------------------------------------- vocabulary
def test_vocabularies() -> None:
    cell = get_vocabulary("cell")
    assert cell.ops == CELL_OPS and len(cell.ops) == 9
    assert all(cell.allowed_kernels(op) == KERNELS for op in cell.ops)
    assert len(cell.choices) == 27 and (cell.min_edges, cell.min_op_nodes) == (3, 1)
    nb201 = get_vocabulary("nb201")
    assert nb201.choices == (("nor_conv_1x1", 1), ("nor_conv_3x3", 3), ("avg_pool_3x3", 3))
    with pytest.raises(RegistryError, match="valid names: cell, nb201"):
        get_vocabulary("darts")
    with pytest.raises(RegistryError, match="skip"):
        cell.op_index("skip")


# ---------------------------------------------------------------------------- serialisation
def test_genotype_is_frozen_hashable_and_normalised() -> None:
    same = CellGenotype(list(CHAIN.ops), list(CHAIN.kernels), [(2, 7), (0, 1), (1, 2), (0, 7),
                                                               (0, 1)])
    assert same == CHAIN and hash(same) == hash(CHAIN) and len({same, CHAIN}) == 1
    assert same.edges == ((0, 1), (0, 7), (1, 2), (2, 7))  # sorted, deduplicated
    with pytest.raises(AttributeError):
        CHAIN.ops = ()  # type: ignore[misc]


def test_cell_round_trips_through_dict_and_json(cells) -> None:
    for cell in [CHAIN, *cells[:500]]:
        data = cell.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert CellGenotype.from_dict(data) == cell
        assert CellGenotype.from_json(cell.to_json()) == cell
        assert CellGenotype.from_json(str(cell)).hash == cell.hash
        assert genotype_from_dict(json.loads(cell.to_json())) == cell


@pytest.mark.parametrize("space", ["cell", "macro", "nb201"])
def test_parse_format_round_trip(space: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        genotype = sample_genotype(space, rng)
        text = format_genotype(genotype)
        assert "\n" not in text
        parsed = parse_genotype(text)
        assert parsed == genotype and type(parsed) is type(genotype)
        assert parse_genotype(f"  {text}\n") == genotype


def test_nb201_space_cell_round_trips() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        cell = sample_cell(rng, "nb201")
        assert cell.space == "nb201"
        assert CellGenotype.from_json(cell.to_json()) == cell
        assert parse_genotype(format_genotype(cell)) == cell


@pytest.mark.parametrize("text", ["", "   ", "{bad", "[1, 2]", "42", '"cell"', '{"ops": 1}',
                                  '{"space": "cell", "edges": []}'])
def test_parse_genotype_rejects_garbage(text: str) -> None:
    with pytest.raises(GenotypeError):
        parse_genotype(text)


@pytest.mark.parametrize("data", [
    {"ops": ["conv"] * 6, "kernels": [3] * 6, "edges": [[0, 1, 2]]},
    {"ops": ["conv"] * 6, "kernels": [3] * 6, "edges": [5]},
    {"ops": ["conv"] * 6, "kernels": ["x"] * 6, "edges": []},
    {"ops": ["conv"] * 6, "kernels": None, "edges": []},
    {"ops": ["conv"] * 6, "edges": []},
    ["not", "a", "dict"],
])
def test_from_dict_rejects_malformed_fields(data) -> None:
    with pytest.raises(GenotypeError):
        CellGenotype.from_dict(data)


def test_malformed_json_is_a_genotype_error() -> None:
    with pytest.raises(GenotypeError, match="malformed JSON"):
        CellGenotype.from_json('{"ops": ["conv", ')
    with pytest.raises(GenotypeError, match="not JSON"):
        parse_genotype('{"ops": ["conv", ')


# ---------------------------------------------------------------------------- validity
OK_OPS = ["conv", "sep_conv", "none", "none", "none", "none"]
OK_KERNELS = [3, 5, 0, 0, 0, 0]
OK_EDGES = [[0, 1], [1, 2], [2, 7], [0, 7]]


def _cell_dict(ops=None, kernels=None, edges=None) -> dict:
    return {"space": "cell", "ops": OK_OPS if ops is None else ops,
            "kernels": OK_KERNELS if kernels is None else kernels,
            "edges": OK_EDGES if edges is None else edges}


def test_reference_cell_is_valid() -> None:
    assert CellGenotype.from_dict(_cell_dict()) == CHAIN


@pytest.mark.parametrize(("data", "needles"), [
    (_cell_dict(ops=["conv", "fancy_conv", *OK_OPS[2:]]), ["node 2", "'fancy_conv'", "sep_conv"]),
    (_cell_dict(ops=["conv", "skip", *OK_OPS[2:]]), ["node 2", "'skip'"]),
    (_cell_dict(kernels=[7, 5, 0, 0, 0, 0]), ["node 1", "kernel 7", "[1, 3, 5]"]),
    (_cell_dict(kernels=[3, 5, 3, 0, 0, 0]), ["node 3", "'none'", "kernel 3"]),
    (_cell_dict(ops=["conv", "sep_conv", "conv", *OK_OPS[3:]], kernels=[3, 5, 3, 0, 0, 0],
                edges=[*OK_EDGES, [0, 3], [3, 2]]), ["edge (3, 2)"]),
    (_cell_dict(edges=[*OK_EDGES, [2, 2]]), ["edge (2, 2)"]),
    (_cell_dict(edges=[*OK_EDGES, [7, 8]]), ["edge (7, 8)"]),
    (_cell_dict(edges=[*OK_EDGES, [1, 4]]), ["edge (1, 4)", "node 4", "'none'"]),
    (_cell_dict(edges=[[0, 1], [0, 2], [2, 7], [0, 7]]), ["node 1", "no child"]),
    (_cell_dict(edges=[[1, 2], [2, 7], [0, 7], [1, 7]]), ["node 1", "no parent"]),
    (_cell_dict(ops=["conv"] * 5, kernels=[3] * 5), ["6 op nodes", "5 ops"]),
    (_cell_dict(kernels=[3] * 7), ["7 kernels"]),
    (_cell_dict(ops=["conv", *["none"] * 5], kernels=[3, 0, 0, 0, 0, 0], edges=[[0, 1], [1, 7]]),
     [">= 3 edges", "got 2 edges"]),
    (_cell_dict(ops=["none"] * 6, kernels=[0] * 6, edges=[[0, 7]]), [">= 1 op nodes"]),
])
def test_validate_names_the_offender(data: dict, needles: list[str]) -> None:
    with pytest.raises(GenotypeError) as info:
        CellGenotype.from_dict(data)
    for needle in needles:
        assert needle in str(info.value)


def test_nb201_vocabulary_accepts_small_and_empty_cells() -> None:
    one_edge = make_cell({}, [(0, 7)], "nb201")
    assert one_edge.validate() is one_edge
    empty = make_cell({}, [], "nb201")
    assert empty.validate() is empty  # NAS-Bench-201 allows cells with no input->output path
    with pytest.raises(GenotypeError, match="kernel 3"):
        make_cell({1: ("nor_conv_1x1", 3)}, [(0, 1), (1, 7)], "nb201").validate()
    with pytest.raises(GenotypeError, match="'conv'"):
        make_cell({1: ("conv", 3)}, [(0, 1), (1, 7)], "nb201").validate()


def test_structure_helpers() -> None:
    assert CHAIN.used_nodes() == (1, 2)
    assert CHAIN.parents()[7] == [0, 2] and CHAIN.children()[0] == [1, 7]
    assert CHAIN.depth() == 2
    assert [CHAIN.label(n) for n in (0, 1, 2, 3, 7)] == ["input", "conv:3", "sep_conv:5", "none",
                                                         "output"]
    wide = make_cell({1: ("conv", 3), 2: ("conv", 3), 3: ("conv", 1)},
                     [(0, 1), (0, 2), (1, 3), (2, 7), (3, 7)])
    assert wide.depth() == 2
    assert make_cell({}, [(0, 7)], "nb201").depth() == 0


# ---------------------------------------------------------------------------- identity
def _random_topological_relabel(cell: CellGenotype, rng: np.random.Generator) -> CellGenotype:
    """The same cell with its op nodes moved to random slots in a random topological order."""
    used = list(cell.used_nodes())
    parents = cell.parents()
    order: list[int] = []
    while len(order) < len(used):
        ready = [n for n in used if n not in order
                 and all(p == INPUT or p in order for p in parents[n])]
        order.append(ready[int(rng.integers(len(ready)))])
    slots = sorted(int(s) for s in rng.choice(OP_NODES, size=len(used), replace=False))
    relabel = {INPUT: INPUT, OUTPUT: OUTPUT, **dict(zip(order, slots, strict=True))}
    ops, kernels = [NONE] * 6, [0] * 6
    for old in used:
        ops[relabel[old] - 1] = cell.ops[old - 1]
        kernels[relabel[old] - 1] = cell.kernels[old - 1]
    edges = [(relabel[i], relabel[j]) for i, j in cell.edges]
    assert all(i < j for i, j in edges)
    return CellGenotype(tuple(ops), tuple(kernels), tuple(edges), cell.space)


@PROPERTY
@given(seed=SEEDS, relabel_seed=SEEDS)
def test_hash_is_invariant_under_relabelling(seed: int, relabel_seed: int) -> None:
    cell = sample_cell(np.random.default_rng(seed))
    twin = _random_topological_relabel(cell, np.random.default_rng(relabel_seed))
    twin.validate()
    assert twin.hash == cell.hash
    assert twin.canonical() == cell.canonical() == cell
    assert len(twin.edges) == len(cell.edges)


def _changed_cells(cell: CellGenotype) -> list[CellGenotype]:
    """Every valid cell one op/kernel change, one added edge or one removed edge away."""
    used = cell.used_nodes()
    nodes = {n: (cell.ops[n - 1], cell.kernels[n - 1]) for n in used}
    result = []
    for node in used:
        for choice in cell.vocab.choices:
            if choice != nodes[node]:
                result.append(make_cell({**nodes, node: choice}, cell.edges, cell.space))
    endpoints = (INPUT, *used, OUTPUT)
    for i, j in itertools.combinations(endpoints, 2):
        if (i, j) not in cell.edges:
            result.append(make_cell(nodes, (*cell.edges, (i, j)), cell.space))
    for edge in cell.edges:
        result.append(make_cell(nodes, [e for e in cell.edges if e != edge], cell.space))
    valid = []
    for candidate in result:
        try:
            valid.append(candidate.validate())
        except GenotypeError:
            pass
    return valid


@PROPERTY
@given(seed=SEEDS, pick=st.integers(min_value=0, max_value=10**6))
def test_hash_changes_with_any_op_or_edge_change(seed: int, pick: int) -> None:
    cell = sample_cell(np.random.default_rng(seed))
    neighbours = _changed_cells(cell)
    assume(neighbours)
    changed = neighbours[pick % len(neighbours)]
    assert changed.hash != cell.hash
    assert changed.canonical() != cell.canonical()


def test_every_single_change_changes_the_hash(cells) -> None:
    for cell in cells[:40]:
        neighbours = _changed_cells(cell)
        assert neighbours
        assert all(n.hash != cell.hash for n in neighbours)


def test_hash_depends_on_structure_not_only_labels() -> None:
    a = make_cell({1: ("conv", 3), 2: ("sep_conv", 3)}, [(0, 1), (1, 2), (2, 7)])
    b = make_cell({1: ("sep_conv", 3), 2: ("conv", 3)}, [(0, 1), (1, 2), (2, 7)])
    parallel = make_cell({1: ("conv", 3), 2: ("sep_conv", 3)}, [(0, 1), (0, 2), (1, 7), (2, 7)])
    swapped = make_cell({3: ("sep_conv", 3), 5: ("conv", 3)}, [(0, 3), (0, 5), (3, 7), (5, 7)])
    assert len({a.hash, b.hash, parallel.hash}) == 3
    assert swapped.hash == parallel.hash and swapped.canonical() == parallel.canonical()
    assert len(a.hash) == 16 and int(a.hash, 16) >= 0
    assert make_cell({1: ("conv", 3)}, [(0, 1), (1, 7)], "nb201").hash != \
        make_cell({1: ("conv", 3)}, [(0, 1), (1, 7)]).hash


def _brute_force_key(cell: CellGenotype) -> tuple:
    """Minimum over every topological numbering of (labels in order, sorted edges)."""
    used = cell.used_nodes()
    best = None
    for order in itertools.permutations(used):
        index = {old: new for new, old in enumerate(order, start=1)}
        index[INPUT], index[OUTPUT] = INPUT, OUTPUT
        edges = tuple(sorted((index[i], index[j]) for i, j in cell.edges))
        if any(i >= j for i, j in edges):
            continue
        key = (tuple(cell.label(n) for n in order), edges)
        best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("labels", [[("conv", 3)], [("conv", 3), ("conv", 1)]])
def test_hash_is_exact_isomorphism_test(labels) -> None:
    """Few labels make ties (and isomorphic pairs) common: hash equality must match a brute
    force canonical form exactly, in both directions."""
    rng = np.random.default_rng(11)
    pool = []
    for _ in range(400):
        cell = sample_cell(rng)
        nodes = {n: labels[int(rng.integers(len(labels)))] for n in cell.used_nodes()}
        pool.append(make_cell(nodes, cell.edges).validate())
    by_hash = {c.hash: _brute_force_key(c) for c in pool}
    by_key = {_brute_force_key(c): c.hash for c in pool}
    assert len(by_hash) == len(by_key)  # no collisions and no split classes
    assert len(by_hash) < len(pool)  # the pool really contains isomorphic pairs


# ---------------------------------------------------------------------------- sampling
def test_ten_thousand_sampled_cells_are_valid_and_canonical(cells) -> None:
    vocab = get_vocabulary("cell")
    for cell in cells:
        assert cell.validate() is cell
        assert cell.canonical() == cell
        assert cell.space == "cell"
        assert len(cell.edges) >= vocab.min_edges
        assert len(cell.used_nodes()) >= vocab.min_op_nodes
        assert SKIP not in cell.ops
        used = cell.used_nodes()
        assert used == tuple(range(1, len(used) + 1))  # canonical form packs nodes low


def test_sampled_cells_cover_the_space(cells) -> None:
    ops = Counter((c.ops[n - 1], c.kernels[n - 1]) for c in cells for n in c.used_nodes())
    assert set(ops) == set(get_vocabulary("cell").choices)
    edges = Counter(e for c in cells for e in c.edges)
    assert set(edges) == set(all_edges())
    sizes = Counter(len(c.used_nodes()) for c in cells)
    assert set(sizes) == {1, 2, 3, 4, 5, 6}
    assert len({c.hash for c in cells}) > 9_500  # duplicates only among tiny cells


def test_sampling_is_deterministic_per_seed() -> None:
    first = [sample_cell(np.random.default_rng(5)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert [sample_cell(rng_a) for _ in range(50)] == [sample_cell(rng_b) for _ in range(50)]


def test_nb201_space_sampling() -> None:
    rng = np.random.default_rng(1)
    vocab = get_vocabulary("nb201")
    for _ in range(1_000):
        cell = sample_cell(rng, "nb201")
        assert cell.validate() is cell and cell.canonical() == cell
        assert len(cell.edges) >= 1
        assert {(cell.ops[n - 1], cell.kernels[n - 1]) for n in cell.used_nodes()} <= \
            set(vocab.choices)


def test_unknown_space_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="valid names"):
        sample_cell(np.random.default_rng(0), "darts")


def test_resolve_skips_chain() -> None:
    ops, edges = resolve_skips({1: (SKIP, 0), 2: ("conv", 3)}, {(0, 1), (1, 2), (2, 7)})
    assert ops == {2: ("conv", 3)}
    assert edges == {(0, 2), (2, 7)}


def test_resolve_skips_connects_every_parent_to_every_child() -> None:
    ops = {1: ("conv", 3), 2: ("conv", 1), 3: (SKIP, 0), 4: ("sep_conv", 3), 5: ("avg_pool", 3)}
    edges = {(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (3, 5), (4, 7), (5, 7)}
    before = (dict(ops), set(edges))
    new_ops, new_edges = resolve_skips(ops, edges)
    assert (ops, edges) == before  # the inputs are not modified
    assert 3 not in new_ops and set(new_ops) == {1, 2, 4, 5}
    assert new_edges == {(0, 1), (0, 2), (1, 4), (1, 5), (2, 4), (2, 5), (4, 7), (5, 7)}


def test_resolve_skips_chained_and_residual() -> None:
    # 0 -> 1 (skip) -> 2 (skip) -> 7: both disappear into a plain residual 0 -> 7.
    ops, edges = resolve_skips({1: (SKIP, 0), 2: (SKIP, 0)}, {(0, 1), (1, 2), (2, 7)})
    assert ops == {} and edges == {(0, 7)}
    # A skip next to an existing parallel edge does not duplicate it.
    ops, edges = resolve_skips({1: (SKIP, 0), 2: ("conv", 3)}, {(0, 1), (0, 2), (1, 2), (2, 7)})
    assert ops == {2: ("conv", 3)} and edges == {(0, 2), (2, 7)}


def test_prune_drops_nodes_off_every_path() -> None:
    ops = {1: ("conv", 3), 2: ("conv", 3), 3: ("conv", 3), 4: (NONE, 0)}
    edges = {(0, 1), (1, 7), (2, 7), (1, 3), (0, 4), (4, 7)}
    new_ops, new_edges = prune(ops, edges)
    assert new_ops == {1: ("conv", 3)}  # 2 has no parent, 3 no child, 4 is none
    assert new_edges == {(0, 1), (1, 7)}


# ---------------------------------------------------------------------------- mutation
def test_cell_mutation_returns_valid_different_cells(cells) -> None:
    rng = np.random.default_rng(0)
    for cell in cells[:500]:
        child = mutate_cell(cell, rng)
        assert child.validate() is child
        assert child.hash != cell.hash
        assert child.canonical() == child and SKIP not in child.ops


def test_cell_mutation_chain_and_minimal_cell() -> None:
    rng = np.random.default_rng(1)
    cell = make_cell({1: ("conv", 3)}, [(0, 1), (1, 7), (0, 7)]).validate()  # the floor
    seen = {cell.hash}
    for _ in range(300):
        cell = mutate_cell(cell, rng)
        cell.validate()
        seen.add(cell.hash)
    assert len(seen) > 200


def test_nb201_space_mutation() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        cell = sample_cell(rng, "nb201")
        child = mutate_cell(cell, rng)
        assert child.validate() is child and child.hash != cell.hash and child.space == "nb201"


def test_mutation_is_deterministic_per_seed(cells) -> None:
    a = [mutate_cell(c, np.random.default_rng(4)) for c in cells[:50]]
    b = [mutate_cell(c, np.random.default_rng(4)) for c in cells[:50]]
    assert a == b


# ---------------------------------------------------------------------------- encoding
def test_cell_to_arrays_layout() -> None:
    adj, feats = cell_to_arrays(CHAIN)
    assert adj.shape == (9, 9) and feats.shape == (9, NUM_FEATURES) == (9, 15)
    assert adj.dtype == feats.dtype == np.float32
    assert (adj[GLOBAL] == 1).all() and (adj[:, GLOBAL] == 1).all()
    assert (np.diag(adj) == 1).all()
    expected = {(0, 1), (1, 2), (2, 7), (0, 7)}
    for i in range(8):
        for j in range(8):
            if i != j:
                assert adj[i, j] == ((i, j) in expected), (i, j)
    conv, sep = CELL_OPS.index("conv"), CELL_OPS.index("sep_conv")
    assert feats[1, conv] == 1 and feats[1, ROLE_GLOBAL + 1 + KERNELS.index(3)] == 1
    assert feats[2, sep] == 1 and feats[2, ROLE_GLOBAL + 1 + KERNELS.index(5)] == 1
    assert feats[1].sum() == feats[2].sum() == 2
    assert feats[0, ROLE_INPUT] == feats[7, ROLE_OUTPUT] == feats[8, ROLE_GLOBAL] == 1
    assert feats[0].sum() == feats[7].sum() == feats[8].sum() == 1
    assert not feats[3:7].any()  # unused nodes: all-zero features


def test_encoding_of_sampled_cells(cells) -> None:
    for cell in cells[:1_000]:
        adj, feats = cell_to_arrays(cell)
        upper = np.triu(adj[:8, :8], k=1)
        assert upper.sum() == len(cell.edges) and not np.tril(adj[:8, :8], k=-1).any()
        assert (adj[GLOBAL] == 1).all() and (adj[:, GLOBAL] == 1).all()
        assert (np.diag(adj) == 1).all()
        used = set(cell.used_nodes())
        for node in range(8):
            op_sum = feats[node, :MAX_OP_SLOTS].sum()
            kernel_sum = feats[node, ROLE_GLOBAL + 1:].sum()
            roles = feats[node, ROLE_INPUT:ROLE_GLOBAL + 1]
            if node in used:
                assert op_sum == kernel_sum == 1 and not roles.any()
            elif node in (INPUT, OUTPUT):
                assert op_sum == kernel_sum == 0 and roles.sum() == 1
            else:
                assert not feats[node].any()


def test_cell_to_data() -> None:
    data = cell_to_data(CHAIN)
    adj, feats = cell_to_arrays(CHAIN)
    assert tuple(data.x.shape) == (9, 15) and data.x.dtype == torch.float32
    assert tuple(data.adj.shape) == (1, 9, 9)
    assert data.edge_index.shape == (2, int(adj.sum())) and data.edge_index.dtype == torch.long
    assert data.num_nodes == 9
    dense = torch.zeros(9, 9)
    dense[data.edge_index[0], data.edge_index[1]] = 1
    assert torch.equal(dense, torch.from_numpy(adj))
    assert torch.equal(data.x, torch.from_numpy(feats))


def _perfect_logits(cell: CellGenotype) -> tuple[np.ndarray, np.ndarray]:
    adj, feats = cell_to_arrays(cell)
    return (adj - 0.5) * 10, (feats - 0.5) * 10


def test_decode_inverts_encode(cells) -> None:
    for cell in cells[:1_000]:
        assert decode_cell(*_perfect_logits(cell)) == cell
    adj, feats = _perfect_logits(CHAIN)
    assert decode_cell(torch.from_numpy(adj), torch.from_numpy(feats)) == CHAIN.canonical()
    assert decode_cell(adj[:8, :8], feats[:8]) == CHAIN.canonical()  # without the global node


def test_decode_inverts_encode_nb201_space() -> None:
    rng = np.random.default_rng(8)
    for _ in range(300):
        cell = nb201_to_cell(sample_nb201(rng)).canonical()
        assert decode_cell(*_perfect_logits(cell), space="nb201") == cell


def test_nb201_decoding_returns_the_most_likely_real_nb201_cell() -> None:
    """An 8-node cell of the nb201 vocabulary that is no NAS-Bench-201 cell (a 6-op chain)
    decodes to a real one; one flipped logit of a real cell still decodes to that cell."""
    chain = make_cell({n: ("nor_conv_3x3", 3) for n in OP_NODES},
                      [(i, i + 1) for i in range(7)], "nb201")
    assert nb201_arch(chain) is None
    decoded = decode_cell(*_perfect_logits(chain), space="nb201")
    assert nb201_arch(decoded) is not None and set(decoded.ops) == {"nor_conv_3x3", "none"}
    cell = nb201_to_cell(Nb201Genotype.from_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    )).canonical()
    adj, feats = _perfect_logits(cell)
    i, j = next((i, j) for i in range(8) for j in range(i + 1, 8) if adj[i, j] < 0)
    adj[i, j] = 1.0  # a weakly wrong edge
    assert decode_cell(adj, feats, space="nb201") == cell
    assert len(distinct_nb201_cells()) == 5257
    assert all(nb201_arch(c) is not None for c in distinct_nb201_cells()[:50])


def test_read_cell_takes_the_logits_as_they_are() -> None:
    rng = np.random.default_rng(4)
    for _ in range(100):
        cell = sample_cell(rng)
        assert read_cell(*_perfect_logits(cell)) == cell
    real = nb201_to_cell(sample_nb201(rng)).canonical()
    assert read_cell(*_perfect_logits(real), space="nb201") == real
    chain = make_cell({n: ("nor_conv_3x3", 3) for n in OP_NODES},
                      [(i, i + 1) for i in range(7)], "nb201")
    assert read_cell(*_perfect_logits(chain), space="nb201") is None  # no NB201 cell
    adj, feats = _perfect_logits(CHAIN)
    adj[:, 2] = -10.0  # node 2 loses its parent: the decoder would repair it, read_cell not
    assert read_cell(adj, feats) is None
    assert decode_cell(adj, feats).validate()


def _logit_cases(rng: np.random.Generator, count: int):
    shape_a, shape_f = (9, 9), (9, 15)
    for value in (0.0, 50.0, -50.0, 1e6, -1e6):
        yield np.full(shape_a, value), np.full(shape_f, value)
    yield np.full(shape_a, 50.0), np.full(shape_f, -50.0)
    yield np.full(shape_a, -50.0), np.full(shape_f, 50.0)
    scales = (0.01, 0.3, 1.0, 3.0, 10.0, 100.0)
    for index in range(count):
        scale, shift = scales[index % len(scales)], rng.normal() * 3
        yield rng.normal(size=shape_a) * scale + shift, rng.normal(size=shape_f) * scale + shift


@pytest.mark.parametrize(("space", "count"), [("cell", 2_000), ("nb201", 300)])
def test_decode_random_logits_always_valid(space: str, count: int) -> None:
    rng = np.random.default_rng(13)
    vocab = get_vocabulary(space)
    distinct = set()
    for adj, feats in _logit_cases(rng, count):
        cell = decode_cell(adj, feats, space=space)
        assert cell.space == space
        assert cell.validate() is cell and cell.canonical() == cell
        if space == "nb201":
            assert nb201_arch(cell) is not None  # a real NAS-Bench-201 cell
        else:
            assert len(cell.edges) >= max(vocab.min_edges, 1)
            assert len(cell.used_nodes()) >= vocab.min_op_nodes
            assert cell.parents()[OUTPUT]
        distinct.add(cell.hash)
    assert len(distinct) > count // 2


def test_decode_accepts_float32_torch_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        adj = torch.randn(9, 9, generator=gen, dtype=torch.float32) * 5
        feats = torch.randn(9, 15, generator=gen, dtype=torch.float32) * 5
        decode_cell(adj.requires_grad_(), feats).validate()
