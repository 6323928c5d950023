"""Retrieval at scale: auto-tuned Matryoshka funnel vs FAISS IndexFlatIP and IndexHNSWFlat at full D.

    flock /tmp/mrl-cpu.lock .venv/bin/python benchmarks/retrieval_speed.py --model benchmarks/out/mrl-bench

One process, one run, the same thread count for everything (FAISS OpenMP threads = rerank threads).
Corpus: >= 1M vectors the MRL encoder produced from augmented Fashion-MNIST training images
(benchmarks/retrieval_corpus.py, cached). Queries: the 10k test images. Tuning queries: the 5k
validation images (held out). Metric: cosine (truncate, L2-normalise, inner product) everywhere.
Ground truth: exact full-D top-10 (IndexFlatIP on the normalised full vectors; its recall is 1).

Also the paper protocol on Fashion-MNIST (database = the 55k un-augmented training images,
queries = test): mAP@10 and 1-NN of the tuned funnel vs exact full-D, and the multiply-add ratio.
Writes benchmarks/out/retrieval/results.json, results.md and the tuning frontier (md + png).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_corpus import OUT, build

from mrl.data.fashion_mnist import load_fashion_mnist
from mrl.evaluate.metrics import retrieval_metrics
from mrl.index import Funnel, MatryoshkaIndex, Stage
from mrl.index.funnel import prefix
from mrl.index.tune import apply, default_space, recall_at_k, tune
from mrl.io import atomic_write, load_npy, write_json


def normalized_chunks(x: np.ndarray, chunk: int = 1 << 16):
    for s in range(0, x.shape[0], chunk):
        yield prefix(np.asarray(x[s : s + chunk]), x.shape[1], "cosine")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target-recall", type=float, default=0.99)
    ap.add_argument("--tune-sample", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=10000, help="Test queries used for timing/recall.")
    ap.add_argument("--hnsw-ef", default="16,32,64,128,256")
    ap.add_argument("--dtype", default="float32", help="Storage of the funnel's full vectors.")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--subset", type=int, default=None, help="Smoke test: use only the first N corpus vectors.")
    ap.add_argument("--hnsw-prefix-dims", default="32", help="Prefix dims whose HNSW graph the tuner may use as stage 1.")
    a = ap.parse_args()
    faiss.omp_set_num_threads(a.threads)
    T = a.threads
    paths = build(a.model, a.size, threads=T)
    corpus = load_npy(paths["corpus"], mmap=True)
    if a.subset:
        corpus = corpus[: a.subset]
    queries = np.ascontiguousarray(load_npy(paths["queries"])[: a.queries], dtype=np.float32)
    tuneq = np.ascontiguousarray(load_npy(paths["tune"]), dtype=np.float32)
    N, D = corpus.shape
    k = a.k
    qn = prefix(queries, D, "cosine")
    res: dict = {"N": N, "D": D, "k": k, "threads": T, "queries": int(queries.shape[0]), "tune_queries": a.tune_sample, "target_recall": a.target_recall, "corpus": json.loads(paths["meta"].read_text())}
    print(f"corpus {N} x {D}, {queries.shape[0]} test queries, threads {T}", flush=True)

    # ---- exact full-D flat (also the ground truth)
    def build_flat():
        ix = faiss.IndexFlatIP(D)
        for c in normalized_chunks(corpus):
            ix.add(c)
        return ix

    t_build, flat = timed(build_flat)
    t_search, (_, gt) = timed(lambda ix=flat: ix.search(qn, k))
    res["flat"] = {"build_s": t_build, "search_s": t_search, "qps": queries.shape[0] / t_search, "recall": 1.0, "ram_bytes_per_vector": D * 4}
    print(f"flat: build {t_build:.1f}s, {res['flat']['qps']:.1f} QPS", flush=True)
    del flat
    gc.collect()

    # ---- HNSW M=32 full-D
    def build_hnsw():
        ix = faiss.IndexHNSWFlat(D, 32, faiss.METRIC_INNER_PRODUCT)
        for c in normalized_chunks(corpus):
            ix.add(c)
        return ix

    t_build, hnsw = timed(build_hnsw)
    h = hnsw.hnsw
    hnsw_bytes = N * D * 4 + h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
    res["hnsw"] = {"build_s": t_build, "M": 32, "efConstruction": int(h.efConstruction), "ram_bytes_per_vector": hnsw_bytes / N, "sweep": []}
    print(f"hnsw: build {t_build:.1f}s", flush=True)
    for ef in [int(e) for e in a.hnsw_ef.split(",")]:
        h.efSearch = max(ef, k)
        faiss.cvar.hnsw_stats.reset()
        t, (_, ids) = timed(lambda ix=hnsw: ix.search(qn, k))
        r = recall_at_k(ids, gt)
        macs = faiss.cvar.hnsw_stats.ndis / queries.shape[0] * D
        res["hnsw"]["sweep"].append({"efSearch": ef, "qps": queries.shape[0] / t, "recall": r, "macs_per_query": macs})
        print(f"  hnsw ef={ef}: recall {r:.4f}, {queries.shape[0] / t:.0f} QPS", flush=True)
    del hnsw
    gc.collect()

    # ---- Matryoshka index: store once (memory-mapped), tune, search
    folder = a.out / f"index-{N}"
    idx = MatryoshkaIndex(D, metric="cosine", dtype=a.dtype)

    def build_store():
        for s in range(0, N, 1 << 17):
            idx.add(np.asarray(corpus[s : s + (1 << 17)]))
        idx.save(folder)

    t_store, _ = timed(build_store)
    del idx
    gc.collect()
    t_load, idx = timed(lambda: MatryoshkaIndex.load(folder))
    print(f"funnel store: written in {t_store:.1f}s, loaded (checksums verified) in {t_load:.1f}s", flush=True)
    space = default_space(D, N, k)
    space.first = [s for s in space.first if s.kind == "flat"] + [Stage(int(d), 1, "float32", "hnsw") for d in a.hnsw_prefix_dims.split(",")]
    t_tune, tr = timed(lambda: tune(idx, queries=tuneq, k=k, target_recall=a.target_recall, sample=a.tune_sample, space=space, threads=T, repeats=3, log=lambda m: print("  " + m, flush=True)))
    if tr.funnel is None:
        raise SystemExit("tuning found no funnel meeting the target; see the frontier")
    apply(idx, tr)
    t_fs, _ = timed(lambda: idx.save(folder))  # manifest + chosen first stage only: vectors are reused
    fs_key = f"{tr.funnel.first.dim}-{tr.funnel.first.precision}-{tr.funnel.first.kind}"
    idx = MatryoshkaIndex.load(folder, verify=False)
    # build time of the chosen first stage alone (rebuilt from the memory-mapped store)
    idx.drop_first_stage(fs_key)
    t_first_build, _ = timed(lambda: idx.build_first_stage(tr.funnel.first, persist=True))
    tuning_md = tr.table()
    atomic_write(a.out / "tuning.md", (tuning_md + "\n").encode())
    tr.plot(a.out / "tuning.png")
    res["tuning"] = tr.to_dict() | {"seconds": t_tune}
    print(f"tuned in {t_tune:.0f}s: {tr.funnel} (recall {tr.recall:.4f} on tuning queries)", flush=True)

    runs = []
    for early in (False, True):
        t, (_, ids, st) = timed(lambda early=early: idx.search(queries, k, early_exit=early, threads=T, return_stats=True))
        runs.append({"early_exit": early, "qps": queries.shape[0] / t, "recall": recall_at_k(ids, gt), "saved_fraction": st.saved_fraction, "rerank_saved_fraction": st.rerank_saved_fraction, "exited_after_stage": st.exited_after_stage})
        print(f"funnel {tr.funnel} early_exit={early}: recall {runs[-1]['recall']:.4f}, {runs[-1]['qps']:.0f} QPS, saved {100 * st.saved_fraction:.2f}% of all MACs, {100 * st.rerank_saved_fraction:.1f}% of rerank MACs", flush=True)
    ram = idx.resident_bytes(tr.funnel) / N
    # The fastest explored funnel that also keeps <= 1/8 of float32 full-D resident per vector.
    budget = D * 4 / 8
    lean = [p for p in tr.points if p.feasible and p.resident_bytes_per_vector <= budget]
    if lean:
        lp = min(lean, key=lambda p: p.ms_per_query)
        idx.build_first_stage(Funnel.parse(lp.funnel).first, persist=False)
        t, (_, ids) = timed(lambda: idx.search(queries, k, funnel=lp.funnel, threads=T))
        res["lean_funnel"] = {"spec": lp.funnel, "qps": queries.shape[0] / t, "recall": recall_at_k(ids, gt), "ram_bytes_per_vector": idx.resident_bytes(lp.funnel) / N, "tune_recall": lp.recall}
        print(f"lean funnel (<= {budget:.0f} B/vector) {lp.funnel}: recall {res['lean_funnel']['recall']:.4f}, {res['lean_funnel']['qps']:.0f} QPS", flush=True)
    res["funnel"] = {"spec": str(tr.funnel), "store_build_s": t_store, "first_stage_build_s": t_first_build, "load_s": t_load, "tune_s": t_tune, "save_after_tune_s": t_fs,
                     "runs": runs, "qps": runs[0]["qps"], "recall": runs[0]["recall"], "ram_bytes_per_vector": ram, "flops_per_query": tr.flops, "exact_flops_per_query": float(N * D), "dtype": a.dtype,
                     "disk_bytes_per_vector": D * np.dtype(a.dtype).itemsize + 8}
    f = res["funnel"]
    best_h = [s for s in res["hnsw"]["sweep"] if s["recall"] >= f["recall"]]
    hn = max(best_h, key=lambda s: s["qps"]) if best_h else max(res["hnsw"]["sweep"], key=lambda s: s["recall"])
    res["ratios"] = {"qps_vs_flat": f["qps"] / res["flat"]["qps"], "qps_vs_hnsw_equal_recall": f["qps"] / hn["qps"], "hnsw_point": hn, "hnsw_reaches_funnel_recall": bool(best_h),
                     "ram_vs_float32": f["ram_bytes_per_vector"] / (D * 4), "flops_ratio": float(N * D) / tr.flops}
    print(json.dumps(res["ratios"]), flush=True)

    # ---- paper protocol: database = train split (rows 0..n_train-1 of the corpus are the originals)
    data = load_fashion_mnist(None, val_size=5000)
    n_tr = min(len(data.train), N)  # the whole train split (fewer only in a --subset smoke test)
    db = MatryoshkaIndex(D, metric="cosine")
    db.add(np.asarray(corpus[:n_tr]))
    pf = a.out / "index-train"
    db.save(pf)
    db = MatryoshkaIndex.load(pf)
    ptr = tune(db, queries=tuneq, k=k, target_recall=a.target_recall, sample=a.tune_sample, threads=T, repeats=3)
    apply(db, ptr)
    _, ex_ids = db.search(queries, k, funnel=Funnel.exact(D, k), threads=T)
    _, fn_ids = db.search(queries, k, threads=T)
    ql = data.test.labels[: queries.shape[0]]
    m_ex = retrieval_metrics(data.train.labels[:n_tr][ex_ids], ql, (k,))
    m_fn = retrieval_metrics(data.train.labels[:n_tr][fn_ids], ql, (k,))
    res["paper_protocol"] = {"database": n_tr, "funnel": str(ptr.funnel), "exact": m_ex, "funnel_metrics": m_fn, "recall_vs_exact": recall_at_k(fn_ids, ex_ids), "flops_ratio": float(n_tr * D) / ptr.flops}
    print(json.dumps(res["paper_protocol"]), flush=True)
    res["max_rss_mb"] = rss_mb()
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "results.json", res)
    atomic_write(a.out / "results.md", (render(res) + "\n").encode())
    print(render(res))


def render(r: dict) -> str:
    f, fl, h, ra = r["funnel"], r["flat"], r["hnsw"], r["ratios"]
    hp = ra["hnsw_point"]
    lines = [
        f"| method | build (s) | QPS | recall@{r['k']} | RAM bytes/vector | QPS ratio (funnel / method) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| funnel `{f['spec']}` (auto-tuned) | {f['store_build_s']:.0f} store + {f['first_stage_build_s']:.0f} first stage (+ {f['tune_s']:.0f} tuning) | {f['qps']:,.0f} | {f['recall']:.4f} | {f['ram_bytes_per_vector']:.0f} | 1 |",
        f"| funnel, per-query early exit | same | {f['runs'][1]['qps']:,.0f} | {f['runs'][1]['recall']:.4f} | same | {f['qps'] / f['runs'][1]['qps']:.2f}x |",
    ]
    if "lean_funnel" in r:
        lf = r["lean_funnel"]
        lines.append(f"| funnel `{lf['spec']}` (fastest explored with <= 1/8 of float32 RAM) | - | {lf['qps']:,.0f} | {lf['recall']:.4f} | {lf['ram_bytes_per_vector']:.0f} | {f['qps'] / lf['qps']:.2f}x |")
    lines += [
        f"| FAISS IndexFlatIP, D={r['D']} (exact) | {fl['build_s']:.0f} | {fl['qps']:,.1f} | 1.0000 | {fl['ram_bytes_per_vector']:.0f} | **{ra['qps_vs_flat']:.1f}x** |",
    ]
    for s in h["sweep"]:
        mark = " (equal-recall point)" if s is hp or s == hp else ""
        lines.append(f"| FAISS IndexHNSWFlat M=32, D={r['D']}, efSearch={s['efSearch']}{mark} | {h['build_s']:.0f} | {s['qps']:,.0f} | {s['recall']:.4f} | {h['ram_bytes_per_vector']:.0f} | {f['qps'] / s['qps']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
