"""The macro generator (DESIGN 1, 4): the sequence generator trained on HL-Evo histories into a
versioned artifact, and sampling networks from it with the cell generator's cells.

Public API (no Ray here; `hgnas_ray.distributed.macro_pretrain` trains on Ray Train):
    MacroGenerator.load(path, cell_artifact) -> MacroGenerator
        .sample(task, budget, n, temperature, seed) -> list[MacroGenotype]
        .sample_layouts(...), .sample_with_layouts(...), .finetune(records), .save(dir)
    MacroPretrainConfig, pretrain_macro(histories, cell_artifact, out, config, trainer=None)
    read_history_records, select_top, parse_record, HistoryRecord   (the training data)
    FORMAT_VERSION, cell_artifact_digest
"""

from __future__ import annotations

from hgnas_ray.generator.macro.artifact import FORMAT_VERSION, cell_artifact_digest
from hgnas_ray.generator.macro.dataset import (
    HistoryRecord,
    parse_record,
    read_history_records,
    select_top,
)
from hgnas_ray.generator.macro.macro_generator import MacroGenerator
from hgnas_ray.generator.macro.pretrain import (
    LocalSeqGenTrainer,
    MacroPretrainConfig,
    pretrain_macro,
)

__all__ = ["FORMAT_VERSION", "HistoryRecord", "LocalSeqGenTrainer", "MacroGenerator",
           "MacroPretrainConfig", "cell_artifact_digest", "parse_record", "pretrain_macro",
           "read_history_records", "select_top"]
