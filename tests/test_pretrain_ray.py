"""Pretraining the cell generator on Ray Train: 2 DDP workers, checkpoints, resume.

A 200-cell corpus with synthetic ZC scores and tiny models; one local Ray for the module. The
resume test re-runs the same runs folder with more CCNF epochs and checks that training
continues from the checkpoint instead of starting over; the kill test SIGKILLs a job's driver
mid-way through the G-VAE run and checks that the next run continues from the last checkpoint.
Six Ray Train runs in all (about 15 s each on a busy 2-core machine; the kill test about 75 s).
The kill test runs under -m slow: resuming an unfinished run from its checkpoint is the resume
test's CCNF run in the default suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest
import torch

ray = pytest.importorskip("ray")

from hgnas_ray.corpus import CorpusSpec, build_corpus  # noqa: E402
from hgnas_ray.distributed.pretrain import (  # noqa: E402
    RayTrainSettings,
    load_checkpoint_state,
    pretrain_cells_ray,
)
from hgnas_ray.errors import ConfigError  # noqa: E402
from hgnas_ray.generator import CellGenerator, write_synthetic_scores  # noqa: E402
from hgnas_ray.generator.cells.pretrain import PretrainConfig  # noqa: E402
from hgnas_ray.models import CCNFConfig  # noqa: E402
from hgnas_ray.models.gvae import GVAEConfig  # noqa: E402
from hgnas_ray.training import TrainConfig  # noqa: E402

pytestmark = pytest.mark.ray

TINY = PretrainConfig(
    gvae=GVAEConfig(hidden_dim=16, num_layers=2, latent_dim=8, decoder_hidden=32, cond_hidden=16),
    ccnf=CCNFConfig(hidden_dim=16, num_layers=2, method="rk4", step_size=0.5),
    gvae_train=TrainConfig(epochs=1, batch_size=32, device="cpu"),
    ccnf_train=TrainConfig(epochs=1, batch_size=32, device="cpu"))



@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus")
    build_corpus(path, CorpusSpec("cell", 200, seed=3, shard_size=100), progress=False)
    write_synthetic_scores(path, nan_every=25)
    return path


def _latest_state(run_dir):
    from ray.train import Checkpoint

    latest = sorted(p for p in run_dir.iterdir() if p.name.startswith("epoch-"))[-1]
    return load_checkpoint_state(Checkpoint.from_directory(str(latest)))


def test_two_workers_train_checkpoint_and_resume(local_ray, corpus, tmp_path):
    out, runs = tmp_path / "generator", tmp_path / "runs"
    settings = RayTrainSettings(storage_path=str(runs), workers=2)
    first = pretrain_cells_ray(corpus, out, TINY, settings)
    assert first["training"]["trainer"]["workers"] == 2
    assert [e["epoch"] for e in first["training"]["gvae"]["history"]] == [1]
    state = _latest_state(runs / "gvae")
    assert state["epoch"] == 1 and len(state["generators"]) == 2  # one stream per worker
    assert not any(k.startswith("module.") for k in state["model"])  # DDP prefix stripped
    generator = CellGenerator.load(out)
    assert len(generator.sample(3, cluster=0, seed=0)) == 3

    # The job is run again (e.g. after a kill) with the same runs folder and more CCNF epochs:
    # the finished G-VAE run is not started again, the CCNF run continues from its checkpoint.
    more = replace(TINY, ccnf_train=replace(TINY.ccnf_train, epochs=2))
    second = pretrain_cells_ray(corpus, out, more, settings)
    assert second["training"]["gvae"]["resumed_from"] == 1  # read back, nothing trained
    assert second["training"]["gvae"]["history"] == first["training"]["gvae"]["history"]
    ccnf = second["training"]["ccnf"]
    assert ccnf["resumed_from"] == 1 and [e["epoch"] for e in ccnf["history"]] == [1, 2]
    assert ccnf["history"][0] == first["training"]["ccnf"]["history"][0]  # kept, not redone
    state = _latest_state(runs / "ccnf-after-gvae-epoch1")
    assert state["epoch"] == 2 and len(state["generators"]) == 2
    assert torch.equal(CellGenerator.load(out).gvae.state_dict()["mu_head.weight"],
                       generator.gvae.state_dict()["mu_head.weight"])

    other = replace(TINY, gvae=replace(TINY.gvae, hidden_dim=24))
    with pytest.raises(ConfigError, match="other settings, data or model format"):
        pretrain_cells_ray(corpus, out, other, settings)
    # runs of an older model format (no "format_version" in their record) are refused too
    record = runs / "pretrain-run.json"
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in saved.items() if k != "format_version"}))
    with pytest.raises(ConfigError, match="differs in: format_version"):
        pretrain_cells_ray(corpus, out, TINY, settings)


KILLED_RUN = """
import sys
from dataclasses import replace
import ray
from hgnas_ray.distributed.pretrain import RayTrainSettings, pretrain_cells_ray
from hgnas_ray.generator.cells.pretrain import PretrainConfig

ray.init(address=sys.argv[1], log_to_driver=False)
config = PretrainConfig.from_dict({config!r})
pretrain_cells_ray(sys.argv[2], sys.argv[3], config,
                   RayTrainSettings(storage_path=sys.argv[4], workers=2))
"""


def _recorded_epoch(run_dir) -> int:
    """The latest epoch Ray Train recorded in its run snapshot (0 before the first, or while
    the file is being rewritten); a checkpoint folder exists a little before it is recorded."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return int(snapshot["latest_checkpoint_result"]["metrics"]["epoch"])


def _settled_epoch(run_dir, quiet: float = 6.0, timeout: float = 120.0) -> int:
    """The recorded epoch once the snapshot stopped changing for `quiet` seconds: after the
    driver dies, Ray ends its Train controller asynchronously (it polls workers every 2 s), so
    one more record may land."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        epoch = _recorded_epoch(run_dir)
        if epoch != last or epoch == 0:
            last, since = epoch, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return epoch
        time.sleep(0.5)
    pytest.fail("the killed run's snapshot kept changing")


@pytest.mark.slow
def test_killed_job_resumes_from_the_latest_checkpoint(local_ray, corpus, tmp_path):
    out, runs = tmp_path / "generator", tmp_path / "runs"
    long = replace(TINY, gvae_train=replace(TINY.gvae_train, epochs=500))
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN.format(config=long.to_dict())))
    address = local_ray
    log = tmp_path / "killed_run.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, str(script), address, str(corpus), str(out),
                                 str(runs)], stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while _recorded_epoch(runs / "gvae") < 2:
            if proc.poll() is not None:
                pytest.fail(f"the job exited early: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("Ray Train recorded no G-VAE checkpoint in time")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job driver, mid-run
        proc.wait()
    assert not (out / "artifact.json").exists()
    done = _settled_epoch(runs / "gvae")
    assert 2 <= done < 500

    target = done + 2
    resumed = pretrain_cells_ray(corpus, out, replace(
        TINY, gvae_train=replace(TINY.gvae_train, epochs=target)),
        RayTrainSettings(storage_path=str(runs), workers=2))
    gvae = resumed["training"]["gvae"]
    assert gvae["resumed_from"] == done  # continued from the checkpoint, not started over
    assert [e["epoch"] for e in gvae["history"]] == list(range(1, target + 1))
    assert _latest_state(runs / "gvae")["epoch"] == target
    assert len(CellGenerator.load(out).sample(2, cluster=0, seed=0)) == 2
