"""Reading run configurations: a YAML mapping plus ``key=value`` overrides, into a dataclass.

Shared by every recipe (:mod:`mrl.train.recipe` dispatches on ``task``) so all accept the same files
and overrides and fail with the same messages. :func:`from_mapping` coerces each value to its
field's annotated type (``--set lr=1e-3`` arrives from YAML as the string ``"1e-3"``) and refuses a
value of the wrong type with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mrl.errors import MRLError

T = TypeVar("T")


def read_config(path: str | os.PathLike[str] | None, overrides: list[str] | dict[str, Any] | None, *, example: str = "configs/") -> dict[str, Any]:
    """The YAML mapping at ``path`` (or ``{}``) updated with ``overrides``.

    Overrides are a dict or ``["epochs=5", "mode=mrl-e"]``; a value is parsed as YAML (so ``[8]``
    is a list and an empty value is ``None``); dashes in keys become underscores.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise MRLError(f"config file {p} does not exist; see {example} for examples.")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise MRLError(f"config file {p} is not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__}{where}); fix the syntax.") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise MRLError(f"config file {p} must hold a mapping of keys to values.")
        data.update(loaded or {})
    if isinstance(overrides, dict):
        data.update(overrides)
        return data
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MRLError(f"override {item!r} must look like key=value, e.g. epochs=5.")
        data[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else None
    return data


def from_mapping(cls: type[T], data: dict[str, Any], what: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and coercing values to field types."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise MRLError(f"unknown {what} keys {unknown}; valid keys are {sorted(known)}.")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(hints.get(k, Any), v, k) for k, v in data.items()})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(tp: Any, value: Any, name: str) -> Any:
    """``value`` converted to annotation ``tp`` (``int``, ``float``, ``bool``, ``str``, ``X | None``,
    ``list[X]``, ``dict``; ``Any`` passes through), or an :class:`MRLError` naming the field."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, name)
            except MRLError as exc:
                errors.append(str(exc))
        raise MRLError(errors[0] if len(errors) == 1 else f"{name} must be one of {' | '.join(_type_name(a) for a in args)}, got {value!r}.")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise MRLError(f"{name} must be a list, got {value!r}; write e.g. {name}=[1, 2].")
        return [coerce(args[0] if args else Any, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise MRLError(f"{name} must be a mapping, got {value!r}; write e.g. {name}={{key: value}}.")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise MRLError(f"{name} must be true or false, got {value!r}.")
    if tp is int:
        if isinstance(value, bool):
            raise MRLError(f"{name} must be an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise MRLError(f"{name} must be an integer, got {value!r}; write e.g. {name}=3.")
    if tp is float:
        if isinstance(value, bool):
            raise MRLError(f"{name} must be a number, got {value!r}.")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise MRLError(f"{name} must be a number, got {value!r}; write e.g. {name}=0.001.") from None
        else:
            raise MRLError(f"{name} must be a number, got {value!r}; write e.g. {name}=0.001.")
        if not math.isfinite(out):
            raise MRLError(f"{name} must be a finite number, got {value!r}.")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise MRLError(f"{name} must be a string, got {value!r}.")
    return value
