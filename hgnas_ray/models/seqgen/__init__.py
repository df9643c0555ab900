"""The sequence generator (DESIGN 4): a structured vocabulary of macro layouts, a compact
decoder-only transformer, and grammar-constrained, budget-aware decoding.

    SeqVocabulary(num_clusters)         .prompt(task, budget), .encode, .decode_layout
    MacroLayout, StageLayout             a macro network with cluster ids in place of cells
    SeqGenConfig, SeqGen, tiny_config    the transformer (nanoGPT-like)
    LayoutDecoder(model, vocab, layout_lower_bound).sample(task, budget, n, temperature, g)

`layout_lower_bound` (the cost model's bounds) is imported from
`hgnas_ray.models.seqgen.costs`.
"""

from __future__ import annotations

from hgnas_ray.models.seqgen.decoding import (
    BudgetCheck,
    LayoutDecoder,
    LayoutGrammar,
    PartialLayout,
)
from hgnas_ray.models.seqgen.model import (
    SeqGen,
    SeqGenConfig,
    sequence_loss,
    small_config,
    tiny_config,
)
from hgnas_ray.models.seqgen.vocab import (
    MAX_DOWNSAMPLES,
    MAX_SEQUENCE_LENGTH,
    PROMPT_LENGTH,
    MacroLayout,
    SeqVocabulary,
    StageLayout,
    task_from_dict,
)

__all__ = ["MAX_DOWNSAMPLES", "MAX_SEQUENCE_LENGTH", "PROMPT_LENGTH", "BudgetCheck",
           "LayoutDecoder", "LayoutGrammar", "MacroLayout", "PartialLayout", "SeqGen",
           "SeqGenConfig", "SeqVocabulary", "StageLayout", "sequence_loss", "small_config",
           "task_from_dict", "tiny_config"]
