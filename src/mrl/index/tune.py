"""Auto-tuning a retrieval funnel: the fastest funnel whose recall@k against exact full-D meets a target.

:func:`tune` takes a :class:`~mrl.index.MatryoshkaIndex` and tuning queries (held-out queries if
given, else a random sample of the stored vectors), computes the exact full-``D`` top-``k`` once
(FAISS, streamed over the memory-mapped store), then explores funnels (:class:`SearchSpace`):

* first-stage structure: prefix dim ``d_1`` x storage (float32, fp16, int8, binary) x kind (flat,
  FAISS HNSW, FAISS IVF with a full or shorter coarse prefix; usearch HNSW when named in ``space``),
* shortlist size ``k_1`` (geometric grid, scanned upward until the target is met) and the search
  breadth (graph ``ef`` = ``k_1`` x factor; IVF ``nprobe``),
* rerank shape: straight to ``D``, or through one or two intermediate prefixes.

**The promise holds on unseen queries.** A funnel qualifies only when the one-sided lower
confidence bound (default 95 %) of its mean per-query recall reaches the target, and every re-timed
candidate is also scored on held-out queries the choice never saw (default: a fifth of the tuning
queries, set aside); the report shows tuned and held-out recall side by side.

**What a deployer optimises.** ``latency="batch"`` minimises ms/query over a batch of queries;
``latency="single"`` minimises the p99 of one query at a time (what a server sends). A RAM budget
(``max_ram_per_vector``: the int64 id plus the first-stage structure; the full vectors stay on disk,
memory-mapped) excludes larger structures; a budget no structure meets is refused, naming the
smallest found. Exploration times stage 1 and the reranks apart (one stage-1 search serves every
rerank shape); the feasible frontier is then re-timed end to end with the real search path, batch
and single-query, and those figures are the ones reported everywhere.

**Pruning (default).** Building the graphs and inverted files is most of a tuning's time, so a
structure is built only when it can matter (:mod:`mrl.index.tune_prune`): the exact prefix
shortlist of every tuning query says the smallest ``k_1`` each prefix needs (a prefix that cannot
reach the target is not built), and a lower bound on a structure's latency (a probe of it built on a
sample, plus the cheapest rerank measured so far) that already exceeds the best measured funnel
skips it. Skipped structures are listed in the result with the reason; ``prune=False`` scans
everything.

**One graph build for every prefix.** Graphs are explored widest prefix first; a narrower FAISS
graph of the same degree then takes the links of the wider one and stores only its own codes
(:meth:`~mrl.index.first_stage.FaissHNSW.adopt_links`), so a tuning builds one HNSW per degree.

Example:
    >>> result = tune(index, queries=tuning_queries, k=10, target_recall=0.99)
    >>> apply(index, result); index.save("my-index")
    >>> print(result.headline()); print(result.table()); result.plot("frontier.png")
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.index import Funnel, MatryoshkaIndex, Stage
from mrl.index.frontier import check_target
from mrl.index.funnel import GRAPH_KINDS
from mrl.index.recall import exact_neighbors, per_query_recall, recall_at_k, single_query_latency
from mrl.index.tune_prune import SAFETY, CostModel, ivf_truth_cover, promise, shortlist_recall, time_left
from mrl.index.tune_result import SkippedStructure, TunePoint, TuneResult, pareto

__all__ = ["SearchSpace", "TunePoint", "TuneResult", "apply", "check_target", "default_space", "exact_neighbors", "pareto", "per_query_recall", "recall_at_k", "single_query_latency", "tune"]

LATENCY_MODES = ("batch", "single")


@dataclass
class SearchSpace:
    """The funnels :func:`tune` explores.

    Args:
        first: first-stage structures (``Stage`` with any ``k``, or specs like ``"128/int8/hnsw"``).
        k1: shortlist sizes, scanned upward.
        mid_factors / mid_ratios: one intermediate rerank at ``d_1 * factor`` keeping ``k_1 / ratio``.
        two_mids: also ``d_1 -> 4 d_1 (k_1/4) -> 16 d_1 (k_1/16) -> D``.
        ef_factors: graph stages search with ``ef = k_1 * factor``.
        nprobes: IVF stages probe this many lists.
    """

    first: list[Stage]
    k1: list[int]
    mid_factors: tuple[int, ...] = (2, 4, 16)
    mid_ratios: tuple[int, ...] = (4, 8)
    two_mids: bool = True
    ef_factors: tuple[int, ...] = (1, 2, 4)
    nprobes: tuple[int, ...] = (4, 8, 16, 32, 64, 128)

    @classmethod
    def build(cls, dim: int, count: int, k: int, overrides: dict[str, Any] | SearchSpace | None = None) -> SearchSpace:
        """:func:`default_space` with ``overrides`` (a dict of fields; legacy keys accepted)."""
        if isinstance(overrides, SearchSpace):
            return overrides
        space = default_space(dim, count, k)
        for key, v in (overrides or {}).items():
            key = {"hnsw_ef_factors": "ef_factors"}.get(key, key)
            if key == "first":
                v = [_structure(s) for s in v]
            if not hasattr(space, key):
                raise MRLError(f"unknown search-space field {key!r}; fields: first, k1, mid_factors, mid_ratios, two_mids, ef_factors, nprobes.")
            setattr(space, key, v)
        return space

    def shapes(self, d1: int, dim: int) -> list[tuple[tuple[int, int], ...]]:
        """Rerank shapes after a ``d_1`` stage 1: ``((d_2, ratio), ...)`` before the final ``D``."""
        out: list[tuple[tuple[int, int], ...]] = [()]
        out += [((d1 * f, r),) for f in self.mid_factors for r in self.mid_ratios if d1 * f < dim]
        if self.two_mids and d1 * 16 < dim:
            out.append(((d1 * 4, 4), (d1 * 16, 16)))
        return out

    def breadths(self, s: Stage) -> list[int | None]:
        """Search-breadth settings of a structure: ef factors (graphs), nprobes (IVF), none (flat)."""
        if s.kind in GRAPH_KINDS:
            return list(self.ef_factors)
        if s.kind == "ivf":
            return [n for n in self.nprobes if n <= (s.nlist or 0)]
        return [None]


def _structure(s: Any) -> Stage:
    if isinstance(s, Stage):
        return s.structure
    if isinstance(s, str):
        return Funnel.parse(s if ":" in s else f"{s}:1").first.structure
    dim, precision, kind = s
    return Stage(int(dim), 1, precision, kind)


def ivf_lists(count: int) -> int:
    """About ``4 sqrt(N)`` lists, a power of two (FAISS's guideline), at least 39 vectors per list."""
    n = 1 << int(np.round(np.log2(max(4.0 * np.sqrt(count), 1.0))))
    return int(max(1, min(n, count // 39)))


def default_space(dim: int, count: int, k: int) -> SearchSpace:
    """The funnels explored by default for an index of width ``dim`` holding ``count`` vectors."""
    dims = [d for d in (8, 16, 32, 64, 128) if d <= dim // 2]
    first = [Stage(d, 1, p) for d in dims for p in ("float32", "int8")]
    first += [Stage(d, 1, "float16") for d in dims if d >= 32]
    first += [Stage(d, 1, "binary") for d in (64, 128, 256) if d <= dim // 2 or d == dim]
    # Graphs up to two thirds of the width: on 81,920 MiniLM passages a 256-d int8 graph needed 20-30 candidates for
    # recall@10 0.99 where the 128-d one needed 60-80, and was 1.2x faster (RESULTS, text-retrieval-ram). usearch is not
    # in the default space: its int8 graph ran at 0.73-0.79x FAISS's SQ8 graph on the same prefix and degree there, and
    # its fp16 graph alone took 105 s of a 354 s tuning; name it in `space` to explore it.
    graph_dims = [d for d in (32, 64, 128, 256) if d <= dim * 2 // 3]
    first += [Stage(d, 1, "int8", "hnsw") for d in graph_dims] + [Stage(d, 1, "float32", "hnsw") for d in graph_dims[:1]]
    if count >= 10_000:
        nlist = ivf_lists(count)
        ivf_dims = [d for d in graph_dims if d <= dim // 2]
        first += [Stage(d, 1, "int8", "ivf", nlist=nlist) for d in ivf_dims[-2:]]
        first += [Stage(d, 1, "int8", "ivf", nlist=nlist, coarse=max(d // 4, 8)) for d in ivf_dims[-1:]]
    k1 = sorted({round(k * m) for m in (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 320) if k < k * m <= count})
    return SearchSpace(first=first, k1=k1)


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


@dataclass
class _Explorer:
    """State of one tuning run: the queries, their truth, the target and everything measured so far."""

    index: MatryoshkaIndex
    q: np.ndarray
    truth_rows: np.ndarray
    target: float
    z: float
    threads: int
    repeats: int
    log: Callable[[str], None]
    points: list[TunePoint] = field(default_factory=list)
    best: TunePoint | None = None
    model: CostModel | None = None  # pruning (None: the exhaustive scan)
    best_ms: float = float("inf")  # the fastest qualifying split timing (what the bounds are calibrated on; re-timing changes best's own)
    best_funnel: str = ""

    def funnels(self, first: Stage, shapes: list[tuple[tuple[int, int], ...]], k: int) -> list[tuple[int, Funnel]]:
        """The valid funnels ``first -> shape -> D:k`` as ``(shape index, funnel)``."""
        out = []
        for si, shape in enumerate(shapes):
            if any(first.k // r < k for _, r in shape):
                continue
            try:
                out.append((si, Funnel((first, *(Stage(d, first.k // r) for d, r in shape), Stage(self.index.dim, k)))))
            except MRLError:
                continue
        return out

    def try_rerank_shapes(self, first: Stage, cand: np.ndarray, t1: float, shapes: list, todo: set[int], k: int, res_bytes: float, first_distances: float | None) -> set[int]:
        """Rerank one stage-1 candidate set with each rerank shape in ``todo``; record the points.

        Returns the shapes done with: those that met the target, and those already slower than the
        best (a larger shortlist would only be slower for either). When pruning, a candidate set
        holding less than the target share of the truth is reranked only straight to ``D`` (its
        point goes on the frontier plot): no rerank shape can make it qualify.
        """
        done = set()
        if self.model is not None and float(per_query_recall(cand, self.truth_rows).mean()) < self.target:
            todo = todo & {0}
        for si, f in self.funnels(first, shapes, k):
            if si not in todo:
                continue
            t2, (_, found) = _median_time(lambda f=f: self.index.rerank_candidates(self.q, cand, f, threads=self.threads), 1)
            if self.model is not None:
                self.model.observe_rerank(f.stages[1].dim, first.k, 1000.0 * t2 / self.q.shape[0])
            per_q = per_query_recall(found, self.truth_rows)
            rec = float(per_q.mean())
            bound = rec - self.z * float(per_q.std(ddof=1) if len(per_q) > 1 else 0.0) / np.sqrt(len(per_q))
            pt = TunePoint(str(f), rec, 1000.0 * (t1 + t2) / self.q.shape[0], f.flops(self.index.count, first_distances), res_bytes, bool(bound >= self.target), recall_bound=bound)
            self.points.append(pt)
            if pt.feasible or (self.best is not None and pt.ms_per_query > 1.5 * self.best.ms_per_query):
                done.add(si)
            if pt.feasible and pt.ms_per_query < self.best_ms:
                self.best_ms, self.best_funnel = pt.ms_per_query, pt.funnel
            if pt.feasible and (self.best is None or pt.ms_per_query < self.best.ms_per_query):
                self.best = pt
                self.log(f"  new best {pt.funnel}: recall {rec:.4f} (bound {bound:.4f}), {pt.ms_per_query:.3f} ms/query")
        return done

    def explore(self, structure: Stage, space: SearchSpace, k: int, res_bytes: float) -> None:
        """Scan shortlist sizes x search breadths x rerank shapes for one built structure.

        When pruning (:attr:`model`), shortlists below the prefix's ``min_k1`` are not tried, and a
        breadth whose stage 1 plus the rerank bound is already slower than the best is dropped with
        every larger breadth (graph ``ef`` and IVF ``nprobe`` only add work).
        """
        fs = self.index.build_first_stage(structure, persist=False)
        shapes = space.shapes(structure.dim, self.index.dim)
        todo = {b: set(range(len(shapes))) for b in space.breadths(structure)}
        k1s = space.k1
        if self.model is not None:
            low = self.model.min_k1(structure.dim)
            k1s = [k1 for k1 in sorted(space.k1) if low is not None and k1 >= low]
            if structure.kind == "ivf":  # probes whose lists hold too little of the truth: no shortlist helps
                cover = ivf_truth_cover(fs, self.q, self.truth_rows, self.index.gather, [b for b in todo if b is not None])
                for b, c in cover.items():
                    if c < self.target:
                        todo[b].clear()
        for k1 in k1s:
            if k1 > self.index.count or not any(todo.values()):
                break
            for b, left in todo.items():
                if not left:
                    continue
                ef = k1 * b if structure.kind in GRAPH_KINDS and b is not None else None
                nprobe = b if structure.kind == "ivf" else None
                first = replace(structure, k=k1, ef=ef if ef and ef > k1 else None, nprobe=nprobe)
                t1, cand = _median_time(functools.partial(fs.search, self.q, k1, ef_search=ef, nprobe=nprobe), 1)
                dist = None if structure.kind == "flat" else fs.work.distances
                ms1 = 1000.0 * t1 / self.q.shape[0]
                if self.model is not None and structure.kind in GRAPH_KINDS:
                    self.model.observe_graph(structure, max(k1, ef or 0, 16), fs.work.distances, ms1)
                if self.model is not None:
                    slow = SAFETY * (ms1 + self.model.rerank_bound(structure.dim, k1)) > self.best_ms
                    if slow and k1 != k1s[0]:
                        for b2, left2 in todo.items():
                            if b2 is None or b is None or b2 >= b:
                                left2.clear()
                        continue
                else:
                    # stage 1 alone already slower than the best: larger shortlists only grow it
                    slow = self.best is not None and ms1 > 1.5 * self.best.ms_per_query
                    if slow and k1 != space.k1[0]:
                        left.clear()
                        continue
                # the smallest shortlist is always recorded, so every built structure gets a point
                left -= self.try_rerank_shapes(first, cand, t1, shapes, left, k, res_bytes, dist)
                if slow:
                    for b2, left2 in todo.items():
                        if b2 == b or (self.model is not None and None not in (b, b2) and b2 >= b):
                            left2.clear()


def _split_queries(index: MatryoshkaIndex, queries: np.ndarray | None, heldout: np.ndarray | None, sample: int, holdout_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    if queries is None:
        n_ho = round(sample * holdout_fraction) if heldout is None else 0
        rows = np.sort(rng.choice(index.count, size=min(sample + n_ho, index.count), replace=False))
        perm = rng.permutation(len(rows))
        q = index.gather(rows[np.sort(perm[n_ho:])], index.dim)
        ho = index.gather(rows[np.sort(perm[:n_ho])], index.dim) if heldout is None else np.ascontiguousarray(index._check_vectors(heldout, "held-out queries"), dtype=np.float32)
        return q, ho, "sampled corpus"
    q = np.ascontiguousarray(index._check_vectors(queries, "tuning queries"), dtype=np.float32)
    if heldout is None and holdout_fraction > 0 and q.shape[0] >= 10:
        perm = rng.permutation(q.shape[0])
        n_ho = max(1, round(q.shape[0] * holdout_fraction))
        q, heldout = q[np.sort(perm[n_ho:])], q[np.sort(perm[:n_ho])]
    if q.shape[0] > sample:
        q = q[np.sort(rng.choice(q.shape[0], size=sample, replace=False))]
    if heldout is not None:
        heldout = np.ascontiguousarray(index._check_vectors(heldout, "held-out queries"), dtype=np.float32)
    return q, (heldout if heldout is not None else q[:0]), "held-out"


def tune(
    index: MatryoshkaIndex,
    *,
    queries: np.ndarray | None = None,
    heldout: np.ndarray | None = None,
    k: int = 10,
    target_recall: float = 0.99,
    sample: int = 1000,
    seed: int = 0,
    space: dict[str, Any] | SearchSpace | None = None,
    threads: int = 1,
    repeats: int = 3,
    confidence_level: float | None = 0.95,
    holdout_fraction: float = 0.2,
    latency: str = "batch",
    max_ram_per_vector: float | None = None,
    retime: int = 2,
    single_queries: int = 200,
    prune: bool = True,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Find the lowest-latency funnel whose recall@k meets ``target_recall`` (see module docstring).

    Args:
        index: a non-empty index.
        queries: ``[B, D]`` tuning queries; default: ``sample`` stored vectors chosen at random (each
            then finds itself; say so when reporting).
        heldout: ``[B', D]`` queries never used to choose; default: ``holdout_fraction`` of ``queries``.
        k: results per query. target_recall: in (0, 1].
        sample: at most this many tuning queries are used.
        space: a :class:`SearchSpace` or a dict overriding fields of :func:`default_space`.
        threads: rerank threads (set FAISS's with ``faiss.omp_set_num_threads``), as when serving.
        repeats: timing repeats of the end-to-end re-timing (median); exploration times once.
        confidence_level: a funnel qualifies when the one-sided lower confidence bound of its mean
            per-query recall (normal approximation) reaches the target; ``None``: the mean itself.
        latency: ``"batch"`` (ms/query over the batch) or ``"single"`` (p99 of one query at a time).
        max_ram_per_vector: bytes per vector (id + first-stage structure) a funnel may keep resident.
        retime: how many of each structure's fastest qualifying funnels are re-timed end to end
            (the choice is made among re-timed funnels only).
        single_queries: queries timed one at a time for p50/p99.
        prune: skip, without building them, structures that cannot reach the target or whose lower
            bound on latency already exceeds the best measured funnel, and prune inside each scan
            (:mod:`mrl.index.tune_prune`); the skipped ones are listed in the result with the
            reason. ``False``: the exhaustive scan.

    Raises:
        MRLError: bad arguments, or a RAM budget no explored structure meets.
    """
    t_start = time.perf_counter()
    target = check_target(target_recall)
    if confidence_level is not None and not 0.5 <= confidence_level < 1.0:
        raise MRLError(f"confidence_level must be in [0.5, 1), e.g. 0.95; got {confidence_level}.")
    if latency not in LATENCY_MODES:
        raise MRLError(f"latency must be one of {LATENCY_MODES}, got {latency!r}.")
    if max_ram_per_vector is not None and not max_ram_per_vector > 0:
        raise MRLError(f"max_ram_per_vector must be a positive number of bytes, got {max_ram_per_vector!r}.")
    log = log or (lambda _m: None)
    if index.count == 0:
        raise MRLError("cannot tune an empty index; add vectors first.")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= index.count:
        raise MRLError(f"k must be an integer in [1, {index.count}], got {k!r}.")
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise MRLError(f"sample must be a positive number of tuning queries, got {sample!r}.")
    rng = np.random.default_rng(seed)
    q, ho, source = _split_queries(index, queries, heldout, sample, holdout_fraction, rng)
    log(f"exact full-D top-{k} of {q.shape[0]} {source} tuning + {ho.shape[0]} held-out queries over {index.count} vectors")
    truth = exact_neighbors(index, np.concatenate([q, ho]), k)
    truth_rows, ho_truth = truth[: q.shape[0]], truth[q.shape[0] :]
    sp = SearchSpace.build(index.dim, index.count, k, space)
    z = NormalDist().inv_cdf(confidence_level) if confidence_level is not None else 0.0
    ex = _Explorer(index, q, truth_rows, target, z, threads, repeats, log)
    prebuilt = {fs.key for fs in index.first_stages()}
    ho_ids = index.ids[ho_truth] if len(ho) else None
    smallest: tuple[float, str] | None = None
    chosen: TunePoint | None = None
    # Graphs first (int8 before the wider codes), then IVF, then flat scans; larger prefixes first:
    # they meet the target with small shortlists, and the early best lets the rest be pruned.
    structures = sorted({s.structure for s in sp.first}, key=promise)
    k1s = sorted(sp.k1)
    if prune:
        t0 = time.perf_counter()
        dims = sorted({st.dim for st in structures})
        ex.model = CostModel(index, q, k1s, shortlist_recall(index, q, truth_rows, dims, k1s), target, tuple(sp.mid_factors))
        log(f"exact shortlist recall of the prefixes {dims} in {time.perf_counter() - t0:.1f}s: smallest shortlist per prefix "
            + ", ".join(f"{d}: {ex.model.min_k1(d) or '-'}" for d in dims))
    skipped: list[SkippedStructure] = []
    built: list[str] = []
    pace: dict[str, list[float]] = {}  # seconds per built structure (build, scan, re-timing), by kind
    t_explore = time.perf_counter()
    for i, st in enumerate(structures):
        if i:  # progress: structures done (built or skipped), and the time left at the pace of the built ones
            spent = time.perf_counter() - t_explore
            log(f"[{i}/{len(structures)} structures ({len(skipped)} skipped), {spent:.0f}s, about {time_left(pace, structures[i:]):.0f}s left]")
        t0 = time.perf_counter()
        skip = None
        if prune and st.key not in prebuilt:  # a structure already built costs nothing to keep
            assert ex.model is not None
            skip = ex.model.skip(st, ex.best_ms if ex.best is not None else None, ex.best_funnel, ex.log)
        if skip is not None:
            skipped.append(skip)
            log(f"skipped {st.key} ({i + 1}/{len(structures)}): {skip.describe()}")
            continue
        built.append(st.key)
        t_build = time.perf_counter()
        fs = index.build_first_stage(st, persist=False)
        res_bytes = 8 + fs.resident_bytes() / index.count  # int64 id + the structure; full vectors stay on disk
        links = getattr(fs, "links_from", None)
        log(f"first stage {fs.key} ({i + 1}/{len(structures)}): {res_bytes:.0f} B/vector, built in {time.perf_counter() - t_build:.1f}s" + (f" (the links of {links})" if links else ""))
        if smallest is None or res_bytes < smallest[0]:
            smallest = (res_bytes, fs.key)
        if max_ram_per_vector is None or res_bytes <= max_ram_per_vector:
            n0 = len(ex.points)
            ex.explore(st, sp, k, res_bytes)
            # re-time this structure's fastest qualifying funnels end to end while it is built, when
            # they are within reach of the best so far (split timing)
            mine = sorted((p for p in ex.points[n0:] if p.feasible), key=lambda p: p.ms_per_query)[:retime]
            log(f"  {st.key}: " + (f"fastest qualifying {mine[0].funnel} at {mine[0].ms_per_query:.3f} ms/query (split timing)" if mine else "no funnel qualified"))
            if chosen is not None and ex.best is not None:
                mine = [p for p in mine if p.ms_per_query <= 1.5 * ex.best.ms_per_query]
            for p in mine:
                _retime_point(index, p, q, ho, ho_ids, threads, repeats, single_queries, log)
            if mine:
                top = min(mine, key=lambda p: p.latency(latency))
                if chosen is None or top.latency(latency) < chosen.latency(latency):
                    chosen = top
        keep = Funnel.parse(chosen.funnel).first.key if chosen is not None else None
        for key in {st.key} - prebuilt - {keep}:
            index.drop_first_stage(key)  # free memory: only the best structure so far stays built
        pace.setdefault(st.kind, []).append(time.perf_counter() - t0)
    if max_ram_per_vector is not None and ((smallest is None and not skipped) or (smallest is not None and smallest[0] > max_ram_per_vector)):
        found = f"the smallest explored needs {smallest[0]:.0f} B/vector ({smallest[1]})" if smallest else "no structure was explored"
        raise MRLError(f"no first stage fits --max-ram-per-vector {max_ram_per_vector:g} B: {found}; raise the budget or explore smaller prefixes/precisions.")
    result = TuneResult(Funnel.parse(chosen.funnel) if chosen else None, target, k, int(q.shape[0]), int(ho.shape[0]), source, threads, float(index.count * index.dim),
                        latency, confidence_level, max_ram_per_vector, ex.points, skipped=skipped, built=built)
    result.seconds = time.perf_counter() - t_start
    return result


def _retime_point(index: MatryoshkaIndex, p: TunePoint, q: np.ndarray, ho: np.ndarray, ho_ids: np.ndarray | None, threads: int, repeats: int, single_queries: int, log: Callable[[str], None]) -> None:
    """Replace a point's split timing by end-to-end figures: batch ms/query, single-query p50/p99, held-out recall."""
    f = Funnel.parse(p.funnel)
    secs, _ = _median_time(lambda: index.search(q, funnel=f, threads=threads), repeats)
    p.ms_per_query, p.end_to_end = 1000.0 * secs / q.shape[0], True
    p.p50_ms, p.p99_ms = single_query_latency(index, q[:single_queries], f, threads=threads)
    if ho_ids is not None:
        p.heldout_recall = recall_at_k(index.search(ho, funnel=f, threads=threads)[1], ho_ids)
    held = "-" if p.heldout_recall is None else f"{p.heldout_recall:.4f}"
    log(f"  re-timed {p.funnel}: {p.qps:,.0f} QPS, single p50 {p.p50_ms:.3f} / p99 {p.p99_ms:.3f} ms, held-out recall {held}")


def apply(index: MatryoshkaIndex, result: TuneResult) -> None:
    """Make the tuned funnel the index's default and record the tuning in its manifest (on save)."""
    if result.funnel is None:
        budget = f" within {result.max_ram_per_vector:g} B/vector" if result.max_ram_per_vector else ""
        raise MRLError(f"no explored funnel reached recall@{result.k} >= {result.target_recall}{budget}; lower the target, pass more k1 values, or search exactly (funnel '{index.dim}:{result.k}').")
    index.build_first_stage(result.funnel.first, persist=True)
    index.funnel = result.funnel
    index.tuning = result.to_dict()
