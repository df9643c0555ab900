"""The Parquet schema of a cell corpus shard, and how a cell becomes one row.

One row per distinct cell (distinct by `CellGenotype.hash`, isomorphism-invariant):

======================  =====================================  ===================================
column                  arrow type                             meaning
======================  =====================================  ===================================
``hash``                string                                 16 hex digits, the cell's identity
``space``               string                                 ``"cell"`` or ``"nb201"``
``space_version``       int32                                  ``CORPUS_SCHEMA_VERSION``
``genotype``            string                                 the line ``format_genotype`` prints:
                                                               cell JSON, or the NAS-Bench-201
                                                               arch string (``hgnas score`` /
                                                               ``hgnas space describe`` read it)
``adjacency``           fixed_size_list<uint8>[64]             8x8 adjacency, row-major, of the
                                                               canonical 8-node form; [i*8+j] = 1
                                                               for an edge i -> j
``ops``                 fixed_size_list<string>[6]             op of nodes 1..6 ("none" = unused)
``kernels``             fixed_size_list<int8>[6]               kernel of nodes 1..6 (0 = unused)
``num_edges``           int16                                  edges of the 8-node form
``num_op_nodes``        int8                                   used op nodes
======================  =====================================  ===================================

For NAS-Bench-201 the 8-node columns hold ``nb201_to_cell(genotype)`` in canonical form, so cells
of both spaces are encoded alike; ``genotype`` keeps the arch string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from hgnas_ray.space.cell import NUM_NODES, CellGenotype

CORPUS_SCHEMA_VERSION = 1
ADJACENCY_SIZE = NUM_NODES * NUM_NODES  # 64
NUM_OP_NODES = 6
VERSION_KEY = b"hgnas.corpus_schema_version"

CELL_SCHEMA = pa.schema(
    [
        ("hash", pa.string()),
        ("space", pa.string()),
        ("space_version", pa.int32()),
        ("genotype", pa.string()),
        ("adjacency", pa.list_(pa.uint8(), ADJACENCY_SIZE)),
        ("ops", pa.list_(pa.string(), NUM_OP_NODES)),
        ("kernels", pa.list_(pa.int8(), NUM_OP_NODES)),
        ("num_edges", pa.int16()),
        ("num_op_nodes", pa.int8()),
    ],
    metadata={VERSION_KEY: str(CORPUS_SCHEMA_VERSION).encode()},
)


@dataclass(frozen=True)
class CellRow:
    """A corpus row before it is columnised. ``cell`` is the canonical 8-node form."""

    hash: str
    genotype: str
    cell: CellGenotype


def rows_to_table(rows: Sequence[CellRow]) -> pa.Table:
    """Columnise rows into a table with `CELL_SCHEMA` (about 5 us per row)."""
    n = len(rows)
    adjacency = np.zeros((n, ADJACENCY_SIZE), dtype=np.uint8)
    for r, row in enumerate(rows):
        for i, j in row.cell.edges:
            adjacency[r, i * NUM_NODES + j] = 1
    columns = {
        "hash": pa.array([row.hash for row in rows], pa.string()),
        "space": pa.array([row.cell.space for row in rows], pa.string()),
        "space_version": pa.array(np.full(n, CORPUS_SCHEMA_VERSION, np.int32)),
        "genotype": pa.array([row.genotype for row in rows], pa.string()),
        "adjacency": pa.FixedSizeListArray.from_arrays(
            pa.array(adjacency.reshape(-1), pa.uint8()), ADJACENCY_SIZE),
        # from flat arrays: pa.array over Python tuples into a fixed-size list is ~100x slower
        "ops": pa.FixedSizeListArray.from_arrays(
            pa.array([op for row in rows for op in row.cell.ops], pa.string()), NUM_OP_NODES),
        "kernels": pa.FixedSizeListArray.from_arrays(
            pa.array([k for row in rows for k in row.cell.kernels], pa.int8()), NUM_OP_NODES),
        "num_edges": pa.array([len(row.cell.edges) for row in rows], pa.int16()),
        "num_op_nodes": pa.array([len(row.cell.used_nodes()) for row in rows], pa.int8()),
    }
    return pa.table(columns, schema=CELL_SCHEMA)


def table_cells(table: pa.Table) -> list[CellGenotype]:
    """The 8-node cells of a corpus table (the inverse of the adjacency/ops/kernels columns)."""
    adjacency = np.asarray(table.column("adjacency").combine_chunks().flatten()).reshape(
        -1, NUM_NODES, NUM_NODES)
    cells = []
    for adj, ops, kernels, space in zip(adjacency, table.column("ops").to_pylist(),
                                        table.column("kernels").to_pylist(),
                                        table.column("space").to_pylist(), strict=True):
        edges = tuple(zip(*np.nonzero(adj), strict=True))
        cells.append(CellGenotype(tuple(ops), tuple(kernels), edges, space))
    return cells
