"""The cell corpus core (no Ray): schema, deduplication, manifest, resume, corrupt shards."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hgnas_ray.cli import main
from hgnas_ray.corpus import (
    CELL_SCHEMA,
    CORPUS_SCHEMA_VERSION,
    NB201_DISTINCT_CELLS,
    CorpusScorer,
    CorpusSpec,
    ScoringConfig,
    ShardError,
    build_corpus,
    cell_shards,
    load_manifest,
    plan_scoring,
    read_cell_shard,
    score_schema,
    table_cells,
    unique_rows,
)
from hgnas_ray.corpus import build as build_module
from hgnas_ray.corpus.scoring import records_to_table, write_scored_shard
from hgnas_ray.corpus.shards import check_corpus, file_sha256
from hgnas_ray.errors import ConfigError, DataError, RegistryError
from hgnas_ray.space import Nb201Genotype, genotype_hash, parse_genotype, sample_cell
from hgnas_ray.space.cell import canonical_hash
from hgnas_ray.space.nb201 import NB201_NUM_CELLS

SPEC = CorpusSpec("cell", 50, seed=3, shard_size=20)


def _build(path, spec=SPEC):
    return build_corpus(path, spec, progress=False)


def _column(corpus, name):
    return [v for p in cell_shards(corpus) for v in read_cell_shard(p).column(name).to_pylist()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus")
    _build(path)
    return path


def test_canonical_hash_is_the_hash_of_a_canonical_cell():
    rng = np.random.default_rng(0)
    for _ in range(50):
        cell = sample_cell(rng)
        assert canonical_hash(cell) == cell.hash == canonical_hash(cell.canonical())


def test_shards_have_the_documented_schema_and_sizes(corpus):
    shards = cell_shards(corpus)
    assert [p.name for p in shards] == [f"part-0000{i}.parquet" for i in range(3)]
    tables = [read_cell_shard(p) for p in shards]
    assert [t.num_rows for t in tables] == [20, 20, 10]
    for table in tables:
        assert table.schema.equals(CELL_SCHEMA)
        assert table.schema.metadata == CELL_SCHEMA.metadata
        assert set(table.column("space_version").to_pylist()) == {CORPUS_SCHEMA_VERSION}


def test_rows_round_trip_through_the_genotype_text(corpus):
    table = pa.concat_tables(read_cell_shard(p) for p in cell_shards(corpus))
    for row, cell in zip(table.to_pylist(), table_cells(table), strict=True):
        parsed = parse_genotype(row["genotype"])  # what `hgnas score` / `space describe` read
        assert parsed == cell
        assert row["hash"] == genotype_hash(parsed)
        adjacency = np.zeros(64, np.uint8)
        for i, j in parsed.edges:
            adjacency[i * 8 + j] = 1
        assert row["adjacency"] == adjacency.tolist()
        assert (row["ops"], row["kernels"]) == (list(parsed.ops), list(parsed.kernels))
        assert row["num_edges"] == len(parsed.edges)
        assert row["num_op_nodes"] == len(parsed.used_nodes())


def test_cells_are_distinct_across_shards(corpus):
    hashes = _column(corpus, "hash")
    assert len(hashes) == len(set(hashes)) == 50


def test_manifest_describes_the_shards(corpus):
    manifest = load_manifest(corpus)
    assert manifest["complete"] and manifest["rows"] == 50
    assert (manifest["space"], manifest["n"], manifest["seed"]) == ("cell", 50, 3)
    assert manifest["schema_version"] == CORPUS_SCHEMA_VERSION
    assert manifest["sampling_seconds"] > 0 and manifest["package_version"]
    assert manifest["created"]
    for shard in manifest["shards"]:
        path = corpus / shard["file"]
        assert file_sha256(path) == shard["sha256"]
        assert read_cell_shard(path).num_rows == shard["rows"]
    assert check_corpus(corpus) == (50, [])


def test_build_is_deterministic_and_seeded(tmp_path, corpus):
    _build(tmp_path / "again")
    assert _column(tmp_path / "again", "genotype") == _column(corpus, "genotype")
    other = [r.hash for r in unique_rows(CorpusSpec("cell", 50, seed=4))]
    assert other != _column(corpus, "hash")


def test_killed_build_resumes_to_the_same_corpus(tmp_path, corpus, monkeypatch):
    real_write = build_module.write_table_atomic
    calls = []

    def dies_on_second_shard(table, path):
        calls.append(path)
        if len(calls) == 2:
            path.with_name(f".{path.name}.123.tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt  # the process is killed mid-write
        return real_write(table, path)

    monkeypatch.setattr(build_module, "write_table_atomic", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path)
    assert [p.name for p in cell_shards(tmp_path)] == ["part-00000.parquet"]
    assert not load_manifest(tmp_path)["complete"]
    monkeypatch.setattr(build_module, "write_table_atomic", real_write)
    report = _build(tmp_path)
    assert (report.shards_kept, report.shards_written, report.rows) == (1, 2, 50)
    assert _column(tmp_path, "genotype") == _column(corpus, "genotype")
    assert not list((tmp_path / "cells").glob(".*"))  # the stale temp file is gone
    assert check_corpus(tmp_path) == (50, [])
    assert _build(tmp_path).shards_written == 0  # complete: nothing to do


def test_other_arguments_on_an_existing_corpus_are_refused(tmp_path):
    _build(tmp_path)
    with pytest.raises(ConfigError, match="new --out"):
        _build(tmp_path, CorpusSpec("cell", 50, seed=4, shard_size=20))


def test_corrupt_shard_is_named_and_rebuilt(tmp_path, caplog):
    _build(tmp_path)
    shard = tmp_path / "cells" / "part-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ShardError, match="part-00001.parquet is unreadable or corrupt"):
        read_cell_shard(shard)
    rows, problems = check_corpus(tmp_path)
    assert rows == 30 and len(problems) == 1 and "part-00001.parquet" in problems[0]
    with caplog.at_level(logging.INFO, logger="hgnas_ray"):
        build_corpus(tmp_path, SPEC, progress=False)
    assert "rewriting part-00001.parquet" in caplog.text
    assert check_corpus(tmp_path) == (50, [])


def test_a_parquet_file_that_is_not_a_shard_is_refused(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"hash": ["x"]}), path)
    with pytest.raises(ShardError, match="not a corpus shard"):
        read_cell_shard(path)


def test_nb201_enumeration_dedups_to_the_distinct_cells(tmp_path):
    report = build_corpus(tmp_path, CorpusSpec("nb201", 0, shard_size=3000, enumerate_all=True),
                          progress=False)
    assert report.rows == NB201_DISTINCT_CELLS < NB201_NUM_CELLS
    hashes = _column(tmp_path, "hash")
    assert len(set(hashes)) == NB201_DISTINCT_CELLS
    table = read_cell_shard(cell_shards(tmp_path)[0]).slice(0, 30)
    for row, cell in zip(table.to_pylist(), table_cells(table), strict=True):
        genotype = parse_genotype(row["genotype"])  # the arch string
        assert isinstance(genotype, Nb201Genotype)
        assert row["hash"] == genotype_hash(genotype) == cell.hash


def test_nb201_sampling_and_the_enumeration_switch():
    sampled = list(unique_rows(CorpusSpec("nb201", 40, seed=1)))
    assert len({r.hash for r in sampled}) == 40
    assert all(r.genotype.startswith("|") for r in sampled)
    assert CorpusSpec("nb201", NB201_DISTINCT_CELLS).enumerates
    assert not CorpusSpec("nb201", NB201_DISTINCT_CELLS - 1).enumerates


@pytest.mark.parametrize("spec, match", [
    (CorpusSpec("macro", 5), "unknown corpus space"),
    (CorpusSpec("cell", 0), "--n must be >= 1"),
    (CorpusSpec("cell", 5, shard_size=0), "--shard-size"),
    (CorpusSpec("cell", 5, enumerate_all=True), "NAS-Bench-201 only"),
])
def test_bad_build_requests(spec, match):
    with pytest.raises((ConfigError, RegistryError), match=match):
        spec.validate()


# ---------------------------------------------------------------- scoring core (no Ray)
TINY = {"proxies": ["snip_snr", "nwot", "params"], "task": "digits", "batch_size": 16,
        "skeleton_channels": 4, "skeleton_cells": 1}


def test_corpus_scorer_keeps_failed_cells(corpus):
    scorer = CorpusScorer(TINY)
    table = read_cell_shard(cell_shards(corpus)[0], ["hash", "genotype"]).slice(0, 2)
    bad = pa.table({"hash": ["deadbeefdeadbeef", "0000000000000000"],
                    "genotype": ['{"ops": ["conv"]}', None]})
    scores = scorer(pa.concat_tables([table, bad]))
    assert scores.schema.equals(score_schema(TINY["proxies"]))
    rows = scores.to_pylist()
    assert [r["hash"] for r in rows] == table.column("hash").to_pylist() + [
        "deadbeefdeadbeef", "0000000000000000"]
    assert all(r["status"] == "ok" and r["params"] > 0 for r in rows[:2])
    for row in rows[2:]:
        assert row["status"] == "error" and row["error"]
        assert math.isnan(row["snip_snr"]) and row["snip_snr_status"] == "error"


def test_scored_shard_must_hold_every_cell_exactly_once(tmp_path, corpus):
    config = ScoringConfig(tuple(TINY["proxies"]))
    plan = plan_scoring(corpus, tmp_path, config)
    task = plan.pending[2]
    records = [{"hash": h, "genotype": "g", "status": "ok", "seconds": 0.1} for h in task.hashes]
    with pytest.raises(DataError, match="do not match"):
        write_scored_shard(task, [records_to_table(records[:-1] + records[:1], config.proxies)])
    assert not task.out_path.exists()
    write_scored_shard(task, [records_to_table(records[::-1], config.proxies)])
    assert pq.read_table(task.out_path).column("hash").to_pylist() == list(task.hashes)
    again = plan_scoring(corpus, tmp_path, config)
    assert [p.name for p in again.finished] == ["part-00002.parquet"]
    assert len(again.pending) == 2


def test_scoring_plan_names_a_corrupt_shard_and_keeps_the_rest(tmp_path):
    _build(tmp_path)
    (tmp_path / "cells" / "part-00001.parquet").write_bytes(b"not parquet at all")
    plan = plan_scoring(tmp_path, tmp_path / "scores", ScoringConfig(("params",)))
    assert list(plan.failed) == ["part-00001.parquet"]
    assert "part-00001.parquet is unreadable or corrupt" in plan.failed["part-00001.parquet"]
    assert [t.shard_id for t in plan.pending] == [0, 2]


def test_scores_of_other_settings_are_not_mixed(tmp_path, corpus):
    plan_scoring(corpus, tmp_path, ScoringConfig(("params",)))
    settings = json.loads((tmp_path / "scoring.json").read_text())["settings"]
    assert settings["proxies"] == ["params"]
    with pytest.raises(ConfigError, match="another --out"):
        plan_scoring(corpus, tmp_path, ScoringConfig(("nwot",)))


# ---------------------------------------------------------------- command line
def test_cli_build_and_check(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["corpus", "build", "--space", "cell", "--n", "12", "--seed", "1",
                 "--out", str(out), "--shard-size", "5", "--no-progress"]) == 0
    assert "12 distinct cells (cell space)" in capsys.readouterr().out
    assert main(["corpus", "check", "--corpus", str(out)]) == 0
    (out / "cells" / "part-00002.parquet").write_bytes(b"garbage")
    assert main(["corpus", "check", "--corpus", str(out)]) == 2
    assert "part-00002.parquet is unreadable or corrupt" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--proxies", "snip_snr,bogus"], "unknown proxy 'bogus'; valid names: grad_norm"),
    (["--batch-size", "1"], "--batch-size must be an integer in [2, 1024]"),
    (["--skeleton-channels", "-8"], "--skeleton-channels must be an integer in [1, 256]"),
    (["--skeleton-cells", "99999999"], "--skeleton-cells must be an integer in [1, 6]"),
    (["--seed", "-1"], "--seed must be an integer in [0, "),
])
def test_cli_score_rejects_bad_options_before_starting_ray(corpus, capsys, extra, message):
    assert main(["corpus", "score", "--corpus", str(corpus), "--task", "digits", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_scoring_config_checks_its_values():
    with pytest.raises(ConfigError, match=r"skeleton_channels must be an integer in \[1, 256\]"):
        ScoringConfig(("params",), skeleton_channels=0).validate()
    with pytest.raises(ConfigError, match="--device must be cpu, cuda or cuda:N"):
        ScoringConfig(("params",), device="foo").validate()
    assert ScoringConfig(("params",), device="cuda").validate().device == "cuda"  # a worker's


def test_cli_score_uses_the_named_network(corpus):
    from hgnas_ray.cli import build_parser
    from hgnas_ray.cli.corpus import scoring_config

    def config(*extra):
        return scoring_config(build_parser().parse_args(
            ["corpus", "score", "--corpus", str(corpus), "--task", "digits", *extra]))

    full, reduced = config(), config("--network", "reduced", "--skeleton-channels", "4")
    assert (full.skeleton_channels, full.skeleton_cells, full.batch_size) == (16, 5, 64)
    assert (reduced.skeleton_channels, reduced.skeleton_cells, reduced.batch_size) == (4, 1, 32)


def test_cli_score_on_an_empty_corpus(tmp_path, capsys):
    assert main(["corpus", "score", "--corpus", str(tmp_path), "--task", "digits"]) == 2
    assert "empty corpus: no cells/part-*.parquet" in capsys.readouterr().err


def test_scoring_json_names_the_network_and_every_device(tmp_path, corpus):
    config = ScoringConfig(("params",), skeleton_channels=8, skeleton_cells=1, batch_size=32)
    plan_scoring(corpus, tmp_path, config)
    plan_scoring(corpus, tmp_path, replace(config, device="cuda:1"))  # a resume on a GPU
    scoring = json.loads((tmp_path / "scoring.json").read_text())
    assert {k: scoring["network"][k] for k in ("channels", "cells_per_stage",
                                               "probe_batch_size")} == {
        "channels": 8, "cells_per_stage": 1, "probe_batch_size": 32}
    assert "benchmark's network" in scoring["network"]["costs"]
    assert scoring["devices"] == ["cpu", "cuda"]
