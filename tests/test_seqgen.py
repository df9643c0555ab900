"""The sequence generator: vocabulary, transformer, training and constrained decoding.

Untrained tiny transformers (one layer, 32 wide) are enough for the decoding properties: the
masks, not the model, keep every sequence valid and within budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgnas_ray.errors import BudgetError, ConfigError, GenotypeError
from hgnas_ray.models.seqgen import (
    MAX_DOWNSAMPLES,
    MAX_SEQUENCE_LENGTH,
    PROMPT_LENGTH,
    LayoutDecoder,
    LayoutGrammar,
    MacroLayout,
    PartialLayout,
    SeqGen,
    SeqVocabulary,
    StageLayout,
    task_from_dict,
    tiny_config,
)
from hgnas_ray.models.seqgen.costs import PooledLowerBound, chain_cells, layout_lower_bound
from hgnas_ray.nn.budget import Budget
from hgnas_ray.nn.builder import TaskShape
from hgnas_ray.nn.cost_model import macro_cost, smallest_cost
from hgnas_ray.space.cell_sampling import sample_cell
from hgnas_ray.space.macro import MAX_CELLS, sample_macro
from hgnas_ray.training import TrainConfig
from hgnas_ray.training.seqgen import train_seqgen

K = 6  # cell clusters
VOCAB = SeqVocabulary(K)
TASKS = (TaskShape(10, 32, 3), TaskShape(100, 64, 3), TaskShape(1000, 224, 3))


def _model(seed: int = 0) -> SeqGen:
    torch.manual_seed(seed)
    return SeqGen(tiny_config(len(VOCAB))).eval()


DECODER = LayoutDecoder(_model(), VOCAB, layout_lower_bound)


def _random_layout(rng: np.random.Generator) -> MacroLayout:
    genotype = sample_macro(rng, max_width=1024)
    clusters = rng.integers(K, size=len(genotype.stages))
    return MacroLayout.from_genotype(genotype, clusters)


def _cheapest_network(layout: MacroLayout, task: TaskShape):
    """The layout with, in each stage, the chain cell of fewest params (what the bound uses)."""
    cells = []
    from hgnas_ray.models.seqgen.costs import cell_pair_costs, cheapest_of
    from hgnas_ray.nn.cost_model import stem_cost

    _, side = stem_cost(task, layout.stem_channels)
    width = layout.stem_channels
    for s in layout.stages:
        pairs = cell_pair_costs(chain_cells(), width, s.channels, s.stride, side)
        cells.append(cheapest_of(chain_cells(), pairs, s.repeats)[0])
        side, width = -(-side // s.stride), s.channels
    return layout.with_cells(cells)


# ---------------------------------------------------------------------- vocabulary
def test_layouts_round_trip_through_tokens():
    rng = np.random.default_rng(0)
    for _ in range(200):
        layout = _random_layout(rng)
        ids = VOCAB.encode(TASKS[0], Budget(1_000_000), layout)
        assert len(ids) <= MAX_SEQUENCE_LENGTH and ids[0] == VOCAB.bos
        assert VOCAB.decode_layout(ids) == layout
        assert VOCAB.decode_layout(ids[PROMPT_LENGTH:]) == layout  # without the prompt
        assert LayoutGrammar(VOCAB).parse(ids[PROMPT_LENGTH:]).to_layout() == layout


def test_prompt_buckets_name_task_and_budget():
    tokens = [VOCAB.tokens[i] for i in VOCAB.prompt(TaskShape(10, 32, 3), Budget(1_000_000))]
    assert tokens == ["<bos>", "classes:<=10", "size:<=32", "in:3", "params:1e6.00", "macs:none"]
    tokens = [VOCAB.tokens[i] for i in VOCAB.prompt(TaskShape(1000, 224, 1),
                                                    Budget(None, 450_000_000))]
    assert tokens == ["<bos>", "classes:<=1000", "size:<=224", "in:1", "params:none",
                      "macs:1e8.50"]
    huge = [VOCAB.tokens[i] for i in VOCAB.prompt(TaskShape(50_000, 1024, 7), Budget(10, 10))]
    assert huge[1:] == ["classes:>10000", "size:>512", "in:>4", "params:1e3.00", "macs:1e4.00"]


def test_malformed_sequences_and_task_fields_are_refused():
    layout = MacroLayout(16, (StageLayout(0, 1, 32, 2),), 64)
    ids = VOCAB.encode_layout(layout)
    with pytest.raises(GenotypeError, match="not a layout sequence"):
        VOCAB.decode_layout(ids[:-1])  # no <end>
    with pytest.raises(GenotypeError, match="expected a s:"):
        VOCAB.decode_layout([ids[0], ids[1], ids[1], *ids[3:]])
    with pytest.raises(GenotypeError, match="cluster 9"):
        VOCAB.encode_layout(MacroLayout(16, (StageLayout(9, 1, 32, 2),), 64))
    with pytest.raises(ConfigError, match=r"unknown task field\(s\) \['classes'\]"):
        task_from_dict({"classes": 10, "input_size": 32})
    assert task_from_dict({"num_classes": 10, "input_size": 32}) == TaskShape(10, 32, 3)


# ---------------------------------------------------------------------- transformer
def test_transformer_shapes_repr_and_reset():
    model = _model()
    logits = model(torch.randint(len(VOCAB), (3, 20)))
    assert logits.shape == (3, 20, len(VOCAB))
    text = repr(model)
    assert text.startswith("SeqGen(vocab_size=") and "n_layer=1" in text
    snapshots = []
    for _ in range(2):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model.reset_parameters()
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    before = snapshots[0]
    for name, value in snapshots[1].items():
        assert torch.equal(value, before[name]), name  # same seed, same initialisation
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, MAX_SEQUENCE_LENGTH + 1, dtype=torch.long))


def test_tiny_seqgen_loss_falls():
    rng = np.random.default_rng(1)
    layouts = [_random_layout(rng) for _ in range(4)]  # a few sequences to memorise
    rows = np.zeros((32, MAX_SEQUENCE_LENGTH), dtype=np.int64)
    for i in range(len(rows)):
        ids = VOCAB.encode(TASKS[i % 3], Budget(10 ** (5 + i % 3)), layouts[i % 4])
        rows[i, : len(ids)] = ids
    history = []
    train_seqgen(_model(), rows, TrainConfig(epochs=12, batch_size=16, lr=3e-3, device="cpu"),
                 lambda epoch, metrics, _: history.append(metrics["loss"]))
    assert history[-1] < 0.6 * history[0]


# ---------------------------------------------------------------------- grammar
def test_grammar_enforces_the_space_rules():
    grammar = LayoutGrammar(VOCAB)
    assert grammar.allowed(PartialLayout()) == VOCAB.width_ids
    stem_only = PartialLayout(stem=16)
    assert VOCAB.head not in grammar.allowed(stem_only)  # at least one stage
    three_down = PartialLayout(16, tuple(StageLayout(0, 2, 16, 1) for _ in range(3)), (1,))
    assert grammar.allowed(three_down) == VOCAB.stride_ids[:1]  # at most 3 stride-2 stages
    full = PartialLayout(16, tuple(StageLayout(0, 1, 16, 4) for _ in range(4)))
    assert set(grammar.allowed(full)) == {*VOCAB.cluster_ids, VOCAB.head}
    assert grammar.allowed(PartialLayout(16, full.stages, (0, 1, 16))) == VOCAB.repeat_ids[:3]
    capped = PartialLayout(16, (*full.stages, StageLayout(0, 1, 16, 3)))
    assert grammar.allowed(capped) == (VOCAB.head,)  # 19 cells: no more stages


# ---------------------------------------------------------------------- cost bounds
def test_lower_bound_is_exact_on_cheapest_cells_and_below_every_network():
    rng = np.random.default_rng(2)
    grammar = LayoutGrammar(VOCAB)
    for index in range(18):
        task = TASKS[index % 3]
        layout = _random_layout(rng)
        ids = VOCAB.encode_layout(layout)
        params, macs = layout_lower_bound(task, grammar.parse(ids))
        assert macro_cost(_cheapest_network(layout, task), task).params == params
        cost = macro_cost(layout.with_cells([sample_cell(rng) for _ in layout.stages]), task)
        assert cost.params >= params and cost.macs >= macs
        for cut in range(len(ids)):  # every prefix bounds the finished network from below
            low = layout_lower_bound(task, grammar.parse(ids[:cut]))
            assert low[0] <= params and low[1] <= macs


def test_pooled_bound_uses_the_clusters_cells():
    rng = np.random.default_rng(3)
    pools = {k: [sample_cell(rng) for _ in range(3)] for k in range(K)}
    bound = PooledLowerBound(pools)
    task = TASKS[0]
    layout = _random_layout(rng)
    prefix = LayoutGrammar(VOCAB).parse(VOCAB.encode_layout(layout))
    cheapest = [min(pools[s.cluster], key=lambda c, s=s: macro_cost(
        layout.with_cells([c if t is s else chain_cells()[0] for t in layout.stages]),
        task).params) for s in layout.stages]
    assert bound(task, prefix)[0] == macro_cost(layout.with_cells(cheapest), task).params
    assert bound(task, prefix)[0] >= layout_lower_bound(task, prefix)[0]


# ---------------------------------------------------------------------- decoding
def _limit(minimum: int, scale: float | None) -> int | None:
    return None if scale is None else int(minimum * scale)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(task_index=st.integers(0, len(TASKS) - 1),
       params_scale=st.one_of(st.none(), st.just(1.0), st.floats(1.0, 1e4)),
       macs_scale=st.one_of(st.none(), st.just(1.0), st.floats(1.0, 1e4)),
       seed=st.integers(0, 2**16))
def test_decoding_never_emits_an_invalid_or_over_budget_layout(task_index, params_scale,
                                                                 macs_scale, seed):
    task = TASKS[task_index]
    low = smallest_cost(task, MAX_DOWNSAMPLES)
    budget = Budget(_limit(low.params, params_scale), _limit(low.macs, macs_scale))
    try:
        layouts = DECODER.sample(task, budget, 2, temperature=1.5,
                                 generator=torch.Generator().manual_seed(seed))
    except BudgetError as err:  # both limits at once may be infeasible; one never is
        assert budget.max_params is not None and budget.max_macs is not None, err
        assert "both limits" in str(err) or "gave up" in str(err), err
        return
    grammar = LayoutGrammar(VOCAB)
    for layout in layouts:
        layout.validate(K)
        assert layout.num_cells <= MAX_CELLS and layout.num_downsamples <= MAX_DOWNSAMPLES
        ids = VOCAB.encode(task, budget, layout)
        assert VOCAB.decode_layout(ids) == layout
        params, macs = layout_lower_bound(task, grammar.parse(ids[PROMPT_LENGTH:]))
        assert budget.allows(type(low)(params, macs))
        network = _cheapest_network(layout, task)  # it fits when it is the params-cheapest
        if budget.max_macs is None:
            assert budget.allows(macro_cost(network, task))


def test_tightest_budgets_decode_to_the_smallest_networks():
    task = TASKS[0]
    low = smallest_cost(task, MAX_DOWNSAMPLES)
    for budget in (Budget(low.params), Budget(None, low.macs)):
        for layout in DECODER.sample(task, budget, 3, generator=torch.Generator().manual_seed(1)):
            cost = macro_cost(_cheapest_network(layout, task), task)
            assert budget.max_params is None or cost.params == low.params


def test_decoding_is_seeded_and_unlimited_budgets_need_no_checks():
    task = TASKS[1]
    first = DECODER.sample(task, Budget(), 4, generator=torch.Generator().manual_seed(7))
    again = DECODER.sample(task, Budget(), 4, generator=torch.Generator().manual_seed(7))
    other = DECODER.sample(task, Budget(), 4, generator=torch.Generator().manual_seed(8))
    assert first == again and first != other


def test_an_impossible_budget_names_the_smallest_cost_in_its_unit():
    task = TASKS[0]
    low = smallest_cost(task, MAX_DOWNSAMPLES)
    with pytest.raises(BudgetError, match=f"smallest has {low.params:,} parameters; raise "
                                          f"--max-params to at least {low.params:,}"):
        DECODER.sample(task, Budget(low.params - 1), 1)
    with pytest.raises(BudgetError, match=f"smallest needs {low.macs:,} MACs.*not FLOPs"):
        DECODER.sample(task, Budget(None, low.macs - 1), 1)
    with pytest.raises(ConfigError, match="temperature"):
        DECODER.sample(task, Budget(), 1, temperature=0.0)
