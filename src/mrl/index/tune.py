"""Auto-tuning a retrieval funnel: the fastest funnel whose recall@k against exact full-D meets a target.

:func:`tune` takes a :class:`~mrl.index.MatryoshkaIndex` and sample queries (held-out queries if
given, else a random sample of the stored vectors), computes the exact full-``D`` top-``k`` once
(streamed over the memory-mapped store), then explores funnels:

* first stage: prefix dim ``d_1`` x how it is scored (float32 flat, int8 flat, binary flat, HNSW),
* shortlist size ``k_1`` (geometric grid, scanned upward until the target is met), and for HNSW the
  search breadth ``ef`` (``k_1``, ``2 k_1``, ``4 k_1``),
* rerank shape: straight to ``D``; through one intermediate prefix ``d_2`` keeping ``k_1/4`` or
  ``k_1/8``; or through two (``4 d_1`` keeping ``k_1/4``, then ``16 d_1`` keeping ``k_1/16``).

Recall is exact for every explored point (stage-1 candidates are computed once per structure and
shortlist size and reused by every rerank shape). Latency per query is measured, with the index's
real code, as stage-1 time plus rerank time (medians of ``repeats`` runs, same ``threads`` as
serving); the winner is re-timed end to end. The result holds the whole explored recall/latency
frontier (Markdown table + matplotlib plot) and is stored in the index manifest by :func:`apply`.

Example:
    >>> result = tune(index, queries=heldout, k=10, target_recall=0.99)
    >>> apply(index, result); index.save("my-index")
    >>> print(result.table()); result.plot("frontier.png")
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.index import Funnel, MatryoshkaIndex, Stage
from mrl.index.funnel import prefix


def check_target(target_recall: float) -> float:
    if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0.0 < float(target_recall) <= 1.0:
        raise MRLError(f"target recall must be in (0, 1], got {target_recall!r}; e.g. 0.99 for recall@k >= 99%.")
    return float(target_recall)


def per_query_recall(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``|found_q ∩ truth_q| / k`` per query. Shape: ``[B, k]``, ``[B, k]`` ids -> ``[B]``."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2) & (found >= 0)
    return hits.sum(axis=1) / truth.shape[1]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of ``|found_q ∩ truth_q| / k``. Shape: ``[B, k]``, ``[B, k]`` ids."""
    return float(per_query_recall(found, truth).mean())


def exact_neighbors(index: MatryoshkaIndex, queries: np.ndarray, k: int, *, chunk: int = 1 << 15) -> np.ndarray:
    """Exact full-``D`` top-``k`` row numbers, streamed over the store in chunks (BLAS matmul).

    Shape: queries ``[B, D]`` -> rows ``[B, k]`` int64, best first.
    """
    q = prefix(queries, index.dim, index.metric)
    qq = (q * q).sum(axis=1, keepdims=True)
    best_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
    best_r = np.zeros((q.shape[0], 0), dtype=np.int64)
    start = 0
    for block in index.iter_vectors(chunk):
        x = prefix(block, index.dim, index.metric)
        s = q @ x.T
        if index.metric == "l2":
            s = 2 * s - (x * x).sum(axis=1)[None, :] - qq
        rows = np.broadcast_to(np.arange(start, start + x.shape[0]), s.shape)
        s, rows = np.concatenate([best_s, s], axis=1), np.concatenate([best_r, rows], axis=1)
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s, best_r = np.take_along_axis(s, part, 1), np.take_along_axis(rows, part, 1)
        start += x.shape[0]
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_r, order, 1)


