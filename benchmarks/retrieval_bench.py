"""Retrieval at scale: the auto-tuned funnel vs the indexes people deploy, in one process, one run.

    # once per corpus (cached, checksummed): exact full-D reference and the peer indexes
    flock /work/coord/cpu.lock .venv/bin/python benchmarks/retrieval_bench.py reference --corpus ENC/corpus --test ENC/test --tune ENC/tune --out DIR
    flock /work/coord/cpu.lock .venv/bin/python benchmarks/retrieval_bench.py peers --corpus ENC/corpus --out DIR
    # the funnel, built and tuned by the CLI (store + first stages + tuning timed there)
    flock /work/coord/cpu.lock .venv/bin/mrl index build DIR/funnel --vectors ENC/corpus --target-recall 0.99 --queries ENC/tune
    # the table: every peer's sweep and the funnel, same process, same threads
    flock /work/coord/cpu.lock .venv/bin/python benchmarks/retrieval_bench.py table --corpus ENC/corpus --test ENC/test --out DIR --funnel-index DIR/funnel

Columns: QPS of one batch of all test queries; single-query p50/p99 (queries sent one at a time);
recall@k against the cached exact full-D ids (verified by checksum; the flat peer must reproduce
them); resident RAM per vector *measured* as the growth of the process's anonymous resident memory
(RssAnon) when the index is loaded (the funnel's full vectors are memory-mapped from disk: they show
up as file-backed pages, reported apart); build time (from the build's own record); per-query work
(vectors scored, bytes read) and the time those bytes take at the measured memory read bandwidth
(the scan limit). FAISS threads = rerank threads = ``--threads``; cosine similarity everywhere.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import retrieval_peers as peers

from mrl.encode import is_shard_folder, open_shards
from mrl.index import Funnel, MatryoshkaIndex
from mrl.index.funnel import prefix
from mrl.index.tune import per_query_recall
from mrl.io import atomic_write, load_npy, read_json, save_npy, write_json


class Corpus:
    """Full-D corpus vectors from a shard folder or a .npy (memory-mapped), optionally its first ``subset`` rows."""

    def __init__(self, path: Path, subset: int | None = None) -> None:
        if is_shard_folder(path):
            reader = open_shards(path)
            self.arrays = reader.arrays
            self.digest_src = json.dumps([e["sha256"] for e in reader.manifest["shards"]])
        else:
            self.arrays = [load_npy(path, mmap=True)]
            self.digest_src = sha_of_file(path)
        total = sum(a.shape[0] for a in self.arrays)
        self.n = min(subset, total) if subset else total
        self.dim = int(self.arrays[0].shape[1])
        self.digest = hashlib.sha256(f"{self.digest_src}|{self.n}".encode()).hexdigest()[:16]
        self.starts = np.cumsum([0] + [a.shape[0] for a in self.arrays])

    def chunks(self):
        left = self.n
        for a in self.arrays:
            if left <= 0:
                break
            yield a[: min(left, a.shape[0])]
            left -= a.shape[0]

    def rows(self, idx: np.ndarray) -> np.ndarray:
        seg = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty((idx.size, self.dim), dtype=np.float32)
        for s, a in enumerate(self.arrays):
            m = seg == s
            if m.any():
                out[m] = a[idx[m] - self.starts[s]]
        return out


def sha_of_file(path: Path) -> str:
    return peers.sha256_file(Path(path))


def load_vectors(path: Path) -> np.ndarray:
    x = open_shards(path).array() if is_shard_folder(path) else load_npy(path)
    return np.ascontiguousarray(x, dtype=np.float32)


def rss() -> dict[str, int]:
    """This process's resident memory (bytes): anonymous and file-backed."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:", "VmRSS:")):
            key, val = line.split(":")
            out[key] = int(val.split()[0]) * 1024
    return out


