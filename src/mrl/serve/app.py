"""The app factory: :func:`create_app` turns a :class:`ServeConfig` into a FastAPI app.

Endpoints (all JSON; every error is ``{"error": {...}}`` with a 4xx status):

* ``POST /v1/embeddings``   OpenAI's embeddings API; ``dimensions`` truncates then L2-normalises.
* ``POST /v1/search``       top-k ids/scores (and passages) for texts or vectors through a funnel.
* ``GET /v1/models``, ``GET /v1/info``   what is served (the page reads ``/v1/info``).
* ``POST /admin/reload``    swap to the rebuilt (or another) index folder; SIGHUP does the same.
* ``GET /health`` (never needs the key), ``GET /metrics`` (Prometheus), ``GET /`` (the page).

Example:
    >>> app = create_app(ServeConfig(model="all-MiniLM-L6-v2", index=Path("idx")))
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from mrl.embeddings import truncate
from mrl.errors import MRLError
from mrl.serve.backend import IndexSearch, SearchBackend
from mrl.serve.config import ServeConfig
from mrl.serve.encoder import ServedModel
from mrl.serve.errors import APIError, install_handlers
from mrl.serve.metrics import ServeMetrics
from mrl.serve.middleware import ServeMiddleware
from mrl.serve.page import find_report, mount_page, quality_curves
from mrl.serve.schemas import EmbeddingRequest, ReloadRequest, SearchRequest, embeddings_response
from mrl.serve.state import Found, IndexHolder, SearchItem, ServeState

log = logging.getLogger("mrl.serve")


def create_app(config: ServeConfig, *, model: ServedModel | None = None, backend_opener: Any = None) -> Any:
    """Load the model and index named by ``config`` and return the ASGI app (FastAPI inside the
    auth/limit/metrics middleware). ``model`` reuses an already loaded encoder (tests, benchmarks);
    ``backend_opener(folder) -> SearchBackend`` replaces the local index (e.g. a database backend).

    Raises:
        MRLError: the model or index cannot be loaded, or they disagree on the width.
    """
    metrics = ServeMetrics()
    if model is None and config.model is not None:
        model = ServedModel.load(config.model, adaptor=config.adaptor, name=config.model_name, device=config.device)
    if backend_opener is not None:
        opener, source = backend_opener, config.index
    elif config.milvus is not None:
        opener, source = _milvus_opener(config), f"milvus {config.milvus} collection {config.collection}"
    else:
        opener, source = (lambda folder: IndexSearch.open(folder, max_build_bytes=config.limits.max_build_bytes)), config.index
    holder = IndexHolder(source, opener, dim=model.dim if model else None, metrics=metrics, folders=config.milvus is None)
    holder.load_initial()
    state = ServeState(config, model, holder, metrics)
    quality = quality_curves(find_report(config.report, model.path if model else None))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        loop = asyncio.get_running_loop()
        sighup = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP")
        if sighup:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_on_signal(holder)))
        try:
            yield
        finally:
            if sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await state.stop()

    app = FastAPI(title="mrl serve", version=_version(), lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.mrl = state
    install_handlers(app)
    _routes(app, state, quality)
    mount_page(app)
    return ServeMiddleware(app, metrics=metrics, api_key=config.api_key, max_body_bytes=config.limits.max_body_bytes)


def _milvus_opener(config: ServeConfig) -> Any:
    def open_collection(_source: Any) -> IndexSearch:
        from mrl.index.backend import open_index

        return IndexSearch(open_index(milvus=config.milvus, collection=config.collection))

    return open_collection


async def _reload_on_signal(holder: IndexHolder) -> None:
    try:
        info = await holder.reload()
        log.warning("SIGHUP: reloaded %s (generation %d, %d vectors, %.2fs)", info["index"], info["generation"], info["count"], info["seconds"])
    except MRLError as exc:
        log.error("SIGHUP: reload failed, still serving generation %d: %s", holder.generation, exc)


def _public_name(name: str) -> str:
    """A model id as /health may show it: a path's last component (``/home/u/runs/m`` -> ``m``)."""
    return Path(name).name if ("/" in name or "\\" in name) else name


def _version() -> str:
    from mrl import __version__

    return __version__


# ---------------------------------------------------------------------- request checks
def _texts(raw: str | list[str], config: ServeConfig, field: str = "input") -> list[str]:
    texts = [raw] if isinstance(raw, str) else raw
    lim = config.limits
    if not texts:
        raise APIError(400, f"{field} is empty; send a text or a list of texts.", code="invalid_value", param=field)
    if len(texts) > lim.max_inputs:
        raise APIError(400, f"{field} holds {len(texts)} texts; the limit is {lim.max_inputs} per request: split the request.", code="too_many_inputs", param=field)
    for i, t in enumerate(texts):
        if not t:
            raise APIError(400, f"{field}[{i}] is an empty string; send non-empty texts.", code="invalid_value", param=field)
        if len(t) > lim.max_chars:
            raise APIError(400, f"{field}[{i}] has {len(t)} characters; the limit is {lim.max_chars}: shorten or split it.", code="input_too_long", param=field)
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800": JSON can carry it, no tokenizer can read it
                raise APIError(400, f"{field}[{i}] holds an unpaired surrogate (U+{ord(t[exc.start]):04X} at character {exc.start}), which is not valid Unicode text; "
                               "send UTF-8 text (encode surrogate pairs as one character).", code="invalid_value", param=field) from exc
    return texts


