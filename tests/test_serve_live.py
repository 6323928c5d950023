"""A real server on a loopback port: the official ``openai`` client, hot reload under load, SIGHUP and
graceful shutdown of the ``mrl serve`` process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_fixtures import DIM, free_socket, live_server, served_model, tiny_index, tiny_model  # noqa: F401

from mrl.embeddings import truncate
from mrl.index import MatryoshkaIndex
from mrl.serve import Batching, ServeConfig, create_app

KEY = "k-123"


def test_openai_client_against_the_server(served_model: Any, tiny_index: Path, live_server: Any) -> None:
    openai = pytest.importorskip("openai")
    app = create_app(ServeConfig(model="tiny-mrl", index=tiny_index, api_key=KEY), model=served_model)
    with live_server(app) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
        texts = ["a green lamp on a hill", "a purple drum"]
        res = client.embeddings.create(model="tiny-mrl", input=texts, dimensions=16)  # the client asks for base64 and decodes it
        got = np.array([d.embedding for d in res.data], dtype=np.float32)
        np.testing.assert_array_equal(got, truncate(served_model.encode(texts), 16))
        assert res.model == "tiny-mrl" and res.usage.total_tokens > 0 and [d.index for d in res.data] == [0, 1]
        res = client.embeddings.create(model="tiny-mrl", input="one text", encoding_format="float")
        assert len(res.data[0].embedding) == DIM
        with pytest.raises(openai.BadRequestError, match="dimensions"):
            client.embeddings.create(model="tiny-mrl", input="x", dimensions=DIM + 1)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="other-model", input="x")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0).embeddings.create(model="tiny-mrl", input="x")
        assert [m.id for m in client.models.list()] == ["tiny-mrl"]


def _copy_with_ids(src: Path, dst: Path, offset: int) -> Path:
    """The same vectors as ``src`` under ids shifted by ``offset`` (so a result tells which index answered)."""
    a = MatryoshkaIndex.load(src)
    b = MatryoshkaIndex(a.dim, metric=a.metric)
    b.add(np.asarray(a.gather(np.arange(a.count), a.dim)), a.ids + offset)
    b.save(dst)
    return dst


def test_hot_reload_under_load_fails_no_request(served_model: Any, tiny_index: Path, live_server: Any, tmp_path: Path) -> None:
    served = tmp_path / "served"
    shutil.copytree(tiny_index, served)
    other = _copy_with_ids(tiny_index, tmp_path / "other", 10_000)
    app = create_app(ServeConfig(model="tiny-mrl", index=served, batching=Batching(search_max_wait_ms=1)), model=served_model)
    q = served_model.encode(["a red boat near the sea", "a grey cup"]).tolist()
    with live_server(app) as srv:
        stop = threading.Event()
        results: list[tuple[int, int, list[int]]] = []
        failures: list[str] = []

        def load() -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                while not stop.is_set():
                    r = c.post("/v1/search", json={"vectors": q, "k": 5})
                    if r.status_code != 200:
                        failures.append(r.text)
                        continue
                    b = r.json()
                    results.append((b["index_generation"], b["data"][0]["ids"][0], [row["ids"][0] for row in b["data"]]))

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        expected = {0: 0}  # generation -> id offset of the index that served it
        with httpx.Client(base_url=srv.url, timeout=60) as admin:
            for gen in range(1, 7):
                time.sleep(0.15)
                if gen % 3 == 0:  # rebuild the served folder in place, then reload it (no body)
                    rebuilt = MatryoshkaIndex.load(other)
                    rebuilt.save(served)
                    r = admin.post("/admin/reload")
                    expected[gen] = 10_000
                    other, _ = served, None
                else:
                    target = other if gen % 2 else served
                    r = admin.post("/admin/reload", json={"index": str(target)})
                    expected[gen] = 10_000 if MatryoshkaIndex.load(target).ids[0] >= 10_000 else 0
                assert r.status_code == 200, r.text
                assert r.json()["generation"] == gen
            time.sleep(0.15)
        stop.set()
        for w in workers:
            w.join()
    assert not failures
    assert len({g for g, _, _ in results}) >= 4 and len(results) > 20
    for gen, first, _ in results:  # every answer came whole from the index of its generation
        assert first >= 10_000 if expected[gen] else first < 10_000, (gen, first)


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mrl serve exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            return httpx.get(url + "/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("mrl serve did not start in time")


def test_mrl_serve_process_sighup_reload_and_graceful_shutdown(tiny_model: Path, tiny_index: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    shutil.copytree(tiny_index, served)
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "MRL_API_KEY": KEY}
    cmd = [sys.executable, "-m", "mrl", "serve", "--model", str(tiny_model), "--index", str(served), "--port", str(port), "--threads", "1", "--batch-wait-ms", "400"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        health = _wait_health(url, proc)
        assert health["index"]["generation"] == 0
        auth = {"authorization": f"Bearer {KEY}"}
        assert httpx.post(url + "/v1/embeddings", json={"input": "x"}).status_code == 401
        MatryoshkaIndex.load(_copy_with_ids(tiny_index, tmp_path / "v2", 5_000)).save(served)  # rebuilt in place
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while httpx.get(url + "/health").json()["index"]["generation"] != 1:
            assert time.time() < deadline, "SIGHUP did not reload the index"
            time.sleep(0.1)
        r = httpx.post(url + "/v1/search", json={"input": "a red boat", "k": 3}, headers=auth, timeout=30)
        assert r.status_code == 200 and min(r.json()["data"][0]["ids"]) >= 5_000
        # graceful shutdown: a request in flight (waiting 400 ms for its batch) still gets its answer
        box: dict[str, Any] = {}
        t = threading.Thread(target=lambda: box.update(r=httpx.post(url + "/v1/embeddings", json={"input": "late"}, headers=auth, timeout=30)))
        t.start()
        time.sleep(0.15)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert box["r"].status_code == 200 and len(box["r"].json()["data"][0]["embedding"]) == DIM
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err and f"127.0.0.1:{port}" in err  # bound to loopback
    assert "reloaded" in err and "Finished server process" in err


def test_shutdown_past_the_drain_window_answers_json_503_and_exits(served_model: Any, live_server: Any) -> None:
    """SIGTERM's path (uvicorn's should_exit) while one request's batch computes for 8 s and another
    waits behind it, with a 0.3 s drain window: both get a JSON 503 when the window ends and the server
    stops at once, without waiting for the batch. Was: plain-text 500s and a server that lingered
    until every queued batch had run."""
    import dataclasses

    from mrl.serve.encoder import ServedModel

    release = threading.Event()

    class Slow(ServedModel):
        def encode(self, texts: list[str]) -> np.ndarray:
            if any("slow" in t for t in texts):
                release.wait(8)
            return super().encode(texts)

    model = Slow(**{f.name: getattr(served_model, f.name) for f in dataclasses.fields(served_model)})
    app = create_app(ServeConfig(model="tiny-mrl", batching=Batching(max_batch=1, max_wait_ms=0)), model=model)
    srv = live_server(app, drain_s=0.3)
    box: dict[str, Any] = {}
    try:
        with srv:
            def hit(text: str) -> None:
                box[text] = httpx.post(srv.url + "/v1/embeddings", json={"input": text}, timeout=30)

            clients = [threading.Thread(target=hit, args=(t,)) for t in ("slow one", "queued behind it")]
            for c in clients:
                c.start()
                time.sleep(0.2)
            t0 = time.perf_counter()
            srv.server.should_exit = True  # what uvicorn's SIGTERM handler sets
            srv.thread.join(20)
            stopped_in = time.perf_counter() - t0
            for c in clients:
                c.join(20)
    finally:
        release.set()
    assert not srv.thread.is_alive() and stopped_in < 3.0, stopped_in  # the window (0.3 s) + the queues' short wait, not the 8 s batch
    for text in ("slow one", "queued behind it"):
        r = box[text]
        assert r.status_code == 503, (text, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json") and r.json()["error"]["code"] == "shutting_down"


def test_drain_seconds_reaches_the_server_and_options_are_checked(monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> None:
    from typer.testing import CliRunner

    from mrl.cli.app import app

    seen: dict[str, Any] = {}
    monkeypatch.setattr("mrl.serve.server.run", lambda app_, **kw: seen.update(kw))
    monkeypatch.setattr("mrl.serve.create_app", lambda cfg, model=None: None)
    res = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), "--drain-seconds", "2.5"])
    assert res.exit_code == 0, res.output
    assert seen["graceful_s"] == 2.5
    res = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), "--drain-seconds", "-1"])
    assert res.exit_code == 2 and "--drain-seconds" in res.output
    res = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), "--threads", "0"])
    assert res.exit_code == 2 and "--threads" in res.output
