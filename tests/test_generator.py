"""The cell generator without Ray: pretraining into an artifact, loading it, sampling, the CLI.

Tiny models (hidden 16, latent 8, rk4 CCNF) trained for one epoch on 40 cells with synthetic,
finite ZC scores; every test takes well under a second after the module's two pretrainings.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from hgnas_ray.cli import main
from hgnas_ray.corpus import CorpusSpec, build_corpus, score_schema
from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.generator import (
    ARTIFACT_FILE,
    ArtifactError,
    CellGenerator,
    ClusterIdError,
    ConditionError,
    GenerationWarning,
    SpaceMismatchError,
    ZCTransform,
    load_scored_corpus,
    nb201_arch,
    write_synthetic_scores,
)
from hgnas_ray.generator.cells.artifact import FORMAT_VERSION
from hgnas_ray.generator.cells.pretrain import PretrainConfig, pretrain_cells
from hgnas_ray.models import CCNFConfig
from hgnas_ray.models.gvae import GVAEConfig
from hgnas_ray.space import CellGenotype, Nb201Genotype, nb201_to_cell, parse_genotype
from hgnas_ray.space.cell_sampling import sample_cell
from hgnas_ray.space.nb201 import sample_nb201
from hgnas_ray.training import TrainConfig

CELLS, NAN_EVERY = 40, 7  # cells 0, 7, 14, ... have a NaN proxy: 6 of 40
TINY = PretrainConfig(
    gvae=GVAEConfig(hidden_dim=16, num_layers=2, latent_dim=8, decoder_hidden=32, cond_hidden=16),
    ccnf=CCNFConfig(hidden_dim=16, num_layers=2, method="rk4", step_size=0.5),
    gvae_train=TrainConfig(epochs=1, batch_size=16, device="cpu"),
    ccnf_train=TrainConfig(epochs=1, batch_size=16, device="cpu"))
TINY_FLAGS = ["--max-epochs", "1", "--hidden", "16", "--gvae-layers", "2", "--latent", "8",
              "--decoder-hidden", "32", "--ccnf-hidden", "16", "--ccnf-layers", "2",
              "--ccnf-method", "rk4", "--ccnf-step-size", "0.5", "--batch-size", "16"]


def _scored_corpus(path, space: str):
    build_corpus(path, CorpusSpec(space, CELLS, seed=1, shard_size=16), progress=False)
    write_synthetic_scores(path, nan_every=NAN_EVERY)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _scored_corpus(tmp_path_factory.mktemp("corpus"), "cell")


@pytest.fixture(scope="module")
def artifact(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("artifact")
    manifest = pretrain_cells(corpus, out, TINY)
    return out, manifest


@pytest.fixture(scope="module")
def generator(artifact):
    return CellGenerator.load(artifact[0])


@pytest.fixture(scope="module")
def nb201_artifact(tmp_path_factory):
    corpus = _scored_corpus(tmp_path_factory.mktemp("nb201_corpus"), "nb201")
    out = tmp_path_factory.mktemp("nb201_artifact")
    pretrain_cells(corpus, out, TINY)
    return out


def _copy(artifact_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(artifact_dir, target)
    return target


# ---------------------------------------------------------------------- pretraining, artifact
def test_pretrain_counts_cells_excluded_from_the_zc_targets(artifact):
    _, manifest = artifact
    data = manifest["data"]
    assert (data["cells"], data["labelled"], data["unlabelled"]) == (CELLS, 34, 6)
    assert data["unlabelled_by_reason"] == {"nan_or_not_ok": 6, "nan_or_not_ok:snip_snr": 6}
    assert data["heldout_cells"] == round(0.05 * 34) == len(manifest["heldout_hashes"])
    assert data["train_cells"] == CELLS - data["heldout_cells"]  # unlabelled: reconstruction
    assert data["ccnf_cells"] == 34 - data["heldout_cells"]  # measured ZC: labelled only
    assert manifest["zc_transform"]["log_scaled"] == ["params"]
    assert manifest["zc_transform"]["normalizer"]["n_excluded"] == 6


def test_artifact_layout_and_contents(artifact):
    out, manifest = artifact
    saved = json.loads((out / ARTIFACT_FILE).read_text())
    assert saved["format_version"] == FORMAT_VERSION and saved["space"] == "cell"
    assert (out / "weights" / "gvae.safetensors").is_file()
    assert (out / "weights" / "ccnf.safetensors").is_file()
    assert saved["vocabulary"]["ops"][0] == "avg_pool" and saved["proxies"] == [
        "snip_snr", "nwot", "params"]
    clusters = saved["clusters"]
    assert clusters["n_requested"] == 32 and clusters["n_components"] == 38 // 5
    assert len(clusters["measured_means"]) == clusters["n_components"]
    assert [e["epoch"] for e in saved["training"]["gvae"]["history"]] == [1]
    assert set(saved["timings_seconds"]) >= {"train_gvae", "train_ccnf", "fit_clusters"}


def test_round_trip_reproduces_the_trained_models(artifact, generator):
    out, manifest = artifact
    again = CellGenerator.load(out)
    for a, b in zip(generator.gvae.state_dict().values(), again.gvae.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert generator.num_clusters == manifest["clusters"]["n_components"]
    assert generator.heldout_hashes == manifest["heldout_hashes"]
    clusters = generator.clusters()
    assert [c["id"] for c in clusters] == list(range(generator.num_clusters))
    assert sum(c["size"] for c in clusters) == manifest["data"]["train_cells"]
    assert set(clusters[0]["measured_mean_zc"]) == {"snip_snr", "nwot", "params"}


def test_load_refuses_another_format_version(artifact, tmp_path):
    copy = _copy(artifact[0], tmp_path)
    data = json.loads((copy / ARTIFACT_FILE).read_text())
    data["format_version"] = 99
    (copy / ARTIFACT_FILE).write_text(json.dumps(data))
    with pytest.raises(ArtifactError,
                       match=f"format version 99.*reads format version {FORMAT_VERSION}"):
        CellGenerator.load(copy)


@pytest.mark.parametrize("missing", [ARTIFACT_FILE, "weights/ccnf.safetensors"])
def test_load_refuses_missing_files(artifact, tmp_path, missing):
    copy = _copy(artifact[0], tmp_path)
    (copy / missing).unlink()
    with pytest.raises(ArtifactError, match="lacks|no artifact.json"):
        CellGenerator.load(copy)


def test_load_refuses_changed_weights(artifact, tmp_path):
    copy = _copy(artifact[0], tmp_path)
    with (copy / "weights" / "gvae.safetensors").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        CellGenerator.load(copy)


# ---------------------------------------------------------------------- corpus input
def test_corpus_without_scores_is_refused(tmp_path):
    build_corpus(tmp_path, CorpusSpec("cell", 8, seed=0), progress=False)
    with pytest.raises(DataError, match="no ZC scores.*hgnas corpus score"):
        load_scored_corpus(tmp_path)


def test_unknown_proxy_and_space_mismatch_are_refused(corpus):
    with pytest.raises(DataError, match="lacks the ZC column.*'zen'"):
        load_scored_corpus(corpus, proxies=("zen",))
    with pytest.raises(ConfigError, match="--space nb201 does not match"):
        load_scored_corpus(corpus, space="nb201")


def test_scores_schema_of_synthetic_scores_matches_the_scorer(corpus):
    import pyarrow.parquet as pq

    shard = next((corpus / "scores").glob("part-*.parquet"))
    assert pq.read_schema(shard).names == score_schema(("snip_snr", "nwot", "params")).names


def test_zc_transform_log_scales_and_inverts():
    raw = np.array([[1.0, 10.0], [2.0, 1e6], [3.0, 0.0], [np.nan, 5.0]])
    transform = ZCTransform(("nwot", "params"), ("params",)).fit(raw)
    back = transform.inverse(transform.transform(raw[:3]))
    np.testing.assert_allclose(back, raw[:3], rtol=1e-5, atol=1e-6)
    assert np.isnan(transform.transform(raw)[3, 0])  # NaN entries stay NaN
    loaded = ZCTransform.from_state_dict(json.loads(json.dumps(transform.state_dict())))
    np.testing.assert_array_equal(loaded.transform(raw[:3]), transform.transform(raw[:3]))
    with pytest.raises(DataError, match="negative values"):
        transform.transform(np.array([[1.0, -2.0]]))


# ---------------------------------------------------------------------- sampling
def test_samples_are_valid_distinct_and_deterministic(generator):
    cells = generator.sample(8, cluster=0, seed=3)
    assert len(cells) == 8
    assert all(isinstance(c, CellGenotype) and c.space == "cell" for c in cells)
    for cell in cells:
        cell.validate()
    assert len({c.hash for c in cells}) == 8
    assert generator.sample(8, cluster=0, seed=3) == cells


def test_condition_and_like_sampling(generator):
    like = sample_cell(np.random.default_rng(5))
    cells = generator.sample(4, like=like, seed=1)
    assert like.hash not in {c.hash for c in cells}
    condition = generator.clusters()[1]["mean_condition"]
    by_units = generator.sample(3, condition=list(condition.values()), seed=2)
    by_norm = generator.sample(3, condition=generator.clusters()[1]["mean_condition_normalized"],
                               normalized=True, seed=2)
    assert [c.hash for c in by_units] == [c.hash for c in by_norm]


def test_sampling_gives_up_after_max_draws_with_a_warning(generator):
    with pytest.warns(GenerationWarning, match="unique cells"):
        report = generator.sample_report(50, cluster=0, max_draws=10)
    assert report.draws == 10 and len(report.cells) <= 10 and not report.complete


def test_encode_and_predict_condition(generator):
    cells = generator.sample(3, cluster=0)
    assert generator.encode(cells).shape == (3, 8)
    normalised = generator.predict_condition(cells, normalized=True)
    in_units = generator.predict_condition(cells)
    np.testing.assert_allclose(in_units, generator.transform.inverse(normalised))
    assert in_units.shape == (3, 3) and (in_units[:, 2] > 0).all()  # params, via expm1


def test_sampling_errors_are_typed_and_clear(generator):
    k = generator.num_clusters
    with pytest.raises(ClusterIdError, match=f"cluster {k} is out of range.*ids 0..{k - 1}"):
        generator.sample(1, cluster=k)
    with pytest.raises(ConditionError, match="3 components, one per proxy"):
        generator.sample(1, condition=[1.0, 2.0])
    with pytest.raises(SpaceMismatchError, match="trained on 'cell' cells"):
        generator.sample(1, like=nb201_to_cell(sample_nb201(np.random.default_rng(0))))
    with pytest.raises(ConfigError, match="exactly one of"):
        generator.sample(1, cluster=0, condition=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="temperature"):
        generator.sample(1, cluster=0, temperature=0.0)
    with pytest.raises(Exception, match="unknown proxy"):
        generator.best_cluster("zen")


def test_best_cluster_has_the_highest_measured_mean(generator):
    best = generator.best_cluster("nwot")
    means = [c["measured_mean_zc"]["nwot"] for c in generator.clusters()]
    assert means[best] == max(m for m in means if m is not None)


# ---------------------------------------------------------------------- NAS-Bench-201
def test_nb201_inverse_map_finds_an_arch_string_of_the_same_cell():
    rng = np.random.default_rng(0)
    for _ in range(20):
        cell = nb201_to_cell(sample_nb201(rng)).canonical()
        arch = nb201_arch(cell)
        assert arch is not None and nb201_to_cell(arch).hash == cell.hash
    lone = CellGenotype(("nor_conv_1x1",) * 6, (1,) * 6,
                        tuple((i, i + 1) for i in range(7)), "nb201")  # a 6-op chain
    assert nb201_arch(lone) is None


def test_nb201_generator_samples_and_prints_arch_strings(nb201_artifact, capsys):
    generator = CellGenerator.load(nb201_artifact)
    assert generator.space == "nb201"
    cells = generator.sample(4, cluster=0, seed=0)
    assert all(c.space == "nb201" and nb201_arch(c) is not None for c in cells)  # real cells
    like = Nb201Genotype.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|"
                                     "skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    assert generator.encode([like]).shape == (1, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["generate", "cells", "--artifact", str(nb201_artifact), "-n", "3",
                     "--max-draws", "400"]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 3
    for line in out.out.splitlines():
        assert isinstance(parse_genotype(line), Nb201Genotype)


# ---------------------------------------------------------------------- command line
def test_cli_generate_prints_parsable_genotypes(artifact, capsys):
    out_dir = str(artifact[0])
    assert main(["generate", "cells", "--artifact", out_dir, "-n", "4", "--cluster", "best",
                 "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert all(isinstance(parse_genotype(line), CellGenotype) for line in lines)
    assert main(["generate", "cells", "--artifact", out_dir, "-n", "4", "--cluster", "best",
                 "--seed", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert main(["generate", "cells", "--artifact", out_dir, "--list-clusters"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == CellGenerator.load(out_dir).num_clusters


@pytest.mark.parametrize("args, message", [
    (["--cluster", "99"], "cluster 99 is out of range"),
    (["--condition", "1,2"], "3 components"),
    (["--condition", "a,b,c"], "comma-separated numbers"),
])
def test_cli_generate_errors_are_one_line(artifact, capsys, args, message):
    code = main(["generate", "cells", "--artifact", str(artifact[0]), "-n", "2", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_cli_generate_refuses_a_missing_artifact(tmp_path, capsys):
    assert main(["generate", "cells", "--artifact", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_pretrain_in_process(corpus, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["pretrain", "cells", "--corpus", str(corpus), "--out", str(out), "--workers",
                 "0", "--quiet", "--clusters", "2", *TINY_FLAGS]) == 0
    assert "6 excluded from the ZC targets" in capsys.readouterr().out
    assert CellGenerator.load(out).num_clusters == 2


def test_cli_pretrain_refuses_a_corpus_without_scores(tmp_path, capsys):
    build_corpus(tmp_path / "c", CorpusSpec("cell", 8, seed=0), progress=False)
    assert main(["pretrain", "cells", "--corpus", str(tmp_path / "c"), "--out",
                 str(tmp_path / "o"), "--workers", "0", "--quiet"]) == 2
    assert "no ZC scores" in capsys.readouterr().err
