"""Pruning the tuner's search space: what a first-stage structure can at best achieve, before it is built.

Building the graphs and inverted files of the search space is most of a tuning's time, so
:func:`~mrl.index.tune.tune` asks two questions of each structure before building it:

1. **Can any shortlist of its prefix reach the target?** :func:`shortlist_recall` ranks the true
   full-``D`` top-``k`` of every tuning query among the *exact* ``d``-prefix scores of the whole
   corpus (one streamed BLAS pass per prefix). A funnel's final results are a subset of its stage-1
   candidates, so its recall is at most the share of the truth among them; an approximate or
   quantized structure over the same prefix holds, on average, no more of the truth than the exact
   top-``k_1`` does. :meth:`CostModel.min_k1` is thus the smallest shortlist worth trying (with a
   small slack for that "on average"), and a prefix whose largest shortlist misses the target is
   not built at all.
2. **Can it beat the best funnel measured so far?** :meth:`CostModel.bound_ms` is a lower bound on
   its batch ms/query at any setting that can meet the target: a stage-1 probe (the same structure
   built on a random sample of the corpus and searched with the shortlist ``k_1 >= min_k1`` and a
   breadth at least that: a graph searched over fewer nodes does no more work, a flat scan costs
   in proportion to the rows it scores) plus the first rerank of ``min_k1`` candidates, priced by
   the cheapest per-candidate rerank cost measured so far (scaled down in proportion to its
   prefix). A graph's probe, whose sample sits in cache, is charged the smallest factor by which a
   distance cost more in a built graph of its kind than in that graph's own probe (memory latency).
   Structures whose bound, discounted by :data:`SAFETY` for timing noise on a loaded
   machine, exceeds the best are recorded as skipped with both figures.

The same two facts prune inside a built structure's scan: shortlists below ``min_k1`` are not
tried, a stage-1 candidate set that holds less than the target share of the truth is reranked only
straight to ``D`` (for the frontier plot; no rerank shape can make it qualify), and once stage 1
plus the rerank bound is slower than the best, larger breadths and shortlists are dropped.

The yardstick is batch latency (split timing, as exploration measures it), also when the tuner
minimises single-query p99: the two rank funnels alike, and the end-to-end re-timing decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mrl.index import MatryoshkaIndex, Stage
from mrl.index.first_stage import FirstStage
from mrl.index.funnel import GRAPH_KINDS, prefix
from mrl.index.tune_result import SkippedStructure

SAFETY = 0.8  # prune when SAFETY x bound > best: a bound must exceed the best by 25 % (timing noise)
NDIS_SLACK = 0.75  # a graph may need this much fewer distances than another graph of the same degree at the same ef
RECALL_SLACK = 0.002  # an approximate shortlist may hold slightly more of the truth than the exact one


def _scores(q: np.ndarray, x: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores (higher is better, as the streamed pass computes them) and their rounding scale.

    Shape: ``[B, k, d]`` rows per query, ``[B, d]`` -> ``[B, k]``, ``[B, k]``.
    """
    dot = np.einsum("bkd,bd->bk", x, q)
    if metric == "l2":
        xx, qq = (x * x).sum(axis=2), (q * q).sum(axis=1, keepdims=True)
        return 2 * dot - xx - qq, xx + qq
    return dot, np.sqrt((x * x).sum(axis=2) * (q * q).sum(axis=1, keepdims=True))


