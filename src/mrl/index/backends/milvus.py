"""Milvus backend: the funnel on a Milvus collection through pymilvus ``MilvusClient``.

Milvus indexes whole vector fields, never a prefix of one, so a collection holds:

* ``id`` (INT64 primary key), ``vector`` (FLOAT_VECTOR, the full ``D`` dims),
* ``mrl_p<d>`` (FLOAT_VECTOR, the first ``d`` dims) for every prefix a funnel stage uses,
* one scalar field per metadata field (VARCHAR or INT64),

all L2-normalised for ``metric="cosine"`` (then Milvus's ``IP`` is the cosine of the local index),
raw with ``L2`` otherwise. Collection properties record that mrl made it (``mrl.format``), the
dims, metric, metadata schema, the tuned funnel and its tuning frontier, the measured faster rerank
placement per funnel and the progress of a push.

Search: stage 1 is a Milvus search on the ``mrl_p<d_1>`` field with the metadata filter as a
Milvus boolean expression, so ``k_1`` allowed candidates come back. Later stages run either
* ``client``: one ``get`` of the candidates' full vectors, then the same batched NumPy rerank as
  the local index (:func:`mrl.index.search.rerank`), or
* ``server``: per query and stage, a Milvus search on that stage's field restricted to the
  shortlist (``id in [...]``): no vectors leave the server, but one request per query and stage.
:meth:`MilvusIndex.calibrate` times both on sample queries and records the faster per funnel.

Milvus Lite (a local ``*.db`` path: the embedded engine pymilvus starts in-process) supports FLAT,
IVF and HNSW indexes and one process per file: a second process gets a clear error. A server or
cluster is a URI (``http://host:19530``) with the token from ``MRL_MILVUS_TOKEN``; same code.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mrl.checks import check_finite
from mrl.errors import MRLError
from mrl.index.catalog import MAX_STR, Metadata, check_ids, field_type, metadata_columns
from mrl.index.filters import Filter, parse_filter
from mrl.index.frontier import choose_funnel
from mrl.index.funnel import METRICS, Funnel, FunnelError, prefix
from mrl.index.search import rerank

FORMAT = "mrl.milvus/1"
MAX_TOPK = 16384  # Milvus's limit on one search's k
PLACEMENTS = ("auto", "server", "client")
ID, VECTOR = "id", "vector"


class MilvusError(MRLError):
    """Milvus is unreachable, a collection is not ours or does not match, or Milvus refused a request."""


def prefix_field(dim: int, full: int) -> str:
    return VECTOR if dim == full else f"mrl_p{dim}"


def is_lite(uri: str) -> bool:
    return "://" not in uri


def connect(uri: str, *, token: str | None = None, timeout: float = 10.0) -> Any:
    """A ``MilvusClient`` for ``uri``, or one clear :class:`MilvusError` (unreachable, Lite file busy)."""
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:  # pragma: no cover - the scale extra is part of `make setup`
        raise MilvusError("pymilvus is not installed; pip install 'mrl[scale]' (pymilvus, milvus-lite).") from exc
    if is_lite(uri):
        path = Path(uri)
        if path.suffix != ".db":
            raise MilvusError(f"a Milvus Lite URI is a local path ending in .db (e.g. mrl.db), got {uri!r}; a server URI looks like http://host:19530.")
        path.parent.mkdir(parents=True, exist_ok=True)
    token = token if token is not None else os.environ.get("MRL_MILVUS_TOKEN", "")
    import logging

    for name in ("milvus_lite", "pymilvus", "grpc._server"):  # they log tracebacks of failed calls (Lite lacks some RPCs); we report each failure in one line
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return MilvusClient(uri=uri, token=token, timeout=timeout)
    except Exception as exc:  # pymilvus raises several types (MilvusException, ConnectionConfigException, grpc errors)
        if is_lite(uri) and _lite_locked(Path(uri)):
            raise MilvusError(f"the Milvus Lite file {uri} is open in another process; Milvus Lite allows one process per file: stop that process, or serve the data from a Milvus server (http://host:19530).") from exc
        reason = getattr(exc, "message", None) or str(exc).splitlines()[0][:160]
        raise MilvusError(f"cannot reach Milvus at {uri} within {timeout:g}s ({reason}); check the URI and that the server is running (token from MRL_MILVUS_TOKEN).") from exc


def _lite_locked(path: Path) -> bool:
    """Whether another process holds Milvus Lite's advisory lock on ``path/LOCK``."""
    import fcntl

    lock = path / "LOCK"
    if not lock.is_file():
        return False
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