@dataclass
class TunePoint:
    """One explored funnel: its spec, recall@k, measured ms/query and multiply-adds/query."""

    funnel: str
    recall: float
    ms_per_query: float
    flops: float
    resident_bytes_per_vector: float
    feasible: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TuneResult:
    funnel: Funnel | None
    recall: float
    ms_per_query: float
    qps: float
    flops: float
    exact_flops: float
    target_recall: float
    k: int
    sample: int
    query_source: str
    threads: int
    points: list[TunePoint] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "funnel": str(self.funnel) if self.funnel else None,
            "recall": self.recall,
            "ms_per_query": self.ms_per_query,
            "qps": self.qps,
            "flops": self.flops,
            "exact_flops": self.exact_flops,
            "flops_ratio": self.exact_flops / self.flops if self.flops else None,
            "target_recall": self.target_recall,
            "k": self.k,
            "sample": self.sample,
            "query_source": self.query_source,
            "threads": self.threads,
            "seconds": self.seconds,
            "frontier": [p.to_dict() for p in pareto(self.points)],
            "explored": len(self.points),
        }

    def table(self, *, all_points: bool = False) -> str:
        """Markdown table of the recall/latency frontier (or every explored point)."""
        rows = sorted(self.points if all_points else pareto(self.points), key=lambda p: p.ms_per_query)
        lines = ["| funnel | recall@k | ms/query | QPS | MACs/query | RAM B/vector | meets target |", "|---|---:|---:|---:|---:|---:|:---:|"]
        for p in rows:
            mark = " **(chosen)**" if self.funnel and p.funnel == str(self.funnel) else ""
            lines.append(f"| `{p.funnel}`{mark} | {p.recall:.4f} | {p.ms_per_query:.4f} | {1000 / p.ms_per_query:,.0f} | {p.flops:,.0f} | {p.resident_bytes_per_vector:.0f} | {'yes' if p.feasible else 'no'} |")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Recall@k vs ms/query of every explored funnel, the Pareto frontier, target and choice."""
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mrl.io import atomic_write

        fig, ax = plt.subplots(figsize=(7, 4.5))
        kinds: dict[str, list[TunePoint]] = {}
        for p in self.points:
            first = Funnel.parse(p.funnel).first
            kinds.setdefault(f"{first.precision}/{first.kind}", []).append(p)
        for name, pts in sorted(kinds.items()):
            ax.scatter([p.ms_per_query for p in pts], [p.recall for p in pts], s=14, alpha=0.6, label=f"stage 1: {name}")
        front = sorted(pareto(self.points), key=lambda p: p.ms_per_query)
        ax.plot([p.ms_per_query for p in front], [p.recall for p in front], "k-", lw=1, label="Pareto frontier")
        ax.axhline(self.target_recall, color="r", ls="--", lw=1, label=f"target {self.target_recall}")
        if self.funnel:
            ax.scatter([self.ms_per_query], [self.recall], marker="*", s=180, color="r", zorder=5, label=f"chosen: {self.funnel}")
        ax.set_xscale("log")
        ax.set_xlabel("ms per query (measured)")
        ax.set_ylabel(f"recall@{self.k} vs exact full-D")
        ax.set_title(f"Funnel auto-tuning ({self.sample} {self.query_source} queries, {self.threads} threads)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        atomic_write(path, buf.getvalue())
        return Path(path)


def pareto(points: Sequence[TunePoint]) -> list[TunePoint]:
    """Points no other point beats on both recall (higher) and latency (lower)."""
    out, best = [], -1.0
    for p in sorted(points, key=lambda p: (p.ms_per_query, -p.recall)):
        if p.recall > best:
            out.append(p)
            best = p.recall
    return out


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def default_space(dim: int, count: int, k: int) -> dict[str, Any]:
    """The funnels explored by default for an index of width ``dim`` holding ``count`` vectors."""
    dims = [d for d in (8, 16, 32, 64, 128) if d <= dim // 2]
    k1 = sorted({min(count, round(k * m)) for m in (2, 5, 10, 20, 40, 80, 160, 320) if k * m <= count and k * m > k})
    return {
        "first": [(d, "float32", "flat") for d in dims] + [(d, "int8", "flat") for d in dims] + [(d, "binary", "flat") for d in (64, 128, 256) if d <= dim // 2 or d == dim]
        + [(d, "float32", "hnsw") for d in (32,) if d <= dim // 2],
        "k1": k1,
        "mid_factors": (4, 16),  # d_2 = d_1 * factor (when < D)
        "mid_ratios": (4, 8),  # k_2 = k_1 / ratio (when >= k)
        "two_mids": True,  # also d_1 -> 4 d_1 (k_1/4) -> 16 d_1 (k_1/16) -> D
        "hnsw_ef_factors": (2, 4),  # HNSW first stages also try ef = k_1 * factor (besides ef = k_1)
    }


def tune(
    index: MatryoshkaIndex,
    *,
    queries: np.ndarray | None = None,
    k: int = 10,
    target_recall: float = 0.99,
    sample: int = 1000,
    seed: int = 0,
    space: dict[str, Any] | None = None,
    threads: int = 1,
    repeats: int = 3,
    confidence_level: float | None = None,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Find the lowest-latency funnel with recall@k >= ``target_recall`` (see module docstring).

    Args:
        index: a non-empty index.
        queries: ``[B, D]`` held-out queries; default: ``sample`` stored vectors chosen at random
            (each then finds itself; say so when reporting).
        k: results per query.
        target_recall: in (0, 1].
        sample: at most this many queries are used.
        space: override :func:`default_space` (keys ``first``, ``k1``, ``mid_factors``, ``mid_ratios``).
        threads: rerank threads (set FAISS's with ``faiss.omp_set_num_threads``), as when serving.
        repeats: timing repeats (median).
        confidence_level: if given (e.g. 0.95), a funnel qualifies only when the one-sided lower
            confidence bound of its mean recall over the sample queries (normal approximation)
            reaches the target, so the choice holds on new queries with that probability.
    """
    t_start = time.perf_counter()
    target = check_target(target_recall)
    if confidence_level is not None and not 0.5 <= confidence_level < 1.0:
        raise MRLError(f"confidence_level must be in [0.5, 1), e.g. 0.95; got {confidence_level}.")
    z = NormalDist().inv_cdf(confidence_level) if confidence_level is not None else 0.0
    log = log or (lambda _m: None)
    if index.count == 0:
        raise MRLError("cannot tune an empty index; add vectors first.")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= index.count:
        raise MRLError(f"k must be an integer in [1, {index.count}], got {k!r}.")
    rng = np.random.default_rng(seed)
    if queries is None:
        rows = np.sort(rng.choice(index.count, size=min(sample, index.count), replace=False))
        q = index.gather(rows, index.dim)
        source = "sampled corpus"
    else:
        q = index._check_vectors(queries, "tuning queries")  # the same validation as search
        if q.shape[0] > sample:
            q = q[np.sort(rng.choice(q.shape[0], size=sample, replace=False))]
        q = np.ascontiguousarray(q, dtype=np.float32)
        source = "held-out"
    log(f"exact full-D top-{k} of {q.shape[0]} {source} queries over {index.count} vectors")
    truth_rows = exact_neighbors(index, q, k)
    space = {**default_space(index.dim, index.count, k), **(space or {})}
    exact_flops = float(index.count * index.dim)
    points: list[TunePoint] = []
    best: TunePoint | None = None
    prebuilt = {fs.key for fs in index.first_stages()}
    # Larger prefixes first: they meet the target with small shortlists, and the early best lets the
    # scan skip shortlists of smaller prefixes whose stage 1 alone is already slower.
    for d1, precision, kind in sorted(space["first"], key=lambda t: (t[2] == "hnsw", -t[0])):
        stage = Stage(d1, 1, precision, kind)
        t0 = time.perf_counter()
        fs = index.build_first_stage(stage, persist=False)
        log(f"first stage {fs.key}: built in {time.perf_counter() - t0:.1f}s")
        res_bytes = 8 + fs.resident_bytes() / index.count  # int64 id + the structure; full vectors stay on disk
        shapes: list[tuple[tuple[int, float], ...]] = [()]
        for f_ in space["mid_factors"]:
            for r_ in space["mid_ratios"]:
                if d1 * f_ < index.dim:
                    shapes.append(((d1 * f_, r_),))
        if space.get("two_mids", True) and d1 * 16 < index.dim:  # three rerank stages
            shapes.append(((d1 * 4, 4), (d1 * 16, 16)))
        # HNSW: the search breadth ef is a knob of its own (a short list from a broad search).
        efs = [None] if kind != "hnsw" else [None, *space.get("hnsw_ef_factors", (2, 4))]
        plans = [(ef, si) for ef in efs for si in range(len(shapes))]
        done: set[tuple[Any, int]] = set()
        for k1 in space["k1"]:
            if len(done) == len(plans) or k1 > index.count:
                break
            for ef_f in efs:
                ef = None if ef_f is None else k1 * ef_f
                if all((ef_f, si) in done for si in range(len(shapes))):
                    continue
                stage1 = functools.partial(fs.search, q, k1, ef_search=ef)  # binds this iteration's structure, k1 and ef
                t1, cand = _median_time(stage1, 1)
                if best is not None and t1 * 1000.0 / q.shape[0] > 1.5 * best.ms_per_query:
                    done.update((ef_f, si) for si in range(len(shapes)))  # stage 1 alone is already slower; it only grows with k1
                    continue
                if repeats > 1:
                    t1 = float(np.median([t1, *(_median_time(stage1, 1)[0] for _ in range(repeats - 1))]))
                best = _try_shapes(index, q, truth_rows, cand, t1, shapes, done, ef_f, Stage(d1, k1, precision, kind, ef), k, target, res_bytes, threads, repeats, points, best, log, fs.last_distances, z)
        keep = _stage_key(best.funnel) if best is not None else None
        for key in {fs.key, *(st.key for st in index.first_stages())} - prebuilt - {keep}:
            index.drop_first_stage(key)  # free memory: only the best structure so far stays built
    result = TuneResult(None, 0.0, float("nan"), 0.0, float("nan"), exact_flops, target, k, int(q.shape[0]), source, threads, points)
    if best is not None:
        f = Funnel.parse(best.funnel)
        index.build_first_stage(f.first, persist=False)
        secs, (_, ids, st) = _median_time(lambda: index.search(q, funnel=f, threads=threads, return_stats=True), repeats)
        truth_ids = index.ids[truth_rows] if len(index.ids) else truth_rows
        result.funnel, result.recall = f, recall_at_k(ids, truth_ids)
        result.ms_per_query = 1000.0 * secs / q.shape[0]
        result.qps, result.flops = q.shape[0] / secs, st.flops / q.shape[0]  # measured HNSW distances
    result.seconds = time.perf_counter() - t_start
    return result


