"""Per-row bookkeeping of a local index: user ids, tombstones and scalar metadata columns.

Rows are append-only (the vectors of row ``r`` never move until ``compact``); a delete sets a
tombstone, an upsert tombstones the old row and appends a new one. Metadata is columnar: an ``int``
field is an int64 column, a ``str`` field an int32 column of codes into a vocabulary, so a filter
(:mod:`mrl.index.filters`) is one ``np.isin`` per clause over the whole corpus.

On disk (written by :meth:`Catalog.save` under the index's generation ``g``)::

    ids.<g>.npy                [N] int64 user ids (tombstoned rows included)
    deleted.<g>.npy            sorted int64 row numbers of tombstones (absent when there are none)
    meta.<g>.<field>.npy       [N] int64 values (int fields) or int32 codes (str fields)
    meta.<g>.<field>.vocab.json  the str field's vocabulary (code -> string)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.index import store
from mrl.index.filters import FIELD_TYPES, Filter, check_field_name

MAX_STR = 1024  # characters per str metadata value (a Milvus VARCHAR needs a bound; the local index uses the same)

Metadata = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | None


def check_ids(ids: Any, n: int) -> np.ndarray:
    """``n`` distinct integer ids as int64, or an :class:`MRLError` naming the fix. Shape: ``[n]``."""
    arr = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
    if arr.ndim != 1 or arr.shape[0] != n:
        raise MRLError(f"ids must be a 1-D array of {n} integers (one per vector), got shape {arr.shape}.")
    if n and not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_):
        raise MRLError(f"ids must be integers (int64), got {arr.dtype} values such as {arr.ravel()[:1].tolist()}; map other keys to integers first.")
    if np.issubdtype(arr.dtype, np.unsignedinteger) and n and int(arr.max()) > np.iinfo(np.int64).max:
        raise MRLError("ids must fit in int64.")
    arr = arr.astype(np.int64)
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise MRLError(f"ids must be distinct within one batch; {uniq[counts > 1][:5].tolist()} repeat.")
    return arr


def metadata_columns(meta: Metadata, n: int) -> dict[str, list[Any]]:
    """Normalise ``{field: [v, ...]}`` or ``[{field: v}, ...]`` to validated columns of ``n`` values."""
    if meta is None:
        return {}
    if isinstance(meta, Mapping):
        cols = {k: list(v) if not isinstance(v, (str, bytes)) else None for k, v in meta.items()}
        for k, v in cols.items():
            if v is None:
                raise MRLError(f"metadata field {k!r} must hold one value per vector (a list), got a single string.")
    elif isinstance(meta, Sequence) and not isinstance(meta, (str, bytes)):
        if len(meta) != n:
            raise MRLError(f"metadata holds {len(meta)} records but {n} vectors were given; give one record per vector.")
        keys = list(dict.fromkeys(k for rec in meta for k in (rec.keys() if isinstance(rec, Mapping) else ())))
        if any(not isinstance(rec, Mapping) for rec in meta):
            raise MRLError("metadata records must be objects like {\"lang\": \"en\"}.")
        missing = [i for i, rec in enumerate(meta) if set(rec) != set(keys)]
        if missing:
            raise MRLError(f"metadata record {missing[0]} lacks some of the fields {keys}; every record needs the same fields.")
        cols = {k: [rec[k] for rec in meta] for k in keys}
    else:
        raise MRLError(f"metadata must be {{field: [values]}} or a list of records, got {type(meta).__name__}.")
    for field, values in cols.items():
        check_field_name(field)
        if len(values) != n:
            raise MRLError(f"metadata field {field!r} holds {len(values)} values for {n} vectors; give one per vector.")
        kind = field_type(field, values)
        if kind == "str" and any(len(v) > MAX_STR for v in values):
            raise MRLError(f"metadata field {field!r} has a value longer than {MAX_STR} characters; shorten it.")
    return cols


def field_type(field: str, values: Sequence[Any]) -> str:
    """``"str"`` or ``"int"`` for a column of scalars; anything else is refused."""
    if all(isinstance(v, str) for v in values):
        return "str"
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        return "int"
    bad = next((v for v in values if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, int, np.integer))), values[0])
    raise MRLError(f"metadata field {field!r} must hold only strings or only integers, got {bad!r} ({type(bad).__name__}); metadata values are scalars ({' or '.join(FIELD_TYPES)}).")


class Catalog:
    """Ids, tombstones and metadata columns of ``rows`` stored vectors.

    Shape: ``ids [N] int64``, ``deleted [N] bool``, each column ``[N]``.
    """

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.deleted = np.zeros(0, dtype=bool)
        self.schema: dict[str, str] = {}
        self.columns: dict[str, np.ndarray] = {}
        self.vocab: dict[str, list[str]] = {}
        self._codes: dict[str, dict[str, int]] = {}
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted live ids, their rows)

    # ------------------------------------------------------------------ sizes
    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_deleted(self) -> int:
        return int(np.count_nonzero(self.deleted))

    @property
    def live(self) -> int:
        return self.rows - self.n_deleted

    # ------------------------------------------------------------------ lookups
    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row number of each live id, ``-1`` where absent or deleted. Shape: ``[M] -> [M]``."""
        if self._lookup is None:
            live_rows = np.flatnonzero(~self.deleted)
            order = np.argsort(self.ids[live_rows], kind="stable")
            self._lookup = (self.ids[live_rows][order], live_rows[order])
        sorted_ids, rows = self._lookup
        ids = np.asarray(ids, dtype=np.int64)
        if sorted_ids.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, sorted_ids.size - 1)
        return np.where(sorted_ids[pos] == ids, rows[pos], -1)

    def allowed(self, flt: Filter | None) -> np.ndarray | None:
        """Rows a search may return (not deleted, matching ``flt``); ``None`` when all rows may. Shape: ``[N]`` bool."""
        if flt is None and not self.deleted.any():
            return None
        mask = ~self.deleted
        if flt is not None:
            for field, values in flt.clauses:
                col = self.columns[field]
                if self.schema[field] == "str":
                    codes = [self._codes[field][v] for v in values if v in self._codes[field]]
                    mask &= np.isin(col, np.asarray(codes, dtype=np.int32))
                else:
                    mask &= np.isin(col, np.asarray(values, dtype=np.int64))
        return mask

    def metadata(self, rows: np.ndarray) -> dict[str, list[Any]]:
        """Metadata values of the given rows, as Python scalars. Shape: ``[M]`` rows -> lists of ``M``."""
        out = {}
        for field, col in self.columns.items():
            vals = col[np.asarray(rows, dtype=np.int64)]
            out[field] = [self.vocab[field][c] for c in vals] if self.schema[field] == "str" else vals.tolist()
        return out

    # ------------------------------------------------------------------ changes (validate, then mutate)
    def prepare(self, n: int, ids: Any, meta: Metadata, *, upsert: bool) -> tuple[np.ndarray, dict[str, list[Any]], np.ndarray]:
        """Validate an add/upsert of ``n`` rows; returns (ids, metadata columns, rows it replaces).

        Nothing changes here: a refused batch leaves the catalog as it was.
        """
        start = max(self.rows, int(self.ids.max()) + 1) if self.rows else 0  # default ids never collide
        ids_arr = np.arange(start, start + n, dtype=np.int64) if ids is None else check_ids(ids, n)
        cols = metadata_columns(meta, n)
        if self.schema or cols:
            if self.rows and set(cols) != set(self.schema):
                raise MRLError(f"this index's metadata fields are {sorted(self.schema) or 'none'}, the new vectors carry {sorted(cols) or 'none'}; give the same fields for every vector.")
            for field, values in cols.items():
                kind = field_type(field, values) if n else self.schema.get(field, "str")
                if field in self.schema and kind != self.schema[field] and n:
                    raise MRLError(f"metadata field {field!r} holds {self.schema[field]} values in this index, got {kind}; convert them.")
        replaced = self.rows_of(ids_arr)
        hit = replaced >= 0
        if hit.any() and not upsert:
            raise MRLError(f"ids {ids_arr[hit][:5].tolist()} are already in the index ({int(hit.sum())} in all); use upsert (--upsert) to replace them, or delete them first.")
        return ids_arr, cols, replaced[hit]

    def append(self, ids: np.ndarray, cols: dict[str, list[Any]], replaced: np.ndarray) -> None:
        """Apply a prepared add: tombstone ``replaced`` rows, append ids and metadata."""
        n = ids.shape[0]
        if not self.schema and cols:
            self.schema = {f: field_type(f, v) for f, v in cols.items()}
            for f, kind in self.schema.items():
                self.columns[f] = np.zeros(self.rows, dtype=np.int32 if kind == "str" else np.int64)
                if kind == "str":
                    self.vocab[f], self._codes[f] = [], {}
        for field, kind in self.schema.items():
            values = cols[field]
            if kind == "str":
                codes = self._codes[field]
                for v in dict.fromkeys(values):  # new vocabulary entries, first-seen order
                    if v not in codes:
                        codes[v] = len(self.vocab[field])
                        self.vocab[field].append(v)
                new = np.fromiter((codes[v] for v in values), dtype=np.int32, count=n)
            else:
                new = np.asarray(values, dtype=np.int64).reshape(n)
            self.columns[field] = np.concatenate([self.columns[field], new])
        self.deleted[replaced] = True
        self.ids = np.concatenate([self.ids, ids])
        self.deleted = np.concatenate([self.deleted, np.zeros(n, dtype=bool)])
        self._lookup = None

    def delete(self, ids: Any) -> int:
        """Tombstone the live rows of ``ids``; returns how many were found (absent ids are ignored)."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_)):
            raise MRLError(f"ids to delete must be a 1-D array of integers, got {arr.dtype} {arr.shape}.")
        rows = self.rows_of(np.unique(arr.astype(np.int64)))
        rows = rows[rows >= 0]
        self.deleted[rows] = True
        self._lookup = None
        return int(rows.size)

    def subset(self, rows: np.ndarray) -> Catalog:
        """A new catalog holding only ``rows`` (in that order), without tombstones (for compaction)."""
        out = Catalog()
        out.ids = self.ids[rows].copy()
        out.deleted = np.zeros(rows.shape[0], dtype=bool)
        out.schema = dict(self.schema)
        for field, kind in self.schema.items():
            col = self.columns[field][rows]
            if kind == "str":  # drop vocabulary entries no live row uses
                used, codes = np.unique(col, return_inverse=True)
                out.vocab[field] = [self.vocab[field][c] for c in used]
                out._codes[field] = {v: i for i, v in enumerate(out.vocab[field])}
                col = codes.astype(np.int32)
            out.columns[field] = np.ascontiguousarray(col)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path, gen: int) -> dict[str, Any]:
        """Write this catalog's files for generation ``gen``; returns the manifest's file entries."""
        files: dict[str, Any] = {"ids": store.write_npy_stream(folder / f"ids.{gen}.npy", (self.rows,), np.dtype(np.int64), [self.ids])}
        if self.deleted.any():
            dead = np.flatnonzero(self.deleted).astype(np.int64)
            files["deleted"] = store.write_npy_stream(folder / f"deleted.{gen}.npy", (dead.size,), np.dtype(np.int64), [dead])
        meta = {}
        for field, kind in self.schema.items():
            col = self.columns[field]
            entry: dict[str, Any] = {"type": kind, "values": store.write_npy_stream(folder / f"meta.{gen}.{field}.npy", (self.rows,), col.dtype, [col])}
            if kind == "str":
                entry["vocab"] = store.write_bytes(folder / f"meta.{gen}.{field}.vocab.json", json.dumps(self.vocab[field]).encode())
            meta[field] = entry
        if meta:
            files["meta"] = meta
        return files

    @classmethod
    def load(cls, folder: Path, files: dict[str, Any], rows: int, verify: bool) -> Catalog:
        """Read the catalog a manifest's ``files`` describe, checking sizes, checksums and shapes."""
        cat = cls()
        ids_path = store.check_file(folder, files["ids"], verify)
        cat.ids = _load_array(ids_path, (rows,), np.int64)
        cat.deleted = np.zeros(rows, dtype=bool)
        if files.get("deleted"):
            path = store.check_file(folder, files["deleted"], verify)
            dead = np.load(path, allow_pickle=False)
            if dead.ndim != 1 or dead.dtype != np.int64 or (dead.size and (dead.min() < 0 or dead.max() >= rows)):
                raise store.IndexFormatError(f"{path} does not hold row numbers of this index; the index is corrupted: rebuild it.")
            cat.deleted[dead] = True
        for field, entry in (files.get("meta") or {}).items():
            kind = entry.get("type")
            if kind not in FIELD_TYPES:
                raise store.IndexFormatError(f"{folder / store.MANIFEST} gives metadata field {field!r} the type {kind!r}; the manifest is corrupted: rebuild the index.")
            cat.schema[field] = kind
            cat.columns[field] = _load_array(store.check_file(folder, entry["values"], verify), (rows,), np.int32 if kind == "str" else np.int64)
            if kind == "str":
                vocab = json.loads(store.check_file(folder, entry["vocab"], verify).read_text())
                if not isinstance(vocab, list) or (rows and int(cat.columns[field].max(initial=0)) >= len(vocab)):
                    raise store.IndexFormatError(f"the vocabulary of metadata field {field!r} in {folder} does not match its codes; rebuild the index.")
                cat.vocab[field] = vocab
                cat._codes[field] = {v: i for i, v in enumerate(vocab)}
        return cat


def _load_array(path: Path, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise store.IndexFormatError(f"cannot read {path} ({exc}); the file is corrupted: rebuild the index.") from exc
    if arr.shape != shape or arr.dtype != np.dtype(dtype):
        raise store.IndexFormatError(f"{path} holds {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {shape}; the index is inconsistent: rebuild it.")
    return arr
