"""RAM-bounded retrieval: every index held to the same resident budget per vector, and where each stops fitting.

"Resident" is what an index keeps in RAM to answer queries. The full float vectors may stay on disk,
memory-mapped, and be read only to rerank a shortlist — as the funnel does — so every low-RAM peer here
gets the same exact rerank: its own compressed structure in RAM finds ``c`` candidates, and
:func:`mrl.index.search.run_reranks` (the funnel's own rerank code, same block size) rescores them
on the full-D float vectors gathered from the funnel store's ``np.memmap``. Peers:

* ``hnsw-sq8`` FAISS ``HNSW32,SQ8`` (full-D 8-bit codes, efConstruction 200: retrieval_peers'
  ``hnsw-sq8`` without its in-RAM ``IndexRefineFlat``); ``hnsw16-sq8`` the same at M=16;
* ``hnsw-sq4`` / ``hnsw16-sq4`` FAISS ``HNSW32,SQ4`` / ``HNSW16,SQ4`` (full-D 4-bit codes);
* ``ivf-fs`` FAISS ``IVF{4 sqrt N},PQ{D/2}x4fs`` (4-bit PQ fast-scan; retrieval_peers' ``ivf-fs`` without its refine);
* ``usearch-i8`` usearch HNSW storing int8 (its defaults: connectivity 16, expansion_add 128).

Funnels: first-stage structures (``--first``, e.g. ``128/int8/hnsw/m16``) built by
:meth:`MatryoshkaIndex.build_first_stage` into one index folder (``OUT/funnel-ram``), searched as
``<structure>/ef<ef>:<c> -> D:10``; the tuned index's own funnel (``--funnel-index``) is timed as well.

Resident bytes per vector, two ways, both reported: the structure's serialized size (what its arrays
hold; FAISS and usearch read a file into exactly those arrays) and the growth of the process's
anonymous resident memory (``RssAnon``, after ``malloc_trim``) when that file is read. The funnel adds
its 8-byte id per vector. A config's resident bytes are the larger of the two; it *fits* a budget when they do.

Protocol: a sweep pass (recall of every setting on all test queries, one timed batch each; a config's
sweep stops once two of its settings reach 0.995) picks, per config, the two fastest settings at recall@10 >= ``--target`` (else its best-recall setting); those,
the tuned funnel and two in-RAM references are then timed in ``--rounds`` interleaved rounds (batch QPS
and single-query p50; medians). Projection: rows that fit ``--ram-gib`` GiB with ``--headroom`` left
free, and the RAM at 1M rows, from the measured per-vector bytes.

    nice -n 19 .venv/bin/python benchmarks/retrieval_ram.py build --corpus A/corpus-head --out O/ram --threads 1
    nice -n 19 .venv/bin/python benchmarks/retrieval_ram.py table --corpus A/corpus-head --test A/test --out O/ram --peer-cache O/bench \\
        --funnel-index O/funnel --queries 5000 --single 200 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import retrieval_bench as rb
import retrieval_peers as peers
from resident_memory import anon, measured_load, trim
from retrieval_ram_report import ivf_fixed_bytes, pick, render

from mrl.index import Funnel, MatryoshkaIndex
from mrl.index.funnel import prefix
from mrl.index.search import GATHER_BYTES_PER_BLOCK, run_reranks
from mrl.index.tune import per_query_recall
from mrl.io import atomic_write, read_json, sha256_file, write_json

ID_BYTES = 8  # the funnel's int64 id per vector (peers return row numbers)
GRAPH_SWEEP = [(32, 20), (48, 20), (48, 30), (48, 48), (64, 40), (64, 64), (80, 80), (96, 96), (128, 100), (160, 120), (192, 150), (256, 200)]  # (ef, c), about cheapest first
IVF_SWEEP = [(32, 40), (64, 40), (64, 80), (128, 80), (192, 80), (256, 80), (256, 160), (384, 160)]
FIRST = ("128/int8/hnsw", "128/int8/hnsw/m16", "256/int8/hnsw/m16", "256/int8/hnsw", "128/int8/usearch/m16")


@dataclass(frozen=True)
class RamPeer:
    """A compressed full-D index held in RAM whose candidates are reranked from the memory-mapped floats."""

    factory: str  # FAISS index_factory string, or "usearch-i8"
    describe: str
    kind: str = "hnsw"  # hnsw | ivf | usearch

    def params(self, n: int, dim: int) -> str:
        if self.kind == "usearch":
            return "connectivity=16, expansion_add=128 (defaults)"
        f = self.factory.format(nlist=peers.nlist_for(n), m=dim // 2)
        return f + (f", efConstruction={peers.EF_CONSTRUCTION}" if self.kind == "hnsw" else "")


RAM_PEERS = {
    "hnsw-sq8": RamPeer("HNSW32,SQ8", "FAISS HNSW-SQ8 + mmap exact rerank"),
    "hnsw16-sq8": RamPeer("HNSW16,SQ8", "FAISS HNSW16-SQ8 + mmap exact rerank"),
    "hnsw-sq4": RamPeer("HNSW32,SQ4", "FAISS HNSW-SQ4 + mmap exact rerank"),
    "hnsw16-sq4": RamPeer("HNSW16,SQ4", "FAISS HNSW16-SQ4 + mmap exact rerank"),
    "ivf-fs": RamPeer("IVF{nlist},PQ{m}x4fs", "FAISS IVF-PQ4 fast-scan + mmap exact rerank", kind="ivf"),
    "usearch-i8": RamPeer("usearch-i8", "usearch HNSW i8 + mmap exact rerank", kind="usearch"),
}
REFS = {"hnsw-m32": 48, "hnsw-sq8": (48, 2)}  # in-RAM references (floats resident): peer -> setting


# ---------------------------------------------------------------------------- builds
def _peer_paths(out: Path, name: str) -> tuple[Path, Path]:
    return out / "peers" / f"{name}.bin", out / "peers" / f"{name}.json"


def build_peer(name: str, a: argparse.Namespace, corpus: rb.Corpus) -> dict[str, Any]:
    """Build (or reuse, when corpus digest, params and size match) the RAM peer ``name``; its record."""
    spec = RAM_PEERS[name]
    path, meta_path = _peer_paths(a.out, name)
    prm = spec.params(corpus.n, corpus.dim)
    if meta_path.is_file() and path.is_file():
        meta = read_json(meta_path)
        if meta.get("corpus") == corpus.digest and meta.get("params") == prm and meta.get("bytes") == path.stat().st_size:
            return meta
    faiss.omp_set_num_threads(a.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    if spec.kind == "usearch":
        ix = peers._build("usearch-i8", corpus, a.threads)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        data = bytes(ix.save())
    else:
        nlist = peers.nlist_for(corpus.n)
        ix = faiss.index_factory(corpus.dim, spec.factory.format(nlist=nlist, m=corpus.dim // 2), faiss.METRIC_INNER_PRODUCT)
        if spec.kind == "hnsw":
            ix.hnsw.efConstruction = peers.EF_CONSTRUCTION
        ix.train(peers._train_sample(corpus, max(64 * nlist, 100_000) if spec.kind == "ivf" else 100_000))  # as retrieval_peers trains its peers
        for c in peers.normalized(corpus.chunks(), corpus.dim):
            ix.add(c)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        data = faiss.serialize_index(ix).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    meta = {"name": name, "params": prm, "corpus": corpus.digest, "rows": corpus.n, "dim": corpus.dim, "build_s": secs, "build_cpu_s": cpu, "threads": a.threads,
            "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    write_json(meta_path, meta)
    return meta


def build_funnel_structures(a: argparse.Namespace, corpus: rb.Corpus) -> dict[str, Any]:
    """First stages ``--first`` in the index folder ``OUT/funnel-ram`` (built once, saved after each); their build records."""
    folder, rec_path = a.out / "funnel-ram", a.out / "funnel-ram-builds.json"
    recs = read_json(rec_path) if rec_path.is_file() else {}
    if (folder / "manifest.json").is_file():
        if recs.get("corpus") != corpus.digest:
            raise SystemExit(f"{folder} was built from another corpus; move it away and rerun `build`.")
        idx = MatryoshkaIndex.load(folder, verify=False)
    else:
        idx = MatryoshkaIndex(corpus.dim)
        idx.add(rb.load_vectors(a.corpus)[: corpus.n])
        recs = {"corpus": corpus.digest, "rows": corpus.n, "structures": {}}
    faiss.omp_set_num_threads(a.threads)
    for s in a.first:
        key = Funnel.parse(f"{s}:1").first.key
        if key in recs["structures"] and key in {fs.key for fs in idx.first_stages()}:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        idx.build_first_stage(f"{s}:1")
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        idx.save(folder)
        recs["structures"][key] = {"structure": s, "build_s": secs, "build_cpu_s": cpu, "threads": a.threads}
        write_json(rec_path, recs)
        print(f"funnel first stage {s}: built in {secs:.0f}s ({cpu:.0f}s CPU)", flush=True)
    write_json(rec_path, recs)
    return recs


# ---------------------------------------------------------------------------- search entries
@dataclass
class Config:
    """One index configuration: its resident cost and a sweep of settings, each a ``batch(q) -> (ids, stage-1 distances/query)``."""

    name: str
    family: str  # funnel | peer | in-RAM
    describe: str
    params: str
    serialized_bpv: float
    rss_bpv: float
    build_s: float | None
    build_cpu_s: float | None = None
    fixed_bytes: float = 0.0
    settings: list[tuple[str, Callable[[np.ndarray], tuple[np.ndarray, float]]]] = field(default_factory=list)
    sweep: list[dict[str, Any]] = field(default_factory=list)


def _rerank(store: MatryoshkaIndex, q: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact full-D top-``k`` of candidate ``rows [B, c]`` from the store's memory-mapped floats (the funnel's rerank code)."""
    bs = max(1, GATHER_BYTES_PER_BLOCK // (rows.shape[1] * store.dim * 4))
    _, out, _ = run_reranks(q, np.ascontiguousarray(rows), Funnel.parse(f"{store.dim}:{k}"), store.gather, store.metric, corpus_size=store.rows, batch_size=bs, threads=1)
    return out


def _first(kind: str, ix: Any, qn: np.ndarray, c: int, knob: int) -> tuple[np.ndarray, float]:
    nq = max(len(qn), 1)
    if kind == "hnsw":
        ix.hnsw.efSearch = max(knob, c)
        st = faiss.cvar.hnsw_stats
        st.reset()
        _, rows = ix.search(qn, c)
        return rows, st.ndis / nq
    if kind == "ivf":
        ivf = faiss.extract_index_ivf(ix)
        ivf.nprobe = knob
        _, rows = ix.search(qn, c)
        return rows, knob * ix.ntotal / ivf.nlist  # fast-scan does not count: every code of the probed lists
    ix.expansion_search = max(knob, c)
    res = ix.search(qn, c, threads=1)
    if hasattr(res, "counts"):
        rows = np.where(np.arange(c)[None, :] < np.asarray(res.counts)[:, None], np.asarray(res.keys, dtype=np.int64), -1)
    else:
        rows = np.full((1, c), -1, dtype=np.int64)
        rows[0, : len(res.keys)] = res.keys
    return rows, res.computed_distances / nq


def peer_setting(kind: str, ix: Any, store: MatryoshkaIndex, knob: int, c: int, k: int) -> Callable[[np.ndarray], tuple[np.ndarray, float]]:
    def run(q: np.ndarray) -> tuple[np.ndarray, float]:
        rows, ndis = _first(kind, ix, prefix(q, store.dim, "cosine"), c, knob)
        return _rerank(store, q, rows.astype(np.int64, copy=False), k), ndis + c

    return run


def funnel_setting(idx: MatryoshkaIndex, spec: str, k: int) -> Callable[[np.ndarray], tuple[np.ndarray, float]]:
    def run(q: np.ndarray) -> tuple[np.ndarray, float]:
        _, ids, st = idx.search(q, k, funnel=spec, threads=1, return_stats=True)
        return ids, sum(s["distances"] for s in st.stages)

    return run


def ref_setting(name: str, ix: Any, knob: Any, k: int) -> Callable[[np.ndarray], tuple[np.ndarray, float]]:
    def run(q: np.ndarray) -> tuple[np.ndarray, float]:
        ids, work = peers.search(name, ix, prefix(q, q.shape[1], "cosine"), k, knob, 1)
        return ids, work["distances"]

    return run


def _knob_label(kind: str, knob: int, c: int) -> str:
    return f"nprobe={knob}, c={c}" if kind == "ivf" else f"ef={max(knob, c)}, c={c}"


def _stage_key(file: str) -> str:
    """``first.<generation>.<key>.faiss`` -> ``<key>`` (how :mod:`mrl.index.persist` names a first stage's file)."""
    return file.split(".", 2)[2].rsplit(".", 1)[0]


def load_configs(a: argparse.Namespace, corpus: rb.Corpus, k: int) -> tuple[list[Config], list[Any]]:
    """Every config with its measured resident bytes; also the objects to keep alive while timing."""
    n, dim = corpus.n, corpus.dim
    held: list[Any] = []
    configs: list[Config] = []
    recs = read_json(a.out / "funnel-ram-builds.json")
    store = MatryoshkaIndex.load(a.out / "funnel-ram", verify=True)
    held.append(store)
    man = read_json(a.out / "funnel-ram" / "manifest.json")
    files = {_stage_key(e["file"]): e for e in man["first_stages"]}
    sweep_c = [(ef, c) for ef, c in GRAPH_SWEEP if c >= k]
    for key, rec in recs["structures"].items():
        e = files[key]
        path = a.out / "funnel-ram" / e["file"]
        obj, rss_bpv = measured_load(path, e["kind"] == "usearch", n)
        del obj
        cfg = Config(f"funnel {rec['structure']}", "funnel", f"funnel: {rec['structure']} graph -> exact {dim}-d rerank (mmap)", f"{e['kind']} efConstruction={e.get('ef_construction')}",
                     e["bytes"] / n + ID_BYTES, rss_bpv + ID_BYTES, rec["build_s"], rec.get("build_cpu_s"))
        for ef, c in sweep_c:
            cfg.settings.append((f"`{rec['structure']}/ef{max(ef, c)}:{c} -> {dim}:{k}`", funnel_setting(store, f"{rec['structure']}/ef{max(ef, c)}:{c} -> {dim}:{k}", k)))
        configs.append(cfg)
    for folder in a.funnel_index:
        fman = read_json(Path(folder) / "manifest.json")
        if int(fman["rows"]) != n:
            print(f"{folder} holds {fman['rows']} rows, not {n}: skipped", flush=True)
            continue
        fidx = MatryoshkaIndex.load(folder, verify=True)
        held.append(fidx)
        fs0 = Funnel.parse(fman["funnel"]).first
        e = next(e for e in fman["first_stages"] if _stage_key(e["file"]) == fs0.key)
        obj, rss_bpv = measured_load(Path(folder) / e["file"], e["kind"] == "usearch", n)
        del obj
        struct = str(fs0.structure).rsplit(":", 1)[0]
        build = read_json(Path(folder) / "build.json") if (Path(folder) / "build.json").is_file() else {}
        cfg = Config(f"funnel {struct} (tuned index)", "funnel", f"funnel, tuned: `{fman['funnel']}`", f"{e['kind']} efConstruction={e.get('ef_construction')}; chosen by `--recall-target 0.99` (build time = store + tuning)",
                     e["bytes"] / n + ID_BYTES, rss_bpv + ID_BYTES, build.get("seconds"))
        cfg.settings.append((f"`{fman['funnel']}` (tuned)", funnel_setting(fidx, fman["funnel"], k)))  # its structure is swept in OUT/funnel-ram
        configs.append(cfg)
    for name in a.peers:
        spec = RAM_PEERS[name]
        path, meta_path = _peer_paths(a.out, name)
        if not meta_path.is_file():
            raise SystemExit(f"RAM peer {name} is not built: run `build` first.")
        meta = read_json(meta_path)
        if meta.get("corpus") != corpus.digest or sha256_file(path) != meta["sha256"]:
            raise SystemExit(f"{path} does not match the corpus or fails its checksum: rerun `build`.")
        ix, rss_bpv = measured_load(path, spec.kind == "usearch", n)
        held.append(ix)
        fixed = ivf_fixed_bytes(n, dim) if spec.kind == "ivf" else 0.0
        cfg = Config(f"peer {name}", "peer", spec.describe, meta["params"], meta["bytes"] / n, rss_bpv, meta["build_s"], meta.get("build_cpu_s"), fixed_bytes=fixed)
        knobs = IVF_SWEEP if spec.kind == "ivf" else sweep_c
        for knob, c in knobs:
            cfg.settings.append((_knob_label(spec.kind, knob, c), peer_setting(spec.kind, ix, store, knob, c, k)))
        configs.append(cfg)
    for name, knob in REFS.items() if a.peer_cache else ():
        if not (a.peer_cache / "peers" / f"{name}.bin").is_file():
            continue
        trim()
        a0 = anon()
        ix, meta = peers.build_or_load(name, a.peer_cache, corpus, a.threads)
        trim()
        held.append(ix)
        cfg = Config(f"in-RAM {name}", "in-RAM", peers.describe(name, dim) + " (floats in RAM)", meta["params"], meta["bytes"] / n, (anon() - a0) / n, meta["build_s"])
        cfg.settings.append((peers.knob_name(name, knob), ref_setting(name, ix, knob, k)))
        configs.append(cfg)
    return configs, held


# ---------------------------------------------------------------------------- the table
def table(a: argparse.Namespace) -> dict[str, Any]:
    faiss.omp_set_num_threads(a.threads)
    corpus = rb.Corpus(a.corpus, a.subset)
    q = rb.load_vectors(a.test)[: a.queries]
    k = a.k
    gt = rb.reference(a.out, corpus, "test", q, k)[: q.shape[0]]
    warm = np.ones((256, 256), dtype=np.float32)
    _ = warm @ warm  # BLAS buffers and thread pools exist before any RSS is measured
    configs, held = load_configs(a, corpus, k)
    print(f"corpus {corpus.n} x {corpus.dim}, {q.shape[0]} test queries, {a.threads} thread(s); {len(configs)} configs", flush=True)
    # sweep pass: recall of every setting (one timed batch), stopping a config once two settings reach 0.995
    for cfg in configs:
        good = 0
        for label, fn in cfg.settings:
            fn(q[:50])  # warm the mapped pages and the code path
            t, (ids, ndis) = rb.timed(lambda fn=fn: fn(q))
            rec = float(per_query_recall(ids, gt).mean())
            cfg.sweep.append({"setting": label, "recall": rec, "qps": q.shape[0] / t, "scored": ndis, "fn": fn})
            print(f"  sweep {cfg.name} {label}: recall {rec:.4f}, {q.shape[0] / t:,.0f} QPS", flush=True)
            good += rec >= 0.995
            if good >= 2:
                break
    entries = [(cfg, s) for cfg in configs for s in (cfg.sweep if cfg.family == "in-RAM" else pick(cfg.sweep, a.target))]
    for cfg in configs:  # the tuned funnel's own spec is always timed
        tuned = cfg.sweep[0]
        if "(tuned)" in tuned["setting"] and not any(s is tuned for _, s in entries):
            entries.append((cfg, tuned))
    timings = {id(s): {"qps": [], "p50_ms": [], "p99_ms": []} for _, s in entries}
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds}", flush=True)
        for cfg, s in entries:
            t, _ = rb.timed(lambda s=s: s["fn"](q))
            p50, p99 = rb.single_latency(lambda x, s=s: s["fn"](x), q, a.single)
            timings[id(s)]["qps"].append(q.shape[0] / t)
            timings[id(s)]["p50_ms"].append(p50)
            timings[id(s)]["p99_ms"].append(p99)
            print(f"  {cfg.name} {s['setting']}: {q.shape[0] / t:,.0f} QPS, p50 {p50:.3f} / p99 {p99:.3f} ms", flush=True)
    res: dict[str, Any] = {"N": corpus.n, "D": corpus.dim, "k": k, "queries": int(q.shape[0]), "single_queries": a.single, "rounds": a.rounds, "threads": a.threads,
                           "target": a.target, "budgets": a.budgets, "ram_gib": a.ram_gib, "headroom": a.headroom, "corpus": str(a.corpus), "corpus_digest": corpus.digest, "configs": []}
    for cfg in configs:
        timed_rows = []
        for c2, s in entries:
            if c2 is cfg:
                tm = timings[id(s)]
                timed_rows.append({"setting": s["setting"], "recall": s["recall"], "scored": s["scored"], "qps": float(np.median(tm["qps"])), "qps_rounds": tm["qps"],
                                   "p50_ms": float(np.median(tm["p50_ms"])), "p99_ms": float(np.median(tm["p99_ms"]))})
        best = pick(timed_rows, a.target, 1)[0] if timed_rows else None
        res["configs"].append({"name": cfg.name, "family": cfg.family, "describe": cfg.describe, "params": cfg.params, "serialized_bpv": cfg.serialized_bpv, "rss_bpv": cfg.rss_bpv,
                               "build_s": cfg.build_s, "build_cpu_s": cfg.build_cpu_s, "fixed_bytes": cfg.fixed_bytes, "sweep": [{x: v for x, v in s.items() if x != "fn"} for s in cfg.sweep], "timed": timed_rows, "best": best})
    del held
    res["max_rss_mb"] = rb.rss()["VmRSS"] / 2**20
    write_json(a.out / f"ram-{a.name}.json", res)
    atomic_write(a.out / f"ram-{a.name}.md", (render(res) + "\n").encode())
    print(render(res))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["build", "table", "render"], help="build: RAM peers and funnel first stages (cached); table: measure; render: re-print OUT/ram-NAME.json")
    ap.add_argument("--corpus", type=Path, help="build/table: full-D corpus, a shard folder or .npy.")
    ap.add_argument("--test", type=Path, help="table: held-out queries (shard folder or .npy).")
    ap.add_argument("--out", type=Path, required=True, help="Folder for the RAM peers (OUT/peers), the funnel first stages (OUT/funnel-ram), the exact reference and the results.")
    ap.add_argument("--peer-cache", type=Path, help="table: retrieval_bench.py's --out folder, whose cached in-RAM peers (hnsw-m32, hnsw-sq8 with IndexRefineFlat) are timed as references.")
    ap.add_argument("--funnel-index", nargs="*", type=Path, default=[], help="table: tuned index folders (their tuned funnel is timed as is).")
    ap.add_argument("--first", nargs="*", default=list(FIRST), help="Funnel first-stage structures to build and measure.")
    ap.add_argument("--peers", nargs="*", default=list(RAM_PEERS), choices=list(RAM_PEERS), help="RAM peers (compressed structure + mmap rerank).")
    ap.add_argument("--subset", type=int, default=None, help="Use only the first N corpus rows.")
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--single", type=int, default=200, help="Queries timed one at a time (p50).")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved timing rounds (medians reported).")
    ap.add_argument("--target", type=float, default=0.99, help="Recall@k each config should reach.")
    ap.add_argument("--budgets", type=float, nargs="*", default=[512, 1024], help="Resident bytes per vector.")
    ap.add_argument("--ram-gib", type=float, default=24.0)
    ap.add_argument("--headroom", type=float, default=0.25, help="Share of the RAM kept free for the OS, the process and the page cache of hot float rows.")
    ap.add_argument("--name", default="text")
    a = ap.parse_args()
    if a.step != "render" and a.corpus is None:
        ap.error(f"{a.step} needs --corpus")
    if a.step == "table" and a.test is None:
        ap.error("table needs --test")
    a.out.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(a.threads)
    if a.step == "render":
        print(render(read_json(a.out / f"ram-{a.name}.json")))
    elif a.step == "build":
        corpus = rb.Corpus(a.corpus, a.subset)
        build_funnel_structures(a, corpus)
        for name in a.peers:
            meta = build_peer(name, a, corpus)
            print(f"RAM peer {name}: {meta['build_s']:.0f}s build, {meta['bytes'] / corpus.n:.0f} B/vector serialized", flush=True)
    else:
        table(a)


if __name__ == "__main__":
    main()
