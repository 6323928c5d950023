"""Unlabeled texts for label-free adaptation: the user's own corpus, in whatever shape it comes.

``load_texts(source)`` accepts:

* ``wordnet``: the WordNet noun task's *training* split (queries and definitions; no test synset);
* a BEIR folder: its ``unlabeled.jsonl`` (same-domain documents disjoint from the evaluated corpus);
* a ``.txt`` file: one text per line (blank lines skipped);
* a ``.jsonl`` file: one JSON object per line with ``text`` (and optional ``title``, joined as
  ``title + " " + text``, and optional unique ``_id``), or one JSON string per line.

Texts are stripped and de-duplicated (first occurrence kept, file order otherwise); ``max_texts``
keeps a seeded sample. Bad input fails with one line naming the file, the line and the fix: a
missing file, bytes that are not UTF-8, a malformed JSON line, an empty text, a duplicate ``_id``.

Example:
    >>> texts = load_texts("my_corpus.jsonl", max_texts=20000)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import DataError

TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
UTF8_FIX = "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"


def _decoded_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of every line, strictly UTF-8 (a BOM on the first line is dropped)."""
    out = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path} line {lineno} is not UTF-8 (bad byte at column {exc.start + 1}); {UTF8_FIX}.") from exc
            out.append((lineno, line.removeprefix("\ufeff") if lineno == 1 else line))
    return out


def _read_txt(path: Path) -> list[str]:
    return [line.strip() for _, line in _decoded_lines(path) if line.strip()]


def json_lines(path: Path, expected: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of every non-blank line of a strictly UTF-8 JSONL file.

    ``expected`` names the line shape in the error for a malformed line (e.g. ``an object like {"text": ...}``).
    """
    for lineno, line in _decoded_lines(path):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {lineno} is not valid JSON ({exc.msg}); each line must be {expected}.") from exc


def _read_jsonl(path: Path) -> list[str]:
    texts: list[str] = []
    seen_ids: dict[str, int] = {}
    for lineno, obj in json_lines(path, 'an object like {"text": ...} or a JSON string'):
        if isinstance(obj, str):
            text = obj.strip()
        elif isinstance(obj, dict):
            body, title = obj.get("text"), obj.get("title") or ""
            if not isinstance(body, str) or not isinstance(title, str):
                raise DataError(f"{path} line {lineno}: 'text' (and 'title') must be strings; got fields {sorted(obj)}.")
            rid = obj.get("_id")
            if rid is not None:
                rid = str(rid)
                if rid in seen_ids:
                    raise DataError(f"{path} line {lineno}: duplicate _id {rid!r} (first on line {seen_ids[rid]}); ids must be unique.")
                seen_ids[rid] = lineno
            text = f"{title.strip()} {body.strip()}".strip()
        else:
            raise DataError(f"{path} line {lineno} is a JSON {type(obj).__name__}; each line must be an object with 'text' or a JSON string.")
        if not text:
            raise DataError(f"{path} line {lineno} has empty text; drop the line or fill it in.")
        texts.append(text)
    return texts


def _dedupe(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _sample(texts: list[str], max_texts: int | None, seed: int) -> list[str]:
    if max_texts is not None and len(texts) > max_texts:
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=max_texts, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def _beir_unlabeled(folder: Path, max_texts: int | None, seed: int) -> list[str]:
    path = folder / "unlabeled.jsonl"
    if not path.is_file():
        raise DataError(f"{folder} has no unlabeled.jsonl; a BEIR folder used for fitting needs same-domain documents there (never the evaluated corpus), or pass a .txt/.jsonl of your texts.")
    try:  # the BEIR loader also checks the documents are disjoint from the evaluated corpus
        from mrl.data.beir import load_unlabeled
    except ImportError:  # pragma: no cover - older checkouts without the BEIR loader
        return _sample(_dedupe(_read_jsonl(path)), max_texts, seed)
    return _sample(_dedupe(list(load_unlabeled(folder))), max_texts, seed)


def load_texts(source: str | os.PathLike[str], *, max_texts: int | None = None, seed: int = 0, data_root: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Unlabeled texts from ``source`` (see the module docstring), de-duplicated.

    Args:
        source: ``wordnet``, a BEIR folder, a ``.txt`` or a ``.jsonl`` file.
        max_texts: keep a seeded sample of at most this many texts (None: all).
        seed: seed of that sample.
        data_root: WordNet folder (for ``wordnet``).

    Raises:
        DataError: missing file, non-UTF-8 bytes, malformed JSON, empty text, duplicate ``_id``,
            unknown suffix, or no text at all.
    """
    if max_texts is not None and max_texts < 2:
        raise DataError(f"max_texts must be >= 2 or None, got {max_texts}.")
    if str(source) == "wordnet":
        from mrl.data.wordnet import load_wordnet

        train = load_wordnet(data_root, seed=seed).train
        texts = _dedupe([t for pair in zip(train.anchor, train.positive) for t in pair])
        return tuple(_sample(texts, max_texts, seed))
    p = Path(source)
    if p.is_dir():
        texts = _beir_unlabeled(p, max_texts, seed)
    elif not p.is_file():
        raise DataError(f"text source {p} does not exist; pass 'wordnet', a BEIR folder with unlabeled.jsonl, a .txt (one text per line) or a .jsonl file.")
    elif p.suffix.lower() in TEXT_SUFFIXES:
        texts = _sample(_dedupe(_read_txt(p)), max_texts, seed)
    elif p.suffix.lower() in JSONL_SUFFIXES:
        texts = _sample(_dedupe(_read_jsonl(p)), max_texts, seed)
    else:
        raise DataError(f"cannot tell the format of {p}; use .txt (one text per line) or .jsonl ({{\"text\": ...}} per line).")
    if len(texts) < 2:
        raise DataError(f"{p} holds {len(texts)} distinct text(s); label-free adaptation needs at least 2 (thousands in practice).")
    return tuple(texts)
