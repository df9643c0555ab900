"""Shared fixtures. Real data is found through HGNAS_DATA (a folder holding cifar10/ and nb201/,
e.g. ../shared/data); tests that need it skip with the reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _data_root() -> Path | None:
    value = os.environ.get("HGNAS_DATA")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("real data not found: set HGNAS_DATA to a folder with cifar10/ and nb201/ "
                    "(on the project machines: HGNAS_DATA=../shared/data)")
    return root


@pytest.fixture(scope="session")
def nb201_dir(data_root: Path) -> Path:
    path = data_root / "nb201"
    if not (path / "nb201_cifar10.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not found in {path}")
    return path


@pytest.fixture(scope="session")
def cifar10_dir(data_root: Path) -> Path:
    path = data_root / "cifar10"
    if not path.is_dir():
        pytest.skip(f"CIFAR-10 not found in {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """Tests use tiny tensors: one thread is faster, and immune to a loaded machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_ray() -> str:
    """A local Ray instance for one test module (2 CPUs, no dashboard, a small object store);
    yields its GCS address, so subprocesses can join it."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