def shortlist_recall(index: MatryoshkaIndex, queries: np.ndarray, truth_rows: np.ndarray, dims: list[int], k1s: list[int], *, chunk: int = 1 << 15) -> dict[int, np.ndarray]:
    """Mean share of the true top-``k`` in the exact ``d``-prefix top-``k_1``, per prefix and shortlist size.

    Each true neighbour's rank among the ``d``-prefix scores is the count of stored rows scoring
    better (one BLAS product per chunk of the store and block of queries; ties count in its favour).
    Shape: queries ``[B, D]``, truth_rows ``[B, k]`` -> ``{d: [len(k1s)]}``.
    """
    b, k = truth_rows.shape
    qb = max(1, (1 << 24) // (k * chunk))  # queries per block: about 16 M comparisons at a time
    out = {}
    for d in sorted(set(dims)):
        q = prefix(queries, d, index.metric)
        t, scale = _scores(q, prefix(index.gather(truth_rows.ravel(), d), d, index.metric).reshape(b, k, d), index.metric)
        t = t + 1e-5 * scale  # a row scoring the same as the neighbour (itself, to float32 rounding) does not count
        rank = np.zeros((b, k), dtype=np.int64)
        for block in index.iter_vectors(chunk):
            x = prefix(block, d, index.metric)
            sq = (x * x).sum(axis=1) if index.metric == "l2" else None
            for i in range(0, b, qb):
                s = q[i : i + qb] @ x.T  # [qb, n]
                if sq is not None:
                    s = 2 * s - sq[None, :] - (q[i : i + qb] ** 2).sum(axis=1, keepdims=True)
                rank[i : i + qb] += (s[:, None, :] > t[i : i + qb, :, None]).sum(axis=2)
        out[d] = np.array([(rank < k1).mean() for k1 in k1s])
    return out


def ivf_truth_cover(fs: FirstStage, queries: np.ndarray, truth_rows: np.ndarray, gather: Callable[[np.ndarray, int], np.ndarray], nprobes: list[int]) -> dict[int, float]:
    """Mean share of the true top-``k`` stored in the lists an IVF probes, per ``nprobe``.

    An IVF scores only the rows of its probed lists, so this bounds its shortlist recall at any
    ``k_1``. Shape: queries ``[B, D]``, truth_rows ``[B, k]`` -> ``{nprobe: share}``.
    """
    ivf = fs.native
    b, k = truth_rows.shape
    _, lists = ivf.quantizer.search(fs._encode(queries), max(nprobes))  # [B, max nprobe], nearest list first
    _, home = ivf.quantizer.search(fs._encode(gather(truth_rows.ravel(), fs.dim)), 1)  # each neighbour's list
    home = home.reshape(b, k, 1)
    return {p: float((home == lists[:, None, :p]).any(axis=2).mean()) for p in nprobes}


@dataclass
class CostModel:
    """Lower bounds on a funnel's batch latency, calibrated on what the tuning measured.

    ``recall``: :func:`shortlist_recall` per prefix over ``k1s``; reranks are recorded with
    :meth:`observe_rerank` as the tuner measures them.
    """

    index: MatryoshkaIndex
    queries: np.ndarray
    k1s: list[int]
    recall: dict[int, np.ndarray]
    target: float
    mid_factors: tuple[int, ...] = ()
    sample_rows: int = 0
    rerank_obs: list[tuple[int, float]] = field(default_factory=list)  # (first rerank dim, ms per candidate per query)
    graph_obs: list[tuple[int, int, float]] = field(default_factory=list)  # built graphs: (degree M, ef, distances per query)
    probe_cost: dict[str, float] = field(default_factory=dict)  # structure key -> ms per distance per query of its sample-built probe
    memory_factor: dict[str, list[float]] = field(default_factory=dict)  # graph kind -> a built graph's ms per distance / its probe's
    probe_seconds: float = 0.0

    def min_k1(self, d: int) -> int | None:
        """Smallest shortlist at prefix ``d`` whose exact share of the truth reaches the target (``None``: none does)."""
        r = self.recall.get(d)
        if r is None:
            return self.k1s[0]
        ok = np.flatnonzero(r >= self.target - RECALL_SLACK)
        return self.k1s[int(ok[0])] if len(ok) else None

    def best_recall(self, d: int) -> float:
        r = self.recall.get(d)
        return float(r[-1]) if r is not None and len(r) else 1.0

    def observe_rerank(self, first_rerank_dim: int, k1: int, ms_per_query: float) -> None:
        self.rerank_obs.append((first_rerank_dim, ms_per_query / k1))

    def rerank_bound(self, d1: int, k1: int) -> float:
        """ms/query of the cheapest first rerank of ``k1`` stage-1 candidates at prefix ``d1``.

        Every rerank shape gathers and scores all ``k1`` candidates at its first rerank prefix
        ``d2`` (``d1 x`` the smallest mid factor, or ``D``); a measured per-candidate cost at prefix
        ``d_m`` bounds the cost at ``d2 <= d_m`` from below by ``d2 / d_m`` of it (a per-row
        overhead only adds to it).
        """
        d2 = min([d1 * f for f in self.mid_factors if d1 * f < self.index.dim] + [self.index.dim])
        if not self.rerank_obs:
            return 0.0
        return k1 * min(c * min(1.0, d2 / dm) for dm, c in self.rerank_obs)

    def observe_graph(self, st: Stage, ef: int, distances: float, ms_per_query: float | None = None) -> None:
        """Record a built graph's search: its distances per query at breadth ``ef`` and, when its probe
        ran before it was built, how much more each distance costs in the whole graph than in the probe
        (:meth:`bound_ms` charges later probes of that kind the smallest such factor)."""
        self.graph_obs.append((st.graph_m, ef, distances))
        probe = self.probe_cost.get(st.key)
        if ms_per_query is not None and probe and distances > 0:
            self.memory_factor.setdefault(st.kind, []).append(ms_per_query / distances / probe)

    def stage1_probe(self, st: Stage, k1: int) -> tuple[float, float | None]:
        """ms/query of ``st`` built on a random sample of rows and searched for ``k1`` (breadth ``k1``),
        a lower bound on the full structure's stage 1 (flat: scaled to the corpus), and for graphs
        the distances per query it computed. ``(0, None)`` for IVF (its lists do not scale down with
        the sample)."""
        if st.kind == "ivf":
            return 0.0, None
        t0 = time.perf_counter()
        n = self.index.rows
        ns = min(n, max(4096, n // 10))
        rng = np.random.default_rng(1)
        rows = np.sort(rng.choice(n, size=ns, replace=False))
        fs = FirstStage.for_stage(st, self.index.metric)
        x = self.index.gather(rows, self.index.dim)
        if fs.needs_training:
            fs.train(x)
        fs.add(x)
        graph = st.kind in GRAPH_KINDS
        # a graph keeps its breadth (a smaller graph searched as wide does no more work); a flat scan
        # keeps its share of the corpus in the shortlist, so its heap work scales with the rows too
        kk = min(k1, ns) if graph else max(1, k1 * ns // n)
        times = []
        for _ in range(3):
            t1 = time.perf_counter()
            fs.search(self.queries, kk, ef_search=kk if graph else None)
            times.append(time.perf_counter() - t1)
        ms = 1000.0 * float(np.median(times)) / self.queries.shape[0]
        self.probe_seconds += time.perf_counter() - t0
        if graph and fs.work.distances:
            self.probe_cost[st.key] = ms / fs.work.distances
        return (ms, fs.work.distances) if graph else (ms * n / ns, None)

    def bound_ms(self, st: Stage, best_ms: float) -> tuple[float, int]:
        """Lower bound on the batch ms/query of the best funnel ``st`` can serve at the target, and its ``min_k1``.

        The rerank bound comes first; the stage-1 probe (a sample build) runs only when that alone
        does not already rule the structure out. A graph's probe is also priced per distance and
        charged the distances a full graph of the same degree already built needed at a breadth
        no larger (:data:`NDIS_SLACK` of them): the sample graph is smaller, so it needs fewer; and
        once a probed graph of its kind was built, the probe's cost per distance is scaled by the
        smallest measured whole-graph / probe ratio (:meth:`observe_graph`).
        """
        k1 = self.min_k1(st.dim)
        assert k1 is not None
        bound = self.rerank_bound(st.dim, k1)
        if SAFETY * bound > best_ms:
            return bound, k1
        ms, distances = self.stage1_probe(st, k1)
        ef = max(k1, 16)
        seen = [nd for m, e, nd in self.graph_obs if m == st.graph_m and e <= ef]
        if st.kind in GRAPH_KINDS and distances and seen:
            ms = max(ms, NDIS_SLACK * max(seen) * ms / distances)
        if st.kind in GRAPH_KINDS and self.memory_factor.get(st.kind):
            # the probe's few thousand rows sit in cache; a whole graph pays memory latency on each visit
            # (RESULTS: 12 ns per 128-d int8 distance streamed, 60 ns inside the graph). Charge the
            # smallest factor a built graph of this kind showed over its own probe: smaller prefixes
            # are more latency-bound, not less, so that factor does not overstate theirs.
            ms *= max(1.0, min(self.memory_factor[st.kind]))
        return bound + ms, k1

    def skip(self, st: Stage, best_ms: float | None, best_funnel: str, log: Callable[[str], None]) -> SkippedStructure | None:
        """Why ``st`` need not be built, or ``None`` to build it (``best_ms``: the fastest qualifying
        split timing so far, ``None`` before any funnel qualified)."""
        if self.min_k1(st.dim) is None:
            return SkippedStructure(st.key, "unreachable", shortlist_recall=self.best_recall(st.dim), min_k1=max(self.k1s))
        if best_ms is None:
            return None
        bound, k1 = self.bound_ms(st, best_ms)
        if SAFETY * bound > best_ms:
            return SkippedStructure(st.key, "bound", min_k1=k1, bound_ms=bound, best_ms=best_ms, best_funnel=best_funnel)
        log(f"building {st.key}: lower bound {bound:.3f} ms/query (shortlist >= {k1}) is within reach of the best {best_ms:.3f}")
        return None


def time_left(pace: dict[str, list[float]], todo: list[Stage]) -> float:
    """Seconds the structures ``todo`` would take at the mean pace of the built ones of their kind
    (of all built ones for a kind not built yet); those pruning will skip make it an overestimate."""
    everything = [s for v in pace.values() for s in v]
    mean = float(np.mean(everything)) if everything else 0.0
    return sum(float(np.mean(pace[st.kind])) if st.kind in pace else mean for st in todo)


_KIND_ORDER = {"hnsw": 0, "usearch": 1, "ivf": 2, "flat": 3}
_PRECISION_ORDER = {"int8": 0, "float16": 1, "float32": 2, "binary": 3}


def promise(st: Stage) -> tuple[int, int, int, str]:
    """Sort key: the structures likeliest to set a fast best first (graphs, larger prefixes, int8 codes),
    so the bounds bite early."""
    return (_KIND_ORDER.get(st.kind, 9), -st.dim, _PRECISION_ORDER.get(st.precision, 9), st.key)
