"""Text pairs for contrastive training: ``anchor``, ``positive`` and an optional ``negative``.

User files may be JSON Lines (one object per line), CSV or TSV (a header row naming the columns).
The format is taken from the suffix (``.jsonl``/``.json``, ``.csv``, ``.tsv``/``.tab``) unless
``fmt`` is given. Every row must have non-empty ``anchor`` and ``positive`` text; ``negative`` is
either present (non-empty) in every row or absent from the file. Extra columns are ignored.

Example:
    >>> pairs = load_pairs("pairs.jsonl")      # {"anchor": "car", "positive": "a motor vehicle"}
    >>> len(pairs), pairs.anchor[0]
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl.data.jsonl import json_object_lines
from mrl.errors import DataError

COLUMNS = ("anchor", "positive", "negative")
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}


@dataclass(frozen=True)
class PairSet:
    """Parallel lists of texts; ``negative`` is ``None`` when the data has no hard negatives."""

    anchor: tuple[str, ...]
    positive: tuple[str, ...]
    negative: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.anchor)
        if len(self.positive) != n or (self.negative is not None and len(self.negative) != n):
            raise DataError(f"anchor/positive/negative must have the same length, got {n}, {len(self.positive)}, {None if self.negative is None else len(self.negative)}.")

    def __len__(self) -> int:
        return len(self.anchor)

    def subset(self, index: np.ndarray | list[int]) -> PairSet:
        """Rows ``index`` (in that order) as a new :class:`PairSet`."""
        idx = [int(i) for i in index]
        pick = lambda col: tuple(col[i] for i in idx)  # noqa: E731
        return PairSet(pick(self.anchor), pick(self.positive), None if self.negative is None else pick(self.negative))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"pair file {path} does not exist; check the path.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM written by spreadsheet tools
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text (bad byte at line {line}, offset {exc.start}); re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`.") from exc
    if not text.strip():
        raise DataError(f"pair file {path} is empty; it needs rows with 'anchor' and 'positive' columns.")
    return text


def _rows_jsonl(text: str, path: Path) -> list[tuple[int, dict[str, object]]]:
    return json_object_lines(text, str(path), 'each line must be one object like {"anchor": ..., "positive": ...}')


def _rows_delimited(text: str, path: Path, delimiter: str) -> list[tuple[int, dict[str, object]]]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS[:2] if c not in header]
    if missing:
        sep = "tab" if delimiter == "\t" else "comma"
        raise DataError(f"{path} has no column(s) {missing} in its header {header}; the first row must name the columns ({sep}-separated), e.g. 'anchor{delimiter}positive'.")
    dup = sorted({h for h in header if h and header.count(h) > 1})
    if dup:
        raise DataError(f"{path} names the column(s) {dup} more than once in its header {header}; rename or drop the duplicate so each column is read once.")
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:  # more fields than the header names
            raise DataError(f"{path} line {reader.line_num} has {len(header) + len(row[None])} fields but the header has {len(header)}; quote fields that contain the delimiter.")
        rows.append((reader.line_num, dict(row)))
    return rows


def load_pairs(path: str | os.PathLike[str], *, fmt: str | None = None) -> PairSet:
    """Load a pair file and validate every row.

    Args:
        path: a ``.jsonl``, ``.csv`` or ``.tsv`` file.
        fmt: ``"jsonl"``, ``"csv"`` or ``"tsv"`` to override the suffix.

    Raises:
        DataError: missing file, not UTF-8, no rows, malformed JSON/CSV, missing columns, empty
            text, or a ``negative`` column present in some rows only. The message names the line.
    """
    p = Path(path)
    kind = fmt or FORMATS.get(p.suffix.lower())
    if kind not in ("jsonl", "csv", "tsv"):
        raise DataError(f"cannot tell the format of {p}; use a .jsonl, .csv or .tsv suffix or pass fmt='jsonl'|'csv'|'tsv'.")
    text = _read_text(p)
    rows = _rows_jsonl(text, p) if kind == "jsonl" else _rows_delimited(text, p, "," if kind == "csv" else "\t")
    if not rows:
        raise DataError(f"{p} has a header but no rows; add at least one anchor/positive pair.")
    has_neg = any(obj.get("negative") not in (None, "") for _, obj in rows)
    cols: dict[str, list[str]] = {c: [] for c in COLUMNS}
    for lineno, obj in rows:
        for c in COLUMNS if has_neg else COLUMNS[:2]:
            if c not in obj:
                raise DataError(f"{p} line {lineno} has no '{c}' field (fields: {sorted(obj)}); every row needs 'anchor' and 'positive'" + (" and, since other rows have one, 'negative'." if c == "negative" else "."))
            v = obj[c]
            if not isinstance(v, str):
                raise DataError(f"{p} line {lineno}: '{c}' must be a string, got {type(v).__name__}.")
            if not v.strip():
                raise DataError(f"{p} line {lineno}: '{c}' is empty; drop the row or fill in the text.")
            cols[c].append(v.strip())
    return PairSet(tuple(cols["anchor"]), tuple(cols["positive"]), tuple(cols["negative"]) if has_neg else None)


def load_scored_pairs(path: str | os.PathLike[str], *, fmt: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...], tuple[float, ...]]:
    """Pairs with a similarity ``score`` (for CoSENT-style losses): columns ``anchor``, ``positive``
    and ``score`` (a number, e.g. in [0, 1]).

    Raises:
        DataError: as :func:`load_pairs`, plus a missing or non-numeric ``score``.
    """
    p = Path(path)
    kind = fmt or FORMATS.get(p.suffix.lower())
    if kind not in ("jsonl", "csv", "tsv"):
        raise DataError(f"cannot tell the format of {p}; use a .jsonl, .csv or .tsv suffix or pass fmt='jsonl'|'csv'|'tsv'.")
    text = _read_text(p)
    rows = _rows_jsonl(text, p) if kind == "jsonl" else _rows_delimited(text, p, "," if kind == "csv" else "\t")
    if not rows:
        raise DataError(f"{p} has a header but no rows; add anchor/positive/score rows.")
    a, b, s = [], [], []
    for lineno, obj in rows:
        for c in ("anchor", "positive"):
            v = obj.get(c)
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"{p} line {lineno}: '{c}' is missing or empty; every row needs 'anchor', 'positive' and 'score'.")
        try:
            score = float(obj.get("score"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DataError(f"{p} line {lineno}: 'score' must be a number, got {obj.get('score')!r}.") from None
        if not np.isfinite(score):
            raise DataError(f"{p} line {lineno}: 'score' must be finite, got {score}.")
        a.append(str(obj["anchor"]).strip())
        b.append(str(obj["positive"]).strip())
        s.append(score)
    return tuple(a), tuple(b), tuple(s)
