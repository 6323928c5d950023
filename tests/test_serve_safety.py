"""Safety of the HTTP boundary: auth, every limit, malformed input — always a JSON 4xx, never a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_fixtures import DIM, served_model, tiny_index, tiny_model  # noqa: F401

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from mrl.serve import Limits, ServeConfig, create_app

KEY = "s3cret-key"
LIMITS = Limits(max_inputs=4, max_chars=50, max_k=20, max_body_bytes=4096)


@pytest.fixture(scope="module")
def api(served_model: Any, tiny_index: Path) -> Any:
    app = create_app(ServeConfig(model="tiny-mrl", index=tiny_index, api_key=KEY, limits=LIMITS), model=served_model)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["authorization"] = f"Bearer {KEY}"
        yield c


def err(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()["error"]
    assert body["message"] and "Traceback" not in body["message"]
    return body


def q() -> list[list[float]]:
    return np.linspace(-1, 1, DIM, dtype=np.float32)[None].tolist()


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/embeddings"), ("POST", "/v1/search"), ("GET", "/metrics"), ("GET", "/v1/models"),
                                              ("GET", "/v1/info"), ("POST", "/admin/reload"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/nope")])
def test_every_endpoint_but_health_needs_the_key(api: TestClient, method: str, path: str) -> None:
    for headers in ({"authorization": ""}, {"authorization": f"Bearer {KEY}x"}, {"authorization": KEY}, {"authorization": f"bearer {KEY}"}):
        r = api.request(method, path, json={"input": "x"} if method == "POST" else None, headers=headers)
        assert err(r, 401)["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"


def test_health_and_page_shell_are_public(api: TestClient) -> None:
    assert api.get("/health", headers={"authorization": ""}).status_code == 200
    assert api.get("/", headers={"authorization": ""}).status_code == 200  # static HTML, no data: its API calls carry the key
    assert api.get("/v1/info", headers={"authorization": ""}).status_code == 401


def test_public_paths_show_no_paths_and_no_data(tiny_model: Path, tiny_index: Path) -> None:
    """/health, / and /static/* answer without the key: none of them may show where the model or the
    index live (or any served data); the README says exactly which paths are public."""
    from mrl.serve.encoder import ServedModel

    served = ServedModel.load(str(tiny_model))  # named by its absolute path, as `mrl serve --model /abs/path` does
    app = create_app(ServeConfig(model=str(tiny_model), index=tiny_index, api_key=KEY), model=served)
    with TestClient(app) as c:
        h = c.get("/health")
        assert h.status_code == 200
        assert h.json()["model"] == tiny_model.name and h.json()["index"]["count"] == 600
        bodies = {"/health": h.text}
        for path in ("/", "/static/page.js", "/static/page.css"):
            r = c.get(path)
            assert r.status_code == 200, path
            bodies[path] = r.text
        for path, text in bodies.items():
            for secret in (str(tiny_model.parent), str(tiny_index), "tmp/", "/root", "/home"):
                assert secret not in text, (path, secret)
        for path in ("/", "/static/page.js"):
            assert tiny_model.name not in bodies[path] and "600" not in bodies[path]  # the shell holds no data: its API calls carry the key
        assert c.get("/v1/info").status_code == 401
        assert c.get("/static/../../serve/app.py").status_code in (401, 404)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    serve = readme[readme.index("## Serve"):]
    serve = serve[: serve.index("\n## ", 1)]
    key_line = " ".join(serve[serve.index("--api-key KEY"):].split("\n")[:4])
    assert "`/health`" in key_line and "`/`" in key_line and "`/static/*`" in key_line, key_line


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mrl.cli.app import app

    seen = {}
    monkeypatch.setenv("MRL_API_KEY", "from-env")
    monkeypatch.setattr("mrl.serve.server.run", lambda app_, **kw: seen.update(kw, app=app_))
    monkeypatch.setattr("mrl.serve.create_app", lambda cfg, model=None: seen.update(cfg=cfg))
    res = CliRunner().invoke(app, ["serve", "--model", "all-MiniLM-L6-v2"])
    assert res.exit_code == 0, res.output
    assert seen["cfg"].api_key == "from-env" and seen["host"] == "127.0.0.1"  # loopback unless told otherwise


def test_too_many_inputs_and_too_long_input(api: TestClient) -> None:
    assert err(api.post("/v1/embeddings", json={"input": ["a"] * 5}), 400)["code"] == "too_many_inputs"
    assert err(api.post("/v1/embeddings", json={"input": "x" * 51}), 400)["code"] == "input_too_long"
    assert err(api.post("/v1/search", json={"input": ["a"] * 5}), 400)["code"] == "too_many_inputs"
    assert err(api.post("/v1/search", json={"vectors": q() * 5}), 400)["code"] == "too_many_inputs"
    assert err(api.post("/v1/embeddings", json={"input": []}), 400)["code"] == "invalid_value"
    assert err(api.post("/v1/embeddings", json={"input": ["ok", ""]}), 400)["code"] == "invalid_value"


def test_k_limits(api: TestClient) -> None:
    assert err(api.post("/v1/search", json={"vectors": q(), "k": 21}), 400)["code"] == "invalid_k"
    assert err(api.post("/v1/search", json={"vectors": q(), "k": 0}), 400)["code"] == "invalid_k"
    assert err(api.post("/v1/search", json={"vectors": q(), "k": "5"}), 422)["param"] == "k"
    assert err(api.post("/v1/search", json={"vectors": q(), "k": 20, "funnel": "8:10 -> 32:10"}), 400)["code"] == "invalid_value"  # k beyond the shortlist


def test_body_size_413(api: TestClient) -> None:
    assert err(api.post("/v1/embeddings", json={"input": "x" * 5000}), 413)["code"] == "body_too_large"

    def chunks() -> Any:  # no Content-Length: the server counts while buffering
        yield b'{"input": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    assert err(api.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}), 413)["code"] == "body_too_large"


def test_dimensions_outside_range(api: TestClient) -> None:
    for d in (0, -3, DIM + 1):
        assert err(api.post("/v1/embeddings", json={"input": "x", "dimensions": d}), 400)["code"] == "invalid_dimensions"
    assert err(api.post("/v1/embeddings", json={"input": "x", "dimensions": 8.5}), 422)["param"] == "dimensions"
    assert err(api.post("/v1/embeddings", json={"input": "x", "dimensions": True}), 422)["param"] == "dimensions"


def test_vectors_of_the_wrong_width(api: TestClient) -> None:
    assert err(api.post("/v1/search", json={"vectors": [[0.1] * (DIM - 1)]}), 400)["code"] == "wrong_width"
    assert err(api.post("/v1/search", json={"vectors": [[0.1] * DIM, [0.1] * (DIM + 2)]}), 400)["code"] == "wrong_width"
    assert err(api.post("/v1/search", json={"vectors": [0.1] * DIM}), 422)["param"].startswith("vectors")


def test_nan_and_inf(api: TestClient) -> None:
    for bad in ("NaN", "Infinity", "-Infinity"):
        raw = '{"vectors": [[' + ", ".join(["0.1"] * (DIM - 1) + [bad]) + "]]}"
        assert err(api.post("/v1/search", content=raw, headers={"content-type": "application/json"}), 422)["param"].startswith("vectors")
    raw = '{"vectors": [[' + ", ".join(["0.1"] * (DIM - 1) + ["1e39"]) + "]]}"  # finite in JSON, overflows float32
    assert err(api.post("/v1/search", content=raw, headers={"content-type": "application/json"}), 400)["code"] == "invalid_value"


def test_malformed_json_and_schema(api: TestClient) -> None:
    h = {"content-type": "application/json"}
    e = err(api.post("/v1/embeddings", content='{"input": "x",', headers=h), 422)
    assert "not valid JSON" in e["message"]
    assert err(api.post("/v1/embeddings", content="[1, 2]", headers=h), 422)
    assert err(api.post("/v1/embeddings", json={"inputs": "x"}), 422)  # a typo is refused, not ignored
    e = err(api.post("/v1/embeddings", json={"input": [1, "two", 3]}), 422)  # neither texts nor token ids: say what input takes
    assert e["param"] == "input" and "token ids" in e["message"] and "list of texts" in e["message"]
    assert err(api.post("/v1/embeddings", json={"input": "x", "encoding_format": "int8"}), 422)["param"] == "encoding_format"
    assert err(api.post("/v1/search", json={"vectors": q(), "recall_target": 1.5}), 422)["param"] == "recall_target"
    assert err(api.post("/v1/search", json={"vectors": q(), "input": "x"}), 400)
    assert err(api.post("/v1/search", json={"k": 3}), 400)
    assert err(api.post("/v1/embeddings", content=b"\xff\xfe", headers=h), 422)


def test_unknown_funnel_and_unknown_model(api: TestClient) -> None:
    for spec in ("banana", "8/fast:100 -> 32:10", "64:100 -> 32:10", f"{DIM + 8}:10"):
        assert err(api.post("/v1/search", json={"vectors": q(), "funnel": spec}), 400)["code"] == "invalid_value"
    e = err(api.post("/v1/search", json={"vectors": q(), "funnel": "8/hnsw:50 -> 32:10"}), 400)
    assert "not built" in e["message"]
    assert err(api.post("/v1/search", json={"vectors": q(), "funnel": "8:50 -> 32:10", "recall_target": 0.9}), 400)
    assert err(api.post("/v1/embeddings", json={"input": "x", "model": "gpt-9"}), 404)["code"] == "model_not_found"
    assert "lang" in err(api.post("/v1/search", json={"vectors": q(), "filter": {"lang": "en"}}), 400)["message"]  # no such metadata field
    assert err(api.post("/v1/search", json={"vectors": q(), "filter": "lang =="}), 400)


def test_on_demand_first_stage_is_bounded(served_model: Any, tiny_index: Path) -> None:
    app = create_app(ServeConfig(model="tiny-mrl", index=tiny_index, limits=Limits(max_build_bytes=0)), model=served_model)
    with TestClient(app) as c:
        built = c.get("/v1/info").json()["index"]["first_stages"]  # e.g. ["16-int8-flat"]: what tuning persisted
        spec = next(f"{d}{'/int8' if p == 'int8' else ''}:50 -> 32:10" for d in (8, 16) for p in ("float32", "int8") if f"{d}-{p}-flat" not in built)
        e = err(c.post("/v1/search", json={"vectors": q(), "funnel": spec}), 400)
        assert "on-demand limit" in e["message"]
        assert c.post("/v1/search", json={"vectors": q(), "k": 10}).status_code == 200  # the tuned funnel's stage is built


def test_no_index(served_model: Any) -> None:
    with TestClient(create_app(ServeConfig(model="tiny-mrl", index=None), model=served_model)) as c:
        assert err(c.post("/v1/search", json={"vectors": q()}), 400)["code"] == "no_index"
        assert err(c.post("/admin/reload"), 409)["code"] == "reload_failed"


def test_reload_of_a_broken_folder_keeps_serving(api: TestClient, tmp_path: Path, tiny_index: Path) -> None:
    e = err(api.post("/admin/reload", json={"index": str(tmp_path / "missing")}), 409)
    assert "still serving generation 0" in e["message"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({"format": "mrl.index"}))
    err(api.post("/admin/reload", json={"index": str(broken)}), 409)
    assert api.post("/v1/search", json={"vectors": q(), "k": 3}).status_code == 200
    assert err(api.post("/admin/reload", json={"index": 5}), 422)
