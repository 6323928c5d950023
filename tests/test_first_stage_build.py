"""First-stage graphs are built no weaker than the HNSW indexes people deploy (issue 24)."""

from __future__ import annotations

import json

import faiss
import pytest
from test_funnel import matryoshka_like

from mrl.index import MatryoshkaIndex


@pytest.mark.parametrize("spec", ["16/int8/hnsw/m16:20 -> 32:5", "16/hnsw:20 -> 32:5", "16/fp16/usearch/m16:20 -> 32:5"])
def test_graph_first_stage_built_with_ef_construction_200_recorded_and_kept(tmp_path, spec) -> None:
    """efConstruction was FAISS's 40-ish (80) before: the graph is built at hnswlib's default 200,
    the manifest records it, and a reload reports the same build breadth."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index = MatryoshkaIndex(32)
        index.add(matryoshka_like(600, 32, 21))
        fs = index.build_first_stage(spec)
        assert fs.ef_construction == 200
        if fs.kind == "hnsw":
            assert fs.native.hnsw.efConstruction == 200
        else:
            assert fs.native.expansion_add == 200
        index.save(tmp_path / "idx")
        manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
        assert [e["ef_construction"] for e in manifest["first_stages"] if e["kind"] == fs.kind] == [200]
        loaded = MatryoshkaIndex.load(tmp_path / "idx")
        assert [s.ef_construction for s in loaded.first_stages()] == [200]
    finally:
        faiss.omp_set_num_threads(threads)
