"""Measuring a funnel against exact search: recall@k per query, the exact full-``D`` neighbours of a
store streamed chunk by chunk, and single-query latency as a server sees it (used by the tuner,
:mod:`mrl.index.tune`, and the benchmarks)."""

from __future__ import annotations

import time

import faiss
import numpy as np

from mrl.index import Funnel, MatryoshkaIndex
from mrl.index.funnel import prefix

__all__ = ["exact_neighbors", "per_query_recall", "recall_at_k", "single_query_latency"]


def per_query_recall(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``|found_q ∩ truth_q| / k`` per query. Shape: ``[B, k]``, ``[B, k]`` ids -> ``[B]``."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2) & (found >= 0)
    return hits.sum(axis=1) / truth.shape[1]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of ``|found_q ∩ truth_q| / k``. Shape: ``[B, k]``, ``[B, k]`` ids."""
    return float(per_query_recall(found, truth).mean())


def exact_neighbors(index: MatryoshkaIndex, queries: np.ndarray, k: int, *, chunk: int = 1 << 16) -> np.ndarray:
    """Exact full-``D`` top-``k`` row numbers: FAISS's BLAS kNN per chunk of the store, merged in a heap.

    Shape: queries ``[B, D]`` -> rows ``[B, k]`` int64, best first.
    """
    q = prefix(queries, index.dim, index.metric)
    ip = index.metric in ("cosine", "ip")
    metric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
    heap = faiss.ResultHeap(q.shape[0], k, keep_max=ip)
    start = 0
    for block in index.iter_vectors(chunk):
        x = prefix(block, index.dim, index.metric)
        d, i = faiss.knn(q, x, min(k, x.shape[0]), metric=metric)
        if d.shape[1] < k:  # a short last chunk: pad so the heap sees k columns
            d = np.pad(d, ((0, 0), (0, k - d.shape[1])), constant_values=-np.inf if ip else np.inf)
            i = np.pad(i, ((0, 0), (0, k - i.shape[1])), constant_values=-1)
        heap.add_result(np.ascontiguousarray(d, dtype=np.float32), np.ascontiguousarray(np.where(i >= 0, i + start, -1), dtype=np.int64))
        start += x.shape[0]
    heap.finalize()
    return heap.I.astype(np.int64)


def single_query_latency(index: MatryoshkaIndex, queries: np.ndarray, funnel: Funnel | str, *, threads: int = 1, warmup: int = 5) -> tuple[float, float]:
    """p50 and p99 (ms) of searching ``queries`` one at a time, as a server sends them.

    The loop over queries is the measurement harness, not the search: each iteration is one
    complete :meth:`MatryoshkaIndex.search` call with a batch of one.
    """
    for i in range(min(warmup, len(queries))):
        index.search(queries[i : i + 1], funnel=funnel, threads=threads)
    times = np.empty(len(queries))
    for i in range(len(queries)):
        t0 = time.perf_counter()
        index.search(queries[i : i + 1], funnel=funnel, threads=threads)
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)