def _try_shapes(index: MatryoshkaIndex, q: np.ndarray, truth_rows: np.ndarray, cand: np.ndarray, t1: float, shapes: list, done: set, ef_f: Any, first: Stage, k: int, target: float, res_bytes: float, threads: int, repeats: int, points: list[TunePoint], best: TunePoint | None, log: Callable[[str], None], first_distances: float | None = None, z: float = 0.0) -> TunePoint | None:
    """Rerank one stage-1 candidate set with every rerank shape not yet satisfied; record the points."""
    k1 = first.k
    for si, shape in enumerate(shapes):
        if (ef_f, si) in done:
            continue
        stages = [first]
        if any(int(k1 // ratio) < k for _, ratio in shape):
            continue
        stages += [Stage(d2, int(k1 // ratio)) for d2, ratio in shape]
        stages.append(Stage(index.dim, k))
        try:
            f = Funnel(tuple(stages))
        except MRLError:
            continue
        t2, (_, found) = _median_time(lambda f=f: index.rerank_candidates(q, cand, f, threads=threads), repeats)
        per_q = per_query_recall(found, truth_rows)
        rec = float(per_q.mean())
        bound = rec - z * float(per_q.std()) / np.sqrt(len(per_q))
        pt = TunePoint(str(f), rec, 1000.0 * (t1 + t2) / q.shape[0], f.flops(index.count, first_distances), res_bytes, bool(bound >= target))
        points.append(pt)
        if pt.feasible:
            done.add((ef_f, si))  # a larger shortlist is only slower
            if best is None or pt.ms_per_query < best.ms_per_query:
                best = pt
                log(f"  new best {pt.funnel}: recall {rec:.4f}, {pt.ms_per_query:.3f} ms/query")
    return best


def _stage_key(spec: str) -> str:
    s = Funnel.parse(spec).first
    return f"{s.dim}-{s.precision}-{s.kind}"


def apply(index: MatryoshkaIndex, result: TuneResult) -> None:
    """Make the tuned funnel the index's default and record the tuning in its manifest (on save)."""
    if result.funnel is None:
        raise MRLError(f"no explored funnel reached recall@{result.k} >= {result.target_recall}; lower the target, pass more k1 values, or search exactly (funnel '{index.dim}:{result.k}').")
    index.build_first_stage(result.funnel.first, persist=True)
    index.funnel = result.funnel
    index.tuning = result.to_dict()
