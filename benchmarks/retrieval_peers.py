"""The indexes a user would deploy instead of a funnel, built once, cached with checksums, and measured.

Peers (all at full D, cosine = inner product on L2-normalised vectors):

* ``flat``: FAISS ``IndexFlatIP`` (exact).
* ``hnsw``: FAISS ``IndexHNSWFlat`` M=32, efConstruction 40 (FAISS's default); swept over efSearch.
* ``usearch-f32`` / ``usearch-f16`` / ``usearch-i8``: usearch HNSW with its defaults (connectivity
  16, expansion_add 128), storing f32, f16 or i8; swept over expansion_search.
* ``ivfpq``: FAISS ``IVF{nlist},PQ{D/8}`` (8-bit codes) under ``IndexRefineFlat`` (exact refine of
  ``k * k_factor`` candidates from the full float vectors it keeps in RAM); swept over nprobe x k_factor.

Each built index is written to ``DIR/peers/<name>.bin`` with a JSON sidecar (build seconds, corpus
digest, SHA-256 of the file); a later run reuses it when the corpus digest and checksum match.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from mrl.index.funnel import prefix
from mrl.io import atomic_write, sha256_file, write_json

PEERS = ("flat", "hnsw", "usearch-f32", "usearch-f16", "usearch-i8", "ivfpq")
SWEEPS: dict[str, list[Any]] = {
    "hnsw": [16, 32, 64, 128, 256, 512],
    "usearch-f32": [16, 32, 64, 128, 256, 512],
    "usearch-f16": [16, 32, 64, 128, 256, 512],
    "usearch-i8": [32, 64, 128, 256, 512],
    "ivfpq": [(16, 4), (32, 4), (64, 4), (32, 16), (64, 16), (128, 16), (256, 16), (128, 32)],
    "flat": [None],
}


def normalized(chunks: Iterator[np.ndarray], dim: int) -> Iterator[np.ndarray]:
    for c in chunks:
        for s in range(0, c.shape[0], 1 << 16):
            yield prefix(np.asarray(c[s : s + (1 << 16)]), dim, "cosine")


def _build(name: str, corpus: Any, threads: int) -> Any:
    chunks, n, dim = corpus.chunks, corpus.n, corpus.dim
    if name == "flat":
        ix = faiss.IndexFlatIP(dim)
    elif name == "hnsw":
        ix = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    elif name.startswith("usearch"):
        from usearch.index import Index

        ix = Index(ndim=dim, metric="ip", dtype=name.split("-")[1])
        start = 0
        for c in normalized(chunks(), dim):
            ix.add(np.arange(start, start + c.shape[0], dtype=np.uint64), c, threads=threads)
            start += c.shape[0]
        return ix
    elif name == "ivfpq":
        nlist = 1 << int(np.round(np.log2(4 * np.sqrt(n))))
        ix = faiss.index_factory(dim, f"IVF{nlist},PQ{dim // 8},RFlat", faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample_rows = np.sort(rng.choice(n, size=min(n, max(64 * nlist, 100_000)), replace=False))
        ix.train(prefix(corpus.rows(sample_rows), dim, "cosine"))
    else:
        raise ValueError(name)
    for c in normalized(chunks(), dim):
        ix.add(c)
    return ix


def _save(name: str, ix: Any, path: Path) -> None:
    data = bytes(ix.save()) if name.startswith("usearch") else faiss.serialize_index(ix).tobytes()
    atomic_write(path, data)


def _load(name: str, path: Path) -> Any:
    if name.startswith("usearch"):
        from usearch.index import Index

        return Index.restore(str(path))
    return faiss.read_index(str(path))


def build_or_load(name: str, folder: Path, corpus: Any, threads: int, *, load: bool = True) -> tuple[Any, dict[str, Any]]:
    """The peer index ``name`` over ``corpus`` (``n``, ``dim``, ``digest``, ``chunks()``, ``rows(idx)``),
    cached under ``folder/peers``, and its record ``{build_s, sha256, ...}``."""
    corpus_digest = corpus.digest
    path, meta_path = folder / "peers" / f"{name}.bin", folder / "peers" / f"{name}.json"
    if meta_path.is_file() and path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("corpus") == corpus_digest and meta.get("bytes") == path.stat().st_size and (not load or sha256_file(path) == meta["sha256"]):
            return (_load(name, path) if load else None), meta
    t0 = time.perf_counter()
    ix = _build(name, corpus, threads)
    secs = time.perf_counter() - t0
    if name != "flat":  # flat is rebuilt in every run (a copy of the vectors)
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(name, ix, path)
        meta = {"name": name, "corpus": corpus_digest, "rows": corpus.n, "dim": corpus.dim, "build_s": secs, "threads": threads, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
        write_json(meta_path, meta)
    else:
        meta = {"name": name, "build_s": secs}
    return ix, meta


def search(name: str, ix: Any, q: np.ndarray, k: int, knob: Any, threads: int) -> tuple[np.ndarray, dict[str, float]]:
    """Top-``k`` row ids of normalised queries ``q [B, D]`` with one sweep setting, plus measured work per query."""
    nq = max(len(q), 1)
    D = q.shape[1]
    if name == "flat":
        _, ids = ix.search(q, k)
        return ids, {"distances": float(ix.ntotal), "bytes": float(ix.ntotal) * D * 4}
    if name == "hnsw":
        ix.hnsw.efSearch = max(knob, k)
        st = faiss.cvar.hnsw_stats
        st.reset()
        _, ids = ix.search(q, k)
        return ids, {"distances": st.ndis / nq, "bytes": (st.ndis * D * 4 + st.nhops * 2 * 32 * 4) / nq}
    if name.startswith("usearch"):
        ix.expansion_search = max(knob, k)
        res = ix.search(q, k, threads=threads)
        if hasattr(res, "counts"):
            keys = np.where(np.arange(k)[None, :] < np.asarray(res.counts)[:, None], np.asarray(res.keys, dtype=np.int64), -1)
        else:
            keys = np.full((1, k), -1, dtype=np.int64)
            keys[0, : len(res.keys)] = res.keys
        per = {"f32": 4, "f16": 2, "i8": 1}[name.split("-")[1]] * D
        return keys, {"distances": res.computed_distances / nq, "bytes": (res.computed_distances * per + res.visited_members * 2 * ix.connectivity * 4) / nq}
    if name == "ivfpq":
        nprobe, k_factor = knob
        faiss.extract_index_ivf(ix).nprobe = nprobe
        ix.k_factor = k_factor
        st = faiss.cvar.indexIVF_stats
        st.reset()
        _, ids = ix.search(q, k)
        m = D // 8
        return ids, {"distances": st.ndis / nq + k * k_factor, "bytes": (st.ndis * (m + 8)) / nq + k * k_factor * D * 4}
    raise ValueError(name)


def knob_name(name: str, knob: Any) -> str:
    if name == "flat":
        return "exact"
    if name == "ivfpq":
        return f"nprobe={knob[0]}, k_factor={knob[1]}"
    return f"ef={knob}"


def free(ix: Any) -> None:
    del ix
    gc.collect()


def describe(name: str, dim: int) -> str:
    return {
        "flat": f"FAISS IndexFlatIP, D={dim} (exact)",
        "hnsw": f"FAISS IndexHNSWFlat M=32, D={dim}",
        "usearch-f32": f"usearch HNSW f32, D={dim}",
        "usearch-f16": f"usearch HNSW f16, D={dim}",
        "usearch-i8": f"usearch HNSW i8, D={dim}",
        "ivfpq": f"FAISS IVF-PQ{dim // 8}x8 + exact refine (RFlat), D={dim}",
    }[name]
