"""The macro generator: histories -> training -> artifact -> networks with concrete cells.

A tiny cell generator (4 clusters, trained one epoch on 40 cells with synthetic ZC scores, as in
tests/test_generator.py), synthetic histories of 3 settings and a tiny transformer trained a few
epochs. One Ray Train test (marked `ray`) trains it on 2 workers and resumes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from hgnas_ray.cli import main
from hgnas_ray.corpus import CorpusSpec, build_corpus
from hgnas_ray.errors import BudgetError, ConfigError, DataError
from hgnas_ray.generator import write_synthetic_scores
from hgnas_ray.generator.cells.errors import ArtifactError
from hgnas_ray.generator.cells.pretrain import PretrainConfig, pretrain_cells
from hgnas_ray.generator.macro import (
    FORMAT_VERSION,
    MacroGenerator,
    MacroPretrainConfig,
    cell_artifact_digest,
    pretrain_macro,
    read_history_records,
    select_top,
)
from hgnas_ray.generator.macro.synthetic import write_synthetic_histories
from hgnas_ray.models import CCNFConfig
from hgnas_ray.models.gvae import GVAEConfig
from hgnas_ray.models.seqgen import tiny_config
from hgnas_ray.nn.budget import Budget
from hgnas_ray.nn.builder import TaskShape
from hgnas_ray.nn.cost_model import macro_cost, smallest_cost
from hgnas_ray.space import MacroGenotype, parse_genotype
from hgnas_ray.training import TrainConfig

CLUSTERS = 4
CELLS = PretrainConfig(
    gvae=GVAEConfig(hidden_dim=16, num_layers=2, latent_dim=8, decoder_hidden=32, cond_hidden=16),
    ccnf=CCNFConfig(hidden_dim=16, num_layers=2, method="rk4", step_size=0.5),
    gvae_train=TrainConfig(epochs=1, batch_size=16, device="cpu"),
    ccnf_train=TrainConfig(epochs=1, batch_size=16, device="cpu"), n_clusters=CLUSTERS)
SETTINGS = [(TaskShape(10, 32, 3), Budget(1_000_000)),
            (TaskShape(100, 64, 3), Budget(None, 50_000_000)),
            (TaskShape(1000, 224, 3), Budget(5_000_000, 600_000_000))]
TINY = MacroPretrainConfig(model=tiny_config(), min_per_setting=6,
                           train=TrainConfig(epochs=3, batch_size=16, lr=1e-2, device="cpu"))
PER_SETTING = 20


@pytest.fixture(scope="module")
def cell_artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    build_corpus(root / "corpus", CorpusSpec("cell", 40, seed=1, shard_size=20), progress=False)
    write_synthetic_scores(root / "corpus")
    pretrain_cells(root / "corpus", root / "artifact", CELLS)
    return root / "artifact"


@pytest.fixture(scope="module")
def histories(tmp_path_factory):
    return write_synthetic_histories(tmp_path_factory.mktemp("histories"), SETTINGS,
                                     PER_SETTING, CLUSTERS, seed=0)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, histories, cell_artifact):
    out = tmp_path_factory.mktemp("macro")
    return out, pretrain_macro(histories, cell_artifact, out, TINY)


@pytest.fixture(scope="module")
def generator(artifact, cell_artifact):
    return MacroGenerator.load(artifact[0], cell_artifact)


def _copy(folder, tmp_path, name="copy"):
    shutil.copytree(folder, tmp_path / name)
    return tmp_path / name


# ---------------------------------------------------------------------- data
def test_histories_are_filtered_and_the_best_kept(histories):
    data = read_history_records(histories, CLUSTERS)
    assert data.files == 3 and data.lines == len(data.records) == 3 * PER_SETTING
    kept, dropped = select_top(data.records, 0.25, 3)
    assert dropped["failed"] == 3 * (PER_SETTING // 10)  # every 10th is NaN
    per_setting = {}
    for record in kept:
        per_setting.setdefault(record.setting, []).append(record.fitness)
    assert len(per_setting) == 3
    for setting, fitness in per_setting.items():
        assert len(fitness) == 5  # ceil(0.25 * 18)
        finite = [r.fitness for r in data.records
                  if r.setting == setting and r.fitness == r.fitness]  # not NaN
        assert min(fitness) >= sorted(finite, reverse=True)[4]


def test_torn_and_malformed_history_lines(histories, tmp_path):
    folder = _copy(histories, tmp_path)
    path = folder / "setting-0.jsonl"
    path.write_text(path.read_text() + '{"task": {"num_cl')  # a writer killed mid-line
    assert read_history_records(folder, CLUSTERS).dropped["torn_line"] == 1
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", *lines[1:-1]]) + "\n")
    with pytest.raises(DataError, match=r"setting-0.jsonl:2 is not valid JSON"):
        read_history_records(folder, CLUSTERS)
    record = json.loads(lines[0])
    path.write_text(json.dumps({**record, "task": {**record["task"], "colour": 1}}) + "\n")
    with pytest.raises(DataError, match=r"setting-0.jsonl:1: unknown task field\(s\) \['colour'"):
        read_history_records(folder, CLUSTERS)
    with pytest.raises(DataError, match="another cell artifact"):
        read_history_records(histories, 2)  # cluster ids beyond the artifact's


# ---------------------------------------------------------------------- artifact
def test_artifact_records_its_inputs(artifact, cell_artifact):
    out, manifest = artifact
    saved = json.loads((out / "artifact.json").read_text())
    assert saved["format_version"] == FORMAT_VERSION
    assert saved["cell_artifact"]["sha256"] == cell_artifact_digest(cell_artifact)
    assert saved["vocabulary"]["num_clusters"] == CLUSTERS
    assert saved["data"]["selected"] == 3 * 6 and saved["data"]["files"] == 3
    assert [e["epoch"] for e in saved["training"]["history"]] == [1, 2, 3]
    assert (out / "weights" / "seqgen.safetensors").is_file()


def test_an_up_to_date_artifact_is_not_trained_again(artifact, histories, cell_artifact):
    out, manifest = artifact
    weights = out / "weights" / "seqgen.safetensors"
    before = weights.stat().st_mtime_ns
    again = pretrain_macro(histories, cell_artifact, out, TINY)
    assert again["created"] == manifest["created"] and weights.stat().st_mtime_ns == before


def test_round_trip_reproduces_the_model(artifact, cell_artifact, generator):
    again = MacroGenerator.load(artifact[0], cell_artifact)
    for a, b in zip(generator.model.state_dict().values(), again.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    task, budget = SETTINGS[0]
    assert again.sample_layouts(task, budget, 3, seed=5) == \
        generator.sample_layouts(task, budget, 3, seed=5)


def test_load_refuses_another_format_version(artifact, cell_artifact, tmp_path):
    copy = _copy(artifact[0], tmp_path)
    data = json.loads((copy / "artifact.json").read_text())
    (copy / "artifact.json").write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(ArtifactError, match=f"format version 99.*reads format version "
                                            f"{FORMAT_VERSION} only"):
        MacroGenerator.load(copy, cell_artifact)


def test_load_refuses_another_cell_artifact(artifact, cell_artifact, tmp_path):
    other = _copy(cell_artifact, tmp_path, "other_cells")
    data = json.loads((other / "artifact.json").read_text())
    (other / "artifact.json").write_text(json.dumps({**data, "created": "another day"}))
    with pytest.raises(ArtifactError, match="trained with another cell artifact"):
        MacroGenerator.load(artifact[0], other)
    with pytest.raises(ArtifactError, match="has no artifact.json"):
        MacroGenerator.load(artifact[0], tmp_path)


def test_histories_of_another_cell_artifact_are_refused(histories, cell_artifact, tmp_path):
    other = _copy(cell_artifact, tmp_path, "other_cells")
    data = json.loads((other / "artifact.json").read_text())
    (other / "artifact.json").write_text(json.dumps({**data, "created": "another day"}))
    folder = _copy(histories, tmp_path, "hist")
    (folder / "grid.json").write_text(json.dumps({"cell_artifact": str(other)}))
    with pytest.raises(ArtifactError, match="were written with the cell artifact"):
        pretrain_macro(folder, cell_artifact, tmp_path / "out", TINY)


# ---------------------------------------------------------------------- sampling
@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_samples_are_valid_and_fit_the_budget(generator, index):
    task, budget = SETTINGS[index]
    pairs = generator.sample_with_layouts(task, budget, 2, seed=index)
    assert len(pairs) == 2
    for genotype, layout in pairs:
        genotype.validate()
        assert budget.allows(macro_cost(genotype, task))
        assert [s.channels for s in genotype.stages] == [s.channels for s in layout.stages]


def test_a_minimum_budget_share_keeps_only_networks_that_use_it(generator):
    task, budget = SETTINGS[0]
    for genotype in generator.sample(task, budget, 3, seed=1, min_budget_share=0.5):
        assert 0.5 <= budget.excess(macro_cost(genotype, task)) <= 1.0
    with pytest.raises(ConfigError, match="share must be in"):
        generator.sample(task, budget, 1, min_budget_share=1.5)
    with pytest.raises(ConfigError, match="needs a budget"):
        generator.sample(task, None, 1, min_budget_share=0.5)


def test_impossible_budgets_and_bad_requests(generator):
    task = SETTINGS[0][0]
    low = smallest_cost(task)
    with pytest.raises(BudgetError, match=f"smallest has {low.params:,} parameters"):
        generator.sample(task, Budget(low.params - 1), 1)
    with pytest.raises(ConfigError, match=r"unknown task field\(s\) \['colors'\]"):
        generator.sample({"num_classes": 10, "input_size": 32, "colors": 3}, None, 1)
    with pytest.raises(ConfigError, match="unknown budget field.*FLOPs = 2 x MACs"):
        generator.sample(task, {"max_flops": 10**6}, 1)


def test_finetune_on_best_networks_and_save(generator, histories, cell_artifact, tmp_path):
    lines = (histories / "setting-0.jsonl").read_text().splitlines()[:6]
    records = [json.loads(line) for line in lines]
    for record in records[:3]:
        del record["clusters"]  # assigned by the cell generator's clusters
    tuned = MacroGenerator(generator.model.__class__(generator.model.config), generator.vocab,
                           dict(generator.manifest), generator.cell_artifact)
    tuned.model.load_state_dict(generator.model.state_dict())
    history = tuned.finetune(records, epochs=2)
    assert [h["epoch"] for h in history] == [1, 2]
    changed = any(not torch.equal(a, b) for a, b in zip(
        tuned.model.state_dict().values(), generator.model.state_dict().values(), strict=True))
    assert changed
    tuned.save(tmp_path / "tuned")
    loaded = MacroGenerator.load(tmp_path / "tuned", cell_artifact)
    assert loaded.manifest["finetuning"][0]["networks"] == 6
    assert torch.equal(loaded.model.lm_head.weight, tuned.model.lm_head.weight)


# ---------------------------------------------------------------------- command line
def _main(args) -> int:
    """`main`, with argparse's usage errors (SystemExit) as exit codes too."""
    try:
        return main(args)
    except SystemExit as exit_:
        return int(exit_.code)


