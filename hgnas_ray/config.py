"""Frozen dataclass configs: loaded from YAML, overridden from the command line, validated on load
and saved next to every run's results.

Nested dataclasses map to nested YAML mappings; `--set a.b=value` overrides one leaf (the value is
parsed as YAML, so `--set search.n=8` gives an int). Unknown keys are errors that list the valid
ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hgnas_ray.errors import ConfigError

T = TypeVar("T")
MAX_SEED = 2**63 - 1  # numpy takes any seed >= 0, torch.manual_seed one below 2**64


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Where Ray runs (plain data: no ray import here)."""

    address: str | None = None  # None: start Ray in-process; "auto": join a running cluster
    num_cpus: int | None = None  # in-process only; None: all cores
    include_dashboard: bool = False

    def validate(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"ray.num_cpus must be >= 1 (or null: all cores); got "
                              f"{self.num_cpus}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build the dataclass `cls` from a mapping, recursing into nested dataclasses."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where.rstrip('.') or 'the config'} must be a mapping of keys to "
                          f"values; got {_short(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
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
            raise ConfigError(f"{where} must be a list; got {_short(value)}")
        return tuple(_convert(args[0], v, where) for v in value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e308 else math.inf  # an int too big for a float
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number; got {_short(value)}")
        return number
    if hint in (int, str, bool, float) and (not isinstance(value, hint) or (
            hint is int and isinstance(value, bool))):
        raise ConfigError(f"{where} must be {hint.__name__}; got {_short(value)}")
    return value


def _short(value: Any, limit: int = 80) -> str:
    """`repr` of a value for a one-line message, cut at `limit` characters."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # deep nesting; an int beyond the digit limit
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def plain_folder_name(name: str, what: str, parent: str) -> str:
    """`name` if it names one folder inside `parent`, else a `ConfigError`: a path (`a/b`, `..`,
    `/x`) would put files outside it."""
    size = len(name.encode("utf-8", "surrogatepass"))
    plain = (name not in ("", ".", "..") and name == name.strip() and size <= 255
             and not any(c in name for c in ("/", "\\", "\x00")))
    if not plain:
        raise ConfigError(f"{what} must be one folder name inside {parent}: not empty, '.' or "
                          f"'..', no '/' or '\\', no surrounding spaces, at most 255 bytes; got "
                          f"{_short(name)}")
    return name


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
        data = _read_yaml_file(Path(path))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {_short(item)} must read key=value (e.g. search.n=8)")
        value = _parse_yaml(raw, f"the value of override {_short(item)}",
                            "quote a string value, e.g. key='{text}'")
        _set(data, key.strip().split("."), value)
    return from_dict(cls, data)


def _read_yaml_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    data = _parse_yaml(text, f"config file {path}", "fix the file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (e.g. "
                          f"'sample:'); its top level is a {type(data).__name__}")
    return data


def _parse_yaml(text: str, what: str, fix: str) -> Any:
    """`yaml.safe_load`, with every way it can fail turned into one `ConfigError`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise ConfigError(f"{what} is not valid YAML ({detail}); {fix}") from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply to be a config; {fix}") from None
    except ValueError as err:  # e.g. an integer beyond Python's digit limit
        raise ConfigError(f"{what} holds an unreadable value ({err}); {fix}") from None


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
