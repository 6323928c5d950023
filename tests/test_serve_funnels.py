"""`POST /v1/search` with every first-stage kind the tuner can choose, `recall_target` over such a
frontier, the k at which the expected recall was measured, hostile funnel specs, and one log
record per 500."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_fixtures import DIM, corpus, live_server, served_model, tiny_index, tiny_model  # noqa: F401

pytest.importorskip("fastapi")
import httpx
from fastapi.testclient import TestClient

from mrl.serve import ServeConfig, create_app

# Every first-stage structure the funnel grammar (and so the tuner) can name: precision x kind.
FIRST_STAGES = ("16", "16/fp16", "16/int8", "16/binary", "16/hnsw", "16/hnsw/m16", "16/int8/hnsw", "16/fp16/hnsw",
                "16/ivf8", "16/int8/ivf8/c8", "16/usearch", "16/fp16/usearch", "16/int8/usearch/m16")
SEARCH_OPTS = {"hnsw": "/ef120", "usearch": "/ef120", "ivf": "/np4"}


def funnel_of(first: str, k1: int = 100) -> str:
    opt = next((o for kind, o in SEARCH_OPTS.items() if kind in first), "")
    return f"{first}{opt}:{k1} -> {DIM}:10"


def _index(folder: Path, model: Any, *, build: tuple[str, ...] = (), funnel: str | None = None, frontier: list[dict[str, Any]] | None = None) -> Path:
    """The corpus in a cosine index whose first stages ``build`` are built and saved, with a tuning
    record whose frontier lists ``frontier`` (as `mrl index build --target-recall` writes it, k=10)."""
    from mrl.index import MatryoshkaIndex
    from mrl.index.texts import write_text_store

    texts = corpus()
    idx = MatryoshkaIndex(DIM, metric="cosine")
    idx.add(model.encode(texts), np.arange(len(texts)))
    for first in build:
        idx.build_first_stage(f"{first}:1")
    if funnel is not None:
        from mrl.index import Funnel

        idx.funnel = Funnel.parse(funnel)
    if frontier is not None:
        idx.tuning = {"k": 10, "target_recall": 0.95, "recall": 0.97, "frontier": frontier}
    idx.save(folder)
    write_text_store(folder, np.arange(len(texts)), texts)
    return folder


def _query(model: Any) -> list[list[float]]:
    return model.encode([corpus()[9]]).tolist()


@pytest.fixture(scope="module")
def bare_api(served_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An index with no first stage built (flat ones are built on demand, others are refused)."""
    folder = _index(tmp_path_factory.mktemp("bare") / "idx", served_model)
    with TestClient(create_app(ServeConfig(model="tiny-mrl", index=folder), model=served_model), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("first", FIRST_STAGES)
def test_every_first_stage_kind_answers_200_or_a_400_never_a_500(bare_api: TestClient, served_model: Any, first: str) -> None:
    r = bare_api.post("/v1/search", json={"vectors": _query(served_model), "funnel": funnel_of(first)})
    if "/hnsw" in first or "/ivf" in first or "/usearch" in first:  # never built inside a request
        assert r.status_code == 400, r.text
        msg = r.json()["error"]["message"]
        assert "not built" in msg and f"--first-stage {first}" in msg
    else:  # flat: float32, fp16, int8, binary codes are built on demand (bounded by max_build_bytes)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["ids"][0] == 9


def test_every_first_stage_kind_runs_when_built(served_model: Any, tmp_path: Path) -> None:
    folder = _index(tmp_path / "idx", served_model, build=FIRST_STAGES)
    with TestClient(create_app(ServeConfig(model="tiny-mrl", index=folder), model=served_model), raise_server_exceptions=False) as c:
        for first in FIRST_STAGES:
            r = c.post("/v1/search", json={"vectors": _query(served_model), "funnel": funnel_of(first), "return_text": True})
            assert r.status_code == 200, (first, r.text)
            assert r.json()["data"][0]["ids"][0] == 9 and r.json()["chosen_by"] == "request" and r.json()["expected_recall"] is None


def test_recall_target_over_a_frontier_of_every_kind_on_an_fp16_index(served_model: Any, tmp_path: Path) -> None:
    """The README quick-start case: the tuner chose an fp16 first stage; its frontier lists funnels of
    every kind, most of them not built in the folder. Was: KeyError 'float16' -> 500."""
    chosen = "16/fp16:100 -> 32:10"
    flat = {"16/binary": (0.90, 0.002), "16/int8": (0.95, 0.005), "16/fp16": (0.97, 0.01), "16": (0.98, 0.02)}  # (recall, ms per query)
    frontier = [{"funnel": funnel_of(f), "recall": flat.get(f, (0.99, 0.001))[0], "ms_per_query": flat.get(f, (0.99, 0.001))[1]} for f in FIRST_STAGES]
    folder = _index(tmp_path / "idx", served_model, build=("16/fp16",), funnel=chosen, frontier=frontier)
    with TestClient(create_app(ServeConfig(model="tiny-mrl", index=folder), model=served_model), raise_server_exceptions=False) as c:
        for target, first in ((0.9, "16/binary"), (0.93, "16/int8"), (0.96, "16/fp16"), (0.975, "16")):  # graphs/IVF are faster but not built here
            r = c.post("/v1/search", json={"vectors": _query(served_model), "recall_target": target, "return_text": True})
            assert r.status_code == 200, (target, r.text)
            body = r.json()
            assert body["chosen_by"] == "recall_target" and body["funnel"] == funnel_of(first) and body["expected_recall"] == flat[first][0]
            assert body["recall_measured_at_k"] == 10 and body["data"][0]["ids"][0] == 9
        r = c.post("/v1/search", json={"vectors": _query(served_model), "recall_target": 0.99})  # only unbuilt structures met it: say so
        assert r.status_code == 400 and "cannot run here" in r.json()["error"]["message"] and "not built" in r.json()["error"]["message"]
        r = c.post("/v1/search", json={"input": "a red boat near the sea", "funnel": chosen})  # the README's explicit-funnel request
        assert r.status_code == 200 and r.json()["funnel"] == chosen
        r = c.post("/v1/search", json={"input": "a red boat near the sea", "k": 5})  # the default (tuned) funnel
        assert r.status_code == 200 and r.json()["funnel"] == "16/fp16:100 -> 32:5" and r.json()["chosen_by"] == "default"


def test_expected_recall_says_at_which_k_it_was_measured(served_model: Any, tiny_index: Path, tmp_path: Path) -> None:
    with TestClient(create_app(ServeConfig(model="tiny-mrl", index=tiny_index), model=served_model)) as c:
        tuned_k = c.get("/v1/info").json()["index"]["tuned_k"]
        assert tuned_k == 10
        for k in (3, 10):
            body = c.post("/v1/search", json={"vectors": _query(served_model), "k": k}).json()
            assert body["k"] == k and body["expected_recall"] is not None and body["recall_measured_at_k"] == tuned_k
        body = c.post("/v1/search", json={"vectors": _query(served_model), "k": 3, "funnel": f"8:50 -> {DIM}:3"}).json()
        assert body["expected_recall"] is None and body["recall_measured_at_k"] is None  # a request's own funnel was never measured
    exact = _index(tmp_path / "exact", served_model)  # untuned: exact search, recall 1.0 at any k
    with TestClient(create_app(ServeConfig(model="tiny-mrl", index=exact), model=served_model)) as c:
        body = c.post("/v1/search", json={"vectors": _query(served_model), "k": 3}).json()
        assert body["expected_recall"] == 1.0 and body["recall_measured_at_k"] == 3


@pytest.mark.parametrize("spec", ["9" * 5000 + ":10", "8:" + "9" * 5000, "8:100 -> " + "9" * 4000 + ":10", "8/ef" + "9" * 20 + ":10 -> 32:10",
                                  "8/hnsw/ef" + "9" * 12 + ":10 -> 32:10", "8:100 -> 32:10" + " " * 300, "99999999999:10", "8:99999999999 -> 32:10"])
def test_hostile_funnel_specs_answer_400(bare_api: TestClient, served_model: Any, spec: str) -> None:
    r = bare_api.post("/v1/search", json={"vectors": _query(served_model), "funnel": spec})
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "invalid_value" and len(r.json()["error"]["message"]) < 400


def test_hostile_k_dimensions_and_vectors_answer_4xx(bare_api: TestClient, served_model: Any) -> None:
    q = _query(served_model)
    for k in (10**30, 2**63, -(10**30), 10**300):
        assert bare_api.post("/v1/search", json={"vectors": q, "k": k}).status_code == 400
    for d in (10**30, 2**31, 2**63, -(2**63)):
        assert bare_api.post("/v1/embeddings", json={"input": "x", "dimensions": d}).status_code == 400
    raw = '{"vectors": [[' + ", ".join(["NaN"] * DIM) + "]]}"
    assert bare_api.post("/v1/search", content=raw, headers={"content-type": "application/json"}).status_code == 422
    for bad in ([[0.1] * (DIM * 1000)], [[0.1] * DIM, []], [[]], [["x"] * DIM]):
        r = bare_api.post("/v1/search", json={"vectors": bad})
        assert r.status_code in (400, 422), r.text[:200]
    digits = '{"input": "x", "dimensions": ' + "9" * 5000 + "}"  # beyond Python's int-from-string limit inside the JSON parser
    assert bare_api.post("/v1/embeddings", content=digits, headers={"content-type": "application/json"}).status_code in (400, 422)
    digits = '{"vectors": [[0.1]], "k": ' + "9" * 5000 + "}"
    assert bare_api.post("/v1/search", content=digits, headers={"content-type": "application/json"}).status_code in (400, 422)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_500_is_json_and_logged_once(served_model: Any, tiny_index: Path, live_server: Any) -> None:
    from mrl.serve.backend import IndexSearch

    class Broken(IndexSearch):
        def search(self, queries: np.ndarray, plan: Any) -> Any:
            raise RuntimeError("secret internals of the search path")

    app = create_app(ServeConfig(model="tiny-mrl", index=tiny_index), model=served_model, backend_opener=lambda folder: Broken.open(folder))
    server = live_server(app)  # configures uvicorn's loggers: add the probe after it
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("mrl.serve", "uvicorn.error", "uvicorn")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with server as srv:
            r = httpx.post(srv.url + "/v1/search", json={"vectors": _query(served_model)}, timeout=30)
            assert httpx.get(srv.url + "/health", timeout=30).status_code == 200  # still serving
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error" and "secret internals" not in r.text  # no internals in the body
    with_traceback = [rec for rec in handler.records if rec.exc_info]
    assert len(with_traceback) == 1, [rec.getMessage() for rec in with_traceback]
    assert "/v1/search" in with_traceback[0].getMessage()
