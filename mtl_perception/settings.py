"""Typed settings: dataclasses built from plain dicts (YAML) with clear errors.

Every settings object in the project is a dataclass; this module turns the
nested dicts that YAML gives into those dataclasses, checks keys and types, and
applies `key=value` command-line overrides. An unknown key, a missing
required key, a wrong type or a value the dataclass itself refuses is one
`SettingsError` naming the key, never a silent default and never a traceback.
A key written twice in one YAML mapping is refused with its file and line
(YAML itself would silently keep the last one).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mtl_perception.exits import one_line

T = TypeVar("T")


class SettingsError(ValueError):
    """A settings file or override that does not fit its dataclass."""


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclasses."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SettingsError(
            f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise SettingsError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(fields)}"
        )
    required = [
        name for name, f in fields.items()
        if f.init and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING and name not in data
    ]
    if required:
        raise SettingsError(f"{where or cls.__name__}: missing required key(s) {required}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except SettingsError:
        raise
    except (ValueError, TypeError) as exc:  # the dataclass's own checks (__post_init__)
        raise SettingsError(f"{where or cls.__name__}: {one_line(exc)}") from exc


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list/scalars (tuples become lists), for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


MAX_SETTINGS_BYTES = 16 << 20  # the largest shipped (a set with its lists inline) is ~10 kB


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one clear message for a missing or malformed file."""
    path = Path(path)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:  # ValueError: a NUL
        raise SettingsError(f"settings file not found: {path}") from exc
    except OSError as exc:  # permissions on a folder above it, a name too long
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):  # a folder, or a FIFO that would block the read forever
        raise SettingsError(f"settings file {path} is not a regular file")
    if info.st_size > MAX_SETTINGS_BYTES:  # read whole and parsed: 8 GB was a MemoryError
        raise SettingsError(f"settings file {path} is {info.st_size} bytes; a settings file "
                            f"is at most {MAX_SETTINGS_BYTES >> 20} MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    except OSError as exc:  # unreadable: permissions, a dead network mount
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror or exc}") from exc
    try:
        data = parse_yaml(text, str(path))
    except SettingsError:
        raise
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(
            f"{path}: expected a mapping (key: value lines) at the top level, "
            f"got {type(data).__name__}"
        )
    return data


def parse_yaml(text: str, where: str = "<text>") -> Any:
    """`yaml.safe_load`, but a key repeated in one mapping is a `SettingsError` naming it.

    YAML's own loaders keep the last of two equal keys without a word, so a
    setting written twice (a paste, a merge gone wrong) would silently lose one.
    """
    loader = _StrictLoader(text)
    loader.where = where
    try:
        return loader.get_single_data()
    except RecursionError as exc:  # "[[[[..." thousands deep: PyYAML recurses per level
        raise SettingsError(f"{where}: YAML nested too deeply") from exc
    finally:
        loader.dispose()


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and alias bombs."""

    where = "<text>"
    _aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > _MAX_ALIASES:  # a "billion laughs" document
                raise SettingsError(f"{self.where}: more than {_MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


def _unique_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base`: keys written after it override the merged ones, by design
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key (a list): construct_mapping says so
            continue
        line = key_node.start_mark.line + 1
        if first is not None:
            raise SettingsError(
                f"{loader.where}:{line}: key {key!r} appears twice in one mapping "
                f"(first at line {first})"
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=False)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
# Numbers as YAML 1.2's core schema (and JSON, and every user) read them. PyYAML follows
# YAML 1.1: `1e-3` was a string (its floats need a dot), `010` the octal 8, `1_5` 15 and
# `1:30` the sexagesimal 90, so `clip_length: 016` silently meant 14. Now `1e-3` is
# 0.001, `010` is 10, `0o17` / `0x1F` are octal / hex, and `1_5` or `1:30` stay text,
# which a numeric setting refuses by name.
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_StrictLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def _yaml12_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text[:2] in ("0o", "0x"):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)  # `010` is ten, as in YAML 1.2


_StrictLoader.add_constructor(_INT, _yaml12_int)
_MAX_ALIASES = 1000


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: `line L, column C: problem`."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return one_line(exc)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested dict copy."""
    result = _deep_copy(data)
    seen: dict[str, str] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SettingsError(f"override {item!r}: expected key=value")
        if key in seen:  # as a key written twice in a YAML file: one would be lost silently
            raise SettingsError(f"override {item!r}: {key} is already set by {seen[key]!r}; "
                                "give each setting once")
        seen[key] = item
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SettingsError(f"override {item!r}: {part!r} is not a section")
            node = child
        try:
            node[parts[-1]] = parse_yaml(raw, f"override {item!r}")
        except yaml.YAMLError as exc:
            raise SettingsError(
                f"override {item!r}: value is not valid YAML ({_yaml_problem(exc)})"
            ) from exc
    return result


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except SettingsError as exc:
                errors.append(str(exc))
        raise SettingsError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value is False and "off" in args:  # YAML 1.1 reads a bare `off` as false
            return "off"
        if value not in args:
            raise SettingsError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise SettingsError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))
            )
        item = args[0] if args else Any
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        key_t, val_t = args if args else (Any, Any)
        return {
            _coerce(key_t, k, where): _coerce(val_t, v, f"{where}.{k}") for k, v in value.items()
        }
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise SettingsError(f"{where}: expected a path, got {value!r}")
        if not str(value).strip() or "\0" in str(value):
            raise SettingsError(f"{where}: {value!r} is not a usable path")
        return Path(value)
    return value
