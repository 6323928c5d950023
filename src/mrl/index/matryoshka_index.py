"""``MatryoshkaIndex``: full-``D`` vectors stored once (memory-mapped), funnel search over prefixes.

Example:
    >>> index = MatryoshkaIndex(dim=512, metric="cosine", dtype="float16")
    >>> index.add(vectors)                                 # [N, 512], ids default to 0..N-1
    >>> index.build_first_stage("32:1000")                 # FAISS flat IP on the 32-d prefix
    >>> scores, ids = index.search(queries, 10, funnel="32:1000 -> 128:100 -> 512:10")
    >>> index.save("my-index")                             # atomic; manifest swapped last
    >>> index = MatryoshkaIndex.load("my-index")           # vectors memory-mapped, checksums checked
    >>> index.add(more, ids=new_ids, metadata={"lang": ["en", ...]})   # refuses ids already present
    >>> index.upsert(vecs, ids=old_ids); index.delete([3, 7])          # delete = tombstone
    >>> index.search(queries, 10, filter='lang == "en"')               # k results still come back
    >>> index.compact(); index.save("my-index")                        # rewrite without tombstones

Search: stage 1 scores the whole corpus on the ``d_1`` prefix with a :class:`FirstStage` (built on
demand if missing; kept in memory, saved only when built with ``persist=True`` or chosen by tuning);
each later stage gathers the survivors' prefix columns from the store and reranks them with one
batched matmul per query block (:mod:`mrl.index.search`). Nothing the caller passes is
modified. Deleted rows (tombstones) and rows a metadata ``filter`` excludes never come back: a
selective filter (few allowed rows) scores the allowed rows' stage-1 prefixes exactly; otherwise
stage 1 over-fetches in proportion to the excluded share and widens until every query holds
``k_1`` allowed candidates (see :meth:`MatryoshkaIndex._first_candidates`). ``early_exit=True`` stops reranking a query whose top-``k`` ids did not change between two
consecutive stages; the saved multiply-adds are reported in the search stats.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mrl.checks import check_finite
from mrl.errors import MRLError
from mrl.index import store
from mrl.index.catalog import Catalog, Metadata
from mrl.index.filters import Filter, parse_filter
from mrl.index.first_stage import TRAIN_ROWS, FaissHNSW, FirstStage, StageWork
from mrl.index.funnel import METRICS, Funnel, FunnelError, Stage, prefix
from mrl.index.search import run_reranks

PREFILTER_SHARE = 0.05  # a filter allowing at most this share of rows is scored exactly on the allowed rows


# Largest |x| a stored or query vector may hold for metric l2/ip: beyond it, squared norms and inner
# products overflow float32 (cosine normalises each prefix safely whatever the magnitude).
MAX_ABS_RAW = 1e18


class MatryoshkaIndex:
    """A persistent coarse-to-fine index over Matryoshka embeddings.

    Args:
        dim: ``D``, the width of the stored vectors (queries must have this width).
        metric: ``"cosine"`` (truncate then L2-normalise at every stage; inner product), ``"ip"``
            (inner product of the raw prefixes) or ``"l2"`` (Euclidean distance).
        dtype: storage of the full vectors, ``"float32"`` or ``"float16"``.

    Rows vs count: ``rows`` is every stored vector (tombstoned ones included, until ``compact``);
    ``count`` is the live vectors a search can return.

    Shape:
        - ``add(vectors [n, D], ids [n] int64 | None, metadata {field: [n values]} | None)``
        - ``search(queries [B, D], k) -> (scores [B, k] float32, ids [B, k] int64)``; scores are
          higher-is-better (cosine similarity, or negative squared L2 distance); ``-1`` ids pad
          rows when an approximate first stage finds fewer than ``k``.
    """

    def __init__(self, dim: int, *, metric: str = "cosine", dtype: str = "float32") -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise MRLError(f"dim must be a positive integer (the embedding width D), got {dim!r}.")
        if metric not in METRICS:
            raise MRLError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}.")
        if dtype not in store.DTYPES:
            raise MRLError(f"dtype must be one of {store.DTYPES}, got {dtype!r}.")
        self.dim, self.metric, self.dtype = int(dim), metric, dtype
        self._segments: list[np.ndarray] = []  # [n_i, D] arrays (memmaps or in-memory), never mutated
        self._starts = np.zeros(1, dtype=np.int64)  # segment start rows + total count at the end
        self._seg_files: list[dict[str, Any] | None] = []  # on-disk entry of each segment (None: only in memory)
        self.catalog = Catalog()  # ids, tombstones, metadata
        self._stages: dict[str, FirstStage] = {}
        self._persist: set[str] = set()
        self.funnel: Funnel | None = None
        self.tuning: dict[str, Any] | None = None
        self._folder: Path | None = None  # where the memory-mapped segments live
        self._parsed: dict[str, Funnel] = {}  # spec string -> Funnel (a server sends the same few)

    # ------------------------------------------------------------------ contents
    @property
    def rows(self) -> int:
        """Stored vectors, tombstoned ones included (row numbers run over ``0..rows-1``)."""
        return int(self._starts[-1])

    @property
    def count(self) -> int:
        """Live vectors: stored minus deleted."""
        return self.rows - self.catalog.n_deleted

    def __len__(self) -> int:
        return self.count

    @property
    def ids(self) -> np.ndarray:
        """User id of every stored row (tombstoned rows included). Shape: ``[rows]`` int64."""
        return self.catalog.ids

    @property
    def schema(self) -> dict[str, str]:
        """Metadata fields and their types (``"str"`` or ``"int"``)."""
        return dict(self.catalog.schema)

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None, metadata: Metadata = None, *, upsert: bool = False) -> None:
        """Append vectors with their int64 ids (default: consecutive after the largest id) and metadata.

        Args:
            vectors: ``[n, D]`` floats.
            ids: ``[n]`` distinct integers. An id already live in the index is refused unless
                ``upsert`` (then its old row is tombstoned and the new one appended).
            metadata: ``{field: [n values]}`` or ``[{field: value}] * n``; values are str or int. The
                first batch fixes the fields; every later batch must give the same ones.

        The batch is validated first; a batch with NaN/Inf, the wrong width, bad ids or metadata
        is refused as a whole and the index is left unchanged.
        """
        vectors = self._check_vectors(vectors, "vectors")
        n = vectors.shape[0]
        ids, cols, replaced = self.catalog.prepare(n, ids, metadata, upsert=upsert)
        if isinstance(vectors, np.memmap) and not vectors.flags.writeable and vectors.dtype == np.dtype(self.dtype) and vectors.flags.c_contiguous:
            stored = vectors  # a read-only file mapping (e.g. an encoded shard): kept by reference, streamed on save
        else:
            with np.errstate(over="ignore"):
                stored = np.array(vectors, dtype=self.dtype, copy=True)
        if not np.isfinite(stored).all():
            raise MRLError(f"vectors overflow {self.dtype} (|x| > {np.finfo(self.dtype).max:.0f}); store them as float32 or rescale them.")
        if n == 0:
            return
        for st in self._stages.values():  # all validation done: now mutate
            st.add(stored)
        self._segments.append(stored)
        self._seg_files.append(None)
        self.catalog.append(ids, cols, replaced)
        self._starts = np.append(self._starts, self._starts[-1] + n)

    def upsert(self, vectors: np.ndarray, ids: np.ndarray, metadata: Metadata = None) -> None:
        """Add, replacing the vectors (and metadata) of ids already in the index. See :meth:`add`."""
        if ids is None:
            raise MRLError("upsert needs ids: the ids whose vectors to replace (or add).")
        self.add(vectors, ids, metadata, upsert=True)

    def delete(self, ids: Any) -> int:
        """Tombstone the vectors of ``ids``; returns how many were live (absent ids are ignored).

        Searches skip them at once; :meth:`compact` removes them from storage.
        """
        return self.catalog.delete(ids)

    def compact(self) -> int:
        """Drop tombstoned rows and merge segments: the live vectors become one in-memory segment
        (written on the next :meth:`save`; this holds them all in RAM) and first stages are rebuilt
        over them. Returns the rows removed."""
        removed = self.catalog.n_deleted
        if removed == 0 and len(self._segments) <= 1:
            return 0
        keep = np.flatnonzero(~self.catalog.deleted)
        stored = np.empty((keep.size, self.dim), dtype=self.dtype)
        for start in range(0, keep.size, store._CHUNK):
            rows = keep[start : start + store._CHUNK]
            stored[start : start + rows.size] = self._gather_stored(rows)
        self.catalog = self.catalog.subset(keep)
        self._segments, self._seg_files = ([stored], [None]) if keep.size else ([], [])
        self._starts = np.array([0, keep.size], dtype=np.int64) if keep.size else np.zeros(1, dtype=np.int64)
        if removed:  # row numbers changed: rebuild the first stages over the kept rows
            self._stages = {key: self._new_first_stage(fs.stage) for key, fs in self._stages.items()}
        return removed
    def _check_vectors(self, x: Any, name: str) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise MRLError(f"{name} must be a 2-D numpy array [N, {self.dim}], got {getattr(x, 'shape', type(x).__name__)}.")
        if not np.issubdtype(x.dtype, np.floating):
            raise MRLError(f"{name} must hold floats, got {x.dtype}; cast with .astype('float32').")
        if x.shape[1] != self.dim:
            more = " (larger than the index dim)" if x.shape[1] > self.dim else ""
            raise MRLError(f"{name} have dim {x.shape[1]}{more} but this index stores {self.dim}-dim vectors; pass full {self.dim}-dim embeddings from the same model.")
        check_finite(x, name)
        if self.metric != "cosine" and x.size:
            big = float(np.abs(x).max())
            if big > MAX_ABS_RAW:
                raise MRLError(f"{name} hold values up to {big:.3g}: {self.metric} scores would overflow float32; rescale the vectors (or use metric cosine).")
        return x

    def gather(self, rows: np.ndarray, dim: int) -> np.ndarray:
        """First ``dim`` columns of the given rows as a new float32 array. Shape: ``[M] -> [M, dim]``."""
        return self._gather_stored(rows, dim, np.float32)

    def _gather_stored(self, rows: np.ndarray, dim: int | None = None, dtype: Any = None) -> np.ndarray:
        dim = self.dim if dim is None else dim
        dtype = self.dtype if dtype is None else dtype
        rows = np.asarray(rows, dtype=np.int64)
        if len(self._segments) == 1:
            seg = self._segments[0]
            # whole rows: np.take copies each row in one piece (faster than fancy indexing with a slice)
            out = np.take(seg, rows, axis=0) if dim == seg.shape[1] else seg[rows, :dim]
            return np.asarray(out, dtype=dtype)
        out = np.empty((rows.shape[0], dim), dtype=dtype)
        seg = np.searchsorted(self._starts, rows, side="right") - 1
        for s, arr in enumerate(self._segments):  # a handful of segments, not a per-row loop
            m = seg == s
            if m.any():
                out[m] = arr[rows[m] - self._starts[s], :dim]
        return out

    def iter_vectors(self, rows: int = 1 << 16) -> Any:
        return store.chunks_of(self._segments, rows)

    # ------------------------------------------------------------------ first stages
    def build_first_stage(self, stage: Stage | str, *, persist: bool = True) -> FirstStage:
        """Build (or return) the structure for a first stage, e.g. ``"32:1000"``, ``"128/int8/hnsw/m16:1"``
        or ``Stage(64, 1, "binary")``.

        Only the stage's structure matters (dim, precision, kind, M, lists, coarse prefix), not its
        ``k`` or search breadth. Structures that learn from data train on a random sample of up to
        :data:`~mrl.index.first_stage.TRAIN_ROWS` stored rows. ``persist``: save it with the index.
        """
        if isinstance(stage, str):
            stage = Funnel.parse(stage).first
        if stage.dim > self.dim:
            raise FunnelError(f"first-stage dim {stage.dim} exceeds the index dim {self.dim}.")
        key = stage.key
        if key not in self._stages:
            if stage.kind == "ivf" and stage.nlist > self.rows:
                raise FunnelError(f"an IVF with {stage.nlist} lists needs at least that many vectors (the index holds {self.rows}); use fewer lists.")
            self._stages[key] = self._new_first_stage(stage)
        if persist:
            self._persist.add(key)
        return self._stages[key]

    def _new_first_stage(self, stage: Stage) -> FirstStage:
        """A first stage over every stored row (tombstoned ones too: searches skip those by id)."""
        fs = FirstStage.for_stage(stage, self.metric)
        if fs.needs_training and self.rows:
            rng = np.random.default_rng(0)
            fs.train(self.gather(np.sort(rng.choice(self.rows, size=min(self.rows, TRAIN_ROWS), replace=False)), self.dim))
        donor = self._link_donor(fs)
        if donor is not None:  # a wider graph over the same rows is built: take its links (seconds, not an HNSW build)
            fs.adopt_links(donor, self.iter_vectors())
            return fs
        for chunk in self.iter_vectors():
            fs.add(chunk)
        return fs

    def _link_donor(self, fs: FirstStage) -> FaissHNSW | None:
        """The narrowest built FAISS graph whose links ``fs`` (a graph still empty) can adopt, if any."""
        if not isinstance(fs, FaissHNSW):
            return None
        donors = [d for d in self._stages.values() if isinstance(d, FaissHNSW) and fs.can_adopt_links(d, self.rows)]
        return min(donors, key=lambda d: d.dim) if donors else None

    def first_stages(self) -> list[FirstStage]:
        return list(self._stages.values())

    def drop_first_stage(self, key: str) -> None:
        self._stages.pop(key, None)
        self._persist.discard(key)

    def resident_bytes(self, funnel: Funnel | str | None = None) -> int:
        """RAM the index keeps per search: ids plus the first-stage structure of ``funnel`` (default:
        all built structures). The full vectors are memory-mapped from disk once saved/loaded."""
        keys = [self._parse(funnel).first.key] if funnel is not None else list(self._stages)
        in_memory_vectors = sum(a.nbytes for a in self._segments if not isinstance(a, np.memmap))
        return self.count * 8 + sum(self._stages[k].resident_bytes() for k in keys if k in self._stages) + in_memory_vectors

    # ------------------------------------------------------------------ search
    def _resolve(self, k: int | None, funnel: Funnel | str | None) -> Funnel:
        if self.rows == 0:
            raise MRLError("the index is empty; add vectors before searching.")
        if self.count == 0:
            raise MRLError(f"every vector in the index is deleted ({self.rows} tombstones); add vectors before searching.")
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.count):
            raise FunnelError(f"k={k!r} must be an integer in [1, {self.count}]: it exceeds the {self.count} vectors in the index or is not positive.")
        f = self._parse(funnel) if funnel is not None else (self.funnel or (Funnel.exact(self.dim, k) if k else None))
        if f is None:
            raise MRLError("search needs k or a funnel, e.g. search(queries, 10).")
        if k is not None and k != f.k:
            try:
                f = f.with_k(int(k))
            except FunnelError as exc:
                raise FunnelError(f"k={k} does not fit the funnel {f} ({exc}); pass funnel=... with enough candidates, or retune for this k.") from exc
        if f.k > self.count:
            raise FunnelError(f"k={f.k} exceeds the {self.count} vectors in the index; ask for k <= {self.count}.")
        f.validate_for(self.dim, self.rows)
        return f

    def funnel_for(self, recall_target: float) -> Funnel:
        """The fastest tuned funnel whose measured recall@k meets ``recall_target`` (from the tuning record)."""
        from mrl.index.frontier import choose_funnel

        return choose_funnel(self.tuning, recall_target, self.dim)

    def search(self, queries: np.ndarray, k: int | None = None, *, funnel: Funnel | str | None = None, recall_target: float | None = None, filter: str | dict[str, Any] | Filter | None = None,
               batch_size: int | None = None, threads: int = 1, early_exit: bool = False, ef_search: int | None = None, return_stats: bool = False) -> Any:
        """Funnel search. ``funnel`` defaults to the index's tuned funnel, else exact ``D:k``.

        Args:
            queries: ``[B, D]`` float vectors.
            k: results per query (replaces the funnel's last ``k`` when both are given).
            funnel: spec string or :class:`Funnel`.
            recall_target: instead of ``funnel``: the fastest tuned funnel that met this recall@k.
            filter: metadata filter, e.g. ``'lang == "en"'`` or ``{"lang": ["en", "de"]}``
                (:mod:`mrl.index.filters`); rows it excludes and deleted rows never come back.
            batch_size: queries per rerank block (default: about 4 MiB of gathered rows per block).
            threads: rerank batches run on this many threads (NumPy releases the GIL); FAISS's own
                threads (``faiss.omp_set_num_threads``) score stage 1.
            early_exit: stop reranking a query whose top-``k`` ids are unchanged between two stages.
            ef_search: graph first stages only: search breadth (default: the stage's ``/ef``, else ``max(k_1, 16)``).

        Returns ``(scores [B, k], ids [B, k])``, plus a :class:`SearchStats` when ``return_stats``.
        """
        t0 = time.perf_counter()
        q = self._check_vectors(queries, "queries")
        if q.dtype != np.float32 or not q.flags.c_contiguous:
            q = np.ascontiguousarray(q, dtype=np.float32)
        if funnel is not None and recall_target is not None:
            raise MRLError("give either funnel or recall_target, not both.")
        f = self._resolve(k, self.funnel_for(recall_target) if recall_target is not None else funnel)
        allowed = self.catalog.allowed(parse_filter(filter, self.catalog.schema))
        s0 = f.first
        fs = self._stages.get(s0.key) or self.build_first_stage(s0, persist=False)
        rows = self._first_candidates(q, s0, fs, allowed, ef_search or s0.ef)
        t1 = time.perf_counter()
        scores, out_rows, stats = run_reranks(q, rows, f, self.gather, self.metric, corpus_size=self.rows, first_distances=None if s0.kind == "flat" else fs.work.distances,
                                              itemsize=np.dtype(self.dtype).itemsize, batch_size=batch_size, threads=threads, early_exit=early_exit)
        out_ids = np.where(out_rows >= 0, self.catalog.ids[np.maximum(out_rows, 0)], -1)
        stats.stages.insert(0, {"stage": str(s0), "candidates": self.rows, **fs.work.to_dict(), "seconds": t1 - t0})
        stats.seconds = time.perf_counter() - t0
        return (scores, out_ids, stats) if return_stats else (scores, out_ids)

    def _first_candidates(self, q: np.ndarray, s0: Stage, fs: FirstStage, allowed: np.ndarray | None, ef: int | None) -> np.ndarray:
        """Stage-1 row numbers ``[B, k_1]`` among the ``allowed`` rows (``-1`` pads when fewer exist).

        Unfiltered: the first-stage structure as is. A filter allowing at most ``PREFILTER_SHARE``
        of the rows (or under ``4 k_1`` rows): exact top-``k_1`` of the allowed rows' prefixes (a
        pre-filter: cost proportional to the allowed rows). Otherwise over-fetch from the structure
        ``k_1 / share`` (+25%) candidates, keep the allowed ones, and widen x4 for queries still short.
        """
        k1 = s0.k
        if allowed is None:
            return fs.search(q, k1, ef_search=ef, nprobe=s0.nprobe)
        n_ok = int(np.count_nonzero(allowed))
        B = q.shape[0]
        if n_ok == 0:
            fs.work = StageWork()
            return np.full((B, k1), -1, dtype=np.int64)
        if n_ok <= max(4 * k1, PREFILTER_SHARE * self.rows):  # pre-filter: the allowed rows' float prefixes are scored, not the structure
            fs.work = StageWork(float(n_ok), float(n_ok * s0.dim * np.dtype(self.dtype).itemsize))
            return self._exact_among(q, np.flatnonzero(allowed), s0.dim, k1)
        out = np.full((B, k1), -1, dtype=np.int64)
        todo = np.arange(B)
        kk = min(self.rows, int(k1 * self.rows / n_ok * 1.25) + 16)
        while todo.size:
            cand = fs.search(q[todo], kk, ef_search=max(kk, ef or 0), nprobe=s0.nprobe)
            ok = (cand >= 0) & allowed[np.maximum(cand, 0)]
            enough = (ok.sum(axis=1) >= k1) | (kk >= self.rows)
            order = np.argsort(~ok, axis=1, kind="stable")[:, :k1]  # allowed first, stage-1 order kept
            picked = np.take_along_axis(cand, order, 1)
            picked = np.where(np.take_along_axis(ok, order, 1), picked, -1)
            out[todo[enough], : picked.shape[1]] = picked[enough]
            todo = todo[~enough]
            kk = min(self.rows, kk * 4)
        return out

    def _exact_among(self, q: np.ndarray, rows: np.ndarray, dim: int, k: int) -> np.ndarray:
        """Exact top-``k`` of ``rows`` on the ``dim``-prefix, streamed in chunks. Shape: ``[B, k]`` rows (``-1`` pads)."""
        qp = prefix(q, dim, self.metric)
        B = q.shape[0]
        best_s = np.full((B, 0), -np.inf, dtype=np.float32)
        best_r = np.zeros((B, 0), dtype=np.int64)
        for start in range(0, rows.size, store._CHUNK):
            r = rows[start : start + store._CHUNK]
            x = prefix(self.gather(r, dim), dim, self.metric)
            s = qp @ x.T
            if self.metric == "l2":
                s = 2 * s - (x * x).sum(axis=1)[None, :] - (qp * qp).sum(axis=1, keepdims=True)
            s = np.concatenate([best_s, s], axis=1)
            rr = np.concatenate([best_r, np.broadcast_to(r, (B, r.size))], axis=1)
            kk = min(k, s.shape[1])
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            best_s, best_r = np.take_along_axis(s, part, 1), np.take_along_axis(rr, part, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        best_r = np.take_along_axis(best_r, order, 1)
        if best_r.shape[1] < k:
            best_r = np.concatenate([best_r, np.full((B, k - best_r.shape[1]), -1, dtype=np.int64)], axis=1)
        return best_r

    def rerank_candidates(self, queries: np.ndarray, rows: np.ndarray, funnel: Funnel | str, *, threads: int = 1, early_exit: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Run stages 2..n of ``funnel`` on given stage-1 candidates (row numbers, not ids).

        Used by auto-tuning to reuse one stage-1 search for many rerank shapes.
        Shape: queries ``[B, D]``, rows ``[B, >= k_1]`` -> (scores ``[B, k]``, rows ``[B, k]``).
        """
        f = self._parse(funnel)
        q = np.ascontiguousarray(self._check_vectors(queries, "queries"), dtype=np.float32)
        scores, out_rows, _ = run_reranks(q, np.ascontiguousarray(rows[:, : f.first.k]), f, self.gather, self.metric, corpus_size=self.rows, threads=threads, early_exit=early_exit)
        return scores, out_rows

    def _parse(self, funnel: Funnel | str) -> Funnel:
        """:meth:`Funnel.parse` with a per-index cache of spec strings (a server sends the same few)."""
        if not isinstance(funnel, str):
            return Funnel.parse(funnel)
        f = self._parsed.get(funnel)
        if f is None:
            f = Funnel.parse(funnel)
            if len(self._parsed) > 256:
                self._parsed.clear()
            self._parsed[funnel] = f
        return f

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike[str], *, attach: dict[str, bytes] | None = None) -> Path:
        """Atomically save to ``folder`` (new data files first, ``manifest.json`` swapped last).

        Vector segments already stored in ``folder`` are kept, so an ``add`` writes only its new
        rows. A crash at any point leaves the previous index in ``folder`` loadable. The folder is
        locked for the save; only files this index's manifests listed are ever deleted, and a file
        they do not list is never replaced.

        Args:
            folder: the index folder (created if needed).
            attach: extra files stored with the index, ``{name: bytes}`` (e.g. ``tuning.md``);
                files attached by earlier saves to this folder are kept.
        """
        from mrl.index.persist import save_index

        return save_index(self, Path(folder), attach)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, verify: bool = True) -> MatryoshkaIndex:
        """Open a saved index: vectors memory-mapped, first stages read into RAM.

        ``verify`` checks every file's SHA-256 (sizes are always checked).
        """
        from mrl.index.persist import load_index

        return load_index(cls, Path(folder), verify=verify)

    def info(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "count": self.count,
            "rows": self.rows,
            "deleted": self.catalog.n_deleted,
            "metadata_fields": self.schema,
            "dtype": self.dtype,
            "metric": self.metric,
            "funnel": str(self.funnel) if self.funnel else None,
            "first_stages": [fs.key for fs in self._stages.values()],
            "resident_bytes_per_vector": self.resident_bytes(self.funnel) / max(self.count, 1) if self.funnel else None,
            "tuning": self.tuning,
            "folder": str(self._folder) if self._folder else None,
        }
