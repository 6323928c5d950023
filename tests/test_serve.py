"""The HTTP API through FastAPI's TestClient: embeddings (OpenAI shape, truncation), search, health, metrics."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_fixtures import DIM, corpus, plain_model, served_model, tiny_index, tiny_model  # noqa: F401

from mrl.embeddings import truncate

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mrl.serve import Batching, Limits, ServeConfig, create_app  # noqa: E402


def client(served: Any = None, **kw: Any) -> TestClient:
    cfg = ServeConfig(**{"model": "tiny-mrl", **kw})
    return TestClient(create_app(cfg, model=served))


@pytest.fixture(scope="module")
def api(served_model: Any, tiny_index: Path) -> Any:
    with client(served_model, index=tiny_index) as c:
        yield c


def test_embeddings_openai_shape_and_truncation_equals_library(api: TestClient, served_model: Any) -> None:
    texts = ["a red boat near the sea", "a small house"]
    r = api.post("/v1/embeddings", json={"input": texts, "model": "tiny-mrl", "dimensions": 16})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "tiny-mrl"
    assert [d["index"] for d in body["data"]] == [0, 1] and all(d["object"] == "embedding" for d in body["data"])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    expected = truncate(served_model.encode(texts), 16)  # the library's truncate-then-normalise
    assert got.shape == (2, 16)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # not the same as normalising first and truncating after
    assert not np.allclose(got, served_model.encode(texts)[:, :16] / np.linalg.norm(served_model.encode(texts), axis=1, keepdims=True), atol=1e-4)


def test_embeddings_full_width_string_input_and_base64(api: TestClient, served_model: Any) -> None:
    r = api.post("/v1/embeddings", json={"input": "a blue bird", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 1 and isinstance(data[0]["embedding"], str)
    vec = np.frombuffer(base64.b64decode(data[0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vec, truncate(served_model.encode(["a blue bird"]), DIM)[0])


def test_dimensions_refused_for_a_model_that_is_not_matryoshka(plain_model: Path) -> None:
    with client(None, model=str(plain_model), model_name="plain") as c:
        r = c.post("/v1/embeddings", json={"input": "x", "dimensions": 8})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == "dimensions_not_supported" and "--allow-untrained-dimensions" in err["message"] and "adaptor" in err["message"]
        assert c.post("/v1/embeddings", json={"input": "x", "dimensions": DIM}).status_code == 200  # full width is not a truncation
        assert c.get("/v1/info").json()["model"]["nested"] is False
    with client(None, model=str(plain_model), allow_untrained_dimensions=True) as c:
        r = c.post("/v1/embeddings", json={"input": "x", "dimensions": 8})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 8


def test_matryoshka_marker_from_vllm_config_fields(plain_model: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from mrl.serve.encoder import matryoshka_dimensions

    folder = tmp_path / "m"
    shutil.copytree(plain_model, folder)
    assert matryoshka_dimensions(folder) is None
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "is_matryoshka": True, "matryoshka_dimensions": [8, 32]}))
    assert matryoshka_dimensions(folder) == (8, 32)


def test_adaptor_makes_dimensions_usable(plain_model: Path, tmp_path: Path) -> None:
    import torch

    from mrl.models.adaptor import MatryoshkaAdaptor, save_adaptor
    from mrl.serve.encoder import ServedModel

    ad = MatryoshkaAdaptor(DIM)
    with torch.no_grad():
        ad.linear.weight.copy_(torch.eye(DIM).flip(0))  # reverses the coordinates: visible in the output
    save_adaptor(ad, {"matryoshka_dims": [8, 16, 32]}, tmp_path / "ad")
    served = ServedModel.load(str(plain_model), adaptor=tmp_path / "ad", name="plain+ad")
    with client(served, model=str(plain_model), adaptor=tmp_path / "ad") as c:
        r = c.post("/v1/embeddings", json={"input": "a red boat", "dimensions": 8})
        assert r.status_code == 200, r.text
        raw = served.st.encode(["a red boat"], convert_to_numpy=True)
        np.testing.assert_allclose(r.json()["data"][0]["embedding"], truncate(raw[:, ::-1].copy(), 8)[0], atol=1e-6)


def test_search_by_text_vectors_funnel_and_recall_target(api: TestClient, served_model: Any) -> None:
    texts = corpus()
    r = api.post("/v1/search", json={"input": [texts[5], texts[77]], "k": 5, "return_text": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [row["ids"][0] for row in body["data"]] == [5, 77]  # a stored passage finds itself first
    assert body["data"][0]["texts"][0] == texts[5]
    assert body["chosen_by"] == "default" and body["funnel"].endswith(":5")
    assert body["timings"]["stages"] and all(s["ms"] >= 0 for s in body["timings"]["stages"])
    assert body["timings"]["encode_ms"] > 0
    scores = np.array(body["data"][0]["scores"])
    assert (np.diff(scores) <= 1e-6).all()

    q = served_model.encode([texts[9]])
    r = api.post("/v1/search", json={"vectors": q.tolist(), "k": 3, "funnel": f"8:50 -> {DIM}:3"})
    assert r.status_code == 200, r.text
    assert r.json()["funnel"] == f"8:50 -> {DIM}:3" and r.json()["data"][0]["ids"][0] == 9 and r.json()["chosen_by"] == "request"
    assert len(r.json()["timings"]["stages"]) == 2

    frontier = api.get("/v1/info").json()["index"]["frontier"]
    recalls = sorted(p["recall"] for p in frontier)
    assert len(recalls) >= 2
    target = recalls[0] + 1e-3  # the cheapest point misses it: the next one on the frontier is chosen
    r = api.post("/v1/search", json={"vectors": q.tolist(), "k": 10, "recall_target": target})
    assert r.status_code == 200, r.text
    assert r.json()["chosen_by"] == "recall_target" and r.json()["expected_recall"] == recalls[1]
    assert r.json()["funnel"] == next(p["funnel"] for p in frontier if p["recall"] == recalls[1])
    if recalls[-1] < 1.0:  # a target above every tuned point is refused with the best recall on offer
        r = api.post("/v1/search", json={"vectors": q.tolist(), "k": 10, "recall_target": recalls[-1] + 1e-4})
        assert r.status_code == 400 and "the best recorded is" in r.json()["error"]["message"]


def test_health_models_info_and_metrics(api: TestClient) -> None:
    h = api.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "tiny-mrl" and h["index"]["count"] == 600
    assert api.get("/v1/models").json()["data"][0]["id"] == "tiny-mrl"
    info = api.get("/v1/info").json()
    assert info["page_dims"] == [16, DIM] and info["index"]["texts"] is True and info["model"]["matryoshka_dimensions"] == [8, 16, 32]
    api.post("/v1/embeddings", json={"input": ["a", "b", "c"]})
    api.post("/v1/embeddings", json={"input": "x", "dimensions": 0})
    m = api.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    assert 'mrl_requests_total{endpoint="/v1/embeddings",method="POST",status="200"}' in text
    assert 'mrl_request_errors_total{endpoint="/v1/embeddings",status="400"}' in text
    assert 'mrl_request_duration_seconds_bucket{endpoint="/v1/embeddings"' in text
    assert 'mrl_batch_size_count{queue="embed"}' in text and "process_resident_memory_bytes" in text
    assert "mrl_index_vectors 600.0" in text


def test_page_is_served(api: TestClient) -> None:
    r = api.get("/")
    assert r.status_code == 200 and "<form" in r.text and "/static/page.js" in r.text
    assert api.get("/static/page.js").status_code == 200


def test_batching_settings_are_validated() -> None:
    from mrl.errors import MRLError

    with pytest.raises(MRLError, match="max_batch"):
        Batching(max_batch=0)
    with pytest.raises(MRLError, match="max_k"):
        Limits(max_k=0)
    with pytest.raises(MRLError, match="nothing to serve"):
        ServeConfig()


def test_search_with_a_metadata_filter(served_model: Any, tmp_path: Path) -> None:
    from mrl.index import MatryoshkaIndex
    from mrl.index.texts import write_text_store

    texts = corpus(120)
    idx = MatryoshkaIndex(DIM)
    idx.add(served_model.encode(texts), np.arange(len(texts)), metadata={"colour": [t.split()[1] for t in texts]})
    idx.save(tmp_path / "idx")
    write_text_store(tmp_path / "idx", np.arange(len(texts)), texts)
    with client(served_model, index=tmp_path / "idx") as c:
        r = c.post("/v1/search", json={"input": "a boat near the sea", "k": 5, "filter": {"colour": ["red", "blue"]}, "return_text": True})
        assert r.status_code == 200, r.text
        got = r.json()["data"][0]["texts"]
        assert len(got) == 5 and all(t.split()[1] in ("red", "blue") for t in got)
        r = c.post("/v1/search", json={"input": "a boat", "k": 3, "filter": 'colour == "green"', "return_text": True})
        assert r.status_code == 200 and all(" green " in t for t in r.json()["data"][0]["texts"])
        assert c.post("/v1/search", json={"input": "a boat", "filter": {"size": 3}}).status_code == 400


def test_search_through_a_milvus_collection(served_model: Any, tiny_index: Path, tmp_path: Path) -> None:
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from mrl.index.backends.push import push

    mi = push(tiny_index, str(tmp_path / "m.db"), "docs", batch_size=300, progress=False)
    mi.close()
    q = served_model.encode([corpus()[42], corpus()[7]])
    with client(served_model, index=tiny_index) as local:
        want = local.post("/v1/search", json={"vectors": q.tolist(), "k": 5, "funnel": f"{DIM}:5"}).json()
    with client(served_model, milvus=str(tmp_path / "m.db"), collection="docs") as c:
        r = c.post("/v1/search", json={"vectors": q.tolist(), "k": 5, "funnel": f"{DIM}:5"})
        assert r.status_code == 200, r.text
        assert r.json()["funnel"] == want["funnel"] and [row["ids"] for row in r.json()["data"]] == [row["ids"] for row in want["data"]]
        assert c.get("/v1/info").json()["index"]["backend"] == "MilvusIndex"
        assert c.post("/v1/search", json={"input": "a red boat", "k": 3, "return_text": True}).json()["error"]["code"] == "no_texts"
        assert c.post("/admin/reload").status_code == 200
        assert c.post("/admin/reload", json={"index": str(tiny_index)}).status_code == 409
