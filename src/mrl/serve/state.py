"""The served objects of one app: the encoder, the swappable index, and the two batch queues.

Hot reload (:meth:`IndexHolder.reload`): the new index folder is loaded and checked (checksums, width)
in a worker thread while requests keep running on the current one; then one reference assignment
makes it current. A search request takes its backend when it is accepted and carries it through
the queue, so requests in flight finish on the index they started with, and no request fails
because of a swap. The old index is freed when its last request finishes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.serve.backend import Plan, SearchBackend, SearchResult
from mrl.serve.batching import DynamicBatcher
from mrl.serve.config import ServeConfig
from mrl.serve.encoder import ServedModel
from mrl.serve.errors import APIError
from mrl.serve.metrics import ServeMetrics


@dataclass
class Encoded:
    """One embedding request's share of a batch. Shape: ``vectors [n, D]`` float32 (full width)."""

    vectors: np.ndarray
    batch_texts: int


@dataclass
class SearchItem:
    """One search request as queued: the backend it was checked against, its plan, its queries ``[b, D]``."""

    backend: SearchBackend
    plan: Plan
    queries: np.ndarray


@dataclass
class Found:
    """One search request's share of a batch. Shape: ``scores``/``ids`` ``[b, k]``."""

    scores: np.ndarray
    ids: np.ndarray
    stages: list[dict[str, Any]]
    batch_queries: int
    search_ms: float


class IndexHolder:
    """The current search backend, swapped atomically by :meth:`reload`."""

    def __init__(self, folder: Path | str | None, opener: Callable[[Any], SearchBackend], *, dim: int | None, metrics: ServeMetrics, folders: bool = True) -> None:
        self.folder, self.opener, self.dim, self.metrics, self.folders = folder, opener, dim, metrics, folders
        self.backend: SearchBackend | None = None
        self.generation = 0
        self.loaded_at = 0.0
        self._lock: asyncio.Lock | None = None

    def _open(self, folder: Path | str) -> SearchBackend:
        backend = self.opener(folder)
        if self.dim is not None and backend.dim != self.dim:
            raise MRLError(f"index {folder} stores {backend.dim}-d vectors but the served model outputs {self.dim}-d; build the index from this model's embeddings.")
        return backend

    def load_initial(self) -> None:
        if self.folder is not None:
            self.backend = self._open(self.folder)
            self.loaded_at = time.time()
            self.metrics.index_vectors.set(self.backend.count)

    async def reload(self, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Load ``folder`` (default: the served folder) off the event loop, then swap it in.

        Raises:
            MRLError: nothing to reload, or the new folder fails to load (the current index stays).
        """
        self._lock = self._lock or asyncio.Lock()
        if folder is not None and not self.folders:
            raise MRLError("this server searches a Milvus collection: reload re-opens it and takes no index folder.")
        target = Path(folder) if folder is not None else self.folder
        if target is None:
            raise MRLError("no index is served; start the server with --index DIR (or pass index in the reload body).")
        async with self._lock:
            t0 = time.perf_counter()
            try:
                backend = await asyncio.to_thread(self._open, target)
            except MRLError:
                self.metrics.reloads.labels("failed").inc()
                raise
            self.backend, self.folder = backend, target  # the swap: one reference assignment
            self.generation += 1
            self.loaded_at = time.time()
            self.metrics.reloads.labels("ok").inc()
            self.metrics.index_generation.set(self.generation)
            self.metrics.index_vectors.set(backend.count)
            return {"index": str(target), "generation": self.generation, "count": backend.count, "seconds": time.perf_counter() - t0}


class ServeState:
    """Everything the routes use; built by :func:`mrl.serve.create_app`, started in its lifespan."""

    def __init__(self, config: ServeConfig, model: ServedModel | None, holder: IndexHolder, metrics: ServeMetrics) -> None:
        self.config, self.model, self.holder, self.metrics = config, model, holder, metrics
        b = config.batching
        self.embed_queue: DynamicBatcher[list[str]] = DynamicBatcher("embed", self._embed_batch, max_batch=b.max_batch, max_wait_ms=b.max_wait_ms, observe=metrics.observe_batch)
        self.search_queue: DynamicBatcher[SearchItem] = DynamicBatcher("search", self._search_batch, max_batch=b.search_max_batch, max_wait_ms=b.search_max_wait_ms, observe=metrics.observe_batch)
        self.started = time.time()

    async def start(self) -> None:
        self.embed_queue.start()
        self.search_queue.start()

    async def stop(self, timeout: float = 0.5) -> None:
        """Drain both queues. The server's drain window has already passed when this runs (uvicorn
        waits for requests, then cancels those still running), so wait at most ``timeout`` seconds
        for a batch still in a worker thread, then fail what is left (503) and let the process exit."""
        await asyncio.gather(self.embed_queue.stop(timeout), self.search_queue.stop(timeout))

    # ------------------------------------------------------------------ per request, before batching
    async def tokenize(self, texts: list[str], field: str = "input") -> int:
        """Tokenize one request's texts on their own (off the event loop) and return its token count.

        This is the per-request check that keeps a text the tokenizer cannot take out of a shared
        batch: it fails only its own request, with a 400 naming the item.

        Raises:
            APIError: 400 for the first text the model's tokenizer refuses.
        """
        assert self.model is not None
        model = self.model

        def count() -> int:
            try:
                return sum(model.count_tokens(texts))
            except Exception:
                for i, t in enumerate(texts):  # find the culprit (the request is small: at most max_inputs texts)
                    try:
                        model.count_tokens([t])
                    except Exception as exc:
                        raise APIError(400, f"{field}[{i}] cannot be tokenized by the model ({type(exc).__name__}); send valid Unicode text.", code="invalid_value", param=field) from exc
                raise

        return await asyncio.to_thread(count)

    # ------------------------------------------------------------------ batch functions (worker threads)
    def _embed_batch(self, items: list[list[str]]) -> list[Encoded | Exception]:
        """Encode every request's texts in one call; if that call fails, encode each request on its own,
        so a request the model cannot encode fails alone and the others still get their vectors."""
        assert self.model is not None
        texts = [t for item in items for t in item]
        try:
            vectors = self.model.encode(texts)
        except Exception:
            if len(items) == 1:
                raise
            return [self._embed_alone(item) for item in items]
        out: list[Encoded | Exception] = []
        start = 0
        for item in items:
            out.append(Encoded(vectors[start : start + len(item)], len(texts)))
            start += len(item)
        return out

    def _embed_alone(self, texts: list[str]) -> Encoded | Exception:
        assert self.model is not None
        try:
            return Encoded(self.model.encode(texts), len(texts))
        except Exception as exc:  # this request's own failure, reported to it alone
            return exc

    @staticmethod
    def _search_batch(items: list[SearchItem]) -> list[Found | Exception]:
        groups: dict[tuple[int, Plan], list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault((id(it.backend), it.plan), []).append(i)
        out: list[Found | Exception] = [RuntimeError("unreached")] * len(items)
        for members in groups.values():
            backend, plan = items[members[0]].backend, items[members[0]].plan
            queries = np.concatenate([items[i].queries for i in members]) if len(members) > 1 else items[members[0]].queries
            try:
                res: SearchResult = backend.search(queries, plan)
            except MRLError as exc:  # e.g. the funnel no longer fits: only this group fails
                for i in members:
                    out[i] = exc
                continue
            start = 0
            for i in members:
                n = items[i].queries.shape[0]
                out[i] = Found(res.scores[start : start + n], res.ids[start : start + n], res.stages, queries.shape[0], 1e3 * res.seconds)
                start += n
        return out
