"""FAISS structures that score the whole corpus on a prefix: the first stage of a funnel.

One :class:`FirstStage` per ``(dim, precision, kind)``:

* ``float32/flat``: ``IndexFlatIP`` (cosine: on L2-normalised prefixes) or ``IndexFlatL2``.
* ``float32/hnsw``: ``IndexHNSWFlat(dim, M)`` on the same prefixes (approximate).
* ``int8/flat``: ``IndexScalarQuantizer(dim, QT_8bit)``: 1 byte per dim, per-dim ranges trained
  on the first batch added.
* ``binary/flat``: ``IndexBinaryFlat(dim)``: 1 bit per dim, the sign of the prefix minus the
  corpus mean of the first batch added (Matryoshka vision embeddings are post-ReLU, so raw signs
  carry nothing), ranked by Hamming distance.

They return *row numbers* into the store; mapping rows to user ids is the index's job.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from mrl.index.funnel import Stage, prefix

# FAISS switches from its per-query SIMD loop to BLAS above this many queries; BLAS is also the
# faster path for the small dims of a first stage, so use it for any batch of 20+ queries.
faiss.cvar.distance_compute_blas_threshold = 20

HNSW_M = 32


class FirstStage:
    """A FAISS index over the ``dim``-prefix of every stored vector.

    Shape: ``add(x [n, D])``; ``search(q [B, D], k) -> rows [B, k]`` int64 (``-1`` when fewer found).
    """

    def __init__(self, dim: int, precision: str, kind: str, metric: str, *, hnsw_m: int = HNSW_M, index: Any = None, center: np.ndarray | None = None) -> None:
        self.dim, self.precision, self.kind, self.metric, self.hnsw_m = dim, precision, kind, metric, hnsw_m
        self.center = center
        self.index = index if index is not None else self._new()
        self.last_distances: float | None = None

    @property
    def key(self) -> str:
        return f"{self.dim}-{self.precision}-{self.kind}"

    @classmethod
    def for_stage(cls, stage: Stage, metric: str, **kw: Any) -> FirstStage:
        return cls(stage.dim, stage.precision, stage.kind, metric, **kw)

    def _new(self) -> Any:
        ftype = faiss.METRIC_INNER_PRODUCT if self.metric in ("cosine", "ip") else faiss.METRIC_L2
        if self.precision == "binary":
            return faiss.IndexBinaryFlat(self.dim)
        if self.kind == "hnsw":
            return faiss.IndexHNSWFlat(self.dim, self.hnsw_m, ftype)
        if self.precision == "int8":
            return faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit, ftype)
        return faiss.IndexFlatIP(self.dim) if ftype == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(self.dim)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        p = prefix(x, self.dim, self.metric)
        if self.precision != "binary":
            return p
        if self.center is None:
            self.center = p.mean(axis=0).astype(np.float32)
        return np.packbits(p > self.center, axis=1)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, x: np.ndarray) -> None:
        """Append the prefixes of ``x`` (raw full-D rows, any float dtype)."""
        codes = self._encode(x)
        if self.precision == "int8" and not self.index.is_trained:
            self.index.train(codes)
        self.index.add(codes)

    def search(self, queries: np.ndarray, k: int, *, ef_search: int | None = None) -> np.ndarray:
        """Row numbers of the ``k`` best prefixes per query. For HNSW, ``self.last_distances`` then holds
        the measured distance computations per query (FAISS's ``hnsw_stats.ndis``)."""
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(k, ef_search or 0, 16)
            faiss.cvar.hnsw_stats.reset()
        _, rows = self.index.search(self._encode(queries), k)
        self.last_distances = faiss.cvar.hnsw_stats.ndis / max(len(queries), 1) if self.kind == "hnsw" else None
        return rows.astype(np.int64, copy=False)

    def resident_bytes(self) -> int:
        """Bytes this structure keeps in RAM (codes or prefix vectors, plus graph links for HNSW)."""
        n = self.ntotal
        if self.precision == "binary":
            return n * self.dim // 8
        if self.precision == "int8":
            return n * self.dim
        if self.kind == "hnsw":
            h = self.index.hnsw
            return n * self.dim * 4 + h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
        return n * self.dim * 4

    def serialize(self) -> bytes:
        if self.precision == "binary":
            return faiss.serialize_index_binary(self.index).tobytes()
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def deserialize(cls, data: bytes, meta: dict[str, Any], metric: str) -> FirstStage:
        buf = np.frombuffer(data, dtype=np.uint8)
        index = faiss.deserialize_index_binary(buf) if meta["precision"] == "binary" else faiss.deserialize_index(buf)
        center = np.asarray(meta["center"], dtype=np.float32) if meta.get("center") is not None else None
        return cls(int(meta["dim"]), meta["precision"], meta["kind"], metric, hnsw_m=int(meta.get("hnsw_m", HNSW_M)), index=index, center=center)

    def meta(self) -> dict[str, Any]:
        return {"dim": self.dim, "precision": self.precision, "kind": self.kind, "hnsw_m": self.hnsw_m, "center": None if self.center is None else [float(c) for c in self.center]}
