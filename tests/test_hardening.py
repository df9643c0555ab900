"""Regression tests of issue 12 (hardening): each bad input is one line on stderr and exit code 2,
nothing is lost, nothing is written outside its folder, nothing untrusted is unpickled.

Entry points run in-process (`hgnas_ray.cli.main`, the `main` of `jobs/*.py`); none starts Ray.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import pickle
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from hgnas_ray import cli
from hgnas_ray.cli.log import PACKAGE_LOGGER, configure_logging
from hgnas_ray.config import from_dict, load_config
from hgnas_ray.data import load_task
from hgnas_ray.data.cifar_batches import CIFAR10_LAYOUT, load_batch_file
from hgnas_ray.data.images import ImageDecoder
from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.search.config import SearchConfig
from hgnas_ray.search.pipeline import LogMonitor, run_pipeline
from hgnas_ray.space import format_genotype, sample_genotype

ROOT = Path(__file__).resolve().parents[1]
HGNAS = Path(sys.executable).with_name("hgnas")


def load_job(name: str):
    """`jobs/<name>.py` as a module (the jobs folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(main, argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def package_logger_level():
    """`configure_logging` sets the package logger's level; put it back."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    level = logger.level
    yield
    logger.setLevel(level)


def cell_line(seed: int = 0) -> str:
    return format_genotype(sample_genotype("cell", np.random.default_rng(seed)))


# ------------------------------------------------------------------ item 3: configs
@pytest.fixture
def bad_yaml(tmp_path: Path) -> dict[str, Path]:
    files = {"list": "- a\n", "scalar section": "data: 5\n", "scalar": "5\n",
             "binary": b"\xff\xfe\x00bad", "deep": "[" * 5000 + "]" * 5000 + "\n",
             "int keys": "1: a\nb: c\n"}
    paths = {}
    for name, text in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        paths[name] = path
    return paths


@pytest.mark.parametrize("kind", ["list", "scalar section", "scalar", "binary", "deep",
                                  "int keys"])
def test_config_file_of_the_wrong_shape_is_a_config_error(bad_yaml, kind) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SearchConfig, bad_yaml[kind])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override, needle", [
    ("generate.seed={", "not valid YAML"),
    ("generate.seed=-1", "generate.seed must be in"),
    ("generate.seed=true", "generate.seed must be int"),
    ("train.num_cpus=.nan", "finite"),
    ("train.num_cpus=1.0e+999", "finite"),
    ("ray.num_cpus=0", "ray.num_cpus"),
    ("data=5", "data must be a mapping"),
    ("data.probe_size.x=1", "data.probe_size must be int"),
    ("generate.seed=" + "9" * 5000, "generate.seed"),
])
def test_bad_override_is_a_config_error(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(SearchConfig, None, [override])


@pytest.mark.parametrize("job, extra", [("search", []), ("pretrain", ["--corpus", "c", "--out",
                                                                       "o", "--workers", "0"])])
@pytest.mark.parametrize("argv", [["--set", "generate.seed={"], ["--config", "LIST"],
                                  ["--config", "SCALAR"]])
def test_job_with_a_bad_config_is_one_line(job, extra, argv, bad_yaml, capsys) -> None:
    argv = [{"LIST": str(bad_yaml["list"]), "SCALAR": str(bad_yaml["scalar section"])}.get(a, a)
            for a in argv]
    code, out, err = run(load_job(job).main, argv + extra, capsys)
    assert_one_line(code, err, f"{job}.py: error:")
    assert out == ""


def test_hgnas_pretrain_with_a_bad_config_is_one_line(bad_yaml, tmp_path, capsys) -> None:
    argv = ["pretrain", "cells", "--corpus", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
            "--config", str(bad_yaml["list"])]
    code, _, err = run(cli.main, argv, capsys)
    assert_one_line(code, err, "hgnas: error:", "top level is a list")


def test_pretrain_checks_the_corpus_before_ray_starts(tmp_path, capsys, monkeypatch) -> None:
    import hgnas_ray.cli.generate as generate

    monkeypatch.setattr(generate, "_pretrain_on_ray", lambda *a: pytest.fail("Ray would start"))
    code, _, err = run(cli.main, ["pretrain", "cells", "--corpus", str(tmp_path / "none"),
                                  "--out", str(tmp_path / "o")], capsys)
    assert_one_line(code, err, "does not exist")
    (tmp_path / "c" / "cells").mkdir(parents=True)
    (tmp_path / "c" / "cells" / "part-00000.parquet").write_bytes(b"")
    code, _, err = run(cli.main, ["pretrain", "cells", "--corpus", str(tmp_path / "c"),
                                  "--out", str(tmp_path / "o")], capsys)
    assert_one_line(code, err, "no ZC scores")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ item 3: space
def test_space_sample_negative_seed_is_one_line(capsys) -> None:
    code, out, err = run(cli.main, ["space", "sample", "--space", "cell", "--seed", "-1"], capsys)
    assert_one_line(code, err, "--seed")
    assert out == ""


@pytest.mark.parametrize("text, needle", [
    ("[" * 100_000, "nests deeper"),
    ("[" * 500 + "]" * 500, "nests deeper"),
    ('{"ops": ' + "[" * 20 + "]" * 20 + "}", "nests deeper"),
    ("1" * 5000, "digits"),
    ('{"space": "cell", "ops": [], "kernels": [' + "7" * 4300 + '], "edges": []}', "6 op nodes"),
])
def test_describe_unreadable_json_is_one_line(text: str, needle: str, capsys) -> None:
    code, out, err = run(cli.main, ["space", "describe", text], capsys)
    assert_one_line(code, err, needle)
    assert out == ""


def test_describe_stream_reports_bad_lines_and_keeps_going(monkeypatch, capsys) -> None:
    good = [cell_line(s) for s in range(3)]
    lines = [good[0], "[" * 100_000, good[1], "1" * 5000, "\udcff", good[2]]
    stdin = io.TextIOWrapper(io.BytesIO("\n".join(lines).encode("utf-8", "surrogateescape")),
                             encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = run(cli.main, ["space", "describe", "-", "--json"], capsys)
    assert code == 2
    assert [line.split(":")[0] for line in err.splitlines()] == ["hgnas"] * 3
    assert ["line 2", "line 4", "line 5"] == [line.split(": ")[2] for line in err.splitlines()]
    assert len(out.splitlines()) == 3 and "Traceback" not in err


@pytest.mark.parametrize("argv, needle", [
    (["--skeleton-channels", "999999999", "--skeleton-cells", "99999999"], "<= 4096"),
    (["--skeleton-cells", "99999999"], "<= 64"),
    (["--input-size", "9" * 5000], "--input-size"),
    (["--num-classes", "10000000"], "--num-classes"),
])
def test_describe_oversized_network_is_one_line(argv, needle, capsys) -> None:
    code, out, err = run(cli.main, ["space", "describe", cell_line(), *argv], capsys)
    assert_one_line(code, err, needle)


def test_describe_nb201_on_a_too_small_input_is_one_line(capsys) -> None:
    nb201 = "|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|" \
            "nor_conv_1x1~2|"
    code, out, err = run(cli.main, ["space", "describe", nb201, "--input-size", "5"], capsys)
    assert_one_line(code, err, "cannot be built for a 5x5 input", "--input-size 32")


# ------------------------------------------------------------------ item 3: --out
@pytest.mark.parametrize("argv", [
    ["corpus", "build", "--space", "cell", "--n", "4", "--no-progress", "--out", "OUT"],
    ["prepare-data", "cifar10", "--out", "OUT"],
    ["prepare-data", "cifar10", "--cache-dir", "OUT"],
])
@pytest.mark.parametrize("out, needle", [("file", "pass a folder path"),
                                         ("file/below", "pass a folder path"),
                                         ("\udcff", "not a UTF-8 path")])
def test_out_on_a_file_is_one_line(argv, out, needle, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("keep me")
    argv = [str(tmp_path / out) if a == "OUT" else a for a in argv]
    code, _, err = run(cli.main, argv, capsys)
    assert_one_line(code, err, needle)
    assert (tmp_path / "file").read_text() == "keep me"


def test_prepare_data_task_name_cannot_leave_the_cache(tmp_path, capsys) -> None:
    code, _, err = run(cli.main, ["prepare-data", str(tmp_path), "--task", "../x",
                                  "--cache-dir", str(tmp_path / "cache")], capsys)
    assert_one_line(code, err, "--task must be one folder name")


# ------------------------------------------------------------------ item 5: run names
@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x", "/abs", "a\\b", " x", "x\x00",
                                  "x" * 256])
def test_run_name_must_stay_inside_storage(name: str) -> None:
    with pytest.raises(ConfigError, match="run_name must be one folder name"):
        from_dict(SearchConfig, {"run_name": name})
    with pytest.raises(ConfigError, match="run_name must be one folder name"):
        SearchConfig(run_name=name).run_dir()  # built without from_dict: checked again


def test_search_run_name_dotdot_writes_nothing(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HGNAS_STORAGE", str(tmp_path / "inner"))
    code, out, err = run(load_job("search").main, ["--set", "run_name=.."], capsys)
    assert_one_line(code, err, "run_name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("root", ["missing", "empty"])
def test_search_run_folder_is_not_created_when_the_data_is_missing(root, tmp_path,
                                                                   monkeypatch) -> None:
    monkeypatch.setenv("HGNAS_CACHE", str(tmp_path / "cache"))  # not the user's prepared copy
    (tmp_path / "empty").mkdir()
    config = load_config(SearchConfig, None, [f"storage_path={tmp_path / 'runs'}",
                                              f"data.root={tmp_path / root}",
                                              "data.download=false"])
    with pytest.raises(DataError):
        run_pipeline(config, _NoExecutors())
    assert not (tmp_path / "runs").exists()


class _NoExecutors:
    """Executors that fail the test if a stage reaches them (the data check comes first)."""

    monitor = LogMonitor()

    def __getattr__(self, name):
        raise AssertionError(f"a stage ran ({name}) although the data is missing")


# ------------------------------------------------------------------ item 6: messages
def test_corrupt_image_message_names_an_option_the_cli_has() -> None:
    with pytest.raises(DataError) as info:
        ImageDecoder()(b"not a jpeg", "x.jpg")
    assert "hgnas prepare-data" in str(info.value) and "--skip-corrupt" in str(info.value)


def test_search_job_takes_the_data_option_its_messages_name(tmp_path, capsys) -> None:
    code, _, err = run(load_job("search").main, ["--data", str(tmp_path / "nope"), "--set",
                                                 f"storage_path={tmp_path}"], capsys)
    assert_one_line(code, err, "--data")
    assert list(tmp_path.iterdir()) == []


def test_library_future_warnings_hidden_unless_verbose(package_logger_level) -> None:
    for verbose, shown in ((False, 0), (True, 1)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            configure_logging(verbose=verbose)
            warnings.warn_explicit("`torch.jit.script` is deprecated", FutureWarning,
                                   "_script.py", 1, module="torch.jit._script", registry={})
            warnings.warn_explicit("ours", FutureWarning, "x.py", 1, module="hgnas_ray.x",
                                   registry={})
        assert [str(w.message) for w in caught] == ["`torch.jit.script` is deprecated"] * shown \
            + ["ours"]


@pytest.mark.parametrize("verbose", [False, True])
def test_ray_chatter_hidden_unless_verbose(verbose, monkeypatch, package_logger_level) -> None:
    ray = pytest.importorskip("ray")
    from hgnas_ray.config import RayConfig
    from hgnas_ray.distributed.runtime import init_ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_DATA_LOG_LEVEL", raising=False)
    configure_logging(verbose=verbose)
    init_ray(RayConfig(num_cpus=1))
    assert calls[0]["log_to_driver"] is verbose
    assert calls[0]["logging_level"] == (logging.INFO if verbose else logging.ERROR)
    assert os.environ.get("RAY_DATA_LOG_LEVEL") == (None if verbose else "WARNING")
    if not verbose:
        hints = logging.getLogger("ray.data._internal.progress")
        assert not hints.isEnabledFor(logging.WARNING)
        hints.setLevel(logging.NOTSET)


def test_every_entry_point_takes_verbose(capsys) -> None:
    for main, argv in ((cli.main, ["space", "sample", "--space", "cell", "--verbose"]),
                       (cli.main, ["--verbose", "space", "sample", "--space", "cell"])):
        assert run(main, argv, capsys)[0] == 0
    for job in ("search", "pretrain", "score_corpus"):
        assert run(load_job(job).main, ["--help"], capsys)[1].count("--verbose") == 2


def test_generate_prints_only_our_line() -> None:
    """One real process: torch_geometric's FutureWarning at import does not reach stderr."""
    result = subprocess.run([str(HGNAS), "generate", "cells", "--artifact", "/nonexistent"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("hgnas: error:")


# ------------------------------------------------------------------ item 7: CIFAR batches
def _py2_str(value: bytes) -> bytes:
    """A Python 2 `str` as cPickle (protocol 2) wrote it."""
    if len(value) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(value)]) + value
    return pickle.BINSTRING + struct.pack("<i", len(value)) + value


def _py2_int(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def _py2_array(data: np.ndarray) -> bytes:
    """A uint8 matrix as numpy 1.x under Python 2 pickled it (what the CIFAR files hold)."""
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + pickle.TUPLE3
             + pickle.REDUCE + pickle.MARK + _py2_int(3) + _py2_str(b"|") + pickle.NONE * 3
             + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + pickle.TUPLE + pickle.BUILD)
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0)
            + pickle.TUPLE1 + _py2_str(b"b") + pickle.TUPLE3 + pickle.REDUCE + pickle.MARK
            + _py2_int(1) + _py2_int(data.shape[0]) + _py2_int(data.shape[1]) + pickle.TUPLE2
            + dtype + pickle.NEWFALSE + _py2_str(data.tobytes()) + pickle.TUPLE + pickle.BUILD)


