"""Milvus backend on Milvus Lite: the same search results as the local index, CRUD, filters, push
(resumable, killed mid-way), and every bad input of the issue. A server test runs when MRL_MILVUS_URI is set."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from test_funnel import matryoshka_like

from mrl.cli.app import app
from mrl.errors import MRLError
from mrl.index import MatryoshkaIndex
from mrl.index.backends.milvus import MilvusError, MilvusIndex, connect
from mrl.index.backends.push import push
from mrl.index.filters import FilterError

N, D = 1200, 16
FUNNEL = "4:200 -> 8:40 -> 16:10"


def local_index(folder, n: int = N, seed: int = 30) -> MatryoshkaIndex:
    x = matryoshka_like(n, D, seed)
    rng = np.random.default_rng(seed)
    index = MatryoshkaIndex(D)
    index.add(x, np.arange(n, dtype=np.int64) * 5 + 1, {"lang": rng.choice(["en", "de", "fr"], n).tolist(), "year": rng.integers(0, 50, n).tolist()})
    index.funnel = index._resolve(None, FUNNEL)
    index.tuning = {"frontier": [{"funnel": "4:100 -> 16:10", "recall": 0.95, "ms_per_query": 0.1}, {"funnel": FUNNEL, "recall": 0.995, "ms_per_query": 0.2}]}
    index.build_first_stage("4:1")
    index.delete([1, 6, 11])  # tombstones are not pushed
    index.save(folder)
    return index


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    root = tmp_path_factory.mktemp("milvus")
    index = local_index(root / "idx")
    mi = push(root / "idx", str(root / "m.db"), "docs", batch_size=500, progress=False)
    yield index, mi, root
    mi.close()


def test_push_and_search_match_the_local_index(pushed) -> None:
    index, mi, _ = pushed
    q = matryoshka_like(12, D, 31)
    assert mi.count == index.count == N - 3 and mi.schema == index.schema and str(mi.funnel) == FUNNEL
    assert mi.prefix_dims == [4, 8] and mi.push_state["done"] and set(mi.placements) == {FUNNEL}
    for flt in (None, "lang == 'de'", {"year": [3, 4]}, "lang in ['en', 'fr'] and year == 7"):
        s_loc, i_loc = index.search(q, 10, filter=flt)
        for place in ("client", "server"):
            s, i = mi.search(q, 10, filter=flt, rerank=place)
            assert (i == i_loc).all(), (flt, place)
            assert np.allclose(s[i >= 0], s_loc[i_loc >= 0], atol=1e-5)
    # recall_target picks the fastest recorded funnel meeting it, like the local index.
    assert str(mi.funnel_for(0.9)) == "4:100 -> 16:10" == str(index.funnel_for(0.9))
    assert (mi.search(q, 10, recall_target=0.99)[1] == index.search(q, 10, recall_target=0.99)[1]).all()
    with pytest.raises(MRLError, match="no tuned funnel reached recall 0.999"):
        mi.search(q, 10, recall_target=0.999)
    with pytest.raises(MRLError, match="no 12-dim prefix field"):
        mi.search(q, 10, funnel="12:100 -> 16:10")


def test_crud_is_visible_to_the_next_search_and_bad_input_is_refused(pushed) -> None:
    _, mi, _ = pushed
    v = matryoshka_like(2, D, 32)
    mi.upsert(v[:1], np.array([777777]), {"lang": ["xx"], "year": [1]})
    assert mi.search(v[:1], 1, funnel="16:1")[1][0, 0] == 777777
    assert mi.search(v[:1], 2, filter="lang == 'xx'")[1][0].tolist() == [777777, -1]
    with pytest.raises(MilvusError, match="already in collection.*upsert"):
        mi.add(v[1:], np.array([777777]), {"lang": ["en"], "year": [1]})
    mi.upsert(v[1:], np.array([777777]), {"lang": ["xx"], "year": [2]})  # replaces: still one row
    assert mi.search(v[1:], 2, filter="lang == 'xx'")[1][0].tolist() == [777777, -1]
    assert mi.delete([777777, 123456789]) == 1
    assert mi.search(v[:1], 1, filter="lang == 'xx'")[1][0, 0] == -1 and mi.count == N - 3
    for bad, err, match in [
        (lambda: mi.add(v, np.array(["a", "b"]), {"lang": ["en"] * 2, "year": [1, 2]}), MRLError, "integers"),
        (lambda: mi.add(v, np.array([1, 1]), {"lang": ["en"] * 2, "year": [1, 2]}), MRLError, "distinct"),
        (lambda: mi.add(np.ones((2, 8), np.float32), np.array([5, 9]), {"lang": ["en"] * 2, "year": [1, 2]}), MilvusError, "dim 8 but collection 'docs' stores 16"),
        (lambda: mi.add(v, np.array([2, 3]), {"lang": ["en"] * 2}), MilvusError, "metadata fields"),
        (lambda: mi.add(v, np.array([2, 3]), {"lang": ["en"] * 2, "year": ["a", "b"]}), MilvusError, "holds int values"),
        (lambda: mi.search(v, 5, filter="colour == 'red'"), FilterError, "unknown filter field 'colour'"),
        (lambda: mi.search(v, 5, filter="lang === 'en'"), FilterError, "cannot parse|malformed"),
        (lambda: mi.search(np.ones((1, 8), np.float32), 5), MRLError, "dim 8"),
        (lambda: mi.search(v, 5, funnel="4/int8:100 -> 16:5"), MRLError, "float prefix field"),
        (lambda: mi.search(v, 5, rerank="gpu"), MRLError, "rerank must be"),
    ]:
        with pytest.raises(err, match=match):
            bad()
    assert mi.count == N - 3


def test_foreign_collection_refused_and_cli(pushed, tmp_path) -> None:
    index, mi, root = pushed
    from pymilvus import DataType

    s = mi.client.create_schema(auto_id=False)
    s.add_field("pk", DataType.INT64, is_primary=True)
    s.add_field("emb", DataType.FLOAT_VECTOR, dim=D)
    params = mi.client.prepare_index_params()
    params.add_index("emb", index_type="FLAT", metric_type="IP")
    mi.client.create_collection("theirs", schema=s, index_params=params)
    with pytest.raises(MilvusError, match="not created by mrl.*refusing"):
        MilvusIndex.open(mi.uri, "theirs")
    with pytest.raises(MilvusError, match="not created by mrl"):
        push(root / "idx", mi.uri, "theirs", progress=False)
    assert mi.client.has_collection("theirs")  # untouched
    with pytest.raises(MilvusError, match="does not exist.*mrl index push"):
        MilvusIndex.open(mi.uri, "nope")
    other = tmp_path / "other"
    local_index(other, n=300, seed=9)
    with pytest.raises(MilvusError, match="already exists|another index"):
        push(other, mi.uri, "docs", progress=False)
    # CLI: search through Milvus equals the local search; a second process on the Lite file gets one clear line.
    q = matryoshka_like(5, D, 33)
    np.save(tmp_path / "q.npy", q)
    res = CliRunner().invoke(app, ["index", "search", "--milvus", mi.uri, "--collection", "docs", "--queries", str(tmp_path / "q.npy"), "--filter", "lang == 'en'", "-o", str(tmp_path / "o.npy")])
    assert res.exit_code == 0, res.output
    assert (np.load(tmp_path / "o.npy") == index.search(q, 10, filter="lang == 'en'")[1]).all()
    child = subprocess.run([sys.executable, "-m", "mrl", "index", "info", "--milvus", mi.uri, "--collection", "docs"], capture_output=True, text=True, timeout=120)
    assert child.returncode == 2 and "open in another process" in child.stderr and "Traceback" not in child.stderr, child.stderr[-800:]
    assert len(child.stderr.strip().splitlines()) == 1


def test_unreachable_uri_is_one_line_within_the_timeout(tmp_path) -> None:
    import time

    t0 = time.perf_counter()
    with pytest.raises(MilvusError, match="cannot reach Milvus at http://127.0.0.1:9"):
        connect("http://127.0.0.1:9", timeout=1.0)
    assert time.perf_counter() - t0 < 10
    res = CliRunner().invoke(app, ["index", "info", "--milvus", "http://127.0.0.1:9", "--collection", "x"])
    assert res.exit_code == 2 and "cannot reach Milvus" in res.output
    with pytest.raises(MilvusError, match="ending in .db"):
        connect(str(tmp_path / "file.txt"))


KILL_CHILD = r"""
import os, signal, sys
from mrl.index.backends import milvus
real, calls = milvus.MilvusIndex.set_properties, {"n": 0}
def killing(self, **props):
    real(self, **props)
    if "push" in props and not props["push"].get("done"):
        calls["n"] += 1
        if calls["n"] == int(os.environ["KILL_AFTER_BATCHES"]):
            os.kill(os.getpid(), signal.SIGKILL)
