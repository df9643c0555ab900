from __future__ import annotations

from pathlib import Path

import pytest

from hgnas_ray.config import load_config, save_config, to_dict
from hgnas_ray.errors import ConfigError
from hgnas_ray.search.config import SearchConfig


def test_defaults_yaml_and_overrides_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("generate:\n  per_setting: 3\nbudget:\n  max_params: 1000000\n")
    config = load_config(SearchConfig, path, ["generate.seed=7", "data.task=digits"])
    assert config.generate.per_setting == 3 and config.generate.seed == 7
    assert config.budget.max_params == 1_000_000 and config.data.task == "digits"
    saved = save_config(config, tmp_path / "out" / "config.yaml")
    assert load_config(SearchConfig, saved) == config
    assert to_dict(config)["generate"]["proxies"] == list(config.generate.proxies)


@pytest.mark.parametrize("overrides, fragment", [
    (["generate.per_set=3"], "unknown config key 'generate.per_set'"),
    (["generate.per_setting=abc"], "generate.per_setting must be int"),
    (["generate.per_setting=0"], "per_setting >= 1"),
    (["generate.fitness=synflow"], "needs \\['synflow'\\] in generate.proxies"),
    (["train.recipe.lr=-1"], "lr > 0"),
    (["macro.grid=huge"], "macro.grid must be one of"),
    (["budget.max_params=null"], "needs a budget"),
    (["corpus.network=tiny"], "corpus.network must be one of"),
    (["export.formats=[tflite]"], "unknown \\['tflite'\\]"),
    (["nokey"], "must read key=value"),
])
def test_bad_values_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(SearchConfig, None, overrides)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(SearchConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("generate: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SearchConfig, bad)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "jobs" /
                                         "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(SearchConfig, path)
    assert config.budget.max_params or config.budget.max_macs


def test_imagenet_config_counts_flops_as_the_paper_does():
    path = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "imagenet.yaml"
    assert 2 * load_config(SearchConfig, path).budget.max_macs == 450_000_000
