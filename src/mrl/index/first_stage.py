"""Structures that shortlist the whole corpus on a prefix: the first stage of a funnel.

One :class:`FirstStage` per built structure (:attr:`mrl.index.funnel.Stage.key`), made by
:meth:`FirstStage.for_stage` from a registry keyed by the stage's kind:

* ``flat`` (:class:`FaissFlat`): every prefix scored. float32 ``IndexFlatIP``/``IndexFlatL2``;
  ``int8``/``float16`` ``IndexScalarQuantizer`` (per-dim ranges trained on a sample); ``binary``
  ``IndexBinaryFlat`` on the sign of the prefix minus the sample mean (Matryoshka vision
  embeddings are post-ReLU, so raw signs carry nothing), ranked by Hamming distance.
* ``hnsw`` (:class:`FaissHNSW`): ``IndexHNSWFlat`` (float32) or ``IndexHNSWSQ`` (int8/float16).
* ``ivf`` (:class:`FaissIVF`): ``IndexIVFFlat`` / ``IndexIVFScalarQuantizer`` whose coarse
  quantizer may cluster on a shorter prefix than the lists hold (AdANNS's decoupling): a
  ``RemapDimensionsTransform`` keeps the first ``coarse`` dims in front of a flat quantizer, so
  probing costs ``nlist * coarse`` while the lists are scanned at the stage's full prefix.
* ``usearch`` (:class:`USearchHNSW`): a usearch HNSW graph storing f32/f16/i8 vectors.

With ``metric="cosine"`` every structure holds L2-normalised prefixes and ranks by inner product.
They return *row numbers* into the store (``-1`` when fewer than ``k`` are found); mapping rows to
user ids is the index's job. After each search :attr:`FirstStage.work` holds the measured work per
query (prefixes scored, bytes read), from FAISS's ``hnsw_stats``/``indexIVF_stats`` or usearch's
match counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import faiss
import numpy as np

from mrl.errors import MRLError
from mrl.index.funnel import HNSW_M, IVF_NPROBE, Stage, prefix

# FAISS switches from its per-query SIMD loop to BLAS above this many queries; BLAS is also the
# faster path for the small dims of a first stage, so use it for any batch of 20+ queries.
faiss.cvar.distance_compute_blas_threshold = 20

_SQ = {"int8": faiss.ScalarQuantizer.QT_8bit, "float16": faiss.ScalarQuantizer.QT_fp16}
# Graph build breadth: hnswlib's default, and what deployed HNSW indexes use (Weaviate 128, Qdrant 100,
# LanceDB 300). FAISS's own default (40) builds a graph that needs a far larger efSearch for the same
# recall; a first stage is built no weaker than the full-D graphs it is compared with.
HNSW_EF_CONSTRUCTION = 200
TRAIN_ROWS = 131_072  # sample for SQ ranges, binary centres and IVF k-means (at least 39 x nlist)


@dataclass
class StageWork:
    """Measured work of one stage per query: vectors (codes) scored and bytes read to do it."""

    distances: float = 0.0
    bytes: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"distances": self.distances, "bytes": self.bytes}


def _ftype(metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric in ("cosine", "ip") else faiss.METRIC_L2


class FirstStage:
    """A structure over the ``stage.dim``-prefix of every stored vector.

    Shape: ``add(x [n, D])``; ``search(q [B, D], k) -> rows [B, k]`` int64 (``-1`` when fewer found).
    """

    registry: ClassVar[dict[str, type[FirstStage]]] = {}
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            FirstStage.registry[cls.kind] = cls

    def __init__(self, stage: Stage, metric: str, *, native: Any = None, center: np.ndarray | None = None) -> None:
        self.stage, self.metric, self.center = stage.structure, metric, center
        self.native = native if native is not None else self._new()
        self.work = StageWork()

    @classmethod
    def for_stage(cls, stage: Stage, metric: str) -> FirstStage:
        return cls.registry[stage.kind](stage, metric)

    # -- descriptive
    @property
    def key(self) -> str:
        return self.stage.key

    @property
    def dim(self) -> int:
        return self.stage.dim

    @property
    def precision(self) -> str:
        return self.stage.precision

    @property
    def ntotal(self) -> int:
        return int(self.native.ntotal) if self.native is not None else 0

    @property
    def needs_training(self) -> bool:
        """Whether :meth:`train` must see a sample before the first :meth:`add`."""
        return False

    def meta(self) -> dict[str, Any]:
        s = self.stage
        out = {"dim": s.dim, "precision": s.precision, "kind": s.kind, "m": s.m, "nlist": s.nlist, "coarse": s.coarse,
               "center": None if self.center is None else [float(c) for c in self.center]}
        if s.kind in ("hnsw", "usearch"):
            out["ef_construction"] = self.ef_construction
        return out

    @property
    def ef_construction(self) -> int | None:
        """The build breadth of a graph structure (FAISS ``efConstruction``, usearch ``expansion_add``); ``None`` otherwise."""
        return None

    # -- building
    def _new(self) -> Any:
        raise NotImplementedError

    def _encode(self, x: np.ndarray) -> np.ndarray:
        """Rows as this structure stores them: the (normalised) float32 prefix. Shape ``[n, D] -> [n, dim]``."""
        return prefix(x, self.dim, self.metric)

    def train(self, sample: np.ndarray) -> None:
        """Fit what the structure learns from data (quantizer ranges, centres, clusters) on ``sample [n, D]``."""

    def add(self, x: np.ndarray) -> None:
        """Append the prefixes of ``x`` (raw full-D rows, any float dtype)."""
        self.native.add(self._encode(x))

    # -- searching
    def search(self, queries: np.ndarray, k: int, *, ef_search: int | None = None, nprobe: int | None = None) -> np.ndarray:
        """Row numbers of the ``k`` best prefixes per query; :attr:`work` then holds the measured work."""
        raise NotImplementedError

    def resident_bytes(self) -> int:
        """Bytes this structure keeps in RAM (codes, graph links, list ids, centroids)."""
        raise NotImplementedError

    # -- persistence
    def serialize(self) -> bytes:
        return faiss.serialize_index(self.native).tobytes()

    @classmethod
    def deserialize(cls, data: bytes, meta: dict[str, Any], metric: str) -> FirstStage:
        kind = meta["kind"]
        m = meta["m"] if "m" in meta else (None if int(meta.get("hnsw_m", HNSW_M)) == HNSW_M else int(meta["hnsw_m"]))  # format of the first release
        stage = Stage(int(meta["dim"]), 1, meta["precision"], kind, m=m, nlist=meta.get("nlist"), coarse=meta.get("coarse"))
        center = np.asarray(meta["center"], dtype=np.float32) if meta.get("center") is not None else None
        impl = cls.registry[kind]
        out = impl(stage, metric, native=impl._load(data, meta), center=center)
        out._ef_construction = meta.get("ef_construction")  # usearch does not keep expansion_add in its file
        if meta.get("links_from") and isinstance(out, FaissHNSW):
            out.links_from = str(meta["links_from"])
        return out

    @classmethod
    def _load(cls, data: bytes, meta: dict[str, Any]) -> Any:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


class FaissFlat(FirstStage):
    """Every prefix scored: float32 flat, int8/float16 scalar-quantized, or binary (Hamming)."""

    kind = "flat"

    def _new(self) -> Any:
        p, d = self.precision, self.dim
        if p == "binary":
            return faiss.IndexBinaryFlat(d)
        if p in _SQ:
            return faiss.IndexScalarQuantizer(d, _SQ[p], _ftype(self.metric))
        return faiss.IndexFlatIP(d) if self.metric in ("cosine", "ip") else faiss.IndexFlatL2(d)

    @property
    def needs_training(self) -> bool:
        return (self.precision == "binary" and self.center is None) or (self.precision in _SQ and not self.native.is_trained)

    def train(self, sample: np.ndarray) -> None:
        p = prefix(sample, self.dim, self.metric)
        if self.precision == "binary":
            self.center = p.mean(axis=0).astype(np.float32)
        elif self.precision in _SQ:
            self.native.train(p)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        p = prefix(x, self.dim, self.metric)
        if self.precision != "binary":
            return p
        if self.center is None:
            self.center = p.mean(axis=0).astype(np.float32)
        return np.packbits(p > self.center, axis=1)

    def search(self, queries: np.ndarray, k: int, *, ef_search: int | None = None, nprobe: int | None = None) -> np.ndarray:
        _, rows = self.native.search(self._encode(queries), k)
        self.work = StageWork(float(self.ntotal), self.ntotal * self.stage.bytes_per_code())
        return rows.astype(np.int64, copy=False)

    def resident_bytes(self) -> int:
        return int(self.ntotal * self.stage.bytes_per_code())

    def serialize(self) -> bytes:
        if self.precision == "binary":
            return faiss.serialize_index_binary(self.native).tobytes()
        return super().serialize()

    @classmethod
    def _load(cls, data: bytes, meta: dict[str, Any]) -> Any:
        if meta["precision"] == "binary":
            return faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))
        return super()._load(data, meta)


class FaissHNSW(FirstStage):
    """A FAISS HNSW graph (degree ``M``) over float32 or scalar-quantized prefixes."""

    kind = "hnsw"
    links_from: str | None = None  # the key of the wider graph whose links it adopted (:meth:`adopt_links`), if any

    def _new(self) -> Any:
        m, ft = self.stage.graph_m, _ftype(self.metric)
        ix = faiss.IndexHNSWSQ(self.dim, _SQ[self.precision], m, ft) if self.precision in _SQ else faiss.IndexHNSWFlat(self.dim, m, ft)
        ix.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return ix

    @property
    def needs_training(self) -> bool:
        return not self.native.is_trained

    def train(self, sample: np.ndarray) -> None:
        self.native.train(prefix(sample, self.dim, self.metric))

    def search(self, queries: np.ndarray, k: int, *, ef_search: int | None = None, nprobe: int | None = None) -> np.ndarray:
        self.native.hnsw.efSearch = max(k, ef_search or 0, 16)
        stats = faiss.cvar.hnsw_stats
        stats.reset()
        _, rows = self.native.search(self._encode(queries), k)
        nq = max(len(queries), 1)
        # each hop reads one node's level-0 neighbour list (2M int32 ids); each distance one code
        self.work = StageWork(stats.ndis / nq, (stats.ndis * self.stage.bytes_per_code() + stats.nhops * 2 * self.stage.graph_m * 4) / nq)
        return rows.astype(np.int64, copy=False)

    @property
    def ef_construction(self) -> int | None:
        return int(self.native.hnsw.efConstruction)

    def can_adopt_links(self, wider: FirstStage, rows: int) -> bool:
        """Whether :meth:`adopt_links` may take ``wider``'s graph: a FAISS graph of the same degree
        over a longer prefix of the same ``rows`` stored rows, with nothing added here yet."""
        return (isinstance(wider, FaissHNSW) and wider.stage.graph_m == self.stage.graph_m and wider.dim > self.dim
                and wider.metric == self.metric and wider.ntotal == rows > 0 and self.ntotal == 0)

    def adopt_links(self, wider: FaissHNSW, x_chunks: Iterable[np.ndarray]) -> None:
        """Build from ``wider``'s links instead of inserting rows one by one: copy its graph (FAISS's
        ``HNSW`` struct, assigned by value) and store this prefix's codes for the same rows.

        A prefix's nearest neighbours are, for the most part, the longer prefix's, so the graph a
        longer prefix built at efConstruction 200 serves a shorter one as well as a graph built on
        it (RESULTS, text-retrieval-123k: recall and stage-1 time of a 128-d int8 graph taken from
        the 256-d one equal those of a 128-d graph built on its own), at the cost of encoding the
        rows instead of an HNSW insertion per row. Train first (:meth:`train`) when
        :attr:`needs_training`. ``x_chunks``: the stored rows ``[n_i, D]``, in row order.
        """
        self.native.hnsw = wider.native.hnsw  # SWIG member assignment: a C++ copy, independent of ``wider``
        for x in x_chunks:
            self.native.storage.add(self._encode(x))
        self.native.ntotal = self.native.storage.ntotal
        if self.native.ntotal != wider.ntotal:
            raise MRLError(f"internal error: adopted a graph over {wider.ntotal} rows but stored {self.native.ntotal} codes.")
        self.links_from = wider.key

    def meta(self) -> dict[str, Any]:
        out = super().meta()
        if self.links_from:
            out["links_from"] = self.links_from
        return out

    def resident_bytes(self) -> int:
        h = self.native.hnsw
        return int(self.ntotal * self.stage.bytes_per_code() + h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4)


class FaissIVF(FirstStage):
    """A FAISS inverted file; the coarse quantizer may use a shorter prefix than the lists (AdANNS)."""

    kind = "ivf"

    def _new(self) -> Any:
        return None  # built by train(): the coarse centroids come first

    @property
    def ntotal(self) -> int:
        return 0 if self.native is None else int(self.native.ntotal)

    @property
    def needs_training(self) -> bool:
        return self.native is None

    def train(self, sample: np.ndarray) -> None:
        s, ft = self.stage, _ftype(self.metric)
        x = prefix(sample, s.dim, self.metric)
        c = s.coarse_dim
        xc = prefix(x, c, self.metric)  # k-means on the coarse prefix (spherical for cosine)
        km = faiss.Kmeans(c, s.nlist, niter=20, seed=1234, spherical=self.metric == "cosine", max_points_per_centroid=256)
        km.train(xc)
        inner = faiss.IndexFlatIP(c) if self.metric in ("cosine", "ip") else faiss.IndexFlatL2(c)
        if c < s.dim:  # probe on the first c dims only: the remap keeps them, the flat index ranks them
            quant = faiss.IndexPreTransform(faiss.RemapDimensionsTransform(s.dim, c, False), inner)
            quant.add(np.pad(km.centroids, ((0, 0), (0, s.dim - c))))
        else:
            quant = inner
            quant.add(km.centroids)
        if s.precision in _SQ:
            ivf = faiss.IndexIVFScalarQuantizer(quant, s.dim, s.nlist, _SQ[s.precision], ft, False)
        else:
            ivf = faiss.IndexIVFFlat(quant, s.dim, s.nlist, ft)
        ivf.train(x)  # the quantizer already holds nlist centroids: this fits only the SQ ranges
        self._refs = (inner, quant)  # the Python objects own the quantizer until the IVF is serialized
        self.native = ivf

    def search(self, queries: np.ndarray, k: int, *, ef_search: int | None = None, nprobe: int | None = None) -> np.ndarray:
        s = self.stage
        self.native.nprobe = min(nprobe or s.nprobe or IVF_NPROBE, s.nlist)
        stats = faiss.cvar.indexIVF_stats
        stats.reset()
        _, rows = self.native.search(self._encode(queries), k)
        nq = max(len(queries), 1)
        per_code = s.bytes_per_code() + 8  # the code and its int64 id in the list
        self.work = StageWork(stats.ndis / nq + s.nlist * s.coarse_dim / s.dim, (stats.ndis * per_code) / nq + s.nlist * s.coarse_dim * 4)
        return rows.astype(np.int64, copy=False)

    def resident_bytes(self) -> int:
        s = self.stage
        return int(self.ntotal * (s.bytes_per_code() + 8) + s.nlist * s.coarse_dim * 4)


class USearchHNSW(FirstStage):
    """A usearch HNSW graph (connectivity ``M``) storing f32, f16 or i8 prefixes."""

    kind = "usearch"
    _DTYPES: ClassVar[dict[str, str]] = {"float32": "f32", "float16": "f16", "int8": "i8"}

    def _new(self) -> Any:
        from usearch.index import Index

        if self.precision not in self._DTYPES:
            from mrl.index.funnel import FunnelError

            raise FunnelError(f"usearch stores {sorted(self._DTYPES)}; {self.precision} is not one of them.")
        self._ef_construction = HNSW_EF_CONSTRUCTION
        return Index(ndim=self.dim, metric="ip" if self.metric in ("cosine", "ip") else "l2sq", dtype=self._DTYPES[self.precision],
                     connectivity=self.stage.graph_m, expansion_add=HNSW_EF_CONSTRUCTION)

    @property
    def ntotal(self) -> int:
        return int(self.native.size)

    @property
    def ef_construction(self) -> int | None:
        return getattr(self, "_ef_construction", None)

    def add(self, x: np.ndarray) -> None:
        n0 = self.ntotal
        self.native.add(np.arange(n0, n0 + x.shape[0], dtype=np.uint64), self._encode(x), threads=faiss.omp_get_max_threads())

    def search(self, queries: np.ndarray, k: int, *, ef_search: int | None = None, nprobe: int | None = None) -> np.ndarray:
        self.native.expansion_search = max(k, ef_search or 0, 16)
        res = self.native.search(self._encode(queries), k, threads=faiss.omp_get_max_threads())
        if hasattr(res, "counts"):  # BatchMatches: [B, k] keys, valid up to counts
            keys = np.asarray(res.keys, dtype=np.int64)
            rows = np.where(np.arange(keys.shape[1])[None, :] < np.asarray(res.counts).reshape(-1, 1), keys, -1)
        else:  # one query: Matches holds only the keys found
            rows = np.full((1, k), -1, dtype=np.int64)
            rows[0, : len(res.keys)] = res.keys
        nq = max(len(queries), 1)
        ndis, visited = float(res.computed_distances), float(res.visited_members)
        self.work = StageWork(ndis / nq, (ndis * self.stage.bytes_per_code() + visited * 2 * self.stage.graph_m * 4) / nq)
        return rows

    def resident_bytes(self) -> int:
        # codes + links as usearch lays them out (its memory_usage counts reserved capacity); cached per size
        if getattr(self, "_sized", (None, 0))[0] != self.ntotal:
            self._sized = (self.ntotal, len(self.serialize()))
        return self._sized[1]

    def serialize(self) -> bytes:
        return bytes(self.native.save())

    @classmethod
    def _load(cls, data: bytes, meta: dict[str, Any]) -> Any:
        from usearch.index import Index

        return Index.restore(bytearray(data))