milvus.MilvusIndex.set_properties = killing
from mrl.cli.app import app
sys.argv = ["mrl", *sys.argv[1:]]
app()
"""


def test_push_killed_midway_resumes_without_repushing(tmp_path) -> None:
    index = local_index(tmp_path / "idx", n=900, seed=40)
    db = str(tmp_path / "k.db")
    args = ["index", "push", str(tmp_path / "idx"), "--milvus", db, "--collection", "c", "--batch-size", "200", "--no-calibrate"]
    res = subprocess.run([sys.executable, "-c", KILL_CHILD, *args], env={**os.environ, "KILL_AFTER_BATCHES": "2"}, capture_output=True, text=True, timeout=300)
    assert res.returncode == -9, res.stderr[-800:]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "resuming the push" in res.output and "after 400 of 897 rows" in res.output, res.output
    mi = MilvusIndex.open(db, "c")
    try:
        assert mi.push_state["done"] and mi.push_state["resumed_from"] == 400 and mi.count == index.count == 897
        q = matryoshka_like(8, D, 41)
        assert (mi.search(q, 10)[1] == index.search(q, 10)[1]).all()
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0 and "already complete" in res.output
    finally:
        mi.close()


@pytest.mark.skipif(not os.environ.get("MRL_MILVUS_URI"), reason="set MRL_MILVUS_URI (and MRL_MILVUS_TOKEN) to test a Milvus server")
def test_milvus_server(tmp_path) -> None:
    index = local_index(tmp_path / "idx", n=500, seed=50)
    name = f"mrl_test_{os.getpid()}"
    mi = push(tmp_path / "idx", os.environ["MRL_MILVUS_URI"], name, progress=False)
    try:
        q = matryoshka_like(6, D, 51)
        for place in ("client", "server"):
            assert (mi.search(q, 10, filter="lang == 'de'", rerank=place)[1] == index.search(q, 10, filter="lang == 'de'")[1]).all()
    finally:
        mi.client.drop_collection(name)
        mi.close()


def test_push_with_recall_target_never_changes_the_source_folder(tmp_path) -> None:
    """Issue 25 2.6: the push used to re-tune and rewrite the local index (funnel, tuning.md)."""
    from test_bad_inputs import tree_digest

    index = MatryoshkaIndex(D)
    index.add(matryoshka_like(400, D, 60))
    index.funnel = index._resolve(None, "8/binary:100 -> 16:10")  # a funnel Milvus cannot run
    index.save(tmp_path / "idx")
    before = tree_digest(tmp_path / "idx")
    args = ["index", "push", str(tmp_path / "idx"), "--milvus", str(tmp_path / "p.db"), "--collection", "c", "--recall-target", "0.9", "--sample", "50", "--no-calibrate"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert tree_digest(tmp_path / "idx") == before, "the push changed its source folder"
    assert MatryoshkaIndex.load(tmp_path / "idx").tuning is None
    mi = MilvusIndex.open(str(tmp_path / "p.db"), "c")
    try:
        assert mi.funnel is not None and mi.funnel.first.precision == "float32" and mi.tuning and mi.tuning["target_recall"] == 0.9
    finally:
        mi.close()