def read_bandwidth(gb: float = 1.0) -> float:
    """Single-thread memory read bandwidth (bytes/s): median of summing a ``gb`` GB float32 array."""
    x = np.ones(int(gb * (1 << 30) // 4), dtype=np.float32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        np.add.reduce(x)
        times.append(time.perf_counter() - t0)
    return x.nbytes / float(np.median(times))


# ---------------------------------------------------------------------------- exact reference
def exact_topk(corpus: Corpus, q: np.ndarray, k: int, dim: int | None = None) -> np.ndarray:
    """Exact top-``k`` rows on the ``dim``-prefix (default full D): FAISS BLAS kNN per corpus block, merged in a heap."""
    dim = dim or corpus.dim
    qn = prefix(q, dim, "cosine")
    heap = faiss.ResultHeap(qn.shape[0], k, keep_max=True)
    start = 0
    for block in peers.normalized(corpus.chunks(), dim):
        d, i = faiss.knn(qn, block, k, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(d, np.where(i >= 0, i + start, -1))
        start += block.shape[0]
    heap.finalize()
    return heap.I.astype(np.int64)


def reference(out: Path, corpus: Corpus, name: str, q: np.ndarray, k: int) -> np.ndarray:
    """The exact top-``k`` of ``q``: from ``out/exact-<name>.npy`` when its checksum and inputs match, else computed and cached."""
    path, meta_path = out / f"exact-{name}.npy", out / f"exact-{name}.json"
    key = {"corpus": corpus.digest, "queries_sha256": hashlib.sha256(np.ascontiguousarray(q).tobytes()).hexdigest(), "k": k}
    if meta_path.is_file() and path.is_file():
        meta = read_json(meta_path)
        if all(meta.get(a) == b for a, b in key.items()):
            if sha_of_file(path) != meta["sha256"]:
                raise SystemExit(f"{path} fails its checksum: delete it and rerun `reference`.")
            return load_npy(path)
    t0 = time.perf_counter()
    ids = exact_topk(corpus, q, k)
    save_npy(path, ids)
    write_json(meta_path, {**key, "sha256": sha_of_file(path), "seconds": time.perf_counter() - t0, "queries": int(q.shape[0])})
    return ids


# ---------------------------------------------------------------------------- measuring
def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def single_latency(fn, q: np.ndarray, n: int) -> tuple[float, float]:
    """p50/p99 ms of ``fn(q[i:i+1])`` over ``n`` queries sent one at a time (after 10 warm-up queries)."""
    for i in range(min(10, n)):
        fn(q[i : i + 1])
    t = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(q[i : i + 1])
        t[i] = time.perf_counter() - t0
    return float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 99) * 1e3)


def _entry_rows(a: argparse.Namespace, name: str) -> list[Any]:
    graph = name in peers.GRAPHS
    return list(a.ef) if a.ef and graph else list(peers.SWEEPS[name])


def table(a: argparse.Namespace) -> None:
    """Load every peer and funnel (measuring each one's resident memory as it loads), then time them
    all in ``--rounds`` interleaved rounds (batch QPS and single-query p50/p99 per round; the table
    reports the median round), so every ratio is measured side by side under the same load."""
    faiss.omp_set_num_threads(a.threads)
    corpus = Corpus(a.corpus, a.subset)
    q = load_vectors(a.test)[: a.queries]
    qn = prefix(q, corpus.dim, "cosine")
    k = a.k
    gt = reference(a.out, corpus, "test", q, k)[: q.shape[0]]
    bw = read_bandwidth()
    res: dict[str, Any] = {"N": corpus.n, "D": corpus.dim, "k": k, "threads": a.threads, "queries": int(q.shape[0]), "single_queries": a.single, "read_bandwidth_GBps": bw / 1e9,
                           "rounds": a.rounds, "corpus": str(a.corpus), "corpus_digest": corpus.digest, "peers": {}, "funnels": []}
    print(f"corpus {corpus.n} x {corpus.dim}, {q.shape[0]} test queries, {a.threads} threads, read bandwidth {bw / 1e9:.1f} GB/s, {a.rounds} rounds", flush=True)
    entries: list[dict[str, Any]] = []  # {batch: fn() -> (ids, work), single: fn(x), row: dict}
    held: list[Any] = []
    for name in a.peers:
        gc.collect()
        before = rss()
        ix, meta = peers.build_or_load(name, a.out, corpus, a.threads)
        ram = (rss()["RssAnon"] - before["RssAnon"]) / corpus.n
        held.append(ix)
        print(f"{name}: built in {meta['build_s']:.0f}s, {ram:.0f} B/vector resident", flush=True)
        p = {"describe": peers.describe(name, corpus.dim), "params": meta.get("params") or peers.params(name, corpus.n, corpus.dim), "build_s": meta["build_s"],
             "build_threads": meta.get("threads", a.threads), "ram_bytes_per_vector": ram, "sweep": []}
        res["peers"][name] = p
        for knob in _entry_rows(a, name):
            row: dict[str, Any] = {"knob": peers.knob_name(name, knob)}
            p["sweep"].append(row)
            entries.append({"label": f"{name} {row['knob']}", "row": row, "flat": name == "flat",
                            "batch": lambda name=name, ix=ix, knob=knob: peers.search(name, ix, qn, k, knob, a.threads),
                            "single": lambda x, name=name, ix=ix, knob=knob: peers.search(name, ix, x, k, knob, a.threads)})
    for fi, folder in enumerate(a.funnel_index):
        man = read_json(Path(folder) / "manifest.json")
        build = read_json(Path(folder) / "build.json") if (Path(folder) / "build.json").is_file() else None
        for si, spec in enumerate([man["funnel"]] + (list(a.funnel) if fi == 0 else [])):
            f = Funnel.parse(spec)
            gc.collect()
            before = rss()
            idx = MatryoshkaIndex.load(folder, verify=si == 0)  # checksums once per folder
            for fs in idx.first_stages():
                if fs.key != f.first.key:
                    idx.drop_first_stage(fs.key)  # measure only what this funnel keeps resident
            if f.first.key not in {fs.key for fs in idx.first_stages()}:
                raise SystemExit(f"{folder} holds no {f.first.key} first stage: build it there (`mrl index build --first-stage`) so its size is measured as loaded")
            gc.collect()
            anon = (rss()["RssAnon"] - before["RssAnon"]) / corpus.n
            idx.search(q[:200], funnel=f, threads=a.threads)  # warm the mapped pages of the path
            held.append(idx)
            efc = sorted({fs.ef_construction for fs in idx.first_stages() if fs.ef_construction})
            # a reload in the same process reuses freed allocations, so only a folder's first load measures RSS growth
            row = {"spec": spec, "index": str(folder), "ram_bytes_per_vector": anon, "ram_measured": si == 0,
                   "mapped_bytes_per_vector": (rss()["RssFile"] - before["RssFile"]) / corpus.n, "structure_bytes_per_vector": idx.resident_bytes(f) / corpus.n,
                   "params": f"first-stage graph efConstruction={efc[0]}" if efc else "-",
                   "tuning": man.get("tuning") if si == 0 else None, "build": build if si == 0 else None}
            res["funnels"].append(row)

            def batch(f=f, idx=idx):
                _, ids, st = idx.search(q, k, funnel=f, threads=a.threads, return_stats=True)
                return ids, st

            entries.append({"label": f"funnel {spec}", "row": row, "funnel": True, "batch": batch,
                            "single": lambda x, f=f, idx=idx: idx.search(x, k, funnel=f, threads=a.threads)})
    timings: dict[int, dict[str, list[float]]] = {i: {"qps": [], "p50_ms": [], "p99_ms": []} for i in range(len(entries))}
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds}", flush=True)
        for i, e in enumerate(entries):
            t, (ids, work) = timed(e["batch"])
            n_single = min(a.single, 50) if e.get("flat") else a.single
            p50, p99 = single_latency(e["single"], qn if not e.get("funnel") else q, n_single)
            timings[i]["qps"].append(q.shape[0] / t)
            timings[i]["p50_ms"].append(p50)
            timings[i]["p99_ms"].append(p99)
            if r == 0:
                row = e["row"]
                row["recall"] = float(per_query_recall(ids, gt).mean())
                if e.get("funnel"):
                    stages = [{**s, "us_per_query": 1e6 * s["seconds"] / q.shape[0], "scan_limit_us": 1e6 * s["bytes"] / bw} for s in work.stages]
                    row.update({"stages": stages, "distances": sum(s["distances"] for s in work.stages), "bytes": sum(s["bytes"] for s in work.stages)})
                else:
                    row.update(work)
                row["scan_limit_us"] = 1e6 * row["bytes"] / bw
                if e.get("flat") and row["recall"] < 0.9999:
                    raise SystemExit(f"the exact peer reproduces only {row['recall']:.4f} of the cached reference: the reference is stale or wrong")
            print(f"  {e['label']}: recall {e['row']['recall']:.4f}, {q.shape[0] / t:,.0f} QPS, p50 {p50:.3f} ms, p99 {p99:.3f} ms", flush=True)
    for i, e in enumerate(entries):
        e["row"].update({key: float(np.median(v)) for key, v in timings[i].items()})
        e["row"]["qps_rounds"] = timings[i]["qps"]
    del held
    res["max_rss_mb"] = rss()["VmRSS"] / 2**20
    write_json(a.out / f"table-{a.name}.json", res)
    atomic_write(a.out / f"table-{a.name}.md", (render(res) + "\n").encode())
    print(render(res))


