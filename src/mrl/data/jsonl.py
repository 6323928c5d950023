"""JSON Lines: one JSON object per line, parsed with the line number every error names."""

from __future__ import annotations

import json
from typing import Any

from mrl.errors import DataError


def json_object_lines(text: str, source: str, fix: str) -> list[tuple[int, dict[str, Any]]]:
    """Each non-blank line of ``text`` parsed as a JSON object, as ``(1-based line number, object)``.

    ``source`` names the input in messages (a path, or ``"--meta PATH"``); ``fix`` says what a line
    must hold, e.g. ``'each line must be one object like {"anchor": ..., "positive": ...}'``.

    Raises:
        DataError: ``"{source} line N is not valid JSON (...); {fix}."`` or ``"{source} line N is a
            JSON list, not an object; {fix}."``.
    """
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source} line {lineno} is not valid JSON ({exc.msg}); {fix}.") from exc
        if not isinstance(obj, dict):
            raise DataError(f"{source} line {lineno} is a JSON {type(obj).__name__}, not an object; {fix}.")
        rows.append((lineno, obj))
    return rows
