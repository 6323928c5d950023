"""The funnel's rerank stages over a store of full vectors, and the work they do.

:func:`run_reranks` takes stage-1 candidates (row numbers) and runs stages 2..n: per query block it
gathers the candidates' prefix columns from the store in one fancy-indexing call and scores them
with one batched matrix-vector product (BLAS) — per *block* of queries, never a Python loop per
query, so one query (what a server sends) runs the same few array calls as ten thousand.

:class:`SearchStats` reports multiply-adds and, per stage, what it scored and read per query and
the seconds it took, so a reader sees where the time goes and how far it is from a memory-bandwidth
bound (bytes read / bandwidth).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrl.embeddings import normalize_rows_
from mrl.index.funnel import Funnel, prefix

GATHER_BYTES_PER_BLOCK = 4 << 20  # gathered rows per query block: stays in the last-level cache


@dataclass
class SearchStats:
    """Work done by one search call. ``flops``: multiply-adds summed over queries; ``stages``: one
    entry per funnel stage with per-query ``candidates`` (in), ``distances`` (vectors scored),
    ``bytes`` (read) and total ``seconds`` (summed over rerank threads)."""

    queries: int = 0
    flops: float = 0.0
    flops_without_early_exit: float = 0.0
    rerank_flops_without_early_exit: float = 0.0
    exited_after_stage: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def saved_fraction(self) -> float:
        """Share of all multiply-adds (stage 1 included) that early exit skipped."""
        return 1.0 - self.flops / self.flops_without_early_exit if self.flops_without_early_exit else 0.0

    @property
    def rerank_saved_fraction(self) -> float:
        """Share of the rerank stages' multiply-adds that early exit skipped."""
        saved = self.flops_without_early_exit - self.flops
        return saved / self.rerank_flops_without_early_exit if self.rerank_flops_without_early_exit else 0.0

    @property
    def stage_seconds(self) -> list[float]:
        """``[stage 1, all rerank stages]`` seconds (one entry for a one-stage funnel)."""
        secs = [float(s["seconds"]) for s in self.stages]
        if len(secs) <= 1:
            return secs
        return [sum(secs)] if self.stages[1]["stage"].endswith("(scores)") else [secs[0], sum(secs[1:])]

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "flops": self.flops, "flops_without_early_exit": self.flops_without_early_exit, "saved_fraction": self.saved_fraction,
                "rerank_saved_fraction": self.rerank_saved_fraction, "exited_after_stage": self.exited_after_stage, "seconds": self.seconds, "stage_seconds": self.stage_seconds, "stages": self.stages}


