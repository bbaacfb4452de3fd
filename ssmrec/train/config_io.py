"""Settings in and out: a value coerced, strictly, to a setting's type; command-line text parsed
as one; TOML files read and JSON files written. No torch, and nothing of :mod:`ssmrec.train`
(:class:`~ssmrec.train.config.TrainConfig` uses it, as do the command line's early checks)."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import tomllib

from ssmrec.errors import ConfigError

_EXPECTED = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def coerce(f: dataclasses.Field, value: Any, source: str) -> Any:
    """``value`` as the type of setting ``f``, strictly (see :meth:`TrainConfig.replace`)."""
    kind = str(f.type)
    optional = kind.endswith("| None")
    base = kind.split("|")[0].strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {f.name} cannot be None (expected {_expected(base)})")
    try:
        if base.startswith("tuple"):
            inner = "float" if "float" in base else ("str" if "str" in base else "int")
            items = value if isinstance(value, (list, tuple)) else [value]
            return tuple(_scalar(inner, v) for v in items)
        if base.startswith("dict"):
            return _params(value)
        return _scalar(base, value)
    except (TypeError, ValueError):
        hint = ""
        if isinstance(value, str) and base != "str" and parse_text(kind, value) is not value:
            hint = ", without quotes"
        raise ConfigError(f"{source}: {f.name} cannot be {value!r} (expected {_expected(base)}{hint})") from None


def _params(value: Any) -> dict[str, Any]:
    """Loss parameters: a table of names to numbers, booleans or text; from the command line a
    list of ``name=value`` texts (values parsed as numbers or booleans where they can be)."""
    if isinstance(value, (list, tuple)):
        out = {}
        for item in value:
            if not isinstance(item, str) or "=" not in item:
                raise ValueError(item)
            k, _, v = item.partition("=")
            out[k.strip()] = _auto(v.strip())
        value = out
    if not isinstance(value, dict):
        raise TypeError(value)
    for k, v in value.items():
        if not isinstance(k, str) or not k or not isinstance(v, (bool, int, float, str)):
            raise TypeError(value)
    return dict(value)


def _auto(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _expected(base: str) -> str:
    if base.startswith("dict"):
        return "a table of name = value (command line: name=value)"
    if base.startswith("tuple"):
        return "a list of " + ("numbers" if "float" in base else ("texts" if "str" in base else "integers"))
    return _EXPECTED[base]


def _scalar(kind: str, v: Any) -> Any:
    if kind == "bool":
        if isinstance(v, bool) or type(v).__name__ == "bool_":
            return bool(v)
    elif kind == "int":
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            return int(v)
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and float(v).is_integer():
            return int(v)
    elif kind == "float":
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and type(v).__name__ != "bool_":
            return float(v)
    elif kind == "str":
        if isinstance(v, str):
            return v
        if isinstance(v, os.PathLike):
            return str(os.fspath(v))
    raise TypeError(v)


def parse_text(kind: str, text: str) -> Any:
    """Command-line text as a setting of type ``kind`` (as :class:`TrainConfig`'s field types
    read: ``int``, ``float | None``, ``tuple[int, ...]`` (one element)...); the text itself when
    it does not parse, for :meth:`TrainConfig.replace` to refuse with the setting's name."""
    base = kind.split("|")[0].strip()
    if base.startswith("tuple"):
        base = "float" if "float" in base else "int"
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
    except ValueError:
        return text
    if base == "bool":
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    return text


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a :class:`ConfigError` naming the file when missing or invalid."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read settings from a TOML file (top-level keys, or a ``[train]`` table)."""
    data = read_toml(path)
    return data.get("train", data)


def save_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
