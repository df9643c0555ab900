from __future__ import annotations

import pytest

from hgnas_ray.config import load_config, save_config, to_dict
from hgnas_ray.errors import ConfigError
from hgnas_ray.search.config import SearchConfig


def test_defaults_yaml_and_overrides_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sample:\n  num_candidates: 3\nbudget:\n  max_params: 1000000\n")
    config = load_config(SearchConfig, path, ["sample.seed=7", "data.task=digits"])
    assert config.sample.num_candidates == 3 and config.sample.seed == 7
    assert config.budget.max_params == 1_000_000 and config.data.task == "digits"
    saved = save_config(config, tmp_path / "out" / "config.yaml")
    assert load_config(SearchConfig, saved) == config
    assert to_dict(config)["sample"]["proxies"] == list(config.sample.proxies)


@pytest.mark.parametrize("overrides, fragment", [
    (["sample.num_cand=3"], "unknown config key 'sample.num_cand'"),
    (["sample.num_candidates=abc"], "sample.num_candidates must be int"),
    (["sample.num_candidates=0"], "num_candidates must be >= 1"),
    (["sample.rank_by=synflow"], "not among sample.proxies"),
    (["nokey"], "must read key=value"),
])
def test_bad_values_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(SearchConfig, None, overrides)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(SearchConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sample: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SearchConfig, bad)