def _generate(artifact_dir, cell_artifact, *extra):
    return _main(["generate", "macro", "--artifact", str(artifact_dir), "--cell-artifact",
                  str(cell_artifact), "--classes", "10", "--input-size", "32", *extra])


def test_cli_generate_prints_macro_genotypes(artifact, cell_artifact, capsys):
    assert _generate(artifact[0], cell_artifact, "--max-params", "1M", "-n", "2",
                     "--seed", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        genotype = parse_genotype(line)
        assert isinstance(genotype, MacroGenotype)
        assert macro_cost(genotype, TaskShape(10, 32, 3)).params <= 1_000_000
    assert _generate(artifact[0], cell_artifact, "--max-params", "1e6", "-n", "2",
                     "--seed", "2") == 0
    assert capsys.readouterr().out.splitlines() == lines  # same seed, same networks


def test_cli_generate_errors_are_one_line(artifact, cell_artifact, tmp_path, capsys):
    low = smallest_cost(TaskShape(10, 32, 3))
    old = _copy(artifact[0], tmp_path, "old")
    data = json.loads((old / "artifact.json").read_text())
    (old / "artifact.json").write_text(json.dumps({**data, "format_version": 0}))
    other = _copy(cell_artifact, tmp_path, "other_cells")
    (other / "artifact.json").write_text((other / "artifact.json").read_text() + " ")
    cases = [
        ((artifact[0], cell_artifact, "--max-macs", str(low.macs - 1)),
         f"smallest needs {low.macs:,} MACs"),
        ((artifact[0], cell_artifact, "--max-params", "10"),
         f"smallest has {low.params:,} parameters"),
        ((artifact[0], cell_artifact, "--max-macs", "450MFLOPs"), "not FLOPs"),
        ((artifact[0], cell_artifact, "--max-params", "lots"), "positive count"),
        ((old, cell_artifact), "format version 0"),
        ((artifact[0], other), "another cell artifact"),
    ]
    for args, message in cases:
        assert _generate(*args) == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_cli_pretrain_macro_in_process(histories, cell_artifact, tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["pretrain", "macro", "--cell-artifact", str(cell_artifact), "--out", str(out),
            "--histories", str(histories), "--workers", "0", "--model", "tiny",
            "--max-epochs", "1", "--quiet"]
    assert main(args) == 0
    assert "1 epoch(s)" in capsys.readouterr().out
    assert MacroGenerator.load(out, cell_artifact).vocab.num_clusters == CLUSTERS
    assert _main([*args[:-3], "--max-epochs", "0"]) == 2  # argparse: not a positive integer


# ---------------------------------------------------------------------- Ray Train
@pytest.mark.ray
def test_ray_train_two_workers_checkpoint_and_read_back(local_ray, histories, cell_artifact,
                                                        tmp_path):
    """One Ray Train run of 2 DDP workers (checkpoints each epoch); run again, the finished run
    is read back from its latest checkpoint without starting workers. Resuming an unfinished
    run goes through the same `RayTrainers` machinery as the cell generator's (tested with
    kills in tests/test_pretrain_ray.py)."""
    from ray.train import Checkpoint

    from hgnas_ray.distributed.macro_pretrain import pretrain_macro_ray
    from hgnas_ray.distributed.pretrain import RayTrainSettings, load_checkpoint_state

    out, runs = tmp_path / "gen", tmp_path / "runs"
    settings = RayTrainSettings(storage_path=str(runs), workers=2)
    two = replace(TINY, train=replace(TINY.train, epochs=2))
    first = pretrain_macro_ray(histories, cell_artifact, out, two, settings)
    training = first["training"]
    assert training["trainer"]["workers"] == 2 and training["resumed_from"] == 0
    assert [e["epoch"] for e in training["history"]] == [1, 2]
    checkpoints = sorted(p for p in (runs / "seqgen").iterdir() if p.name.startswith("epoch-"))
    state = load_checkpoint_state(Checkpoint.from_directory(str(checkpoints[-1])))
    assert state["epoch"] == 2 and len(state["generators"]) == 2  # one stream per worker
    assert not any(k.startswith("module.") for k in state["model"])  # DDP prefix stripped
    (out / "artifact.json").unlink()  # force the training stage; the run is done already
    again = pretrain_macro_ray(histories, cell_artifact, out, two, settings)
    assert again["training"]["resumed_from"] == 2  # read back, nothing trained
    assert again["training"]["history"] == training["history"]
    assert len(MacroGenerator.load(out, cell_artifact).sample_layouts(*SETTINGS[0], 2)) == 2
