"""What `/v1/embeddings` accepts: token-id arrays (OpenAI/vLLM/TEI), only the trained `dimensions`,
and a text the tokenizer cannot take fails only its own request, also inside a shared batch."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_fixtures import DIM, live_server, plain_model, served_model, tiny_index, tiny_model  # noqa: F401

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from mrl.embeddings import truncate
from mrl.serve import Batching, ServeConfig, create_app
from mrl.serve.batching import DynamicBatcher

TEXTS = ["a red boat near the sea", "a grey cup on a hill"]


def _ids(model: Any, text: str) -> list[int]:
    return model.st.tokenizer(text)["input_ids"]  # with [CLS] ... [SEP], as a client tokenizer sends them


@pytest.fixture(scope="module")
def api(served_model: Any) -> Any:
    with TestClient(create_app(ServeConfig(model="tiny-mrl"), model=served_model), raise_server_exceptions=False) as c:
        yield c


# ---------------------------------------------------------------------- 2.9 token arrays
def test_token_arrays_through_the_openai_client(served_model: Any, live_server: Any) -> None:
    openai = pytest.importorskip("openai")
    app = create_app(ServeConfig(model="tiny-mrl"), model=served_model)
    with live_server(app) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=30)
        res = client.embeddings.create(model="tiny-mrl", input=[_ids(served_model, t) for t in TEXTS], dimensions=16)  # list[list[int]], as LangChain sends
        got = np.array([d.embedding for d in res.data], dtype=np.float32)
        np.testing.assert_allclose(got, truncate(served_model.encode(TEXTS), 16), atol=1e-6)  # the same vectors as the texts
        assert res.usage.prompt_tokens == sum(len(_ids(served_model, t)) for t in TEXTS)
        res = client.embeddings.create(model="tiny-mrl", input=_ids(served_model, TEXTS[0]), encoding_format="float")  # one list[int]
        np.testing.assert_allclose(res.data[0].embedding, truncate(served_model.encode(TEXTS[:1]), DIM)[0], atol=1e-6)
        with pytest.raises(openai.BadRequestError, match="vocabulary"):  # tiktoken ids from a client that assumes OpenAI's tokenizer
            client.embeddings.create(model="tiny-mrl", input=[[100_000, 2000]])


def test_token_arrays_as_raw_json_and_their_limits(api: TestClient, served_model: Any) -> None:
    ids = _ids(served_model, TEXTS[1])
    r = api.post("/v1/embeddings", json={"input": ids})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["data"][0]["embedding"], truncate(served_model.encode(TEXTS[1:]), DIM)[0], atol=1e-6)
    vocab = len(served_model.st.tokenizer)
    for bad, code, words in (([[]], "invalid_value", "empty token array"), ([[1, vocab]], "invalid_value", "vocabulary"), ([-1, 5], "invalid_value", "vocabulary"),
                             ([[101, 102]], "invalid_value", "no text"), ([[101]] * 300, "too_many_inputs", "limit"), ([7] * 9000, "input_too_long", "tokens")):
        r = api.post("/v1/embeddings", json={"input": bad})
        assert r.status_code == 400, (bad[:3], r.text)
        assert r.json()["error"]["code"] == code and words in r.json()["error"]["message"]
    r = api.post("/v1/embeddings", json={"input": [[1, 2], "text"]})
    assert r.status_code == 422 and "token ids" in r.json()["error"]["message"]
    r = api.post("/v1/embeddings", json={"input": [1.5, 2]})
    assert r.status_code == 422


# ---------------------------------------------------------------------- 2.14 dimensions
def test_dimensions_outside_the_trained_prefixes_are_refused(api: TestClient, served_model: Any) -> None:
    assert served_model.trained_dims == (8, 16, 32)
    for d in (5, 12, 31):
        r = api.post("/v1/embeddings", json={"input": "x", "dimensions": d})
        assert r.status_code == 400, r.text
        e = r.json()["error"]
        assert e["code"] == "dimensions_not_supported" and e["param"] == "dimensions" and "[8, 16, 32]" in e["message"] and "--allow-untrained-dimensions" in e["message"]
    for d in (8, 16, 32):
        r = api.post("/v1/embeddings", json={"input": "x", "dimensions": d})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == d
    assert api.get("/v1/info").json()["model"]["dimensions"] == [8, 16, 32]


def test_allow_untrained_dimensions_accepts_any_size(served_model: Any) -> None:
    with TestClient(create_app(ServeConfig(model="tiny-mrl", allow_untrained_dimensions=True), model=served_model)) as c:
        r = c.post("/v1/embeddings", json={"input": "x", "dimensions": 12})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 12
        assert c.post("/v1/embeddings", json={"input": "x", "dimensions": DIM + 1}).status_code == 400  # never beyond D


def test_an_adaptor_allows_its_own_dims(plain_model: Path, tmp_path: Path) -> None:
    from mrl.models.adaptor import MatryoshkaAdaptor, save_adaptor
    from mrl.serve.encoder import ServedModel

    save_adaptor(MatryoshkaAdaptor(DIM), {"matryoshka_dims": [4, 16, 32]}, tmp_path / "ad")
    served = ServedModel.load(str(plain_model), adaptor=tmp_path / "ad", name="plain+ad")
    with TestClient(create_app(ServeConfig(model=str(plain_model), adaptor=tmp_path / "ad"), model=served)) as c:
        assert c.post("/v1/embeddings", json={"input": "x", "dimensions": 4}).status_code == 200
        r = c.post("/v1/embeddings", json={"input": "x", "dimensions": 8})
        assert r.status_code == 400 and "[4, 16, 32]" in r.json()["error"]["message"]


# ---------------------------------------------------------------------- 3.2 one bad request fails only itself
SURROGATE = '{"input": "\\ud800 x"}'  # valid JSON, a lone surrogate once parsed: no tokenizer can read it


def test_a_lone_surrogate_is_a_400(api: TestClient) -> None:
    for body in (SURROGATE, '{"input": ["fine", "a \\udfff b"]}'):
        r = api.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "input" and "surrogate" in r.json()["error"]["message"]
    r = api.post("/v1/embeddings", content='{"input": "pair \\ud83d\\ude00 ok"}', headers={"content-type": "application/json"})  # a valid pair: one emoji
    assert r.status_code == 200


def test_a_bad_request_among_concurrent_clients_fails_only_itself(served_model: Any, live_server: Any) -> None:
    app = create_app(ServeConfig(model="tiny-mrl", batching=Batching(max_wait_ms=20)), model=served_model)  # requests share batches
    statuses: dict[str, list[int]] = {"good": [], "bad": []}
    lock = threading.Lock()
    with live_server(app) as srv:

        def client(kind: str, i: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                for j in range(15):
                    if kind == "bad":
                        r = c.post("/v1/embeddings", content=SURROGATE, headers={"content-type": "application/json"})
                    else:
                        r = c.post("/v1/embeddings", json={"input": [f"text {i} {j}", "a red boat"], "dimensions": 8})
                        assert r.status_code != 200 or len(r.json()["data"]) == 2
                    with lock:
                        statuses[kind].append(r.status_code)

        threads = [threading.Thread(target=client, args=("good", i)) for i in range(6)] + [threading.Thread(target=client, args=("bad", 99))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = httpx.get(srv.url + "/metrics").text
    assert statuses["good"] == [200] * 90, statuses["good"]
    assert statuses["bad"] == [400] * 15
    assert 'mrl_batch_items_count{queue="embed"}' in metrics


def test_an_item_the_model_cannot_encode_fails_alone_inside_a_batch(served_model: Any, live_server: Any) -> None:
    """Past the per-request checks, a model failure on one request's texts inside a shared batch: the
    batch is retried request by request, so only that request fails."""
    from mrl.serve.encoder import ServedModel

    class Poisoned(ServedModel):
        def encode(self, texts: list[str]) -> np.ndarray:
            if any("poison" in t for t in texts):
                raise RuntimeError("the model cannot encode this")
            return super().encode(texts)

    model = Poisoned(**{f.name: getattr(served_model, f.name) for f in dataclasses.fields(served_model)})
    app = create_app(ServeConfig(model="tiny-mrl", batching=Batching(max_wait_ms=100)), model=model)
    out: dict[str, int] = {}
    with live_server(app) as srv:

        def hit(text: str) -> None:
            out[text] = httpx.post(srv.url + "/v1/embeddings", json={"input": text}, timeout=30).status_code

        threads = [threading.Thread(target=hit, args=(t,)) for t in ("one", "two", "poison", "three")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = httpx.get(srv.url + "/metrics").text
    assert out == {"one": 200, "two": 200, "poison": 500, "three": 200}
    assert 'mrl_batch_items_sum{queue="embed"} 4.0' in batches


def test_the_batcher_survives_a_native_panic() -> None:
    """A Rust tokenizer panic is a ``BaseException`` (pyo3's PanicException): it fails its batch, and
    the collector lives on to run the next one."""

    class Panic(BaseException):
        pass

    def run(items: list[int]) -> list[int]:
        if 0 in items:
            raise Panic("native code panicked")
        return [2 * x for x in items]

    async def main() -> list[Any]:
        b = DynamicBatcher("t", run, max_batch=1, max_wait_ms=0)
        b.start()
        first = await asyncio.wait_for(asyncio.gather(b.submit(0), return_exceptions=True), 5)  # was: never answered (the collector died)
        second = await asyncio.wait_for(b.submit(3), 5)
        await b.stop()
        return [first[0], second]

    first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError) and "Panic" in str(first) and second == 6
