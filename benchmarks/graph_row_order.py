"""Does a locality order of the rows speed up a prefix graph's walk? (a probe for the first stage's layout)

Inside a graph most of a distance's cost is the wait for the neighbour's code (first_stage_costs.py).
Storing the rows so that neighbours sit near each other in memory shortens that wait: this probe
builds the funnel's first-stage graph (FAISS HNSW over the int8 ``--dim`` prefix, M=32,
efConstruction 200), then a copy whose rows are ordered by k-means cluster of their 64-d prefix
(FAISS ``permute_entries``: codes and links move together, results map back through the order), and
times stage 1 of both alternately (one thread, median of ``--rounds``) with the recall@10 after an
exact full-width rerank of the candidates. The library does not reorder rows yet; this measures
what it would buy.

    python benchmarks/graph_row_order.py --corpus /work/bench/enc-adapted/corpus --test /work/bench/enc-adapted/test \\
        --truth /work/bench/out123/bench/exact-test.npy --dim 256
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

from mrl.index.funnel import prefix
from mrl.index.recall import per_query_recall

SETTINGS = ((48, 20), (60, 30), (80, 40), (120, 80))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_eval_args(ap, queries=5000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    faiss.omp_set_num_threads(1)
    x, q, truth = load_eval(a)
    xd, qd = prefix(x, a.dim, "cosine"), prefix(q, a.dim, "cosine")
    graph = faiss.IndexHNSWSQ(a.dim, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 200
    graph.train(xd)
    t = time.perf_counter()
    graph.add(xd)
    print(f"corpus {x.shape[0]} x {x.shape[1]}, {len(q)} queries, 1 thread; {a.dim}-d int8 HNSW built in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    x64 = prefix(x, 64, "cosine")
    km = faiss.Kmeans(64, a.clusters, niter=10, seed=1)
    km.train(x64[np.random.default_rng(0).choice(len(x64), min(len(x64), 64 * a.clusters), replace=False)])
    _, cluster = km.index.search(x64, 1)
    order = np.argsort(cluster[:, 0], kind="stable").astype(np.int64)  # new position i holds row order[i]
    ordered = faiss.deserialize_index(faiss.serialize_index(graph))
    ordered.permute_entries(order)
    print(f"cluster order and permutation in {time.perf_counter() - t:.1f} s", flush=True)
    print("| efSearch | shortlist | rows | recall@10 (exact rerank) | stage 1 us/query (median) | rounds |")
    print("|---:|---:|---|---:|---:|---|")
    for ef, k1 in SETTINGS:
        times: dict[str, list[float]] = {"as built": [], "cluster order": []}
        recall = {}
        for _ in range(a.rounds):
            for name, index, to_row in (("as built", graph, None), ("cluster order", ordered, order)):
                index.hnsw.efSearch = ef
                t = time.perf_counter()
                _, found = index.search(qd, k1)
                times[name].append(1e6 * (time.perf_counter() - t) / len(q))
                rows = found if to_row is None else to_row[found]
                recall[name] = float(per_query_recall(exact_rerank(x, q, rows)[0], truth).mean())
        for name, ts in times.items():
            print(f"| {ef} | {k1} | {name} | {recall[name]:.4f} | {np.median(ts):.0f} | {', '.join(f'{v:.0f}' for v in ts)} |", flush=True)


if __name__ == "__main__":
    main()
