"""The cell corpus (DESIGN 2.1, 5): distinct cells in Parquet shards, and their ZC scores.

Public API (no Ray here; `hgnas_ray.distributed.corpus_scoring` runs the scorer on Ray Data):
    CorpusSpec(space, n, seed=0, shard_size=10_000, enumerate_all=False)
    build_corpus(out_dir, spec, progress=True) -> BuildReport   # resumable, deterministic
    unique_rows(spec) -> Iterator[CellRow]                       # the stream build_corpus writes
    CELL_SCHEMA, CORPUS_SCHEMA_VERSION, rows_to_table, table_cells
    cell_shards(corpus_dir), read_cell_shard(path, columns), load_manifest(corpus_dir)
    ScoringConfig, CorpusScorer(config_dict), score_schema(proxies), plan_scoring(...)
    load_scored_corpus(corpus_dir, proxies=None, space=None) -> ScoredCorpus   # cells + raw ZC

Layout: ``<dir>/manifest.json``, ``<dir>/cells/part-NNNNN.parquet``, and by default scores in
``<dir>/scores/part-NNNNN.parquet`` (one per cell shard, same id) with ``scores/scoring.json``.
"""

from hgnas_ray.corpus.build import (
    CORPUS_SPACES,
    DEFAULT_SHARD_SIZE,
    NB201_DISTINCT_CELLS,
    BuildReport,
    CorpusSpec,
    build_corpus,
    unique_rows,
)
from hgnas_ray.corpus.reading import ScoredCorpus, load_scored_corpus
from hgnas_ray.corpus.schema import (
    CELL_SCHEMA,
    CORPUS_SCHEMA_VERSION,
    CellRow,
    rows_to_table,
    table_cells,
)
from hgnas_ray.corpus.scoring import (
    CorpusScorer,
    ScoringConfig,
    ScoringPlan,
    default_scores_dir,
    plan_scoring,
    score_schema,
)
from hgnas_ray.corpus.shards import (
    ShardError,
    cell_shards,
    list_shards,
    load_manifest,
    read_cell_shard,
    read_shard,
)

__all__ = [
    "CELL_SCHEMA",
    "CORPUS_SCHEMA_VERSION",
    "CORPUS_SPACES",
    "DEFAULT_SHARD_SIZE",
    "NB201_DISTINCT_CELLS",
    "BuildReport",
    "CellRow",
    "CorpusScorer",
    "CorpusSpec",
    "ScoringConfig",
    "ScoredCorpus",
    "ScoringPlan",
    "ShardError",
    "build_corpus",
    "cell_shards",
    "default_scores_dir",
    "list_shards",
    "load_manifest",
    "load_scored_corpus",
    "plan_scoring",
    "read_cell_shard",
    "read_shard",
    "rows_to_table",
    "score_schema",
    "table_cells",
    "unique_rows",
]
