"""One HNSW build for every prefix: a narrower graph that adopts a wider graph's links vs one built on its own.

``MatryoshkaIndex.build_first_stage`` gives a FAISS graph the links of a wider graph of the same degree
over the same rows when one is built (:meth:`mrl.index.first_stage.FaissHNSW.adopt_links`): only the
narrower prefix's codes are stored, no HNSW insertion runs. This benchmark checks that the adopted
graph searches as well as a graph built on that prefix at efConstruction 200, on the same rows and
queries, one thread: build seconds, and for each (efSearch, shortlist) the recall@10 after an exact
full-width rerank of the candidates (the funnel's ``PREFIX/int8/hnsw/efE:K1 -> D:10``) and the stage-1
microseconds per query, the two graphs timed alternately, median of ``--rounds``.

    python benchmarks/adopted_links.py --corpus /work/bench/enc-adapted/corpus-head \\
        --test /work/bench/enc-adapted/test --truth /work/bench/out/bench/exact-test.npy --wide 256 --narrow 128 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from first_stage_costs import add_eval_args, exact_rerank, load_eval

from mrl.index import MatryoshkaIndex
from mrl.index.first_stage import FirstStage
from mrl.index.tune import per_query_recall

SETTINGS = ((40, 40), (60, 40), (60, 60), (80, 60), (100, 80), (120, 100), (160, 160), (240, 240))


def _stage1(fs: FirstStage, q: np.ndarray, ef: int, k1: int) -> tuple[np.ndarray, float]:
    """(candidate rows [B, k1], stage-1 microseconds per query)."""
    t = time.perf_counter()
    rows = fs.search(q, k1, ef_search=ef)
    return rows, 1e6 * (time.perf_counter() - t) / len(q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_eval_args(ap, queries=2000)
    ap.add_argument("--wide", type=int, default=256)
    ap.add_argument("--narrow", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    faiss.omp_set_num_threads(1)
    x, q, truth = load_eval(a)  # normalised: the cosine index normalises every prefix anyway
    print(f"corpus {x.shape[0]} x {x.shape[1]}, {len(q)} queries, 1 thread, {a.rounds} rounds", flush=True)
    adopted_index = MatryoshkaIndex(x.shape[1])
    adopted_index.add(x)
    t = time.perf_counter()
    adopted_index.build_first_stage(f"{a.wide}/int8/hnsw:1")
    print(f"{a.wide}/int8/hnsw built in {time.perf_counter() - t:.1f} s", flush=True)
    print("| prefix | graph | build s | efSearch | shortlist | recall@10 (exact rerank) | stage 1 us/query (median) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for d in a.narrow:
        own_index = MatryoshkaIndex(x.shape[1])  # a fresh index per prefix: no wider graph to adopt from
        own_index.add(x)
        graphs = {}
        for name, index in (("adopted", adopted_index), ("own", own_index)):
            t = time.perf_counter()
            fs = index.build_first_stage(f"{d}/int8/hnsw:1")
            graphs[name] = (fs, time.perf_counter() - t)
            assert (fs.links_from is not None) == (name == "adopted")
        for ef, k1 in SETTINGS:
            times: dict[str, list[float]] = {n: [] for n in graphs}
            recall = {}
            for _ in range(a.rounds):
                for name, (fs, _) in graphs.items():
                    rows, us = _stage1(fs, q, ef, k1)
                    times[name].append(us)
                    recall[name] = float(per_query_recall(exact_rerank(x, q, rows)[0], truth).mean())
            for name, (_, build) in graphs.items():
                print(f"| {d} | {name} | {build:.1f} | {ef} | {k1} | {recall[name]:.4f} | {np.median(times[name]):.0f} |", flush=True)


if __name__ == "__main__":
    main()
