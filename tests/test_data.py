"""Tests for hgnas_ray.data: task factory, readers, prepare_data and probe batches.

Offline and fast: everything but the ``data``-marked test builds its own tiny images in tmp_path.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from hgnas_ray.data import (
    ArrayDataset,
    TaskInfo,
    available_tasks,
    load_task,
    npzfile,
    prepare_data,
    probe_batch,
    probe_batches,
    probe_indices,
    resolve_cache_dir,
    resolve_data_root,
)
from hgnas_ray.errors import ConfigError, DataError, RegistryError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No real data root, and a private cache, so a user's ~/.cache never leaks into tests."""
    monkeypatch.delenv("HGNAS_DATA", raising=False)
    monkeypatch.setenv("HGNAS_CACHE", str(tmp_path / "env_cache"))


def _images(n: int, size=(8, 6), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _write_tree(base: Path, classes, per_class: int = 2, size=(8, 6), fmt: str = "png") -> None:
    """base/<class>/<i>.<fmt> with random RGB images of ``size`` (H, W)."""
    for c, name in enumerate(classes):
        (base / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(_images(per_class, size, seed=c)):
            Image.fromarray(image).save(base / name / f"{i:04d}.{fmt}")


def _write_tarball(path: Path, tree: Path, arc_root: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=arc_root)
    return path


# --- registry ---------------------------------------------------------------------------------

def test_registry_lists_builtin_tasks():
    assert available_tasks() == ["cifar10", "cifar100", "digits", "imagefolder", "npz"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(RegistryError, match="valid names: cifar10, cifar100, digits, "
                                            "imagefolder, npz"):
        load_task("mnist")


def _tiny_sources(tmp_path: Path) -> dict[str, dict]:
    """For each registered task, load_task kwargs pointing at a tiny local copy."""
    _write_tree(tmp_path / "cifar10" / "train", CIFAR10_CLASSES, 1, (32, 32))
    _write_tree(tmp_path / "cifar100" / "train", [f"c{i:03d}" for i in range(100)], 1, (32, 32))
    _write_tree(tmp_path / "folder", ["a", "b"], 2)
    np.savez(tmp_path / "x.npz", images=_images(4), labels=np.array([0, 1, 0, 1]))
    return {"cifar10": {"root": tmp_path}, "cifar100": {"root": tmp_path}, "digits": {},
            "imagefolder": {"root": tmp_path / "folder"}, "npz": {"root": tmp_path / "x.npz"}}


def test_every_registered_task_loads(tmp_path):
    sources = _tiny_sources(tmp_path)
    assert sorted(sources) == available_tasks()  # nothing registered untested
    for name, kwargs in sources.items():
        dataset = load_task(name, **kwargs)
        x, y = dataset.batch(np.arange(2))
        assert x.shape == (2, *dataset.info.input_shape) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and int(y.max()) < dataset.info.num_classes


# --- digits and the dataset object ------------------------------------------------------------

def test_digits_shapes_and_splits():
    train, test = load_task("digits"), load_task("digits", split="test")
    assert (len(train), len(test)) == (1438, 359)
    assert train.info.input_shape == (1, 8, 8) and train.info.num_classes == 10
    assert train.images.shape == (1438, 8, 8, 1) and train.images.dtype == np.uint8
    assert set(np.unique(train.labels)) == set(range(10))
    x, _ = train.batch(np.arange(len(train)))
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
    with pytest.raises(ConfigError, match="train, test"):
        load_task("digits", split="val")


def test_array_dataset_is_a_torch_dataset():
    dataset = load_task("digits")
    x, y = dataset[3]
    assert x.shape == (1, 8, 8) and isinstance(y, int)
    xb, yb = next(iter(torch.utils.data.DataLoader(dataset, batch_size=5)))
    assert xb.shape == (5, 1, 8, 8) and torch.equal(yb, dataset.batch(np.arange(5))[1])
    assert len(dataset.subset([0, 2, 4])) == 3


def test_array_dataset_rejects_mismatched_info():
    info = TaskInfo("t", 2, (3, 4, 4), (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(DataError, match="labels must lie in"):
        ArrayDataset(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 5]), info)
    with pytest.raises(DataError, match="input_shape"):
        ArrayDataset(np.zeros((2, 5, 4, 3), np.uint8), np.array([0, 1]), info)


# --- npz ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_npz_round_trip(tmp_path, layout):
    images = _images(6)
    stored = images if layout == "nhwc" else images.transpose(0, 3, 1, 2)
    labels = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "mine.npz", images=stored, labels=labels)
    dataset = load_task(tmp_path / "mine.npz")
    assert np.array_equal(dataset.images, images) and np.array_equal(dataset.labels, labels)
    assert dataset.info.input_shape == (3, 8, 6) and dataset.info.num_classes == 3
    assert dataset.info.name == "mine"


def test_npz_split_keys_float_images_and_unsplit_guard(tmp_path):
    images = _images(4)
    np.savez(tmp_path / "s.npz", train_images=images, train_labels=np.array([0, 1, 0, 1]),
             test_images=images[:2] / 255.0, test_labels=np.array([1, 0]))
    test = load_task("npz", split="test", root=tmp_path / "s.npz")
    assert np.array_equal(test.images, images[:2])
    np.savez(tmp_path / "one.npz", images=images, labels=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="holds the 'train' split only"):
        load_task(tmp_path / "one.npz", split="test")


def test_npz_bad_content_is_a_data_error(tmp_path):
    np.savez(tmp_path / "bad.npz", pixels=_images(2))
    with pytest.raises(DataError, match="expected 'images' and 'labels'"):
        load_task(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_task(tmp_path / "junk.npz")


# --- ImageFolder ----------------------------------------------------------------------------

def test_imagefolder_png_tree_with_splits(tmp_path):
    _write_tree(tmp_path / "pets" / "train", ["dog", "cat", "bird"], 2)
    _write_tree(tmp_path / "pets" / "test", ["dog", "cat", "bird"], 1)
    train = load_task(tmp_path / "pets")
    assert train.info.class_names == ("bird", "cat", "dog")  # ids = sorted folder names
    assert train.info.name == "pets" and len(train) == 6
    assert np.array_equal(train.labels, [0, 0, 1, 1, 2, 2])
    assert np.array_equal(train.images[2:4], _images(2, seed=1))  # PNG is lossless; cat = seed 1
    assert len(load_task("imagefolder", split="test", root=tmp_path / "pets")) == 3
    with pytest.raises(DataError, match="no 'val'"):
        load_task(tmp_path / "pets", split="val")


def test_imagefolder_flat_jpeg_tree(tmp_path):
    _write_tree(tmp_path / "flat", ["a", "b"], 3, fmt="jpg")
    (tmp_path / "flat" / "a" / "notes.txt").write_text("ignored")
    dataset = load_task(tmp_path / "flat")
    assert dataset.images.shape == (6, 8, 6, 3) and dataset.info.num_classes == 2
    with pytest.raises(DataError, match="'train' split only"):
        load_task(tmp_path / "flat", split="test")


def test_corrupted_image_names_the_file(tmp_path):
    _write_tree(tmp_path / "tree", ["a", "b"], 2)
    (tmp_path / "tree" / "b" / "0001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"b/0001\.png"):
        load_task(tmp_path / "tree")
    with pytest.warns(UserWarning, match="skipped 1 corrupt"):
        out = prepare_data(tmp_path / "tree", tmp_path / "out", skip_corrupt=True,
                           progress=False)
    assert len(load_task(tmp_path / "out")) == 3 and set(out) == {"train"}


def test_mixed_image_sizes_are_rejected(tmp_path):
    _write_tree(tmp_path / "tree", ["a"], 1, size=(8, 8))
    _write_tree(tmp_path / "tree", ["b"], 1, size=(9, 8))
    with pytest.raises(DataError, match="share one size"):
        load_task(tmp_path / "tree")


def test_missing_paths_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task(tmp_path / "nowhere")
    with pytest.raises(DataError, match="does not exist"):
        load_task("imagefolder", root=tmp_path / "nowhere")
    with pytest.raises(DataError, match="HGNAS_DATA"):
        load_task("imagefolder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_task(tmp_path / "empty")


# --- locations and CIFAR discovery -----------------------------------------------------------

def test_data_root_precedence(tmp_path, monkeypatch):
    assert resolve_data_root(None) is None
    monkeypatch.setenv("HGNAS_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    (tmp_path / "flag").mkdir()
    assert resolve_data_root(tmp_path / "flag") == tmp_path / "flag"
    with pytest.raises(DataError, match="not a directory"):
        resolve_data_root(tmp_path / "missing")
    assert resolve_cache_dir(None) == tmp_path / "env_cache"
    assert resolve_cache_dir(tmp_path / "c") == tmp_path / "c"


def test_cifar10_offline_without_data_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="HGNAS_DATA") as info:
        load_task("cifar10", split="test", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "prepare-data" in message and "download" in message and "\n" not in message
    assert str(tmp_path / "cache" / "cifar10" / "test.npz") in message


def test_cifar10_root_with_wrong_classes_is_rejected(tmp_path):
    _write_tree(tmp_path / "cifar10" / "test", ["a", "b"], 1, (32, 32))
    with pytest.raises(DataError, match="2 classes"):
        load_task("cifar10", split="test", root=tmp_path)


def test_cifar10_download_offline_is_one_clear_error(tmp_path, monkeypatch):
    utils = pytest.importorskip("torchvision.datasets.utils")

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download cifar10.*HGNAS_DATA") as info:
        load_task("cifar10", cache_dir=tmp_path / "cache", download=True)
    assert "\n" not in str(info.value)
    # reading the python-version batches (without pickle): tests/test_hardening.py


# --- prepare_data ---------------------------------------------------------------------------

def _tiny_cifar_tarballs(tmp_path: Path) -> Path:
    """<tmp>/data/cifar10/cifar10_{train,test}_jpg.tar.gz, members cifar10/<split>/<class>/n.jpg."""
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    for split, per_class in (("train", 3), ("test", 2)):
        _write_tree(tmp_path / "src" / split, CIFAR10_CLASSES, per_class, (32, 32), "jpg")
        _write_tarball(folder / f"cifar10_{split}_jpg.tar.gz", tmp_path / "src" / split,
                       f"cifar10/{split}")
    return folder


def test_prepare_cifar_tarballs_then_load_from_cache(tmp_path):
    folder = _tiny_cifar_tarballs(tmp_path)
    cache = tmp_path / "cache"
    direct = load_task("cifar10", split="test", root=tmp_path / "data", cache_dir=cache)
    written = prepare_data(folder, cache_dir=cache, progress=False)
    assert written == {s: cache / "cifar10" / f"{s}.npz" for s in ("train", "test")}
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == ["test.npz", "train.npz"]
    cached = load_task("cifar10", split="test", cache_dir=cache)  # no data root: cache only
    assert np.array_equal(cached.images, direct.images)
    assert np.array_equal(cached.labels, np.repeat(np.arange(10), 2))
    assert cached.info.class_names == CIFAR10_CLASSES and cached.info.mean[0] == 0.4914
    assert len(load_task("cifar10", cache_dir=cache)) == 30


def test_prepare_by_task_name_and_split_filter(tmp_path):
    _tiny_cifar_tarballs(tmp_path)
    written = prepare_data("cifar10", root=tmp_path / "data", splits=["test"],
                           cache_dir=tmp_path / "c", progress=False)
    assert list(written) == ["test"]
    with pytest.raises(DataError, match="val"):
        prepare_data("cifar10", root=tmp_path / "data", splits=["val"], progress=False)
    with pytest.raises(DataError, match="HGNAS_DATA"):
        prepare_data("cifar10", progress=False)


def test_prepare_stores_train_statistics_in_every_split(tmp_path):
    _write_tree(tmp_path / "t" / "train", ["a", "b"], 3)
    _write_tree(tmp_path / "t" / "test", ["a", "b"], 1)
    out = prepare_data(tmp_path / "t", tmp_path / "out", progress=False)
    train, test = (load_task(tmp_path / "out", split=s) for s in ("train", "test"))
    assert train.info.mean == test.info.mean and train.info.std == test.info.std
    assert train.info.name == "out" and set(out) == {"train", "test"}


def test_prepare_rejects_splits_with_different_classes(tmp_path):
    _write_tree(tmp_path / "t" / "train", ["a", "b"], 1)
    _write_tree(tmp_path / "t" / "test", ["a", "c"], 1)
    with pytest.raises(DataError, match="different classes"):
        prepare_data(tmp_path / "t", tmp_path / "out", progress=False)


def test_corrupt_tarball_member_is_named(tmp_path):
    _write_tree(tmp_path / "src", ["a", "b"], 2, fmt="jpg")
    (tmp_path / "src" / "a" / "0001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    tarball = _write_tarball(tmp_path / "x_test_jpg.tar.gz", tmp_path / "src", "x/test")
    with pytest.raises(DataError, match=r"x_test_jpg\.tar\.gz::x/test/a/0001\.jpg"):
        prepare_data(tarball, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    _write_tree(tmp_path / "t", ["a", "b"], 1)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(npzfile.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(tmp_path / "t", tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


# --- probe batches ----------------------------------------------------------------------------

def test_probe_batch_is_deterministic():
    dataset = load_task("digits")
    x1, y1 = probe_batch(dataset, size=32, seed=7)
    x2, y2 = probe_batch(dataset, size=32, seed=7)
    x3, _ = probe_batch(dataset, size=32, seed=8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.shape == (32, 1, 8, 8)


@pytest.mark.parametrize("size", [20, 25, 64])
def test_probe_batch_class_balance(size):
    dataset = load_task("digits")
    _, y = probe_batch(dataset, size=size, seed=1, class_balanced=True)
    counts = np.bincount(y.numpy(), minlength=10)
    assert counts.sum() == size and counts.max() - counts.min() <= 1
    assert np.all(counts[: size % 10] == size // 10 + 1)  # round-robin extras from class 0
    assert not np.all(np.diff(y.numpy()) >= 0)  # shuffled, not sorted by class


def test_probe_batches_are_disjoint_and_rotate_extras():
    labels = np.repeat(np.arange(4), 50)
    rows = probe_indices(labels, n_batches=4, size=6, seed=0, class_balanced=True)
    assert rows.shape == (4, 6) and len(np.unique(rows)) == 24
    assert np.array_equal(np.bincount(labels[rows].ravel()), [6, 6, 6, 6])
    batches = probe_batches(load_task("digits"), 2, size=16, seed=3)
    assert len(batches) == 2 and not torch.equal(batches[0][0], batches[1][0])


def test_probe_requests_beyond_the_data_are_config_errors():
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(ConfigError, match="distinct images"):
        probe_indices(labels, 2, 3)
    with pytest.raises(ConfigError, match="class 1"):
        probe_indices(labels, 1, 4, class_balanced=True)


# --- import hygiene ---------------------------------------------------------------------------

def test_data_package_imports_neither_ray_nor_torchvision():
    code = ("import sys, hgnas_ray.data; "
            "assert 'ray' not in sys.modules and 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- real data --------------------------------------------------------------------------------

@pytest.mark.data
def test_prepare_real_cifar10_test_split(cifar10_dir, tmp_path):
    tarball = cifar10_dir / "cifar10_test_jpg.tar.gz"  # task name "cifar10" from the file name
    written = prepare_data(tarball, cache_dir=tmp_path, progress=False)
    dataset = load_task("cifar10", split="test", cache_dir=tmp_path)
    assert written["test"] == tmp_path / "cifar10" / "test.npz"
    assert dataset.images.shape == (10000, 32, 32, 3)
    assert dataset.info.class_names == CIFAR10_CLASSES
    assert np.array_equal(np.bincount(dataset.labels), [1000] * 10)
    mean = dataset.images.reshape(-1, 3).mean(axis=0) / 255  # test split of the JPEG copy
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=0.01)
