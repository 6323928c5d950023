"""Reading run configurations: a YAML mapping plus ``key=value`` overrides, into a dataclass.

Shared by every recipe (:mod:`mrl.train.recipe` dispatches on ``task``) so all accept the same files
and overrides and fail with the same messages. :func:`from_mapping` coerces each value to its
field's annotated type with pydantic's ``TypeAdapter`` (``--set lr=1e-3`` arrives from YAML as the
string ``"1e-3"``) and refuses a value of the wrong type with one line naming the field path.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BeforeValidator, ConfigDict, StrictBool, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

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
        if p.is_dir():
            raise MRLError(f"config file {p} is a folder; give a YAML file (see {example} for examples).")
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


# Pydantic's lax mode reads "1e-3" as a float and 2.0 as an int, as a YAML recipe needs; three
# of its lax conversions are refused here to keep what recipes always accepted: a bool is not a
# number (``epochs=true``), and only true/false are booleans (not 1, "yes" or "on").
_CONFIG = ConfigDict(coerce_numbers_to_str=True, allow_inf_nan=False)


def _refuse_bool(kind: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(kind, "a boolean is not a number")
        return value

    return BeforeValidator(check)


def _recipe_type(tp: Any) -> Any:
    """``tp`` with bools strict and ints/floats refusing bools, also inside unions, lists and dicts."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return StrictBool
    if tp is int:
        return Annotated[int, _refuse_bool("int_type")]
    if tp is float:
        return Annotated[float, _refuse_bool("float_type")]
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, [_recipe_type(a) for a in args])
    if origin is list and args:
        return list[_recipe_type(args[0])]  # type: ignore[misc]
    if origin is dict and len(args) == 2:
        return dict[args[0], _recipe_type(args[1])]  # type: ignore[misc]
    return tp


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(_recipe_type(tp), config=_CONFIG)


# pydantic error type (its family before the first "_") -> our message; {name} is the field path.
_MESSAGES = {
    "finite_number": "{name} must be a finite number, got {value!r}.",
    "int": "{name} must be an integer, got {value!r}; write e.g. {name}=3.",
    "float": "{name} must be a number, got {value!r}; write e.g. {name}=0.001.",
    "bool": "{name} must be true or false, got {value!r}.",
    "string": "{name} must be a string, got {value!r}.",
    "list": "{name} must be a list, got {value!r}; write e.g. {name}=[1, 2].",
    "dict": "{name} must be a mapping, got {value!r}; write e.g. {name}={{key: value}}.",
}


def coerce(tp: Any, value: Any, name: str) -> Any:
    """``value`` converted to annotation ``tp`` by pydantic (lax mode: ``"1e-3"`` -> 0.001, ``2.0`` -> 2),
    or an :class:`MRLError` naming the field path (``matryoshka_weights[1] must be a number``)."""
    try:
        return _adapter(tp).validate_python(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = name + "".join(f"[{p}]" for p in err["loc"])
        kind = err["type"] if err["type"] in _MESSAGES else err["type"].split("_")[0]
        template = _MESSAGES.get(kind, "{name} is not valid ({msg}), got {value!r}.")
        raise MRLError(template.format(name=path, value=err["input"], msg=err["msg"])) from None
