"""Frozen dataclass configs: loaded from YAML, overridden from the command line, validated on load
and saved next to every run's results.

Nested dataclasses map to nested YAML mappings; `--set a.b=value` overrides one leaf (the value is
parsed as YAML, so `--set search.n=8` gives an int). Unknown keys are errors that list the valid
ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hgnas_ray.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Where Ray runs and what one candidate asks of it (plain data: no ray import here)."""

    address: str | None = None  # None: start Ray in-process; "auto": join a running cluster
    num_cpus: int | None = None  # in-process only; None: all cores
    include_dashboard: bool = False
    cpus_per_candidate: float = 1.0
    gpus_per_candidate: float = 0.0


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build the dataclass `cls` from a mapping, recursing into nested dataclasses."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping; got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{where}{unknown[0]}'; valid keys here: "
                          f"{', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, f"{where}{name}")
    try:
        config = cls(**values)
    except TypeError as err:
        raise ConfigError(f"{where or 'config'}: {err}") from None
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list; got {value!r}")
        return tuple(_convert(args[0], v, where) for v in value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool, float) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}; got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(cls: type[T], path: str | Path | None = None,
                overrides: Iterable[str] = ()) -> T:
    """Read YAML (if given), apply `key.sub=value` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; pass an existing YAML file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must read key=value (e.g. search.n=8)")
        _set(data, key.strip().split("."), yaml.safe_load(raw))
    return from_dict(cls, data)


def _set(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"cannot override inside {key!r}: it is not a mapping")
    data[keys[-1]] = value


def save_config(config: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return path