def read_ids(folder: Path) -> list[str]:
    ids = open_shards(folder).ids()
    if ids is None:
        raise SystemExit(f"{folder} records no ids; encode the JSONL with its _id field")
    return ids


def quality(a: argparse.Namespace) -> None:
    """WordNet task through the funnel vs exact full-D (nDCG@10), and how much of the exact top-10 a
    short prefix keeps in its top-100 (the shortlist a funnel reranks) on the test queries."""
    from mrl.evaluate.ir import ir_metrics

    faiss.omp_set_num_threads(a.threads)
    corpus = Corpus(a.corpus, a.subset)
    res: dict[str, Any] = {"N": corpus.n, "corpus": str(a.corpus)}
    if a.wordnet is not None:
        row_of = {pid: i for i, pid in enumerate(read_ids(a.corpus)[: corpus.n])}
        qids = read_ids(a.wordnet)
        rel: dict[str, list[int]] = {}
        for line in Path(a.qrels).read_text().splitlines()[1:]:
            qid, cid, score = line.split("\t")
            if float(score) > 0 and cid in row_of:
                rel.setdefault(qid, []).append(row_of[cid])
        keep = [i for i, qid in enumerate(qids) if qid in rel]
        qw = load_vectors(a.wordnet)[keep]
        qrels = [rel[qids[i]] for i in keep]
        exact = exact_topk(corpus, qw, 10)
        res["wordnet"] = {"queries": len(keep), "exact": ir_metrics(exact, qrels, ks=(10,))}
        for fi, folder in enumerate(a.funnel_index):
            idx = MatryoshkaIndex.load(folder, verify=False)
            for spec in [str(idx.funnel)] + (list(a.funnel) if fi == 0 else []):
                _, ids = idx.search(qw, 10, funnel=Funnel.parse(spec), threads=a.threads)
                metrics = ir_metrics(ids, qrels, ks=(10,))
                metrics["recall_of_exact_top10"] = float(per_query_recall(ids, exact).mean())  # how much of the exact top-10 the funnel returns
                res["wordnet"][f"funnel {spec}"] = metrics
        print(json.dumps(res["wordnet"], indent=1), flush=True)
    if a.test is not None:
        q = load_vectors(a.test)[: a.queries]
        gt = reference(a.out, corpus, "test", q, 10)[: q.shape[0]]
        res["shortlist"] = {}
        for d in a.dims:
            short = exact_topk(corpus, q, 100, d)
            res["shortlist"][str(d)] = {str(m): float((gt[:, :, None] == short[:, None, :m]).any(axis=2).mean()) for m in (10, 50, 100)}
            print(f"prefix {d}: exact top-10 kept in the top-10/50/100 shortlist: {res['shortlist'][str(d)]}", flush=True)
    write_json(a.out / f"quality-{a.name}.json", res)


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or x != x else format(x, fmt)


