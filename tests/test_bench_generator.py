"""`hgnas bench generator` on a tiny artifact trained here (synthetic scores, as test_generator)."""

from __future__ import annotations

import json

import pytest

from hgnas_ray.bench.generator_quality import (
    GeneratorBenchConfig,
    corpus_score_fn,
    format_generator_report,
    run_generator_bench,
)
from hgnas_ray.cli import main
from hgnas_ray.corpus import CorpusSpec, build_corpus
from hgnas_ray.errors import ConfigError
from hgnas_ray.generator import CellGenerator, load_scored_corpus, write_synthetic_scores
from hgnas_ray.generator.cells.pretrain import PretrainConfig, pretrain_cells
from hgnas_ray.models import CCNFConfig
from hgnas_ray.models.gvae import GVAEConfig
from hgnas_ray.space import Nb201Genotype
from hgnas_ray.training import TrainConfig

TINY = PretrainConfig(
    gvae=GVAEConfig(hidden_dim=16, num_layers=2, latent_dim=8, decoder_hidden=32, cond_hidden=16),
    ccnf=CCNFConfig(hidden_dim=16, num_layers=2, method="rk4", step_size=0.5),
    gvae_train=TrainConfig(epochs=1, batch_size=16, device="cpu"),
    ccnf_train=TrainConfig(epochs=1, batch_size=16, device="cpu"), holdout_fraction=0.1)
SMALL = GeneratorBenchConfig(samples=40, temperatures=(0.4, 1.0), per_cluster=2, n_random=4,
                             nb201_cells=10)


def _artifact(tmp_path_factory, space: str):
    corpus = tmp_path_factory.mktemp(f"{space}_corpus")
    build_corpus(corpus, CorpusSpec(space, 60, seed=1, shard_size=30), progress=False)
    write_synthetic_scores(corpus)
    out = tmp_path_factory.mktemp(f"{space}_artifact")
    pretrain_cells(corpus, out, TINY)
    return corpus, out


@pytest.fixture(scope="module")
def cell_artifact(tmp_path_factory):
    return _artifact(tmp_path_factory, "cell")


def _check_unit(value):
    assert 0.0 <= value <= 1.0


def test_report_keys_and_ranges(cell_artifact):
    corpus_dir, artifact = cell_artifact
    generator = CellGenerator.load(artifact)
    corpus = load_scored_corpus(corpus_dir)
    report = run_generator_bench(generator, corpus, corpus_score_fn(corpus_dir), SMALL)
    assert report["heldout_cells"] == len(generator.heldout_hashes) > 0
    rec = report["reconstruction"]
    for key in ("op_accuracy", "kernel_accuracy", "adjacency_accuracy", "exact_cell_rate"):
        _check_unit(rec[key])
    assert set(report["sampling"]) == {"0.4", "1"}
    for s in report["sampling"].values():
        assert s["validity"] == 1.0 and s["invalid"] == 0 and s["samples"] == 40
        assert 0.0 <= s["validity_without_repair"] <= 1.0
        _check_unit(s["uniqueness"])
        _check_unit(s["novelty"])
    assert set(report["condition_r2"]["per_proxy"]) == set(generator.proxies)
    fidelity = report["fidelity"]
    assert set(fidelity["spearman"]) == set(generator.proxies)
    assert all(-1.0 <= v <= 1.0 for v in fidelity["spearman"].values() if v == v)
    assert len(fidelity["measured"]) == generator.num_clusters
    assert all(1 <= n <= 2 for n in fidelity["cells_per_cluster"])
    best = fidelity["best_vs_random"]["per_proxy"]["params"]
    assert best["ratio"] is not None and best["ratio"] > 0  # params: positive
    assert {"reconstruction", "condition_r2", "sampling_t0.4", "sampling_t1", "fidelity",
            "total"} <= set(report["timings_seconds"])
    text = format_generator_report(report)
    assert "| op_accuracy |" in text and "Spearman" in text
    json.dumps(report)  # JSON-able


def test_cli_json(cell_artifact, capsys):
    corpus_dir, artifact = cell_artifact
    code = main(["bench", "generator", "--artifact", str(artifact), "--corpus", str(corpus_dir),
                 "--samples", "16", "--temperatures", "1.0", "--no-fidelity", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sampling"]["1"]["validity"] == 1.0 and "fidelity" not in report


def test_table_needs_an_nb201_artifact(cell_artifact):
    corpus_dir, artifact = cell_artifact
    with pytest.raises(ConfigError, match="NAS-Bench-201"):
        run_generator_bench(CellGenerator.load(artifact), load_scored_corpus(corpus_dir), None,
                            SMALL, table=object())


class _FakeTable:  # the real table is data; any accuracy function checks the plumbing
    def test_accuracy(self, genotype: Nb201Genotype | str) -> float:
        return 50.0 + str(genotype).count("conv")


def test_nb201_accuracy_stage(tmp_path_factory):
    corpus_dir, artifact = _artifact(tmp_path_factory, "nb201")
    report = run_generator_bench(CellGenerator.load(artifact), load_scored_corpus(corpus_dir),
                                 None, SMALL, table=_FakeTable())
    acc = report["nb201_accuracy"]
    assert acc["sampled"] <= 10 and acc["unmappable"] == 0  # the decoder returns real cells
    assert 50.0 <= acc["random_mean_accuracy"] <= 56.0
    assert report["sampling"]["0.4"]["validity"] == 1.0
