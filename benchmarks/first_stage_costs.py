"""Where a funnel's first stage spends its time: per-distance cost of each prefix structure, graph vs stream.

Issue 24 asks the funnel's first stage to earn its FLOP advantage with a fast distance kernel. This
benchmark measures, on the same rows and queries, one search thread:

* **graph search** per structure (the project's :class:`mrl.index.first_stage.FirstStage` kinds, built
  as the tuner builds them, efConstruction 200): microseconds per query, distances computed per query
  (FAISS ``hnsw_stats``, usearch's counters), hence **nanoseconds per distance**, and recall@10 after
  an exact full-width rerank of its candidates;
* the same structures on a **growing head of the corpus** (e.g. 8k, 20k, 82k rows): when the cost per
  distance grows with the working set while the arithmetic stays the same, the time goes to memory
  (pointer chasing between graph nodes), not to the kernel;
* **streaming** the same codes (a flat scan, :class:`FaissFlat`): the kernel's cost per distance when
  the codes arrive sequentially, the floor a faster SIMD kernel could reach.

This machine's VM exposes no hardware counters (``perf stat`` reports cache-misses "not supported"),
so cache misses are inferred from the working-set scaling, not counted.

    python benchmarks/first_stage_costs.py --corpus /work/bench/enc-adapted/corpus-head \\
        --test /work/bench/enc-adapted/test --truth /work/bench/out/bench/exact-test.npy --out /work/bench/out/costs.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_bench import load_vectors

from mrl.index.first_stage import FirstStage
from mrl.index.funnel import Funnel
from mrl.index.tune import per_query_recall

STRUCTURES = ("128/int8/hnsw", "128/int8/usearch/m16", "128/fp16/usearch/m16", "128/hnsw", "64/int8/hnsw", "256/int8/hnsw")


def build(spec: str, x: np.ndarray) -> tuple[FirstStage, float]:
    """A first stage over ``x [n, D]`` as :meth:`MatryoshkaIndex.build_first_stage` builds it; (structure, seconds)."""
    t = time.perf_counter()
    fs = FirstStage.for_stage(Funnel.parse(f"{spec}:1 -> {x.shape[1]}:1").first.structure, "cosine")
    if fs.needs_training:
        fs.train(x[np.sort(np.random.default_rng(0).choice(len(x), size=min(len(x), 131_072), replace=False))])
    fs.add(x)
    return fs, time.perf_counter() - t


def timed_search(fs: FirstStage, q: np.ndarray, k: int, ef: int | None, repeats: int) -> tuple[float, np.ndarray, float]:
    """Median seconds per query of one batch search, its rows ``[B, k]`` and distances per query."""
    secs = []
    for _ in range(repeats):
        t = time.perf_counter()
        rows = fs.search(q, k, ef_search=ef)
        secs.append(time.perf_counter() - t)
    return float(np.median(secs)) / len(q), rows, fs.work.distances


def add_eval_args(ap: argparse.ArgumentParser, *, queries: int) -> None:
    """The arguments every first-stage probe reads: the corpus, held-out queries and their exact top-10."""
    ap.add_argument("--corpus", type=Path, required=True, help="stored vectors (shard folder or .npy), [N, D]")
    ap.add_argument("--test", type=Path, required=True, help="held-out queries [Q, D]")
    ap.add_argument("--truth", type=Path, required=True, help="exact full-D top-10 rows of the queries over the whole corpus [Q, 10]")
    ap.add_argument("--queries", type=int, default=queries)


def load_eval(a: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corpus ``[N, D]``, the first ``--queries`` queries ``[Q, D]``, both L2-normalised float32; their truth rows ``[Q, 10]``)."""
    x = load_vectors(a.corpus)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = np.ascontiguousarray(load_vectors(a.test)[: a.queries], dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q, np.load(a.truth)[: a.queries, :10]


def exact_rerank(x: np.ndarray, q: np.ndarray, cand: np.ndarray, k: int = 10) -> tuple[np.ndarray, float]:
    """Rows of the ``k`` best candidates by full-width cosine (``x``, ``q`` normalised); (rows, seconds per query)."""
    t = time.perf_counter()
    out = np.full((len(q), k), -1, dtype=np.int64)
    for i in range(len(q)):
        c = cand[i][cand[i] >= 0]
        s = x[c] @ q[i]
        out[i, : min(k, len(c))] = c[np.argsort(-s)[:k]]
    return out, (time.perf_counter() - t) / len(q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_eval_args(ap, queries=5000)
    ap.add_argument("--structures", nargs="+", default=list(STRUCTURES))
    ap.add_argument("--efs", type=int, nargs="+", default=[40, 60, 80, 120], help="search breadth = candidates kept")
    ap.add_argument("--heads", type=int, nargs="+", default=[8192, 20480], help="smaller corpus heads for the working-set scaling (ef 60)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    faiss.omp_set_num_threads(1)
    x, q, truth = load_eval(a)
    rows: list[dict] = []

    def emit(rec: dict) -> None:
        rows.append(rec)
        print(json.dumps(rec), flush=True)

    for spec in a.structures:
        fs, build_s = build(spec, x)
        for ef in a.efs:
            sec, cand, dist = timed_search(fs, q, ef, ef, a.repeats)
            found, rerank_s = exact_rerank(x, q, cand)
            emit({"structure": spec, "rows": len(x), "build_s": round(build_s, 1), "ef": ef, "us_per_query": 1e6 * sec, "distances": dist,
                  "ns_per_distance": 1e9 * sec / max(dist, 1), "rerank_us": 1e6 * rerank_s, "recall@10": float(per_query_recall(found, truth).mean())})
        del fs
        for n in a.heads:
            head, _ = build(spec, x[:n])
            sec, _, dist = timed_search(head, q, 60, 60, a.repeats)
            emit({"structure": spec, "rows": n, "ef": 60, "us_per_query": 1e6 * sec, "distances": dist, "ns_per_distance": 1e9 * sec / max(dist, 1)})
        # streaming: the same codes scanned in order (flat), a few hundred queries
        flat_spec = spec.split("/")[0] + ("/" + spec.split("/")[1] if spec.split("/")[1] in ("int8", "fp16") else "")
        flat, _ = build(flat_spec, x)
        sec, _, dist = timed_search(flat, q[:200], 10, None, a.repeats)
        emit({"structure": flat_spec + " (flat scan)", "rows": len(x), "us_per_query": 1e6 * sec, "distances": dist, "ns_per_distance": 1e9 * sec / max(dist, 1)})
        del flat
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"corpus": str(a.corpus), "queries": len(q), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