def render(r: dict[str, Any]) -> str:
    k = r["k"]
    lines = [f"| method | build params | setting | build (s) | QPS ({r['queries'] / 1000:g}k batch) | single p50 (ms) | single p99 (ms) | recall@{k} | RAM B/vector | vectors scored / query | kB read / query | scan limit (us) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in r["funnels"]:
        b = f.get("build") or {}
        build = f"{b['seconds']:.0f}" if b.get("seconds") else "-"
        mapped = f" (+{f['mapped_bytes_per_vector']:.0f} mapped)" if f["mapped_bytes_per_vector"] > 1 else ""
        ram = f"{f['ram_bytes_per_vector']:.0f}{mapped}" if f.get("ram_measured", True) else f"{f['structure_bytes_per_vector']:.0f} (its structures; RSS not re-measured)"
        lines.append(f"| **funnel** | {f.get('params', '-')} | `{f['spec']}` | {build} | **{f['qps']:,.0f}** | {f['p50_ms']:.3f} | {f['p99_ms']:.3f} | {f['recall']:.4f} | {ram} | {f['distances']:,.0f} | {f['bytes'] / 1e3:,.1f} | {f['scan_limit_us']:.1f} |")
    for p in r["peers"].values():
        threads = p.get("build_threads", r["threads"])
        built = f"{p['build_s']:.0f}" + (f" ({threads} threads)" if threads != r["threads"] else "")
        for s in p["sweep"]:
            lines.append(f"| {p['describe']} | {p.get('params', '-')} | {s['knob']} | {built} | {s['qps']:,.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {s['recall']:.4f} | {p['ram_bytes_per_vector']:.0f} | "
                         f"{_num(s['distances'], ',.0f')} | {_num(s['bytes'] / 1e3, ',.1f')} | {_num(s['scan_limit_us'], '.1f')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["reference", "peers", "table", "quality"])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--test", type=Path)
    ap.add_argument("--tune", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subset", type=int, default=None, help="Use only the first N corpus rows.")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--single", type=int, default=1000, help="Queries timed one at a time (p50/p99).")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", nargs="*", default=list(peers.PEERS))
    ap.add_argument("--funnel-index", nargs="*", type=Path, default=[], help="Tuned index folders (their default funnel is measured).")
    ap.add_argument("--funnel", nargs="*", default=[], help="More funnel specs to measure on the first index (table and quality; their first stage must be saved in it).")
    ap.add_argument("--name", default="text")
    ap.add_argument("--rounds", type=int, default=1, help="table: interleaved timing rounds over every peer setting and funnel (the median round is reported).")
    ap.add_argument("--ef", type=int, nargs="*", default=None, help="table: efSearch values that replace the graph peers' sweep (e.g. a finer sweep around recall 0.99).")
    ap.add_argument("--wordnet", type=Path, help="quality: the encoded WordNet task queries (shard folder with ids).")
    ap.add_argument("--qrels", type=Path, help="quality: the WordNet qrels TSV (query-id, corpus-id, score).")
    ap.add_argument("--dims", type=int, nargs="*", default=[64, 128], help="quality: prefixes whose top-100 shortlist is checked.")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(a.threads)
    if a.step == "reference":
        corpus = Corpus(a.corpus, a.subset)
        for name, path in (("test", a.test), ("tune", a.tune)):
            if path is not None:
                t, ids = timed(lambda path=path, name=name: reference(a.out, corpus, name, load_vectors(path), a.k))
                print(f"exact reference {name}: {ids.shape} in {t:.0f}s", flush=True)
    elif a.step == "peers":
        corpus = Corpus(a.corpus, a.subset)
        for name in a.peers:
            if name == "flat":
                continue
            _, meta = peers.build_or_load(name, a.out, corpus, a.threads, load=False)
            print(f"{name}: build {meta['build_s']:.0f}s ({meta.get('bytes', 0) / corpus.n:.0f} B/vector on disk)", flush=True)
    elif a.step == "quality":
        quality(a)
    else:
        table(a)


if __name__ == "__main__":
    main()
