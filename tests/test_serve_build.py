"""`mrl serve --texts FILE --index DIR` first start: the encoding is staged in resumable shards, a
kill keeps them, the same command resumes, and a time estimate is printed before the long part."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_fixtures import DIM, corpus, free_socket, served_model, tiny_model  # noqa: F401

from mrl.errors import MRLError
from mrl.index import MatryoshkaIndex
from mrl.index.text_index import STAGING, build_text_index


def passages(n: int) -> list[str]:
    base = corpus()
    return [f"{base[i % len(base)]} number {i}" for i in range(n)]


class Killed(Exception):
    """Stands for SIGKILL in the middle of encoding."""


def test_an_interrupted_build_resumes_from_its_finished_shards(served_model: Any, tmp_path: Path) -> None:
    texts = passages(1300)
    ids = np.arange(len(texts), dtype=np.int64) * 7
    seen: list[int] = []

    def dying(batch: list[str]) -> np.ndarray:
        if len(seen) == 3:  # probe (64), shard 0 (the other 436), shard 1 (500): dies in shard 2
            raise Killed
        seen.append(len(batch))
        return served_model.encode(batch)

    folder = tmp_path / "idx"
    with pytest.raises(Killed):
        build_text_index(folder, ids, texts, dying, model_id="tiny", rows_per_shard=500, batch_size=500, target_recall=None)
    assert not (folder / "manifest.json").exists() and (folder / STAGING / "manifest.json").is_file()  # no index yet, the shards stay

    encoded: list[int] = []
    lines: list[str] = []

    def counting(batch: list[str]) -> np.ndarray:
        encoded.append(len(batch))
        return served_model.encode(batch)

    index = build_text_index(folder, ids, texts, counting, model_id="tiny", rows_per_shard=500, batch_size=500, target_recall=None, log=lines.append)
    assert sum(encoded) == 64 + 300  # the probe, then only shard 2 (rows 1000..1299): shards 0 and 1 were kept
    assert "resuming: 1,000 already encoded" in lines[0] and "1,300 passages" in lines[0] and "takes about" in lines[0]
    assert not (folder / STAGING).exists()  # cleaned up once the index is saved
    fresh = build_text_index(tmp_path / "fresh", ids, texts, served_model.encode, model_id="tiny", rows_per_shard=500, target_recall=None)
    loaded = MatryoshkaIndex.load(folder)
    assert index.count == loaded.count == 1300 and np.array_equal(loaded.ids, fresh.ids)
    np.testing.assert_allclose(loaded.gather(np.arange(1300), DIM), fresh.gather(np.arange(1300), DIM), atol=1e-5)


def test_a_staged_build_of_other_passages_or_another_model_is_refused(served_model: Any, tmp_path: Path) -> None:
    texts = passages(120)
    ids = np.arange(len(texts))
    folder = tmp_path / "idx"

    def dying(batch: list[str]) -> np.ndarray:
        if len(batch) != 64:  # after the probe
            raise Killed
        return served_model.encode(batch)

    with pytest.raises(Killed):
        build_text_index(folder, ids, texts, dying, model_id="A", rows_per_shard=50, target_recall=None)
    for other_ids, other_texts, model_id in ((ids, texts[:-1] + ["changed"], "A"), (ids, texts, "B")):
        with pytest.raises(MRLError, match=r"\.encoding holds an unfinished build"):
            build_text_index(folder, other_ids, other_texts, served_model.encode, model_id=model_id, rows_per_shard=50, target_recall=None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(MRLError, match="holds files but no index"):
        build_text_index(tmp_path / "mine", ids, texts, served_model.encode, target_recall=None)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]  # refused before any write


def _serve(model: Path, texts: Path, index: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mrl", "serve", "--model", str(model), "--texts", str(texts), "--index", str(index), "--port", str(port), "--threads", "1"]
    return subprocess.Popen(cmd, env={**os.environ, "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_mrl_serve_first_start_killed_during_encoding_resumes(tiny_model: Path, tmp_path: Path) -> None:
    """The README's first start, SIGKILLed once a shard is written, then run again: it resumes."""
    import json

    n = 5000  # 3 staging shards of 2048
    src = tmp_path / "passages.txt"
    src.write_text("\n".join(passages(n)) + "\n")
    index = tmp_path / "idx"
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = _serve(tiny_model, src, index, port)
    manifest = index / STAGING / "manifest.json"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                done = len(json.loads(manifest.read_text())["shards"])
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        proc.send_signal(signal.SIGKILL)
        first = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = len(json.loads(manifest.read_text())["shards"])
    assert 1 <= kept < 3 and not (index / "manifest.json").exists()
    assert f"{n:,} passages: encoding {n:,} takes about" in first  # the estimate, before the long part
    proc = _serve(tiny_model, src, index, port)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else "timed out"
            try:
                health = httpx.get(url + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health["index"]["count"] == n
        r = httpx.post(url + "/v1/search", json={"input": passages(n)[4321], "k": 3, "return_text": True}, timeout=30)
        assert r.status_code == 200 and r.json()["data"][0]["texts"][0] == passages(n)[4321]
    finally:
        proc.send_signal(signal.SIGTERM)
        second = proc.communicate(timeout=60)[0]
    assert f"resuming: {kept * 2048:,} already encoded" in second, second[-2000:]
    assert not (index / STAGING).exists()


def test_leftover_staging_removes_only_shards_whose_bytes_the_manifest_proves(tmp_path):
    """After a finished first build, `.encoding` goes away file by file: a listed shard whose bytes
    no longer match the manifest's SHA-256 (same size), and a file the build never wrote, both stay,
    and so does the folder; the proven shards and the manifest go."""
    import numpy as np

    from mrl.encode.shards import MANIFEST, ShardSet, write_shard
    from mrl.index.text_index import STAGING, remove_leftover_staging

    stage = tmp_path / "idx" / STAGING
    header = {"model": {"name": "toy", "sha256": "0"}, "dim": 4, "dtype": "float32", "rows": 6, "rows_per_shard": 2,
              "sources": [{"file": "passages", "rows": 6, "sha256": "0"}], "settings": {}}
    shards = ShardSet.create_or_resume(stage, header)
    for i in shards.pending():
        start, stop = shards.shard_rows(i)
        shards.record(write_shard(stage, i, start, np.full((stop - start, 4), float(i), dtype=np.float32)))
    listed = sorted(p.name for p in stage.glob("shard-*.npy"))
    tampered = stage / listed[1]
    raw = bytearray(tampered.read_bytes())
    raw[-1] ^= 0xFF  # same size, other bytes
    tampered.write_bytes(bytes(raw))
    (stage / "notes.txt").write_text("mine")
    assert remove_leftover_staging(tmp_path / "idx")
    assert sorted(p.name for p in stage.iterdir()) == sorted([listed[1], "notes.txt"])
    assert not (stage / MANIFEST).exists() and (stage / "notes.txt").read_text() == "mine"
