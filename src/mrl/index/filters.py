"""Metadata filters: equality / ``in`` on scalar fields, joined by ``and``.

A filter is either a dict or a tiny expression; both parse to the same :class:`Filter`:

    {"lang": "en", "source": ["man", "wordnet"]}       # a list means "in"
    'lang == "en" and source in ["man", "wordnet"]'    # the same, as text (Milvus's syntax subset)

Values are strings (double or single quotes) or integers. Field names and value types are checked
against the index's metadata schema (``{field: "str" | "int"}``) with an error naming the fix. The
same :class:`Filter` is evaluated locally on the index's metadata columns (a boolean row mask, see
:mod:`mrl.index.catalog`) and translated to a Milvus boolean expression (:meth:`Filter.to_milvus`),
so both backends accept exactly the same filters.

This is hand-written rather than borrowed because the accepted language is deliberately tiny (so
that every accepted filter means the same thing in both backends); a general expression parser
would accept filters one backend cannot run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mrl.errors import MRLError

FIELD_TYPES = ("str", "int")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RESERVED = frozenset({"id", "vector", "and", "or", "not", "in"})
_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<int>-?\d+)|(?P<op>==|\[|\]|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))""")
_EXAMPLE = "e.g. 'lang == \"en\" and source in [\"man\", \"wordnet\"]' or {\"lang\": \"en\"}"


class FilterError(MRLError):
    """A metadata filter is malformed, names an unknown field, or compares a field with the wrong type."""


def check_field_name(name: Any) -> str:
    if not isinstance(name, str) or not FIELD_NAME.match(name) or name.lower() in RESERVED or name.startswith("mrl_"):
        raise FilterError(f"metadata field name {name!r} is not allowed; use letters, digits and '_' (not starting with a digit or 'mrl_', not one of {sorted(RESERVED)}).")
    return name


@dataclass(frozen=True)
class Filter:
    """A conjunction of clauses ``field in values`` (equality is a one-value ``in``)."""

    clauses: tuple[tuple[str, tuple[Any, ...]], ...]

    def fields(self) -> list[str]:
        return [f for f, _ in self.clauses]

    @property
    def matches_nothing(self) -> bool:
        """True when two clauses on one field leave no value (``a == 1 and a == 2``)."""
        return any(not values for _, values in self.clauses)

    def to_milvus(self) -> str:
        """The same filter as a Milvus boolean expression, e.g. ``lang in ["en"] and year in [2020]``."""
        return " and ".join(f"{field} in [{', '.join(json.dumps(v) for v in values)}]" for field, values in self.clauses)

    def __str__(self) -> str:
        return " and ".join(f"{f} == {json.dumps(v[0])}" if len(v) == 1 else f"{f} in [{', '.join(json.dumps(x) for x in v)}]" for f, v in self.clauses)


def parse_filter(spec: str | dict[str, Any] | Filter | None, schema: dict[str, str]) -> Filter | None:
    """Parse and validate a filter against ``schema`` (``{field: "str" | "int"}``). ``None``/empty -> ``None``."""
    if spec is None or isinstance(spec, Filter):
        return _validate(spec, schema) if spec is not None else None
    if isinstance(spec, dict):
        if not spec:
            return None
        clauses = []
        for field, value in spec.items():
            values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            clauses.append((field, values))
        return _validate(Filter(tuple(clauses)), schema)
    if not isinstance(spec, str):
        raise FilterError(f"a filter must be a string or a dict, got {type(spec).__name__}; {_EXAMPLE}.")
    if not spec.strip():
        return None
    return _validate(_parse_text(spec), schema)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"cannot parse the filter {text!r} at {text[pos:pos + 12].strip()!r}; {_EXAMPLE}.")
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "str":
            out.append(("value", re.sub(r"\\(.)", r"\1", raw[1:-1])))
        elif kind == "int":
            out.append(("value", int(raw)))
        elif kind == "word":
            out.append(("and", None) if raw.lower() == "and" else ("in", None) if raw.lower() == "in" else ("word", raw))
        else:
            out.append((raw, None))
        pos = m.end()
    return out


def _parse_text(text: str) -> Filter:
    toks = _tokens(text)
    bad = FilterError(f"malformed filter {text!r}: write clauses 'FIELD == VALUE' or 'FIELD in [V1, V2]' joined by 'and'; {_EXAMPLE}.")
    clauses, i = [], 0
    while True:
        if i >= len(toks) or toks[i][0] != "word":
            raise bad
        field = toks[i][1]
        i += 1
        if i < len(toks) and toks[i][0] == "==":
            if i + 1 >= len(toks) or toks[i + 1][0] != "value":
                raise bad
            values: tuple[Any, ...] = (toks[i + 1][1],)
            i += 2
        elif i < len(toks) and toks[i][0] == "in":
            if i + 1 >= len(toks) or toks[i + 1][0] != "[":
                raise bad
            i += 2
            vals = []
            while i < len(toks) and toks[i][0] == "value":
                vals.append(toks[i][1])
                i += 1
                if i < len(toks) and toks[i][0] == ",":
                    i += 1
                    continue
                break
            if i >= len(toks) or toks[i][0] != "]" or not vals:
                raise bad
            values = tuple(vals)
            i += 1
        else:
            raise bad
        clauses.append((field, values))
        if i == len(toks):
            return Filter(tuple(clauses))
        if toks[i][0] != "and":
            raise bad
        i += 1


def _validate(f: Filter, schema: dict[str, str]) -> Filter:
    seen: dict[str, set[Any]] = {}
    for field, values in f.clauses:
        if field not in schema:
            known = ", ".join(sorted(schema)) or "none: add vectors with metadata (--meta) first"
            raise FilterError(f"unknown filter field {field!r}; this index's metadata fields are: {known}.")
        if not values:
            raise FilterError(f"filter clause on {field!r} has no values; give at least one.")
        want = str if schema[field] == "str" else int
        for v in values:
            if isinstance(v, bool) or not isinstance(v, want):
                raise FilterError(f"filter field {field!r} holds {schema[field]} values, got {v!r} ({type(v).__name__}); {'quote it' if want is str else 'use an integer'}.")
        # Two clauses on one field intersect (``a in [1,2] and a == 2`` is ``a == 2``).
        seen[field] = set(values) if field not in seen else seen[field] & set(values)
    return Filter(tuple((field, tuple(sorted(vals, key=repr))) for field, vals in seen.items()))
