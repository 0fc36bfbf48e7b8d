"""Typed configs: dataclass defaults <- YAML file <- ``key.sub=value`` overrides.

    from dataclasses import dataclass, field
    from diffucoder.config import load_config, setting

    @dataclass
    class Optim:
        lr: float = setting(1e-4, min=0.0, help="peak learning rate")

    @dataclass
    class Recipe:
        steps: int = setting(100, min=1)
        optim: Optim = field(default_factory=Optim)

    cfg = load_config(Recipe, "configs/tiny-cpu/pretrain.yaml", ["optim.lr=3e-4"])

Every error is a ``ConfigError`` naming the dotted key and where the value came
from (the YAML file or the command line), and is raised before any work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from diffucoder.errors import DiffucoderError

T = TypeVar("T")
MISSING = dataclasses.MISSING


class ConfigError(DiffucoderError):
    """A config value is unknown, mistyped, out of range or missing."""


def setting(default: Any = MISSING, *, default_factory: Any = MISSING, min: float | None = None,
            max: float | None = None, choices: typing.Sequence[Any] | None = None,
            help: str = "") -> Any:
    """A dataclass field with range/choice checks and help text."""
    meta = {"min": min, "max": max, "choices": tuple(choices) if choices else None, "help": help}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return the typed value."""
    def fail(why: str) -> ConfigError:
        return ConfigError(f"{source}: '{key}': {why}")

    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise fail(f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise fail(f"must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail(f"expected a mapping for section {_type_name(tp)}, got {value!r}")
        return _build(tp, value, key, source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail(f"expected a list, got {value!r}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_coerce(item_tp, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise fail(f"expected a mapping, got {value!r}")
        _k_tp, v_tp = get_args(tp) or (str, Any)
        return {str(k): _coerce(v_tp, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise fail(f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"expected a string, got {value!r}")
        return value
    raise fail(f"unsupported config type {_type_name(tp)}")


def _check_range(f: dataclasses.Field, value: Any, key: str, source: str) -> None:
    meta = f.metadata or {}
    if value is None:
        return
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: '{key}': must be one of {list(choices)}, got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{source}: '{key}': must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{source}: '{key}': must be <= {hi}, got {value!r}")


def _build(cls: type[T], data: dict, prefix: str, source: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in data:
        if name not in fields:
            key = f"{prefix}.{name}" if prefix else str(name)
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: '{key}': unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key, source)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{source}: '{key}': required value is missing")
    obj = cls(**kwargs)
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        _check_range(f, getattr(obj, name), key, source)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return obj


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def quote_value(text: str) -> str:
    """Quote a path or URI for a ``key=value`` override so it reads back as one string."""
    return "'" + str(text).replace("'", "''") + "'"


def parse_overrides(overrides: typing.Iterable[str]) -> dict:
    """``["a.b=3", "c=[1, 2]"]`` -> nested dict; values parsed as YAML scalars."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: '{item}': overrides look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            pairs.append((key, yaml.safe_load(raw) if raw.strip() else ""))
        except yaml.YAMLError as err:
            raise ConfigError(f"command line: '{key}': cannot parse value {raw!r}: {err}") from None
    return _nest(pairs, "command line", "override")


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def nest(values: typing.Mapping[str, Any], source: str = "values") -> dict:
    """``{"data.uri": "x", "train.steps": 3}`` -> ``{"data": {"uri": "x"}, "train": {"steps": 3}}``."""
    return _nest(values.items(), source, "key")


def _nest(pairs: typing.Iterable[tuple[str, Any]], source: str, what: str) -> dict:
    tree: dict = {}
    for key, value in pairs:
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{source}: '{key}': empty key")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: '{key}': conflicts with another {what}")
        node[leaf] = value
    return tree


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Iterable[str] = (),
                values: typing.Mapping[str, Any] | None = None) -> T:
    """Build ``cls`` from its defaults, then the YAML at ``path``, then ``values`` (typed values by
    dotted key, e.g. the store locations a stage wires in), then ``overrides`` (``key=value`` text)."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        data = read_yaml(path)
        source = str(path)
        _build(cls, data, "", source)  # errors in the file name the file
    if values:
        wired = nest(values)
        _check_keys(cls, wired, "", "wiring")
        data = _merge(data, wired)
    cli = parse_overrides(overrides)
    if cli:
        _check_keys(cls, cli, "", "command line")
        data = _merge(data, cli)
        source = f"{source} + command line" if path is not None else "command line"
    return _build(cls, data, "", source)


def _check_keys(cls: type, data: dict, prefix: str, source: str) -> None:
    """Name the override (not the file) when a command-line key or value is wrong."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in names:
            close = difflib.get_close_matches(name, list(names), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: '{key}': unknown key{hint}")
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            _check_keys(tp, value, key, source)
        else:
            _coerce(tp, value, key, source)


def to_dict(cfg: Any) -> dict:
    """Plain-data view of a config (for reports, manifests and YAML dumps)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
