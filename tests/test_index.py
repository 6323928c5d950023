"""MatryoshkaIndex: add/search/save/load, crash safety and every bad input of the issue."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_funnel import matryoshka_like

from mrl.errors import MRLError
from mrl.index import FunnelError, MatryoshkaIndex
from mrl.index.store import IndexFormatError

SPEC = "8:200 -> 16:50 -> 32:10"


@pytest.fixture
def built(tmp_path):
    x, q = matryoshka_like(1200, 32, 10), matryoshka_like(25, 32, 11)
    index = MatryoshkaIndex(32, dtype="float16")
    index.add(x, ids=np.arange(1200, dtype=np.int64) * 7 + 3)
    index.build_first_stage("8/int8:1")
    index.build_first_stage("8:1")
    index.funnel = index._resolve(None, SPEC)
    folder = tmp_path / "idx"
    index.save(folder)
    return index, folder, x, q


def test_save_load_roundtrip(built) -> None:
    index, folder, x, q = built
    loaded = MatryoshkaIndex.load(folder)
    assert loaded.count == 1200 and loaded.dtype == "float16" and str(loaded.funnel) == SPEC
    assert sorted(fs.key for fs in loaded.first_stages()) == ["8-float32-flat", "8-int8-flat"]
    for spec in (None, "8/int8:200 -> 32:10", "32:10"):
        a, b = index.search(q, 10, funnel=spec), loaded.search(q, 10, funnel=spec)
        assert (a[1] == b[1]).all() and np.allclose(a[0], b[0])
    assert set(np.unique(loaded.search(q, 10)[1]) % 7) == {3}  # user ids come back, not row numbers
    man = json.loads((folder / "manifest.json").read_text())
    assert man["count"] == 1200 and man["dim"] == 32 and len(man["files"]["segments"][0]["sha256"]) == 64
    assert isinstance(loaded._segments[0], np.memmap)


def test_add_after_load_then_save_again(built) -> None:
    _, folder, x, q = built
    loaded = MatryoshkaIndex.load(folder)
    extra = matryoshka_like(100, 32, 12)
    loaded.add(extra)
    assert loaded.count == 1300
    _, ids = loaded.search(extra[:5], 1)
    assert (ids[:, 0] == np.arange(8397, 8402)).all()  # default ids continue after the largest id (1199 * 7 + 3)
    loaded.save(folder)
    again = MatryoshkaIndex.load(folder)
    assert again.count == 1300 and (again.search(q, 10)[1] == loaded.search(q, 10)[1]).all()
    segs = json.loads((folder / "manifest.json").read_text())["files"]["segments"]
    assert [(e["file"], e["rows"]) for e in segs] == [("vectors.1.0.npy", 1200), ("vectors.2.1.npy", 100)]  # add wrote only its rows
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("ids.")) == ["ids.2.npy"]  # old generation removed


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 5])
def test_crash_during_save_leaves_previous_index(built, monkeypatch, fail_at) -> None:
    index, folder, x, q = built
    before = MatryoshkaIndex.load(folder).search(q, 10)
    index.add(matryoshka_like(50, 32, 13))
    real_replace, calls = os.replace, {"n": 0}

    def crashing_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == fail_at:  # simulate a kill at the n-th file swap (the last one is the manifest)
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        index.save(folder)
    monkeypatch.setattr(os, "replace", real_replace)
    old = MatryoshkaIndex.load(folder)
    assert old.count == 1200
    after = old.search(q, 10)
    assert (after[1] == before[1]).all()
    index.save(folder)  # a later save succeeds and cleans up the leftovers
    assert MatryoshkaIndex.load(folder).count == 1250
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_nan_batch_refused_index_unchanged(built) -> None:
    index, _, x, q = built
    before = index.search(q, 10)
    bad = matryoshka_like(10, 32, 14)
    bad[3, 5] = np.nan
    with pytest.raises(MRLError, match="NaN"):
        index.add(bad)
    bad[3, 5] = np.inf
    with pytest.raises(MRLError, match="NaN/Inf"):
        index.add(bad)
    with pytest.raises(MRLError, match="overflow"):
        index.add(np.full((2, 32), 1e6, dtype=np.float32))  # float16 storage cannot hold it
    with pytest.raises(MRLError, match="ids"):
        index.add(matryoshka_like(4, 32, 15), ids=np.arange(3))
    assert index.count == 1200 and all(fs.ntotal == 1200 for fs in index.first_stages())
    assert (index.search(q, 10)[1] == before[1]).all()


def test_query_dim_mismatch(built) -> None:
    index, folder, _, q = built
    with pytest.raises(MRLError, match="dim 16 but this index stores 32"):
        index.search(q[:, :16], 10)
    with pytest.raises(MRLError, match="larger than the index dim"):
        index.search(np.ones((2, 64), dtype=np.float32), 10)
    with pytest.raises(MRLError, match="dim 16 but this index stores 32"):
        MatryoshkaIndex.load(folder).search(q[:, :16], 10)
    with pytest.raises(MRLError, match="NaN"):
        index.search(np.full((1, 32), np.nan, dtype=np.float32), 10)
    with pytest.raises(MRLError, match="floats"):
        index.search(np.ones((1, 32), dtype=np.int64), 10)


def test_bad_funnels_and_k(built) -> None:
    index, _, _, q = built
    with pytest.raises(FunnelError, match="exceeds the 1200 vectors"):
        index.search(q, 1201)
    with pytest.raises(FunnelError, match="holds only 1200"):
        index.search(q, funnel="8:5000 -> 32:10")
    with pytest.raises(FunnelError, match="reaches dim 64"):
        index.search(q, funnel="8:100 -> 64:10")
    with pytest.raises(FunnelError, match="increase"):
        index.search(q, funnel="16:100 -> 8:10")
    with pytest.raises(FunnelError, match="grow"):
        index.search(q, funnel="8:10 -> 16:100")
    with pytest.raises(MRLError, match="empty"):
        MatryoshkaIndex(8).search(np.ones((1, 8), dtype=np.float32), 1)


def test_corrupted_and_truncated_files(built) -> None:
    _, folder, _, _ = built
    man = json.loads((folder / "manifest.json").read_text())
    vec = folder / man["files"]["segments"][0]["file"]
    raw = bytearray(vec.read_bytes())
    raw[-3] ^= 0xFF
    vec.write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match="checksum"):
        MatryoshkaIndex.load(folder)
    vec.write_bytes(bytes(raw[:-100]))
    with pytest.raises(IndexFormatError, match="truncated"):
        MatryoshkaIndex.load(folder, verify=False)
    raw[-3] ^= 0xFF
    vec.write_bytes(bytes(raw))
    MatryoshkaIndex.load(folder)  # restored: loads again
    fs = folder / man["first_stages"][0]["file"]
    fs.unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        MatryoshkaIndex.load(folder, verify=False)


def test_manifest_version_and_garbage(built) -> None:
    _, folder, _, _ = built
    man = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**man, "format_version": 99}))
    with pytest.raises(IndexFormatError, match="version 99"):
        MatryoshkaIndex.load(folder)
    (folder / "manifest.json").write_text(json.dumps({**man, "format": "something-else"}))
    with pytest.raises(IndexFormatError, match="not an mrl index"):
        MatryoshkaIndex.load(folder)
    (folder / "manifest.json").write_text("{truncated")
    with pytest.raises(MRLError, match="not valid JSON"):
        MatryoshkaIndex.load(folder)
    with pytest.raises(IndexFormatError, match="does not exist"):
        MatryoshkaIndex.load(folder / "nope")


def test_constructor_validation() -> None:
    with pytest.raises(MRLError, match="dim"):
        MatryoshkaIndex(0)
    with pytest.raises(MRLError, match="metric"):
        MatryoshkaIndex(8, metric="hamming")
    with pytest.raises(MRLError, match="dtype"):
        MatryoshkaIndex(8, dtype="int8")


def test_resident_memory_is_the_prefix_structure(built) -> None:
    index, folder, _, _ = built
    loaded = MatryoshkaIndex.load(folder)
    per_vec = loaded.resident_bytes("8:200 -> 32:10") / loaded.count
    assert per_vec == pytest.approx(8 + 8 * 4)  # int64 id + 8 float32 prefix dims; full vectors are mapped
    assert loaded.resident_bytes("8/int8:200 -> 32:10") / loaded.count == pytest.approx(8 + 8)


def test_every_first_stage_kind_survives_save_and_load(tmp_path) -> None:
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # tiny builds: OpenMP spinning on a busy machine only slows them
    try:
        x, q = matryoshka_like(1500, 32, 12), matryoshka_like(20, 32, 13)
        index = MatryoshkaIndex(32)
        index.add(x)
        specs = ["16/int8/hnsw/m16/ef100:50 -> 32:5", "16/int8/ivf16/c8/np4:50 -> 32:5", "16/fp16/usearch/m16/ef100:50 -> 32:5", "16/fp16:50 -> 32:5", "16/ivf16/np4:50 -> 32:5"]
        for spec in specs:
            index.build_first_stage(spec)
        before = {s: index.search(q, funnel=s)[1] for s in specs}
        index.save(tmp_path / "idx")
        loaded = MatryoshkaIndex.load(tmp_path / "idx")
        assert sorted(fs.key for fs in loaded.first_stages()) == sorted(first_keys(specs))
        for s in specs:
            assert (loaded.search(q, funnel=s)[1] == before[s]).all(), s
            assert 0 < loaded.resident_bytes(s) / loaded.count < 8 + 16 * 4 + 16 * 2 * 4 + 1
    finally:
        faiss.omp_set_num_threads(threads)


def first_keys(specs: list[str]) -> list[str]:
    from mrl.index import Funnel

    return [Funnel.parse(s).first.key for s in specs]
