"""Sharded text encoding: shards match a direct encode, resume after a kill re-encodes nothing finished."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from text_fixtures import minilm_path  # noqa: F401

from mrl.encode import ShardSet, open_shards, write_shard
from mrl.encode.shards import ShardFormatError
from mrl.errors import DataError, MRLError, OutputExistsError

WORDS = ["the", "index", "graph", "shortlist", "prefix", "dimension", "model", "corpus", "passage", "query", "nearest", "neighbour", "cosine", "vector"]


def write_corpus(path: Path, n: int = 40) -> list[str]:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 30)))) for _ in range(n)]
    path.write_text("".join(json.dumps({"_id": f"doc{i}", "text": t, "source": "test"}) + "\n" for i, t in enumerate(texts)))
    return texts


@pytest.fixture(scope="module")
def st_model(minilm_path):
    from mrl.models.text import load_sentence_transformer

    return load_sentence_transformer(minilm_path)


def test_shards_match_direct_encode_and_keep_row_order(tmp_path, minilm_path, st_model):
    from mrl.encode.text import encode_corpus

    texts = write_corpus(tmp_path / "c.jsonl")
    reader = encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", rows_per_shard=16, batch_size=8, progress=False)
    assert [a.shape[0] for a in reader.arrays] == [16, 16, 8]
    assert reader.manifest["complete"] and reader.ids() == [f"doc{i}" for i in range(40)]
    direct = st_model.encode(texts, batch_size=8, convert_to_numpy=True)
    np.testing.assert_allclose(reader.array(), direct, atol=2e-5)
    assert reader.manifest["sources"][0]["rows"] == 40 and len(reader.manifest["model"]["sha256"]) == 64


def test_encoding_progress_is_plain_lines_in_logs(tmp_path, minilm_path, capsys, monkeypatch):
    from mrl.encode.text import encode_corpus

    monkeypatch.setenv("MRL_PROGRESS_INTERVAL", "3600")
    write_corpus(tmp_path / "c.jsonl")
    encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", rows_per_shard=16, batch_size=8, progress=True)
    bar = [ln for ln in capsys.readouterr().err.split("\n") if "encode:" in ln]
    assert 1 <= len(bar) <= 3 and "40/40" in bar[-1] and not any("\r" in ln for ln in bar), bar  # tqdm redrew the bar in place


def test_resume_after_interrupt_encodes_only_missing_shards(tmp_path, minilm_path, monkeypatch):
    import mrl.encode.text as enc

    write_corpus(tmp_path / "c.jsonl")
    calls: list[int] = []
    real = enc.encode_texts_sorted

    def dies_on_third(model, texts, **kw):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is stopped between shards
        return real(model, texts, **kw)

    monkeypatch.setattr(enc, "encode_texts_sorted", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        enc.encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", rows_per_shard=10, progress=False)
    man = json.loads((tmp_path / "enc/manifest.json").read_text())
    assert [s["index"] for s in man["shards"]] == [0, 1] and not man["complete"]
    with pytest.raises(ShardFormatError, match="unfinished"):
        open_shards(tmp_path / "enc")
    first = (tmp_path / "enc/shard-00000.npy").stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(enc, "encode_texts_sorted", lambda model, texts, **kw: calls.append(len(texts)) or real(model, texts, **kw))
    reader = enc.encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", rows_per_shard=10, progress=False)
    assert calls == [10, 10]  # shards 2 and 3 only
    assert (tmp_path / "enc/shard-00000.npy").stat().st_mtime_ns == first
    full = enc.encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "ref", rows_per_shard=10, progress=False)
    np.testing.assert_allclose(reader.array(), full.array(), atol=1e-6)


KILL_SCRIPT = """
import os, signal, sys
import mrl.encode.text as enc
real = enc.write_shard
def write_then_die(folder, index, start, vectors, dtype="float32"):
    entry = real(folder, index, start, vectors, dtype)
    if index == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the rename, before the manifest lists it
    return entry