def _py2_dict(items: dict[bytes, bytes]) -> bytes:
    body = b"".join(_py2_str(k) + v for k, v in items.items())
    return (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS
            + pickle.STOP)


def _py2_list(values: list) -> bytes:
    items = b"".join(_py2_int(v) if isinstance(v, int) else _py2_str(v) for v in values)
    return pickle.EMPTY_LIST + pickle.MARK + items + pickle.APPENDS


CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                 b"horse", b"ship", b"truck"]


def write_cifar10_batches(root: Path, per_batch: int = 2) -> np.ndarray:
    """A tiny `cifar-10-batches-py` in the files' real format; returns the train data."""
    folder = root / CIFAR10_LAYOUT.folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = []
    for split, names in CIFAR10_LAYOUT.splits.items():
        for name in names:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, per_batch)]
            (folder / name).write_bytes(_py2_dict({b"data": _py2_array(data),
                                                   b"labels": _py2_list(labels)}))
            if split == "train":
                train.append(data)
    (folder / "batches.meta").write_bytes(_py2_dict({b"label_names":
                                                     _py2_list(CIFAR10_NAMES)}))
    return np.concatenate(train)


def test_cifar_python_batches_load_without_unpickling(tmp_path) -> None:
    data = write_cifar10_batches(tmp_path)
    dataset = load_task("cifar10", root=tmp_path, cache_dir=tmp_path / "cache")
    assert dataset.images.shape == (10, 32, 32, 3)
    # the files store each image as 1024 red, 1024 green, 1024 blue values
    assert np.array_equal(dataset.images[3, :, :, 1], data[3, 1024:2048].reshape(32, 32))
    assert dataset.info.class_names[0] == "airplane"


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["payload", "truncated", "wrong schema", "object array"])
def test_untrusted_cifar_batches_are_refused_and_never_run(content, tmp_path) -> None:
    write_cifar10_batches(tmp_path)
    batch = tmp_path / CIFAR10_LAYOUT.folder / "data_batch_3"
    payload = _Payload()
    payload.marker = tmp_path / "pwned"
    batch.write_bytes({
        "payload": pickle.dumps({"data": payload}),
        "truncated": batch.read_bytes()[:500],
        "wrong schema": pickle.dumps({"data": [1, 2, 3], "labels": "x"}, protocol=3),
        "object array": pickle.dumps({"data": np.array([None, 1], dtype=object)}, protocol=3),
    }[content])
    with pytest.raises(DataError, match="data_batch_3") as info:
        load_task("cifar10", root=tmp_path, cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert not payload.marker.exists()
    if content != "wrong schema":  # that one unpickles fine; its shape is what is refused
        with pytest.raises(DataError, match="not a CIFAR batch file"):
            load_batch_file(batch)


# ------------------------------------------------------------------ found by tests/test_fuzz_cli.py
@pytest.mark.parametrize("damage", ["sha256 key", "shards key", "shard entry", "outside path",
                                    "rows", "entry dropped"])
def test_corpus_build_repairs_a_damaged_manifest(damage, tmp_path, capsys) -> None:
    import json

    argv = ["corpus", "build", "--space", "cell", "--n", "12", "--shard-size", "5", "--out",
            str(tmp_path / "c"), "--no-progress"]
    assert run(cli.main, argv, capsys)[0] == 0
    manifest_path = tmp_path / "c" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if damage == "sha256 key":
        manifest["shards"][1]["sha257"] = manifest["shards"][1].pop("sha256")
    elif damage == "shards key":
        manifest["shardz"] = manifest.pop("shards")
    elif damage == "shard entry":
        manifest["shards"][0] = "cells/part-00000.parquet"
    elif damage == "outside path":
        manifest["shards"][0]["file"] = "../elsewhere.parquet"
    elif damage == "entry dropped":  # still "complete": the listed shards alone all match
        del manifest["shards"][0]
    else:
        manifest["rows"] = "12"
    manifest_path.write_text(json.dumps(manifest))
    code, _, err = run(cli.main, argv, capsys)
    assert code == 0 and "Traceback" not in err
    assert run(cli.main, ["corpus", "check", "--corpus", str(tmp_path / "c")], capsys)[0] == 0


def test_package_warning_is_one_line_of_ours(tmp_path, capsys, package_logger_level) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "tree" / label / "0.png")
    (tmp_path / "tree" / "a" / "1.png").write_bytes(b"not a png")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        code, out, err = run(cli.main, ["prepare-data", str(tmp_path / "tree"), "--out",
                                        str(tmp_path / "out"), "--skip-corrupt"], capsys)
    assert code == 0
    assert err.splitlines() == [err.splitlines()[0]] and err.startswith("hgnas: warning: ")
    assert "skipped 1 corrupt image(s)" in err
