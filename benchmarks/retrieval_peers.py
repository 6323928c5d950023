"""The indexes a user would deploy instead of a funnel, each built as its users build it, cached with checksums, and measured.

Peers (all at full D, cosine = inner product on L2-normalised vectors); :func:`params` states each
one's build parameters, and the table prints them in a column:

* ``flat``: FAISS ``IndexFlatIP`` (exact).
* ``hnsw-m16`` / ``hnsw-m32``: FAISS ``IndexHNSWFlat`` M=16 / M=32, efConstruction 200 (hnswlib's
  default; what deployed HNSW indexes use); swept over efSearch.
* ``hnsw``: FAISS ``IndexHNSWFlat`` M=32 at FAISS's default efConstruction 40 (the weak build the
  issue-10 table compared with; kept to reproduce it, not a fair peer).
* ``hnswlib``: hnswlib with its defaults (M=16, ef_construction=200); swept over ef.
* ``usearch-f32`` / ``usearch-f16`` / ``usearch-i8``: usearch HNSW with its defaults (connectivity
  16, expansion_add 128), storing f32, f16 or i8; ``usearch-f32-m32``: tuned (connectivity 32,
  expansion_add 200); swept over expansion_search.
* ``hnsw-sq8``: FAISS ``HNSW32,SQ8`` (8-bit scalar codes of the full D, efConstruction 200) under
  ``IndexRefineFlat`` (exact re-ranking of ``k * k_factor`` candidates from the float vectors it
  keeps in RAM): the low-RAM graph that uses no Matryoshka structure; swept over efSearch x k_factor.
* ``ivf-fs``: FAISS ``IVF{nlist},PQ{D/2}x4fs`` (4-bit PQ fast-scan: codes scanned in SIMD registers)
  under ``IndexRefineFlat``; swept over nprobe x k_factor.
* ``ivfpq``: FAISS ``IVF{nlist},PQ{D/8}`` (8-bit codes) + refine (the issue-10 row).

Each built index is written to ``DIR/peers/<name>.bin`` with a JSON sidecar (build seconds, build
parameters, corpus digest, SHA-256 of the file); a later run reuses it when the corpus digest,
parameters and checksum match.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from mrl.index.funnel import prefix
from mrl.io import atomic_write, sha256_file, write_json

FAIR = ("flat", "hnsw-m16", "hnsw-m32", "hnswlib", "usearch-f32", "usearch-f32-m32", "usearch-i8", "hnsw-sq8", "ivf-fs")
PEERS = (*FAIR, "hnsw", "usearch-f16", "ivfpq")
EF_CONSTRUCTION = 200
GRAPH_EF = [16, 32, 48, 64, 96, 128, 192, 256]
SWEEPS: dict[str, list[Any]] = {
    "hnsw": GRAPH_EF,
    "hnsw-m16": GRAPH_EF,
    "hnsw-m32": GRAPH_EF,
    "hnswlib": GRAPH_EF,
    "usearch-f32": GRAPH_EF,
    "usearch-f32-m32": GRAPH_EF,
    "usearch-f16": GRAPH_EF,
    "usearch-i8": [32, 64, 128, 256, 512],
    "hnsw-sq8": [(32, 2), (48, 2), (64, 2), (48, 4), (64, 4), (96, 4), (128, 4), (192, 4)],
    "ivf-fs": [(8, 4), (16, 4), (32, 4), (32, 8), (64, 8), (128, 8), (64, 16), (128, 16)],
    "ivfpq": [(16, 4), (32, 4), (64, 4), (32, 16), (64, 16), (128, 16), (256, 16), (128, 32)],
    "flat": [None],
}
GRAPHS = ("hnsw", "hnsw-m16", "hnsw-m32", "hnswlib", "usearch-f32", "usearch-f32-m32", "usearch-f16", "usearch-i8")
_USEARCH = {"usearch-f32": ("f32", 16, 128), "usearch-f16": ("f16", 16, 128), "usearch-i8": ("i8", 16, 128), "usearch-f32-m32": ("f32", 32, 200)}
_FAISS_HNSW = {"hnsw": (32, 40), "hnsw-m16": (16, EF_CONSTRUCTION), "hnsw-m32": (32, EF_CONSTRUCTION)}


def nlist_for(n: int) -> int:
    """About ``4 sqrt(N)`` lists, a power of two (FAISS's guideline)."""
    return 1 << int(np.round(np.log2(4 * np.sqrt(n))))


def params(name: str, n: int, dim: int) -> str:
    """The build parameters of peer ``name`` over ``n`` vectors of width ``dim``, as the table states them."""
    if name == "flat":
        return "-"
    if name in _FAISS_HNSW:
        m, efc = _FAISS_HNSW[name]
        return f"M={m}, efConstruction={efc}"
    if name == "hnswlib":
        return f"M=16, ef_construction={EF_CONSTRUCTION} (defaults)"
    if name in _USEARCH:
        dt, m, ea = _USEARCH[name]
        return f"connectivity={m}, expansion_add={ea}" + (" (defaults)" if (m, ea) == (16, 128) else "")
    if name == "hnsw-sq8":
        return f"HNSW32,SQ8, efConstruction={EF_CONSTRUCTION}, RFlat"
    if name == "ivf-fs":
        return f"IVF{nlist_for(n)},PQ{dim // 2}x4fs, RFlat"
    if name == "ivfpq":
        return f"IVF{nlist_for(n)},PQ{dim // 8}, RFlat"
    raise ValueError(name)


def normalized(chunks: Iterator[np.ndarray], dim: int) -> Iterator[np.ndarray]:
    for c in chunks:
        for s in range(0, c.shape[0], 1 << 16):
            yield prefix(np.asarray(c[s : s + (1 << 16)]), dim, "cosine")


def _train_sample(corpus: Any, rows: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return prefix(corpus.rows(np.sort(rng.choice(corpus.n, size=min(corpus.n, rows), replace=False))), corpus.dim, "cosine")


def _build(name: str, corpus: Any, threads: int) -> Any:
    chunks, n, dim = corpus.chunks, corpus.n, corpus.dim
    ip = faiss.METRIC_INNER_PRODUCT
    if name == "flat":
        ix = faiss.IndexFlatIP(dim)
    elif name in _FAISS_HNSW:
        m, efc = _FAISS_HNSW[name]
        ix = faiss.IndexHNSWFlat(dim, m, ip)
        ix.hnsw.efConstruction = efc
    elif name == "hnswlib":
        import hnswlib

        ix = hnswlib.Index(space="ip", dim=dim)
        ix.init_index(max_elements=n, M=16, ef_construction=EF_CONSTRUCTION, random_seed=100)
        start = 0
        for c in normalized(chunks(), dim):
            ix.add_items(c, np.arange(start, start + c.shape[0]), num_threads=threads)
            start += c.shape[0]
        return ix
    elif name in _USEARCH:
        from usearch.index import Index

        dt, m, ea = _USEARCH[name]
        ix = Index(ndim=dim, metric="ip", dtype=dt, connectivity=m, expansion_add=ea)
        start = 0
        for c in normalized(chunks(), dim):
            ix.add(np.arange(start, start + c.shape[0], dtype=np.uint64), c, threads=threads)
            start += c.shape[0]
        return ix
    elif name == "hnsw-sq8":
        ix = faiss.index_factory(dim, "HNSW32,SQ8,RFlat", ip)
        faiss.downcast_index(ix.base_index).hnsw.efConstruction = EF_CONSTRUCTION
        ix.train(_train_sample(corpus, 100_000))
    elif name in ("ivf-fs", "ivfpq"):
        nlist = nlist_for(n)
        codes = f"PQ{dim // 2}x4fs" if name == "ivf-fs" else f"PQ{dim // 8}"
        ix = faiss.index_factory(dim, f"IVF{nlist},{codes},RFlat", ip)
        ix.train(_train_sample(corpus, max(64 * nlist, 100_000)))
    else:
        raise ValueError(name)
    for c in normalized(chunks(), dim):
        ix.add(c)
    return ix


def _save(name: str, ix: Any, path: Path) -> None:
    if name == "hnswlib":  # hnswlib writes only to a path: write a temp file, then rename
        tmp = path.with_name(f".{path.name}.tmp")
        ix.save_index(str(tmp))
        os.replace(tmp, path)
        return
    data = bytes(ix.save()) if name in _USEARCH else faiss.serialize_index(ix).tobytes()
    atomic_write(path, data)


def _load(name: str, path: Path, dim: int) -> Any:
    if name in _USEARCH:
        from usearch.index import Index

        return Index.restore(str(path))
    if name == "hnswlib":
        import hnswlib

        ix = hnswlib.Index(space="ip", dim=dim)
        ix.load_index(str(path))
        return ix
    return faiss.read_index(str(path))


def build_or_load(name: str, folder: Path, corpus: Any, threads: int, *, load: bool = True) -> tuple[Any, dict[str, Any]]:
    """The peer index ``name`` over ``corpus`` (``n``, ``dim``, ``digest``, ``chunks()``, ``rows(idx)``),
    cached under ``folder/peers``, and its record ``{build_s, params, sha256, ...}``."""
    corpus_digest = corpus.digest
    build_params = params(name, corpus.n, corpus.dim)
    path, meta_path = folder / "peers" / f"{name}.bin", folder / "peers" / f"{name}.json"
    if meta_path.is_file() and path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("corpus") == corpus_digest and meta.get("params", build_params) == build_params and meta.get("bytes") == path.stat().st_size and (not load or sha256_file(path) == meta["sha256"]):
            return (_load(name, path, corpus.dim) if load else None), meta
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    ix = _build(name, corpus, threads)
    secs = time.perf_counter() - t0
    if name != "flat":  # flat is rebuilt in every run (a copy of the vectors)
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(name, ix, path)
        meta = {"name": name, "params": build_params, "corpus": corpus_digest, "rows": corpus.n, "dim": corpus.dim, "build_s": secs, "threads": threads, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
        write_json(meta_path, meta)
    else:
        meta = {"name": name, "params": build_params, "build_s": secs}
    return ix, meta


def search(name: str, ix: Any, q: np.ndarray, k: int, knob: Any, threads: int) -> tuple[np.ndarray, dict[str, float]]:
    """Top-``k`` row ids of normalised queries ``q [B, D]`` with one sweep setting, plus measured work per query
    (``nan`` where the library does not count it)."""
    nq = max(len(q), 1)
    D = q.shape[1]
    if name == "flat":
        _, ids = ix.search(q, k)
        return ids, {"distances": float(ix.ntotal), "bytes": float(ix.ntotal) * D * 4}
    if name in _FAISS_HNSW:
        m = _FAISS_HNSW[name][0]
        ix.hnsw.efSearch = max(knob, k)
        st = faiss.cvar.hnsw_stats
        st.reset()
        _, ids = ix.search(q, k)
        return ids, {"distances": st.ndis / nq, "bytes": (st.ndis * D * 4 + st.nhops * 2 * m * 4) / nq}
    if name == "hnswlib":
        ix.set_ef(max(knob, k))
        ids, _ = ix.knn_query(q, k, num_threads=threads)
        return ids.astype(np.int64), {"distances": float("nan"), "bytes": float("nan")}
    if name in _USEARCH:
        ix.expansion_search = max(knob, k)
        res = ix.search(q, k, threads=threads)
        if hasattr(res, "counts"):
            keys = np.where(np.arange(k)[None, :] < np.asarray(res.counts)[:, None], np.asarray(res.keys, dtype=np.int64), -1)
        else:
            keys = np.full((1, k), -1, dtype=np.int64)
            keys[0, : len(res.keys)] = res.keys
        per = {"f32": 4, "f16": 2, "i8": 1}[_USEARCH[name][0]] * D
        return keys, {"distances": res.computed_distances / nq, "bytes": (res.computed_distances * per + res.visited_members * 2 * ix.connectivity * 4) / nq}
    if name == "hnsw-sq8":
        ef, k_factor = knob
        ix.k_factor = k_factor
        faiss.downcast_index(ix.base_index).hnsw.efSearch = max(ef, k * k_factor)
        st = faiss.cvar.hnsw_stats
        st.reset()
        _, ids = ix.search(q, k)
        return ids, {"distances": st.ndis / nq + k * k_factor, "bytes": (st.ndis * D + st.nhops * 2 * 32 * 4) / nq + k * k_factor * D * 4}
    if name in ("ivf-fs", "ivfpq"):
        nprobe, k_factor = knob
        faiss.extract_index_ivf(ix).nprobe = nprobe
        ix.k_factor = k_factor
        st = faiss.cvar.indexIVF_stats
        st.reset()
        _, ids = ix.search(q, k)
        code = D // 4 if name == "ivf-fs" else D // 8
        ndis = st.ndis / nq
        if name == "ivf-fs" and ndis == 0:  # fast-scan does not count its codes: every code of the probed lists is scanned
            ndis = nprobe * ix.ntotal / faiss.extract_index_ivf(ix).nlist
        return ids, {"distances": ndis + k * k_factor, "bytes": ndis * (code + 8) + k * k_factor * D * 4}
    raise ValueError(name)


def knob_name(name: str, knob: Any) -> str:
    if name == "flat":
        return "exact"
    if name in ("ivf-fs", "ivfpq"):
        return f"nprobe={knob[0]}, k_factor={knob[1]}"
    if name == "hnsw-sq8":
        return f"ef={knob[0]}, k_factor={knob[1]}"
    return f"ef={knob}"


def free(ix: Any) -> None:
    del ix
    gc.collect()


def describe(name: str, dim: int) -> str:
    return {
        "flat": f"FAISS IndexFlatIP, D={dim} (exact)",
        "hnsw": f"FAISS IndexHNSWFlat, D={dim} (FAISS's default build, not a fair peer)",
        "hnsw-m16": f"FAISS IndexHNSWFlat, D={dim}",
        "hnsw-m32": f"FAISS IndexHNSWFlat, D={dim}",
        "hnswlib": f"hnswlib 0.8 HNSW, D={dim}",
        "usearch-f32": f"usearch HNSW f32, D={dim}",
        "usearch-f32-m32": f"usearch HNSW f32 (tuned build), D={dim}",
        "usearch-f16": f"usearch HNSW f16, D={dim}",
        "usearch-i8": f"usearch HNSW i8, D={dim}",
        "hnsw-sq8": f"FAISS HNSW-SQ8 + exact refine, D={dim}",
        "ivf-fs": f"FAISS IVF-PQ{dim // 2}x4 fast-scan + exact refine, D={dim}",
        "ivfpq": f"FAISS IVF-PQ{dim // 8}x8 + exact refine (RFlat), D={dim}",
    }[name]
