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


def _recall(index: MatryoshkaIndex, q, spec: str, truth) -> float:
    ids = index.search(q, funnel=spec)[1]
    return float(sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), truth.tolist())) / truth.size)


def test_a_narrower_graph_adopts_the_wider_graphs_links_and_searches_as_well(tmp_path) -> None:
    """One HNSW build serves every prefix: a narrower graph of the same degree takes the links of
    the wider one (no insertion per row), keeps them after the wider one is dropped and after a
    reload, records where they came from, and finds as much of the truth as a graph built on its own."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        x, q = matryoshka_like(4000, 64, 31), matryoshka_like(60, 64, 32)
        truth = MatryoshkaIndex(64)
        truth.add(x)
        exact = truth.search(q, funnel="64:10")[1]
        own = MatryoshkaIndex(64)
        own.add(x)
        native = own.build_first_stage("16/int8/hnsw:1")
        assert native.links_from is None and native.native.hnsw.efConstruction == 200

        index = MatryoshkaIndex(64)
        index.add(x)
        wide = index.build_first_stage("32/int8/hnsw:1")
        index.build_first_stage("16/int8/hnsw/m16:1")  # another degree: built on its own
        adopted = index.build_first_stage("16/int8/hnsw:1")
        assert adopted.links_from == "32-int8-hnsw" and index.first_stages()[1].links_from is None
        assert adopted.ntotal == 4000 and adopted.native.hnsw.efConstruction == 200
        spec = "16/int8/hnsw/ef64:40 -> 64:10"
        r_adopted, r_native = _recall(index, q, spec, exact), _recall(own, q, spec, exact)
        assert r_adopted >= r_native - 0.02 and r_adopted > 0.9
        before = index.search(q, funnel=spec)[1]
        index.drop_first_stage(wide.key)  # the links were copied, not shared
        del wide
        assert (index.search(q, funnel=spec)[1] == before).all()
        index.save(tmp_path / "idx")
        manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
        assert {e["dim"]: e.get("links_from") for e in manifest["first_stages"] if e["m"] is None} == {16: "32-int8-hnsw"}
        loaded = MatryoshkaIndex.load(tmp_path / "idx")
        assert (loaded.search(q, funnel=spec)[1] == before).all() and {s.key: s.links_from for s in loaded.first_stages()}["16-int8-hnsw"] == "32-int8-hnsw"
        # rows added later go into the adopted graph by ordinary insertion
        loaded.add(matryoshka_like(50, 64, 33))
        assert loaded.first_stages()[0].ntotal == 4050
    finally:
        faiss.omp_set_num_threads(threads)