class MilvusIndex:
    """A Matryoshka index on a Milvus collection (implements :class:`mrl.index.backend.IndexBackend`).

    Shape: ``add/upsert(vectors [n, D], ids [n], metadata)``; ``search(queries [B, D], k) ->
    (scores [B, k] float32, ids [B, k] int64)``, ``-1`` ids pad when fewer rows match a filter.
    """

    def __init__(self, client: Any, name: str, props: dict[str, str], uri: str) -> None:
        self.client, self.name, self.uri = client, name, uri
        try:
            self.dim = int(props["mrl.dim"])
            self.metric = props["mrl.metric"]
            self.prefix_dims: list[int] = [int(d) for d in json.loads(props["mrl.prefix_dims"])]
            self._schema: dict[str, str] = json.loads(props.get("mrl.schema", "{}"))
            self.funnel = Funnel.parse(props["mrl.funnel"]) if props.get("mrl.funnel") else None
            self.tuning = json.loads(props["mrl.tuning"]) if props.get("mrl.tuning") else None
            self.placements: dict[str, str] = json.loads(props.get("mrl.placements", "{}"))
            self.push_state: dict[str, Any] = json.loads(props.get("mrl.push", "{}"))
        except (KeyError, ValueError, TypeError) as exc:
            raise MilvusError(f"collection {name!r} carries incomplete mrl properties ({exc}); it was changed by something else: push again into a new collection.") from exc
        self.last_placement: str | None = None

    # ------------------------------------------------------------------ open / create
    @classmethod
    def open(cls, uri: str, collection: str, *, token: str | None = None, timeout: float = 10.0) -> MilvusIndex:
        """Open an existing mrl collection (refusing collections mrl did not create)."""
        client = connect(uri, token=token, timeout=timeout)
        index = cls(client, collection, _our_properties(client, collection, uri), uri)
        index._call("load", lambda: client.load_collection(collection))  # searchable (a no-op when loaded)
        return index

    @classmethod
    def create(cls, uri: str, collection: str, *, dim: int, metric: str = "cosine", prefix_dims: list[int] | tuple[int, ...] = (), schema: dict[str, str] | None = None,
               funnel: Funnel | str | None = None, tuning: dict[str, Any] | None = None, index_type: str = "FLAT", token: str | None = None, timeout: float = 10.0,
               exist_ok: bool = False) -> MilvusIndex:
        """Create a collection for ``dim``-dim vectors with prefix fields ``prefix_dims`` and metadata ``schema``.

        ``exist_ok``: an existing mrl collection with the same dim, metric, prefixes and fields is
        opened instead (a resumed push); anything else that exists is refused, never overwritten.
        """
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
            raise MilvusError(f"dim must be an integer >= 2 (Milvus vector fields need 2+ dims), got {dim!r}.")
        if metric not in METRICS:
            raise MilvusError(f"metric must be one of {METRICS}, got {metric!r}.")
        if index_type not in ("FLAT", "IVF_FLAT", "HNSW"):
            raise MilvusError(f"index_type must be FLAT, IVF_FLAT or HNSW, got {index_type!r}.")
        dims = sorted({int(d) for d in prefix_dims if int(d) != dim})
        if any(d < 2 or d > dim for d in dims):
            raise MilvusError(f"prefix dims must lie in [2, {dim}], got {list(prefix_dims)}.")
        schema = dict(schema or {})
        for f, t in schema.items():
            from mrl.index.filters import check_field_name

            check_field_name(f)
            if t not in ("str", "int"):
                raise MilvusError(f"metadata field {f!r} has type {t!r}; use 'str' or 'int'.")
        client = connect(uri, token=token, timeout=timeout)
        if client.has_collection(collection):
            index = cls(client, collection, _our_properties(client, collection, uri), uri)
            want = (int(dim), metric, dims, schema)
            have = (index.dim, index.metric, index.prefix_dims, index._schema)
            if not exist_ok or want != have:
                raise MilvusError(f"collection {collection!r} already exists at {uri} (dim {index.dim}, {index.metric}, prefixes {index.prefix_dims}, fields {index._schema}); "
                                  "choose another --collection name, or drop it yourself if it is no longer needed.")
            index._call("load", lambda: client.load_collection(collection))
            return index
        from pymilvus import DataType

        s = client.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field(ID, DataType.INT64, is_primary=True)
        s.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=int(dim))
        for d in dims:
            s.add_field(prefix_field(d, dim), DataType.FLOAT_VECTOR, dim=d)
        for f, t in schema.items():
            if t == "str":
                s.add_field(f, DataType.VARCHAR, max_length=MAX_STR * 4)  # bytes: up to 4 per character
            else:
                s.add_field(f, DataType.INT64)
        params = client.prepare_index_params()
        mtype = "L2" if metric == "l2" else "IP"
        for field in (VECTOR, *(prefix_field(d, dim) for d in dims)):
            extra = {"M": 32, "efConstruction": 200} if index_type == "HNSW" else {"nlist": 1024} if index_type == "IVF_FLAT" else {}
            params.add_index(field, index_type=index_type, metric_type=mtype, params=extra)
        props = {"mrl.format": FORMAT, "mrl.dim": str(int(dim)), "mrl.metric": metric, "mrl.prefix_dims": json.dumps(dims), "mrl.schema": json.dumps(schema),
                 "mrl.index_type": index_type, "mrl.funnel": str(Funnel.parse(funnel)) if funnel else "", "mrl.tuning": json.dumps(_slim(tuning)) if tuning else ""}
        try:  # indexes asynchronously (the collection is empty), then load: the synchronous variant polls for ~0.5 s
            client.create_collection(collection, schema=s, properties=props, consistency_level="Strong")
            client.create_index(collection, params, sync=False)
            client.load_collection(collection)
        except Exception as exc:
            raise MilvusError(f"Milvus refused to create collection {collection!r} ({_reason(exc)}).") from exc
        return cls(client, collection, props, uri)

    def set_properties(self, **props: Any) -> None:
        """Record mrl properties with the collection (JSON-encoded unless already a string)."""
        enc = {f"mrl.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}
        self._call("record properties on", lambda: self.client.alter_collection_properties(self.name, properties=enc))
        for k, v in props.items():
            if k == "funnel":
                self.funnel = Funnel.parse(v) if v else None
            elif k == "tuning":
                self.tuning = v if not isinstance(v, str) else json.loads(v) if v else None
            elif k == "placements":
                self.placements = dict(v)
            elif k == "push":
                self.push_state = dict(v)

    # ------------------------------------------------------------------ contents
    @property
    def schema(self) -> dict[str, str]:
        return dict(self._schema)

    @property
    def count(self) -> int:
        res = self._call("count rows in", lambda: self.client.query(self.name, filter="", output_fields=["count(*)"]))
        return int(res[0]["count(*)"])

    def __len__(self) -> int:
        return self.count

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None, metadata: Metadata = None, *, upsert: bool = False, batch_size: int = 2000) -> None:
        """Insert rows; ids already in the collection are refused unless ``upsert``. Validated first:
        a refused batch leaves the collection unchanged."""
        if ids is None:
            raise MilvusError("a Milvus collection needs explicit integer ids for every vector (--ids).")
        rows = self._rows(vectors, ids, metadata)
        if not upsert:
            present = self._present(np.asarray([r[ID] for r in rows], dtype=np.int64))
            if present.size:
                raise MilvusError(f"ids {present[:5].tolist()} are already in collection {self.name!r} ({present.size} in all); use upsert (--upsert) to replace them, or delete them first.")
        op = self.client.upsert if upsert else self.client.insert
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            self._call("write to", lambda b=batch: op(self.name, b))

    def upsert(self, vectors: np.ndarray, ids: np.ndarray, metadata: Metadata = None, *, batch_size: int = 2000) -> None:
        """Insert or replace by id (visible to the next search)."""
        self.add(vectors, ids, metadata, upsert=True, batch_size=batch_size)

    def delete(self, ids: Any) -> int:
        """Delete by id; returns how many were present."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_)):
            raise MilvusError(f"ids to delete must be a 1-D array of integers, got {arr.dtype} {arr.shape}.")
        present = self._present(np.unique(arr.astype(np.int64)))
        if present.size:
            self._call("delete from", lambda: self.client.delete(self.name, ids=present.tolist()))
        return int(present.size)

    def _present(self, ids: np.ndarray) -> np.ndarray:
        found: list[int] = []
        for start in range(0, ids.size, 4096):
            chunk = ids[start : start + 4096].tolist()
            res = self._call("read", lambda c=chunk: self.client.query(self.name, filter=f"{ID} in {c}", output_fields=[ID]))
            found += [int(r[ID]) for r in res]
        return np.asarray(sorted(found), dtype=np.int64)

    def _rows(self, vectors: np.ndarray, ids: Any, metadata: Metadata) -> list[dict[str, Any]]:
        if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
            raise MilvusError(f"vectors must be a 2-D float array [n, {self.dim}], got {getattr(vectors, 'dtype', type(vectors).__name__)} {getattr(vectors, 'shape', '')}.")
        if vectors.shape[1] != self.dim:
            raise MilvusError(f"vectors have dim {vectors.shape[1]} but collection {self.name!r} stores {self.dim}-dim vectors; pass full {self.dim}-dim embeddings from the same model.")
        check_finite(vectors, "vectors")
        n = vectors.shape[0]
        id_arr = check_ids(ids, n)
        cols = metadata_columns(metadata, n)
        if set(cols) != set(self._schema):
            raise MilvusError(f"collection {self.name!r} has metadata fields {sorted(self._schema) or 'none'}, the new vectors carry {sorted(cols) or 'none'}; give the same fields for every vector.")
        for f, values in cols.items():
            if n and field_type(f, values) != self._schema[f]:
                raise MilvusError(f"metadata field {f!r} holds {self._schema[f]} values in collection {self.name!r}, got {field_type(f, values)}; convert them.")
        full = prefix(vectors, self.dim, self.metric)
        fields = {VECTOR: full, **{prefix_field(d, self.dim): prefix(vectors, d, self.metric) for d in self.prefix_dims}}
        out = []
        for i in range(n):  # pymilvus's insert takes one dict per row
            row: dict[str, Any] = {ID: int(id_arr[i]), **{name: arr[i] for name, arr in fields.items()}}
            for f, values in cols.items():
                row[f] = values[i] if self._schema[f] == "str" else int(values[i])
            out.append(row)
        return out

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full stored vectors of ``ids`` (those present). Shape: ``[M] -> (ids [M'], vectors [M', D])``."""
        got_ids, got = [], []
        for start in range(0, ids.size, 4096):
            chunk = ids[start : start + 4096].tolist()
            res = self._call("read vectors from", lambda c=chunk: self.client.get(self.name, ids=c, output_fields=[VECTOR]))
            got_ids += [int(r[ID]) for r in res]
            got += [r[VECTOR] for r in res]
        return np.asarray(got_ids, dtype=np.int64), np.asarray(got, dtype=np.float32).reshape(len(got), self.dim)

    # ------------------------------------------------------------------ search
    def funnel_for(self, recall_target: float) -> Funnel:
        frontier = [p for p in (self.tuning or {}).get("frontier") or [] if self._runnable(Funnel.parse(p["funnel"]))]
        return choose_funnel({"frontier": frontier} if frontier else None, recall_target, self.dim)

    def _runnable(self, f: Funnel) -> bool:
        return f.first.precision == "float32" and all(s.dim == self.dim or s.dim in self.prefix_dims for s in f.stages[:1])

    def resolve(self, k: int | None, funnel: Funnel | str | None, recall_target: float | None) -> Funnel:
        if funnel is not None and recall_target is not None:
            raise MRLError("give either funnel or recall_target, not both.")
        f = self.funnel_for(recall_target) if recall_target is not None else Funnel.parse(funnel) if funnel is not None else self.funnel
        if f is None:
            if k is None:
                raise MRLError("search needs k or a funnel, e.g. search(queries, 10).")
            f = Funnel.exact(self.dim, k)
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise FunnelError(f"k={k!r} must be a positive integer.")
        if k is not None and k != f.k:
            last = f.stages[-1]
            try:
                f = Funnel(f.stages[:-1] + (type(last)(last.dim, k),))
            except FunnelError as exc:
                raise FunnelError(f"k={k} does not fit the funnel {f} ({exc}); pass funnel=... with enough candidates.") from exc
        if f.stages[-1].dim > self.dim:
            raise FunnelError(f"funnel {f} reaches dim {f.stages[-1].dim} but collection {self.name!r} stores {self.dim}-dim vectors.")
        s0 = f.first
        if s0.precision != "float32":
            raise FunnelError(f"Milvus runs stage 1 on a float prefix field; {s0} asks for {s0.precision} codes: use '{s0.dim}:{s0.k}' (retune with flat float first stages for Milvus).")
        if s0.dim != self.dim and s0.dim not in self.prefix_dims:
            raise FunnelError(f"collection {self.name!r} has no {s0.dim}-dim prefix field for stage 1 of {f} (it has {self.prefix_dims}); push with --prefix-dims {s0.dim}, or pick a funnel that starts at one of those.")
        if s0.k > MAX_TOPK:
            raise FunnelError(f"Milvus returns at most {MAX_TOPK} candidates per search; stage 1 of {f} asks for {s0.k}.")
        return f

    def search(self, queries: np.ndarray, k: int | None = None, *, funnel: Funnel | str | None = None, recall_target: float | None = None,
               filter: str | dict[str, Any] | Filter | None = None, rerank: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """Funnel search: stage 1 in Milvus (with the filter), later stages on the server or the client.

        Args:
            queries: ``[B, D]`` floats. k, funnel, recall_target, filter: as the local index.
            rerank: ``auto`` (the placement :meth:`calibrate` measured faster for this funnel, else
                ``client``), ``server`` or ``client``.
        """
        if rerank not in PLACEMENTS:
            raise MRLError(f"rerank must be one of {PLACEMENTS}, got {rerank!r}.")
        q = self._check_queries(queries)
        f = self.resolve(k, funnel, recall_target)
        flt = parse_filter(filter, self._schema)
        B = q.shape[0]
        scores = np.full((B, f.k), -np.inf, dtype=np.float32)
        out = np.full((B, f.k), -1, dtype=np.int64)
        if flt is not None and flt.matches_nothing:
            return scores, out
        cand, cand_s = self._stage1(q, f, flt)
        if len(f.stages) == 1:
            n = min(f.k, cand.shape[1])
            scores[:, :n], out[:, :n] = cand_s[:, :n], cand[:, :n]
            self.last_placement = "none"
            return scores, out
        place = self.placements.get(str(f), "client") if rerank == "auto" else rerank
        self.last_placement = place
        s, r = (self._rerank_client if place == "client" else self._rerank_server)(q, cand, f)
        return s, r

    def _check_queries(self, queries: Any) -> np.ndarray:
        if not isinstance(queries, np.ndarray) or queries.ndim != 2 or not np.issubdtype(queries.dtype, np.floating):
            raise MRLError(f"queries must be a 2-D float array [B, {self.dim}], got {getattr(queries, 'dtype', type(queries).__name__)} {getattr(queries, 'shape', '')}.")
        if queries.shape[1] != self.dim:
            raise MRLError(f"queries have dim {queries.shape[1]} but collection {self.name!r} stores {self.dim}-dim vectors; pass full {self.dim}-dim embeddings from the same model.")
        check_finite(queries, "queries")
        return np.ascontiguousarray(queries, dtype=np.float32)

    def _search(self, q: np.ndarray, field: str, limit: int, expr: str) -> tuple[np.ndarray, np.ndarray]:
        """One Milvus search; ``(ids [B, limit], scores [B, limit])`` padded with -1 / -inf."""
        params = {"metric_type": "L2" if self.metric == "l2" else "IP", "params": {"ef": max(limit, 64)}}
        res = self._call("search", lambda: self.client.search(self.name, data=list(q), anns_field=field, limit=limit, filter=expr, output_fields=[ID], search_params=params))
        B = q.shape[0]
        ids = np.full((B, limit), -1, dtype=np.int64)
        sc = np.full((B, limit), -np.inf, dtype=np.float32)
        for b, hits in enumerate(res):  # the client hands back one hit list per query
            n = len(hits.ids)
            ids[b, :n] = hits.ids
            d = np.asarray(hits.distances, dtype=np.float32)
            sc[b, :n] = -d if self.metric == "l2" else d
        return ids, sc

    def _stage1(self, q: np.ndarray, f: Funnel, flt: Filter | None) -> tuple[np.ndarray, np.ndarray]:
        s0 = f.first
        return self._search(prefix(q, s0.dim, self.metric), prefix_field(s0.dim, self.dim), s0.k, flt.to_milvus() if flt else "")

    def _rerank_client(self, q: np.ndarray, cand: np.ndarray, f: Funnel) -> tuple[np.ndarray, np.ndarray]:
        uniq = np.unique(cand[cand >= 0])
        got_ids, vecs = self.fetch(uniq)
        B = q.shape[0]
        if got_ids.size == 0:
            return np.full((B, f.k), -np.inf, dtype=np.float32), np.full((B, f.k), -1, dtype=np.int64)
        order = np.argsort(got_ids)
        got_ids, vecs = got_ids[order], vecs[order]
        pos = np.clip(np.searchsorted(got_ids, cand), 0, got_ids.size - 1)
        rows = np.where((cand >= 0) & (got_ids[pos] == cand), pos, -1)  # a row deleted meanwhile drops out

        def gather(r: np.ndarray, dim: int) -> np.ndarray:
            return np.array(vecs[r, :dim], dtype=np.float32)

        s = np.full((B, f.k), -np.inf, dtype=np.float32)
        for st in f.stages[1:]:
            s, rows = rerank(q, rows, gather, st.dim, st.k, self.metric)
        return s, np.where(rows >= 0, got_ids[np.maximum(rows, 0)], -1)

    def _rerank_server(self, q: np.ndarray, cand: np.ndarray, f: Funnel) -> tuple[np.ndarray, np.ndarray]:
        missing = [st.dim for st in f.stages[1:] if st.dim != self.dim and st.dim not in self.prefix_dims]
        if missing:
            raise FunnelError(f"server-side rerank needs a prefix field for every stage; collection {self.name!r} lacks {missing} (push with --prefix-dims {','.join(map(str, missing))}, or use --rerank client).")
        B = q.shape[0]
        s = np.full((B, f.k), -np.inf, dtype=np.float32)
        for st in f.stages[1:]:
            qp = prefix(q, st.dim, self.metric)
            field = prefix_field(st.dim, self.dim)
            nxt = np.full((B, st.k), -1, dtype=np.int64)
            s = np.full((B, st.k), -np.inf, dtype=np.float32)
            for b in range(B):  # each query has its own shortlist: one restricted search per query
                c = cand[b][cand[b] >= 0]
                if c.size:
                    ids, sc = self._search(qp[b : b + 1], field, min(st.k, c.size), f"{ID} in {c.tolist()}")
                    nxt[b, : ids.shape[1]], s[b, : ids.shape[1]] = ids[0], sc[0]
            cand = nxt
        return s, cand

    def calibrate(self, queries: np.ndarray, funnels: list[Funnel | str] | None = None, repeats: int = 3) -> dict[str, dict[str, float]]:
        """Time both rerank placements per funnel on ``queries`` and record the faster with the collection.

        Returns ``{funnel: {"server": s, "client": s, "chosen": ...}}`` (seconds for the batch, median).
        """
        q = self._check_queries(queries)
        out: dict[str, dict[str, Any]] = {}
        placements = dict(self.placements)
        for f in [self.resolve(None, g, None) for g in (funnels or ([self.funnel] if self.funnel else []))]:
            if len(f.stages) == 1:
                continue
            times = {}
            for place in ("client", "server"):
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    self.search(q, funnel=f, rerank=place)
                    ts.append(time.perf_counter() - t0)
                times[place] = float(np.median(ts))
            chosen = min(times, key=times.get)
            placements[str(f)] = chosen
            out[str(f)] = {**times, "chosen": chosen}
        if out:
            self.set_properties(placements=placements)
        return out

    # ------------------------------------------------------------------ misc
    def info(self) -> dict[str, Any]:
        return {"backend": "milvus", "uri": self.uri, "lite": is_lite(self.uri), "collection": self.name, "count": self.count, "dim": self.dim, "metric": self.metric,
                "prefix_dims": self.prefix_dims, "metadata_fields": self.schema, "funnel": str(self.funnel) if self.funnel else None,
                "rerank_placements": self.placements, "push": self.push_state, "tuning": self.tuning}

    def flush(self) -> None:
        """Persist buffered writes (Milvus Lite keeps them in a write-ahead log until then)."""
        self._call("flush", lambda: self.client.flush(self.name))

    def close(self) -> None:
        """Close the connection; for Milvus Lite also stop the in-process engine, freeing the file for other processes."""
        self.client.close()
        if is_lite(self.uri):
            from milvus_lite import server_manager_instance

            server_manager_instance.release_server(self.uri)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except MRLError:
            raise
        except Exception as exc:  # pymilvus/grpc error types vary by version and server
            raise MilvusError(f"Milvus could not {what} collection {self.name!r} at {self.uri} ({_reason(exc)}).") from exc


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0][:200]


def _slim(tuning: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a tuning record worth keeping with a collection (no per-point clutter)."""
    if not tuning:
        return None
    keep = ("funnel", "recall", "ms_per_query", "qps", "target_recall", "k", "sample", "query_source", "threads", "frontier")
    return {k: tuning[k] for k in keep if k in tuning}


def _our_properties(client: Any, collection: str, uri: str) -> dict[str, str]:
    try:
        if not client.has_collection(collection):
            raise MilvusError(f"collection {collection!r} does not exist at {uri}; create it with `mrl index push LOCAL_DIR --milvus {uri} --collection {collection}`.")
        desc = client.describe_collection(collection)
    except MRLError:
        raise
    except Exception as exc:
        raise MilvusError(f"cannot read collection {collection!r} at {uri} ({_reason(exc)}).") from exc
    props = {str(k): str(v) for k, v in (desc.get("properties") or {}).items()}
    if props.get("mrl.format") != FORMAT:
        raise MilvusError(f"collection {collection!r} at {uri} was not created by mrl (no {FORMAT} marker); refusing to use or overwrite it: choose another --collection name.")
    return props