def _embedding_inputs(raw: str | list[str] | list[int] | list[list[int]], model: ServedModel, config: ServeConfig) -> list[str]:
    """The texts of an embeddings request: strings as they are, token-id arrays (one ``list[int]`` or a
    list of them, as OpenAI, vLLM and TEI accept) decoded with the served model's tokenizer."""
    if isinstance(raw, str) or not raw or isinstance(raw[0], str):
        return _texts(raw, config)  # type: ignore[arg-type]
    arrays: list[list[int]] = [raw] if isinstance(raw[0], int) else raw  # type: ignore[list-item,assignment]
    lim = config.limits
    if len(arrays) > lim.max_inputs:
        raise APIError(400, f"input holds {len(arrays)} token arrays; the limit is {lim.max_inputs} per request: split the request.", code="too_many_inputs", param="input")
    vocab = model.vocab_size
    for i, ids in enumerate(arrays):
        if not ids:
            raise APIError(400, f"input[{i}] is an empty token array; send at least one token id.", code="invalid_value", param="input")
        if len(ids) > lim.max_chars:
            raise APIError(400, f"input[{i}] holds {len(ids)} tokens; the limit is {lim.max_chars}: shorten or split it.", code="input_too_long", param="input")
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise APIError(400, f"input[{i}] holds token id {bad} outside {model.name!r}'s vocabulary (0..{vocab - 1}); token arrays must be ids of the served model's own tokenizer "
                           "(LangChain's OpenAIEmbeddings sends tiktoken ids: pass check_embedding_ctx_length=False to send texts).", code="invalid_value", param="input")
    texts = model.decode(arrays)
    empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
    if empty is not None:
        raise APIError(400, f"input[{empty}] decodes to no text (only special tokens); send the ids of real tokens.", code="invalid_value", param="input")
    return texts


def _model(state: ServeState, requested: str | None) -> ServedModel:
    if state.model is None:
        raise APIError(400, "this server has no text model (started without --model); send vectors instead of input, or restart with --model.", code="no_model")
    if requested is not None and requested != state.model.name:
        raise APIError(404, f"model {requested!r} is not served here; this server serves {state.model.name!r} (GET /v1/models).", code="model_not_found", param="model")
    return state.model


def _dimensions(d: int | None, model: ServedModel, config: ServeConfig) -> int:
    if d is None:
        return model.dim
    if not 1 <= d <= model.dim:
        raise APIError(400, f"dimensions={d} is outside 1..{model.dim} (the model's width).", code="invalid_dimensions", param="dimensions")
    if d == model.dim or config.allow_untrained_dimensions:
        return d
    if not model.nested:
        raise APIError(400, f"model {model.name!r} is not Matryoshka-trained (its folder records no is_matryoshka/matryoshka_dimensions) and has no adaptor, so its "
                       f"first {d} dims are not a usable embedding; serve a Matryoshka model, add --adaptor DIR, or start the server with --allow-untrained-dimensions.",
                       code="dimensions_not_supported", param="dimensions")
    allowed = model.allowed_dims
    if allowed is not None and d not in allowed:  # as vLLM: only the trained prefixes (other cuts were never trained to stand alone)
        raise APIError(400, f"dimensions={d} is not one of the prefix sizes {model.name!r} was trained for: {list(allowed)}; ask for one of them "
                       "(or start the server with --allow-untrained-dimensions).", code="dimensions_not_supported", param="dimensions")
    return d


def _vectors(raw: list[list[float]], dim: int, config: ServeConfig) -> np.ndarray:
    if not raw:
        raise APIError(400, "vectors is empty; send at least one vector.", code="invalid_value", param="vectors")
    if len(raw) > config.limits.max_inputs:
        raise APIError(400, f"vectors holds {len(raw)} queries; the limit is {config.limits.max_inputs} per request: split the request.", code="too_many_inputs", param="vectors")
    bad = next((i for i, v in enumerate(raw) if len(v) != dim), None)
    if bad is not None:
        raise APIError(400, f"vectors[{bad}] has {len(raw[bad])} values but the index stores {dim}-d vectors; send full-width vectors of the same model.", code="wrong_width", param="vectors")
    with np.errstate(over="ignore"):
        q = np.asarray(raw, dtype=np.float32)
    if not np.isfinite(q).all():
        raise APIError(400, "vectors hold values that overflow float32 (|x| > 3.4e38); send finite float32 values.", code="invalid_value", param="vectors")
    return q


