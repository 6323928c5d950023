"""Reading run configurations: a YAML mapping plus ``key=value`` overrides, into a dataclass.

Shared by the image (:mod:`mrl.train.config`) and text (:mod:`mrl.models.text`) recipes so both
accept the same files and overrides and fail with the same messages.
"""

from __future__ import annotations

import dataclasses
import os
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
            raise MRLError(f"config file {p} is not valid YAML: {exc}") from exc
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
    """Build dataclass ``cls`` from ``data``, refusing keys it does not define."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise MRLError(f"unknown {what} keys {unknown}; valid keys are {sorted(known)}.")
    return cls(**data)