def rerank(queries: np.ndarray, candidates: np.ndarray, gather: Callable[[np.ndarray, int], np.ndarray], dim: int, k: int, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Rescore each query's candidates on prefix ``dim`` and keep the best ``k``.

    Args:
        queries: ``[B, >= dim]`` float32 query vectors (raw; the prefix is normalised here for cosine).
        candidates: ``[B, K]`` int64 row numbers into the store (``-1`` = no candidate).
        gather: ``gather(rows [M], dim) -> [M, dim]`` float32 copy of the rows' first ``dim`` columns.
        dim, k: the prefix to score on and how many to keep (``k <= K``).

    Returns:
        (scores ``[B, k]`` float32, higher is better; rows ``[B, k]`` int64), best first. For
        ``metric="l2"`` the score is the negative squared distance, for ``"ip"`` the inner product.
    """
    B, K = candidates.shape
    k = min(k, K)
    complete = B == 0 or int(candidates.min()) >= 0
    rows = gather(candidates.ravel() if complete else np.maximum(candidates, 0).ravel(), dim).reshape(B, K, dim)
    q = prefix(queries, dim, metric)  # a normalised copy for cosine (safe for any finite magnitude)
    if metric == "cosine":
        normalize_rows_(rows)  # rows is a fresh gathered copy
    dots = np.matmul(rows, q[:, :, None])[:, :, 0]  # batched GEMV
    if metric in ("cosine", "ip"):
        scores = dots
    else:
        scores = 2.0 * dots - np.einsum("bkd,bkd->bk", rows, rows) - np.einsum("bd,bd->b", q, q)[:, None]
    scores = scores.astype(np.float32, copy=False)
    if not complete:
        scores[candidates < 0] = -np.inf
    if k < K:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, axis=1)
    else:
        part, top = None, scores
    order = np.argsort(-top, axis=1, kind="stable")
    best = order if part is None else np.take_along_axis(part, order, axis=1)
    out_rows = np.take_along_axis(candidates, best, axis=1)
    out_scores = np.take_along_axis(scores, best, axis=1)
    if not complete:
        out_rows = np.where(np.isfinite(out_scores), out_rows, -1)
    return out_scores, out_rows


def block_size(f: Funnel) -> int:
    """Queries per rerank block: about :data:`GATHER_BYTES_PER_BLOCK` of gathered float32 rows."""
    per_query = max([a.k * b.dim for a, b in zip(f.stages, f.stages[1:])] or [f.first.k * f.first.dim]) * 4
    return int(np.clip(GATHER_BYTES_PER_BLOCK // per_query, 1, 4096))


def run_reranks(q: np.ndarray, rows: np.ndarray, f: Funnel, gather: Callable[[np.ndarray, int], np.ndarray], metric: str, *, corpus_size: int, first_distances: float | None = None,
                itemsize: int = 4, batch_size: int | None = None, threads: int = 1, early_exit: bool = False) -> tuple[np.ndarray, np.ndarray, SearchStats]:
    """Stages 2..n of ``f`` (or, for a one-stage funnel, exact scores of stage 1's rows) on all queries.

    Shape: ``q [B, D]`` float32, ``rows [B, k_1]`` int64 -> (scores ``[B, k]``, rows ``[B, k]``, stats).
    ``corpus_size``/``first_distances``: for the multiply-add count (:meth:`Funnel.flops`);
    ``itemsize``: bytes per stored value (work accounting of the gathers).
    """
    B = q.shape[0]
    stats = SearchStats(queries=B)
    stats.flops = stats.flops_without_early_exit = f.flops(corpus_size, first_distances) * B
    stats.rerank_flops_without_early_exit = f.rerank_flops() * B
    bs = batch_size or block_size(f)
    scores = np.full((B, f.k), -np.inf, dtype=np.float32)
    out_rows = np.full((B, f.k), -1, dtype=np.int64)
    n_rr = max(len(f.stages) - 1, 1)

    def run(start: int) -> tuple[float, dict[str, int], list[float]]:  # one query block: writes a disjoint slice
        qb, cand = q[start : start + bs], rows[start : start + bs]
        if len(f.stages) == 1:
            t0 = time.perf_counter()
            s, r = rerank(qb, cand, gather, f.first.dim, f.first.k, metric)  # true scores of the exact result
            saved, exits, secs = 0.0, {}, [time.perf_counter() - t0]
        else:
            s, r, saved, exits, secs = _rerank_block(qb, cand, f, gather, metric, early_exit)
        scores[start : start + bs], out_rows[start : start + bs] = s, r
        return saved, exits, secs

    starts = range(0, B, bs)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(st) for st in starts]
    seconds = np.zeros(n_rr)
    for saved, exits, secs in parts:
        stats.flops -= saved
        seconds[: len(secs)] += secs
        for key, n in exits.items():
            stats.exited_after_stage[key] = stats.exited_after_stage.get(key, 0) + n
    pairs = list(zip(f.stages, f.stages[1:])) or [(f.first, f.first)]
    valid = (rows[:, : f.first.k] >= 0).sum(axis=1) if B else np.zeros(0)  # real candidates per query (a filter can leave fewer than k_1; -1 pads)
    scored = [float(np.minimum(valid, a.k).mean()) if B else 0.0 for a, _ in pairs]
    stats.stages = [{"stage": str(b) if len(f.stages) > 1 else f"{a.dim}:{a.k} (scores)", "candidates": a.k, "distances": scored[i], "bytes": scored[i] * b.dim * itemsize, "seconds": float(seconds[i])}
                    for i, (a, b) in enumerate(pairs)]
    return scores, out_rows, stats


def _rerank_block(qb: np.ndarray, cand: np.ndarray, f: Funnel, gather: Callable[[np.ndarray, int], np.ndarray], metric: str, early_exit: bool) -> tuple[np.ndarray, np.ndarray, float, dict[str, int], list[float]]:
    """Stages 2..n for one query block. Returns (scores, rows, multiply-adds saved, exits per stage, seconds per stage)."""
    k = f.k
    B = qb.shape[0]
    n_stages = len(f.stages)
    saved, exits, secs = 0.0, {}, []
    if not early_exit:
        for st in f.stages[1:]:
            t0 = time.perf_counter()
            s, cand = rerank(qb, cand, gather, st.dim, st.k, metric)
            secs.append(time.perf_counter() - t0)
        return s, cand, saved, exits, secs
    final_s = np.full((B, k), -np.inf, dtype=np.float32)
    final_r = np.full((B, k), -1, dtype=np.int64)
    active = np.arange(B)
    prev_top = cand[:, :k]
    for i in range(1, n_stages):
        st = f.stages[i]
        t0 = time.perf_counter()
        s, r = rerank(qb[active], cand, gather, st.dim, st.k, metric)
        secs.append(time.perf_counter() - t0)
        if i == n_stages - 1:
            final_s[active], final_r[active] = s[:, :k], r[:, :k]
            break
        top = r[:, :k]
        same = (np.sort(top, axis=1) == np.sort(prev_top, axis=1)).all(axis=1)
        if same.any():
            done = active[same]
            final_s[done], final_r[done] = s[same, :k], top[same]
            saved += float(sum(f.stages[j - 1].k * f.stages[j].dim for j in range(i + 1, n_stages)) * int(same.sum()))
            exits[str(st.dim)] = int(same.sum())
            active, r = active[~same], r[~same]
            if active.size == 0:
                break
        prev_top = r[:, :k]
        cand = r
    return final_s, final_r, saved, exits, secs