# ---------------------------------------------------------------------- routes
def _routes(app: FastAPI, state: ServeState, quality: dict[str, Any] | None) -> None:
    config, holder = state.config, state.holder

    @app.get("/health")
    async def health() -> dict[str, Any]:
        # public (load balancers call it without a key): liveness and counts only, never a path on this machine
        b = holder.backend
        return {"status": "ok", "model": _public_name(state.model.name) if state.model else None, "uptime_s": round(time.time() - state.started, 1),
                "index": {"count": b.count, "generation": holder.generation} if b is not None else None}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": state.model.name, "object": "model", "created": int(state.started), "owned_by": "mrl"}] if state.model else []
        return {"object": "list", "data": data}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        b = holder.backend
        dim = state.model.dim if state.model else (b.dim if b else None)
        page_dims = sorted({d for d in config.page_dims if dim and d < dim} | ({dim} if dim else set()))
        return {"model": state.model.info() if state.model else None, "index": {**b.info(), "generation": holder.generation} if b else None,
                "page_dims": page_dims, "quality": quality, "auth": config.api_key is not None,
                "limits": {"max_inputs": config.limits.max_inputs, "max_chars": config.limits.max_chars, "max_k": config.limits.max_k, "max_body_bytes": config.limits.max_body_bytes}}

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingRequest) -> JSONResponse:
        model = _model(state, req.model)
        texts = _embedding_inputs(req.input, model, config)
        d = _dimensions(req.dimensions, model, config)
        tokens = await state.tokenize(texts)  # per request, before batching: a text the tokenizer refuses fails only this request
        enc = await state.embed_queue.submit(texts, len(texts))
        vectors = truncate(enc.vectors, d)  # the library's own rule: first d values, then L2-normalise
        return JSONResponse(embeddings_response(vectors, req.encoding_format, model.name, tokens))

    @app.post("/v1/search")
    async def search(req: SearchRequest) -> JSONResponse:
        t0 = time.perf_counter()
        backend: SearchBackend | None = holder.backend
        generation = holder.generation
        if backend is None:
            raise APIError(400, "no index is served; start the server with --index DIR (or --texts FILE --index DIR).", code="no_index")
        if not 1 <= req.k <= config.limits.max_k:
            raise APIError(400, f"k={req.k} is outside 1..{config.limits.max_k} (the server's limit).", code="invalid_k", param="k")
        if (req.input is None) == (req.vectors is None):
            raise APIError(400, "send exactly one of input (texts) or vectors.", code="invalid_value")
        if req.return_text and not backend.has_texts:
            raise APIError(400, "return_text needs a text store in the index folder; attach one with `mrl index attach-texts DIR --texts FILE`.", code="no_texts", param="return_text")
        plan = backend.plan(req.k, funnel=req.funnel, recall_target=req.recall_target, filter=req.filter)  # MRLError -> 400 (unknown funnel, bad filter, ...)
        encode_ms = 0.0
        if req.input is not None:
            model = _model(state, req.model)
            texts = _texts(req.input, config)
            await state.tokenize(texts)
            enc = await state.embed_queue.submit(texts, len(texts))
            queries, encode_ms = enc.vectors, 1e3 * (time.perf_counter() - t0)
            if model.dim != backend.dim:
                raise APIError(400, f"the served model outputs {model.dim}-d vectors but the index stores {backend.dim}-d.", code="wrong_width")
        else:
            queries = _vectors(req.vectors or [], backend.dim, config)
        found: Found = await state.search_queue.submit(SearchItem(backend, plan, queries), queries.shape[0])
        data = []
        for i in range(queries.shape[0]):
            ids = found.ids[i]
            row: dict[str, Any] = {"index": i, "ids": ids.tolist(), "scores": found.scores[i].tolist()}
            if req.return_text:
                row["texts"] = backend.texts(ids)
            data.append(row)
        body = {"object": "search.result", "model": state.model.name if state.model else None, "funnel": plan.funnel, "k": plan.k, "chosen_by": plan.chosen_by,
                "expected_recall": plan.expected_recall, "recall_measured_at_k": plan.recall_k, "index_generation": generation, "data": data,
                "timings": {"encode_ms": encode_ms, "search_ms": found.search_ms, "stages": found.stages, "batch_queries": found.batch_queries,
                            "total_ms": 1e3 * (time.perf_counter() - t0)}}
        return JSONResponse(body)

    @app.post("/admin/reload")
    async def reload(req: ReloadRequest | None = None) -> dict[str, Any]:
        try:
            return await holder.reload(req.index if req else None)
        except MRLError as exc:
            raise APIError(409, f"reload failed, still serving generation {holder.generation}: {exc}", code="reload_failed") from exc
