"""The text store of an index folder: the passage behind each id, for ``return_text`` in search.

An index folder may hold, beside its vectors (:mod:`mrl.index.store`)::

    texts.json            {"format": "mrl.texts/1", "count", "files": {name: {file, bytes, sha256}}}
    texts.jsonl           one JSON object per line, {"id": int, "text": str}, sorted by id
    texts.ids.npy         [N] int64 ids, sorted (the lookup key)
    texts.offsets.npy     [N + 1] int64 byte offsets of each line in texts.jsonl

Lookup memory-maps the three files: a batch of ids is one ``np.searchsorted`` plus one slice per id
read from the page cache, so a 1M-passage store costs no resident RAM until it is read. Every file
is written atomically and ``texts.json`` last (the commit point); the index's own saves never touch
these files (they remove only ``vectors.*``, ``ids.*`` and ``first.*``).

Sources (:func:`read_texts`): a ``.txt`` file (one passage per line, ids ``0..N-1``), a ``.jsonl``
file (``{"id"|"_id": int, "text": str[, "title": str]}`` per line, BEIR's corpus shape with integer
ids), or ``wordnet`` (the system WordNet noun glosses, ``lemma, lemma: definition``, id = synset offset).

Example:
    >>> ids, texts = read_texts("corpus.jsonl")
    >>> write_text_store("my-index", ids, texts)
    >>> TextStore.open("my-index").get(np.array([3, 17]))    # ['...', '...']
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import DataError
from mrl.index.store import check_file, sha256_file
from mrl.io import atomic_open, read_json, write_json

FORMAT = "mrl.texts/1"
MANIFEST = "texts.json"
LINES, IDS, OFFSETS = "texts.jsonl", "texts.ids.npy", "texts.offsets.npy"
WORDNET = "wordnet"


def read_texts(source: str | os.PathLike[str], *, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Passages and their int64 ids from a ``.txt``/``.jsonl`` file or ``"wordnet"``.

    Shape: returns ``(ids [N] int64, N strings)``; ``limit`` keeps the first ``limit`` of a file, a
    seeded sample of ``limit`` WordNet synsets (:func:`mrl.data.wordnet.load_synsets`).

    Raises:
        DataError: missing file, not UTF-8, a malformed JSONL line, non-integer or duplicate ids, empty.
    """
    if str(source) == WORDNET:
        from mrl.data.wordnet import load_synsets

        synsets = load_synsets(max_synsets=limit)  # a seeded sample over the whole vocabulary, not the file's first N
        return np.array([int(s.offset) for s in synsets], dtype=np.int64), [f"{', '.join(s.lemmas)}: {s.definition}" for s in synsets]
    path = Path(source)
    if not path.is_file():
        raise DataError(f"text source {path} does not exist; give a .txt (one passage per line), a .jsonl ({{\"id\", \"text\"}} per line) or 'wordnet'.")
    ids: list[int] = []
    texts: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if limit is not None and len(texts) >= limit:
                    break
                if path.suffix == ".jsonl":
                    if not line.strip():
                        continue
                    i, t = _jsonl_record(line, path, n)
                    ids.append(i)
                    texts.append(t)
                elif line.strip():
                    ids.append(len(texts))
                    texts.append(line.rstrip("\n"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text; re-save it as UTF-8.") from exc
    if not texts:
        raise DataError(f"{path} holds no passages.")
    out = np.array(ids, dtype=np.int64)
    if np.unique(out).size != out.size:
        raise DataError(f"{path} repeats some ids; give every passage its own integer id.")
    return out, texts


def _jsonl_record(line: str, path: Path, n: int) -> tuple[int, str]:
    try:
        rec = json.loads(line)
        raw_id = rec["id"] if "id" in rec else rec["_id"]
        text = rec["text"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}:{n} is not a JSON object with 'id' (or '_id') and 'text'; fix that line.") from exc
    try:
        i = int(raw_id)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}:{n} has id {raw_id!r}; index ids are integers: renumber the passages.") from exc
    if not isinstance(text, str):
        raise DataError(f"{path}:{n} has a non-string 'text'.")
    title = rec.get("title")
    return i, f"{title}: {text}" if isinstance(title, str) and title else text


def write_text_store(folder: str | os.PathLike[str], ids: np.ndarray, texts: Sequence[str]) -> Path:
    """Write (or replace) the text store of ``folder``; ``texts.json`` is swapped last.

    Shape: ``ids [N]`` integers, ``N`` strings.

    Raises:
        DataError: lengths differ, ids are not unique integers, or the folder does not exist.
    """
    folder = Path(folder)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] != len(texts) or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"text store needs one integer id per passage, got ids {ids.dtype} {ids.shape} for {len(texts)} passages.")
    if not folder.is_dir():
        raise DataError(f"index folder {folder} does not exist; build the index first.")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order].astype(np.int64)
    if sorted_ids.size and (np.diff(sorted_ids) == 0).any():
        raise DataError("text store ids repeat; give every passage its own id.")
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    with atomic_open(folder / LINES, "wb") as fh:
        for j, row in enumerate(order):
            line = (json.dumps({"id": int(sorted_ids[j]), "text": texts[row]}, ensure_ascii=False) + "\n").encode()
            fh.write(line)
            offsets[j + 1] = offsets[j] + len(line)
    files = {"lines": _entry(folder / LINES)}
    for key, name, arr in (("ids", IDS, sorted_ids), ("offsets", OFFSETS, offsets)):
        with atomic_open(folder / name, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        files[key] = _entry(folder / name)
    write_json(folder / MANIFEST, {"format": FORMAT, "count": len(texts), "files": files})
    return folder


def _entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


class TextStore:
    """Read-only, memory-mapped id -> passage lookup (see the module docstring for the layout)."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, lines: np.ndarray) -> None:
        self.ids, self.offsets, self.lines = ids, offsets, lines

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, verify: bool = True) -> TextStore | None:
        """The store of ``folder``, or ``None`` when it has none.

        Raises:
            DataError: a file is missing, truncated, fails its checksum, or is inconsistent.
        """
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            return None
        man = read_json(folder / MANIFEST)
        try:
            if man.get("format") != FORMAT:
                raise KeyError("format")
            paths = {k: check_file(folder, man["files"][k], verify) for k in ("lines", "ids", "offsets")}
            count = int(man["count"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{folder / MANIFEST} is not a valid text store manifest ({exc}); re-attach the texts with `mrl index attach-texts`.") from exc
        ids = np.load(paths["ids"], mmap_mode="r", allow_pickle=False)
        offsets = np.load(paths["offsets"], mmap_mode="r", allow_pickle=False)
        lines = np.memmap(paths["lines"], dtype=np.uint8, mode="r") if paths["lines"].stat().st_size else np.zeros(0, dtype=np.uint8)
        if ids.shape != (count,) or offsets.shape != (count + 1,) or int(offsets[-1]) != lines.shape[0]:
            raise DataError(f"the text store in {folder} is inconsistent (ids, offsets and texts disagree); re-attach the texts with `mrl index attach-texts`.")
        return cls(ids, offsets, lines)

    def get(self, ids: np.ndarray) -> list[str | None]:
        """Passages for ``ids`` (``None`` where an id has no text, e.g. the ``-1`` padding).

        Shape: ``[M]`` ids -> ``M`` entries.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        pos = np.minimum(np.searchsorted(self.ids, ids), max(self.count - 1, 0))
        found = (self.count > 0) & (self.ids[pos] == ids) if self.count else np.zeros(ids.shape, dtype=bool)
        out: list[str | None] = []
        for p, ok in zip(pos.tolist(), found.tolist()):  # M is k per query: a short list of slices
            out.append(json.loads(bytes(self.lines[self.offsets[p] : self.offsets[p + 1]]))["text"] if ok else None)
        return out