enc.write_shard = write_then_die
enc.encode_corpus(sys.argv[1], [sys.argv[2]], sys.argv[3], rows_per_shard=10, progress=False)
"""


def test_sigkill_leaves_no_shard_that_looks_complete(tmp_path, minilm_path):
    from mrl.encode.text import encode_corpus

    write_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "enc"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, minilm_path, str(tmp_path / "c.jsonl"), str(out)], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    man = json.loads((out / "manifest.json").read_text())
    assert [s["index"] for s in man["shards"]] == [0]  # shard 1's file exists but is not listed
    assert (out / "shard-00001.npy").is_file()
    (out / ".shard-00002.npy.x1y2z3w4.tmp").write_bytes(b"torn")  # what a kill inside atomic_open leaves (its temp-name form)
    reader = encode_corpus(minilm_path, [tmp_path / "c.jsonl"], out, rows_per_shard=10, progress=False)
    assert reader.manifest["complete"] and not list(out.glob("*.tmp"))
    ref = encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "ref", rows_per_shard=10, progress=False)
    np.testing.assert_allclose(reader.array(), ref.array(), atol=1e-6)


def test_bf16_records_fidelity(tmp_path, minilm_path):
    from mrl.encode.text import encode_corpus

    write_corpus(tmp_path / "c.jsonl", n=12)
    reader = encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", bf16=True, progress=False)
    fid = reader.manifest["fidelity"]
    assert fid["sample"] == 12 and 0.999 < fid["full"]["min"] <= fid["full"]["mean"] <= 1.0 + 1e-6
    assert reader.manifest["settings"]["precision"] == "bf16-autocast"


def test_refuses_other_encoding_bad_input_and_foreign_folder(tmp_path, minilm_path):
    from mrl.encode.text import encode_corpus

    write_corpus(tmp_path / "c.jsonl", n=6)
    encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", progress=False)
    with pytest.raises(OutputExistsError, match="different encoding"):
        encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", dtype="float16", progress=False)
    r = encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", dtype="float16", overwrite=True, progress=False)
    assert r.dtype == "float16" and sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["ids.txt", "manifest.json", "shard-00000.npy", "texthash.npy"]
    (tmp_path / "bad.jsonl").write_text('{"_id": 1, "text": "ok"}\n{"_id": 2, "body": "no text"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        encode_corpus(minilm_path, [tmp_path / "bad.jsonl"], tmp_path / "e2", progress=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "foreign", progress=False)
    assert (tmp_path / "foreign/notes.txt").read_text() == "mine"


def test_any_executor_records_shards_and_index_builds_from_manifest(tmp_path):
    """Shards written out of order by independent writers; `mrl index build --vectors MANIFEST` streams them."""
    from typer.testing import CliRunner

    from mrl.cli import app  # noqa: F401 - imported for the CLI
    from mrl.cli.app import app as cli
    from mrl.index import MatryoshkaIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 16)).astype(np.float32)
    header = {"model": {"name": "m", "sha256": "0" * 64}, "dim": 16, "dtype": "float32", "rows": 50, "rows_per_shard": 20, "sources": [], "settings": {}}
    shards = ShardSet.create_or_resume(tmp_path / "enc", header)
    for i in reversed(shards.pending()):
        a, b = shards.shard_rows(i)
        ShardSet.create_or_resume(tmp_path / "enc", header).record(write_shard(tmp_path / "enc", i, a, x[a:b]))
    assert shards.pending() == [] and shards.manifest["complete"]
    res = CliRunner().invoke(cli, ["index", "build", str(tmp_path / "ix"), "--vectors", str(tmp_path / "enc/manifest.json")])
    assert res.exit_code == 0, res.output
    ix = MatryoshkaIndex.load(tmp_path / "ix")
    np.testing.assert_array_equal(ix.gather(np.arange(50), 16), x)
    os.remove(tmp_path / "enc/shard-00001.npy")
    res = CliRunner().invoke(cli, ["index", "build", str(tmp_path / "ix2"), "--vectors", str(tmp_path / "enc")])
    assert res.exit_code == 2 and "missing" in res.output


def test_reuse_copies_rows_an_earlier_encoding_holds(tmp_path, minilm_path, monkeypatch):
    import mrl.encode.text as enc

    texts = write_corpus(tmp_path / "c.jsonl", n=30)
    old = enc.encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "old", rows_per_shard=8, progress=False)
    rng = np.random.default_rng(1)
    new_texts = [texts[i] for i in rng.permutation(30)[:25]] + ["a brand new passage", "another unseen text"]  # rebuilt corpus: reordered, some gone, some new
    (tmp_path / "c2.jsonl").write_text("".join(json.dumps({"_id": f"n{i}", "text": t}) + "\n" for i, t in enumerate(new_texts)))
    encoded: list[str] = []
    real = enc.encode_texts_sorted
    monkeypatch.setattr(enc, "encode_texts_sorted", lambda model, ts, **kw: encoded.extend(ts) or real(model, ts, **kw))
    lines: list[str] = []
    new = enc.encode_corpus(minilm_path, [tmp_path / "c2.jsonl"], tmp_path / "new", rows_per_shard=8, progress=False, reuse=[tmp_path / "old"], log=lines.append)
    assert sorted(encoded) == sorted(["a brand new passage", "another unseen text"])
    assert sum(e["reused"] for e in new.manifest["shards"]) == 25 and any("reuse: 30 finished rows" in m for m in lines)
    by_text = dict(zip(texts, old.array()))
    np.testing.assert_array_equal(new.array()[:25], np.stack([by_text[t] for t in new_texts[:25]]))
    lines.clear()
    enc.encode_corpus(minilm_path, [tmp_path / "c2.jsonl"], tmp_path / "bf", bf16=True, progress=False, reuse=[tmp_path / "old"], log=lines.append)
    assert any("other settings" in m for m in lines)  # fp32 vectors are never mixed into a bf16 encoding


def test_time_limit_stops_between_shards_and_resumes(tmp_path, minilm_path):
    from mrl.encode.text import encode_corpus

    write_corpus(tmp_path / "c.jsonl", n=20)
    assert encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", rows_per_shard=8, time_limit=0, progress=False) is None
    assert [s["index"] for s in json.loads((tmp_path / "enc/manifest.json").read_text())["shards"]] == [0]
    assert encode_corpus(minilm_path, [tmp_path / "c.jsonl"], tmp_path / "enc", rows_per_shard=8, progress=False).manifest["complete"]


def test_claims_split_shards_between_executors(tmp_path):
    header = {"model": {"name": "m", "sha256": "0" * 64}, "dim": 4, "dtype": "float32", "rows": 30, "rows_per_shard": 10, "sources": [], "settings": {}}
    a = ShardSet.create_or_resume(tmp_path / "enc", header)
    b = ShardSet.create_or_resume(tmp_path / "enc", header)
    assert a.claim(0) and not b.claim(0) and b.claim(1)  # a live claim is respected
    (tmp_path / "enc/.claim-00002").write_text("otherhost 1 0")  # a claim from long ago is stale
    assert a.claim(2)
    a.record(write_shard(tmp_path / "enc", 0, 0, np.ones((10, 4), dtype=np.float32)))
    a.release(0)
    assert not b.claim(0)  # finished shards are never claimed again
    (tmp_path / "enc/.claim-00001").write_text(f"{socket.gethostname()} {2 ** 22 + 12345} 9999999999")  # its process is gone
    assert a.claim(1)
    assert os.path.exists(tmp_path / "enc/.claim-00001")


def test_adapted_shards_equal_the_adaptor_applied_to_the_source_and_resume(tmp_path):
    import torch

    from mrl.encode.derive import adapt_shards
    from mrl.models.adaptor import MatryoshkaAdaptor, save_adaptor

    rng = np.random.default_rng(0)
    x = rng.standard_normal((25, 6)).astype(np.float32)
    header = {"model": {"name": "base", "sha256": "1" * 64}, "dim": 6, "dtype": "float32", "rows": 25, "rows_per_shard": 10, "sources": [], "settings": {}}
    src = ShardSet.create_or_resume(tmp_path / "base", header, ids=[f"d{i}" for i in range(25)])
    for i in range(3):
        src.record(write_shard(tmp_path / "base", i, 10 * i, x[10 * i : 10 * i + 10]))
    torch.manual_seed(0)
    one, two = MatryoshkaAdaptor(6), MatryoshkaAdaptor(6)
    save_adaptor(one, {}, tmp_path / "a1")
    save_adaptor(two, {}, tmp_path / "a2")
    out = adapt_shards(tmp_path / "base", tmp_path / "a1", tmp_path / "adapted", log=lambda _: None)
    np.testing.assert_allclose(out.array(), one.transform(x), rtol=1e-6, atol=1e-6)
    assert out.ids() == [f"d{i}" for i in range(25)] and out.manifest["model"]["base"]["sha256"] == "1" * 64
    lines: list[str] = []
    adapt_shards(tmp_path / "base", tmp_path / "a1", tmp_path / "adapted", log=lines.append)
    assert lines == ["25 rows in 3 shards: 0 to adapt"]  # resumed: nothing redone
    with pytest.raises(OutputExistsError):  # another adaptor is another model
        adapt_shards(tmp_path / "base", tmp_path / "a2", tmp_path / "adapted", log=lambda _: None)
    with pytest.raises(MRLError, match="source shard folder"):
        adapt_shards(tmp_path / "base", tmp_path / "a1", tmp_path / "base", log=lambda _: None)
    again = adapt_shards(tmp_path / "base", tmp_path / "a2", tmp_path / "adapted", overwrite=True, log=lambda _: None)
    np.testing.assert_allclose(again.array(), two.transform(x), rtol=1e-6, atol=1e-6)


def test_overwrite_deletes_only_listed_files_that_still_hold_their_recorded_bytes(tmp_path):
    header = {"model": {"name": "m", "sha256": "0" * 64}, "dim": 4, "dtype": "float32", "rows": 10, "rows_per_shard": 10, "sources": [], "settings": {}}
    s = ShardSet.create_or_resume(tmp_path / "enc", header, ids=[f"d{i}" for i in range(10)])
    s.record(write_shard(tmp_path / "enc", 0, 0, np.ones((10, 4), dtype=np.float32)))
    (tmp_path / "enc/ids.txt").write_text("a user's own notes\n")  # a listed name, other bytes now
    other = {**header, "model": {"name": "m2", "sha256": "1" * 64}}
    with pytest.raises(OutputExistsError, match="holds other bytes"):
        ShardSet.create_or_resume(tmp_path / "enc", other, overwrite=True)
    assert (tmp_path / "enc/ids.txt").read_text() == "a user's own notes\n" and (tmp_path / "enc/shard-00000.npy").is_file()  # nothing deleted


def test_a_claim_file_of_unknown_content_is_broken_only_once_old(tmp_path):
    header = {"model": {"name": "m", "sha256": "0" * 64}, "dim": 4, "dtype": "float32", "rows": 10, "rows_per_shard": 10, "sources": [], "settings": {}}
    s = ShardSet.create_or_resume(tmp_path / "enc", header)
    (tmp_path / "enc/.claim-00000").write_text("")  # killed between create and write
    assert not s.claim(0) and (tmp_path / "enc/.claim-00000").exists()
    old = time.time() - 7200
    os.utime(tmp_path / "enc/.claim-00000", (old, old))
    assert s.claim(0)


def test_a_non_empty_file_at_a_claim_name_is_never_broken(tmp_path):
    header = {"model": {"name": "m", "sha256": "0" * 64}, "dim": 4, "dtype": "float32", "rows": 10, "rows_per_shard": 10, "sources": [], "settings": {}}
    s = ShardSet.create_or_resume(tmp_path / "enc", header)
    (tmp_path / "enc/.claim-00000").write_text("a user's notes\n")
    old = time.time() - 7200
    os.utime(tmp_path / "enc/.claim-00000", (old, old))
    with pytest.raises(OutputExistsError, match="not a shard claim mrl wrote"):
        s.claim(0)
    assert (tmp_path / "enc/.claim-00000").read_text() == "a user's notes\n"


def test_release_keeps_a_claim_that_another_executor_took_over(tmp_path):
    header = {"model": {"name": "m", "sha256": "0" * 64}, "dim": 4, "dtype": "float32", "rows": 10, "rows_per_shard": 10, "sources": [], "settings": {}}
    s = ShardSet.create_or_resume(tmp_path / "enc", header)
    assert s.claim(0)
    (tmp_path / "enc/.claim-00000").write_text("otherhost 42 9999999999")  # broken as stale and taken by another executor
    s.release(0)
    assert (tmp_path / "enc/.claim-00000").read_text() == "otherhost 42 9999999999"
    s.release(0)  # released twice, or never claimed here: nothing to delete
    assert (tmp_path / "enc/.claim-00000").exists()
