"""Local index CRUD: add/upsert/delete (tombstones), metadata filters, compaction, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_funnel import matryoshka_like
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import MRLError
from mrl.index import MatryoshkaIndex
from mrl.index.filters import FilterError, parse_filter

N, D = 2000, 32
LANGS = np.array(["en", "de", "fr", "ja"])


def exact_ids(q: np.ndarray, x: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Brute-force cosine top-k ids over the given rows (the reference every search is checked against)."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return ids[np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]]


@pytest.fixture
def data():
    x, q = matryoshka_like(N, D, 20), matryoshka_like(20, D, 21)
    rng = np.random.default_rng(0)
    meta = {"lang": LANGS[rng.integers(0, 4, N)].tolist(), "year": rng.integers(2000, 2100, N).tolist()}  # year: 1% per value
    return x, q, np.arange(N, dtype=np.int64) * 3, meta


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(r) & set(s)) / len(s) for r, s in zip(a.tolist(), b.tolist())]))


def test_filters_parse_and_validate() -> None:
    schema = {"lang": "str", "year": "int"}
    a = parse_filter('lang == "en" and year in [2001, 2002]', schema)
    assert a == parse_filter({"lang": "en", "year": [2002, 2001]}, schema)
    assert a.to_milvus() == 'lang in ["en"] and year in [2001, 2002]'
    assert parse_filter("lang == 'd\\'e'", schema).clauses == (("lang", ("d'e",)),)
    assert parse_filter("year == 1 and year == 2", schema).matches_nothing
    assert parse_filter("", schema) is None and parse_filter({}, schema) is None
    for bad, match in [("colour == \"red\"", "unknown filter field 'colour'.*lang, year"), ("lang = 'en'", "cannot parse"), ("lang == ", "malformed"),
                       ("lang in ['en'", "malformed"), ("lang == 'en' or year == 1", "malformed"), ("year == 'x'", "int values.*use an integer"),
                       ("lang == 3", "str values.*quote"), ("lang == \"en", "cannot parse"), ({"lang": 2.5}, "str values")]:
        with pytest.raises(FilterError, match=match):
            parse_filter(bad, schema)


def test_add_upsert_delete_filter_compact_roundtrip(data, tmp_path) -> None:
    x, q, ids, meta = data
    index = MatryoshkaIndex(D)
    index.add(x, ids, meta)
    index.build_first_stage("8:1")
    funnel = "8:400 -> 32:10"
    # Duplicate ids: refused on add (index unchanged), replaced on upsert.
    with pytest.raises(MRLError, match="already in the index.*upsert"):
        index.add(x[:3], ids[:3], {"lang": ["en"] * 3, "year": [1] * 3})
    with pytest.raises(MRLError, match="distinct"):
        index.add(x[:2], np.array([7, 7]), {"lang": ["en"] * 2, "year": [1] * 2})
    with pytest.raises(MRLError, match="integers"):
        index.add(x[:2], np.array(["a", "b"]), {"lang": ["en"] * 2, "year": [1] * 2})
    with pytest.raises(MRLError, match="metadata fields are"):
        index.add(x[:2], np.array([1, 2]))
    with pytest.raises(MRLError, match="holds int values"):
        index.add(x[:2], np.array([1, 2]), {"lang": ["en"] * 2, "year": ["x", "y"]})
    assert index.count == N
    new_vec = matryoshka_like(1, D, 99)
    index.upsert(new_vec, ids[5:6], {"lang": ["xx"], "year": [1999]})
    assert index.count == N and index.rows == N + 1
    s, found = index.search(new_vec, 1, funnel="32:1")
    assert found[0, 0] == ids[5] and s[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert index.search(new_vec, 3, filter="lang == 'xx'")[1][0].tolist() == [ids[5], -1, -1]  # k padded: only one row matches
    # Delete: tombstones vanish from every search at once; results match the exact reference over live rows.
    gone = ids[np.r_[0:300]]
    assert index.delete(np.r_[gone, [-5, 10**12]]) == 300
    live = np.ones(N, bool)
    live[:300] = False
    x_live, ids_live = x.copy(), ids.copy()
    x_live[5] = new_vec[0]
    ref = exact_ids(q, x_live[live], ids_live[live], 10)
    _, got = index.search(q, 10, funnel=funnel)
    assert not np.isin(got, gone).any() and overlap(got, ref) >= 0.97
    # Filters at ~1% (pre-filter path), ~25% and ~75% (over-fetch path): k results, all matching, near-exact.
    lang, year = np.array(meta["lang"]), np.array(meta["year"])
    lang[5], year[5] = "xx", 1999
    for flt, mask in [("year == 2042", year == 2042), ('lang == "de"', lang == "de"), ({"lang": ["en", "de", "fr"]}, np.isin(lang, ["en", "de", "fr"]))]:
        m = mask & live
        _, got = index.search(q, 10, funnel=funnel, filter=flt)
        k_ok = min(10, int(m.sum()))
        assert (got[:, :k_ok] >= 0).all(), flt
        assert np.isin(got[got >= 0], ids[m]).all(), flt
        assert overlap(got[:, :k_ok], exact_ids(q, x_live[m], ids[m], k_ok)) >= 0.95, flt
    # Persist with tombstones and metadata; reload; compact; reload again.
    folder = tmp_path / "idx"
    index.save(folder)
    loaded = MatryoshkaIndex.load(folder)
    assert (loaded.count, loaded.rows, loaded.schema) == (N - 300, N + 1, {"lang": "str", "year": "int"})
    for flt in (None, "lang == 'fr'"):
        assert (loaded.search(q, 10, funnel=funnel, filter=flt)[1] == index.search(q, 10, funnel=funnel, filter=flt)[1]).all()
    before = loaded.search(q, 10, funnel="32:10", filter="lang in ['de', 'ja']")
    assert loaded.compact() == 301
    loaded.save(folder)
    again = MatryoshkaIndex.load(folder)
    assert (again.count, again.rows, again.catalog.n_deleted) == (N - 300, N - 300, 0)
    after = again.search(q, 10, funnel="32:10", filter="lang in ['de', 'ja']")
    assert (after[1] == before[1]).all() and np.allclose(after[0], before[0])
    man = json.loads((folder / "manifest.json").read_text())
    assert len(man["files"]["segments"]) == 1 and "deleted" not in man["files"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["manifest.json", *__import__("mrl.index.store", fromlist=["x"]).referenced(man)])


def test_cli_crud_and_milvus_flags_need_a_collection(data, tmp_path) -> None:
    x, q, ids, meta = data
    np.save(tmp_path / "x.npy", x[:1500])
    np.save(tmp_path / "ids.npy", ids[:1500])
    np.save(tmp_path / "more.npy", x[1500:])
    np.save(tmp_path / "q.npy", q)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"lang": meta["lang"][i], "year": meta["year"][i]}) + "\n" for i in range(1500)))
    (tmp_path / "m2.jsonl").write_text("".join(json.dumps({"lang": meta["lang"][i], "year": meta["year"][i]}) + "\n" for i in range(1500, N)))
    r = CliRunner()
    folder = str(tmp_path / "idx")
    res = r.invoke(app, ["index", "build", folder, "--vectors", str(tmp_path / "x.npy"), "--ids", str(tmp_path / "ids.npy"), "--meta", str(tmp_path / "m.jsonl"), "--funnel", "8:300 -> 32:10"])
    assert res.exit_code == 0, res.output
    np.save(tmp_path / "more_ids.npy", ids[1500:])
    res = r.invoke(app, ["index", "add", folder, "--vectors", str(tmp_path / "more.npy"), "--ids", str(tmp_path / "more_ids.npy"), "--meta", str(tmp_path / "m2.jsonl")])
    assert res.exit_code == 0 and "1500 -> 2000 live" in res.output, res.output
    res = r.invoke(app, ["index", "add", folder, "--vectors", str(tmp_path / "more.npy"), "--ids", str(tmp_path / "more_ids.npy"), "--meta", str(tmp_path / "m2.jsonl")])
    assert res.exit_code == 2 and "already in the index" in res.output and "Traceback" not in res.output
    res = r.invoke(app, ["index", "delete", folder, "--ids", f"{ids[0]},{ids[1]},777777"])
    assert res.exit_code == 0 and "deleted 2 of 3" in res.output, res.output
    out = tmp_path / "found.npy"
    res = r.invoke(app, ["index", "search", folder, "--queries", str(tmp_path / "q.npy"), "--filter", "lang == 'ja' and year in [2001, 2050, 2077]", "-o", str(out)])
    assert res.exit_code == 0, res.output
    found = np.load(out)
    lang, year = np.array(meta["lang"]), np.array(meta["year"])
    allowed = set(ids[(lang == "ja") & np.isin(year, [2001, 2050, 2077])].tolist()) - {int(ids[0]), int(ids[1])}
    assert set(found[found >= 0].tolist()) <= allowed and (found[:, : min(10, len(allowed))] >= 0).all()
    res = r.invoke(app, ["index", "search", folder, "--queries", str(tmp_path / "q.npy"), "--filter", "colour == 'red'"])
    assert res.exit_code == 2 and "unknown filter field 'colour'" in res.output
    res = r.invoke(app, ["index", "compact", folder])
    assert res.exit_code == 0 and "removed 2" in res.output, res.output
    res = r.invoke(app, ["index", "info", folder, "--json"])
    info = json.loads(res.output)
    assert (info["count"], info["deleted"], info["metadata_fields"]) == (N - 2, 0, {"lang": "str", "year": "int"})
    res = r.invoke(app, ["index", "search", "--milvus", str(tmp_path / "m.db"), "--queries", str(tmp_path / "q.npy")])
    assert res.exit_code == 2 and "collection" in res.output


def test_one_writer_at_a_time_and_one_protocol(data, tmp_path) -> None:
    import subprocess
    import sys

    from mrl.index.backend import IndexBackend

    x, q, ids, meta = data
    folder = tmp_path / "idx"
    index = MatryoshkaIndex(D)
    index.add(x[:100], ids[:100])
    index.save(folder)
    assert isinstance(index, IndexBackend)
    np.save(tmp_path / "v.npy", x[100:110])
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom mrl.index.store import writer_lock\n"
                               "with writer_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)", str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # another process holds the folder's writer lock
        res = CliRunner().invoke(app, ["index", "add", str(folder), "--vectors", str(tmp_path / "v.npy")])
        assert res.exit_code == 2 and "another mrl process" in res.output, res.output
    finally:
        holder.kill()
        holder.wait()
    assert MatryoshkaIndex.load(folder).count == 100
    res = CliRunner().invoke(app, ["index", "delete", str(tmp_path / "missing"), "--ids", "1"])
    assert res.exit_code == 2 and "does not exist" in res.output and not (tmp_path / "missing").exists()


def test_searching_an_index_whose_every_vector_is_deleted_names_the_tombstones() -> None:
    """The tombstone message was unreachable (the same empty-index check ran twice)."""
    index = MatryoshkaIndex(32)
    with pytest.raises(MRLError, match="the index is empty"):
        index.search(matryoshka_like(2, 32, 1), 1)
    index.add(matryoshka_like(5, 32, 2))
    index.delete(list(range(5)))
    with pytest.raises(MRLError, match="every vector in the index is deleted \\(5 tombstones\\)"):
        index.search(matryoshka_like(2, 32, 1), 1)
