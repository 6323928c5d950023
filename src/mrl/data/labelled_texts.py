"""Labelled texts for Matryoshka classification heads on a text encoder (``loss: classify``).

``load_labelled_texts(source)`` accepts:

* ``wordnet-classes`` or ``wordnet-classes:SPLIT`` (``train`` by default, ``val``, ``calibration``,
  ``test``): the many-class WordNet task of :mod:`mrl.data.wordnet_classes` (noun synsets labelled
  by their hypernym category; split by synset);
* a ``.jsonl`` file: one object per line with a non-empty ``text`` string and a ``label`` (a string,
  or an integer class id).

Class ids follow ``class_names``: given (a trained model's classes, when reading its calibration or
test rows) every label must be one of them; otherwise they are the sorted distinct labels (integers
in numeric order). Bad input fails with one line naming the file, the line and the fix: a missing
file, non-UTF-8 bytes, malformed JSON, a missing or empty text, a missing, float or boolean label,
a label the model does not know, the same text under two labels, or fewer than two classes.

Example:
    >>> data = load_labelled_texts("tickets.jsonl")
    >>> data.texts[0], data.labels[0], data.class_names[data.labels[0]]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl.data.texts import JSONL_SUFFIXES, json_lines
from mrl.errors import DataError

WORDNET_CLASSES = "wordnet-classes"


@dataclass(frozen=True)
class LabelledTexts:
    """``texts`` with class ids ``labels`` (``[N]`` int64 in ``[0, C)``); class ``i`` is ``class_names[i]``."""

    texts: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)


def _label_key(value: object, path: Path, lineno: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{path} line {lineno}: 'label' must be a string or an integer class id, got {value!r}; write the class name or id.")
    key = str(value).strip()
    if not key:
        raise DataError(f"{path} line {lineno}: 'label' is empty; give every text its class.")
    return key


def _read_rows(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, text, label)`` of every non-blank line."""
    rows = []
    for lineno, obj in json_lines(path, 'an object like {"text": ..., "label": ...}'):
        if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
            raise DataError(f"{path} line {lineno} must be an object with 'text' and 'label'; got {obj if not isinstance(obj, dict) else sorted(obj)!r}.")
        text = obj["text"]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} line {lineno} has an empty or non-string 'text'; drop the line or fill it in.")
        rows.append((lineno, text.strip(), _label_key(obj["label"], path, lineno)))
    return rows


def _class_order(keys: set[str]) -> tuple[str, ...]:
    if all(k.lstrip("-").isdigit() for k in keys):
        return tuple(sorted(keys, key=int))
    return tuple(sorted(keys))


def _wordnet_classes(split: str, data_root: str | os.PathLike[str] | None) -> LabelledTexts:
    from mrl.data.wordnet_classes import load_wordnet_classes

    task = load_wordnet_classes(data_root)
    part = task.split(split)
    return LabelledTexts(part.texts, np.asarray(part.labels, dtype=np.int64), task.class_names)


def load_labelled_texts(source: str | os.PathLike[str], *, class_names: Sequence[str] | None = None, data_root: str | os.PathLike[str] | None = None) -> LabelledTexts:
    """Labelled texts from ``source`` (see the module docstring).

    Args:
        source: ``wordnet-classes[:SPLIT]`` or a ``.jsonl`` file of ``{"text", "label"}`` objects.
        class_names: the classes to map labels onto (a trained model's); None: the file's own.
        data_root: WordNet folder (for ``wordnet-classes``).

    Raises:
        DataError: see the module docstring.
    """
    name = str(source)
    if name == WORDNET_CLASSES or name.startswith(WORDNET_CLASSES + ":"):
        data = _wordnet_classes(name.partition(":")[2] or "train", data_root)
        if class_names is not None and tuple(class_names) != data.class_names:
            raise DataError(f"{name} has other classes than the model's ({len(data.class_names)} vs {len(class_names)}); read the split the model was trained for.")
        return data
    path = Path(source)
    if not path.is_file():
        raise DataError(f"labelled text file {path} does not exist; pass a .jsonl of {{\"text\": ..., \"label\": ...}} lines or {WORDNET_CLASSES}[:SPLIT].")
    if path.suffix.lower() not in JSONL_SUFFIXES:
        raise DataError(f"cannot read labelled texts from {path}; write them as .jsonl, one {{\"text\": ..., \"label\": ...}} object per line.")
    rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path} holds no labelled text.")
    first: dict[str, tuple[int, str]] = {}
    for lineno, text, key in rows:
        seen = first.setdefault(text, (lineno, key))
        if seen[1] != key:
            raise DataError(f"{path} line {lineno}: the same text is labelled {seen[1]!r} on line {seen[0]} and {key!r} here; keep one label per text.")
    if class_names is None:
        names = _class_order({key for _, _, key in rows})
        if len(names) < 2:
            raise DataError(f"{path} has a single class ({names[0]!r}); classification needs at least two.")
    else:
        names = tuple(str(c) for c in class_names)
    index = {c: i for i, c in enumerate(names)}
    for lineno, _, key in rows:
        if key not in index:
            raise DataError(f"{path} line {lineno}: label {key!r} is not one of the model's {len(names)} classes (e.g. {', '.join(map(repr, names[:3]))}); drop the row or retrain with it.")
    return LabelledTexts(tuple(t for _, t, _ in rows), np.asarray([index[k] for _, _, k in rows], dtype=np.int64), names)
