"""What ``mrl serve`` runs with: the model, the index, the key, the request limits and batching.

Every limit is checked at the HTTP boundary and answered with a JSON 4xx error that names the limit
(see :mod:`mrl.serve.errors`); the defaults suit a laptop-sized deployment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mrl.errors import MRLError


@dataclass(frozen=True)
class Limits:
    """Per-request limits (all inclusive).

    Args:
        max_inputs: texts (or vectors) in one request.
        max_chars: characters in one input text.
        max_k: results per query.
        max_body_bytes: request body size (413 above).
        max_build_bytes: a funnel whose first stage is not built in the index may be built on demand
            (and kept) only if it needs at most this much RAM (``count * dim * 4``); others are refused.
    """

    max_inputs: int = 256
    max_chars: int = 8192
    max_k: int = 1000
    max_body_bytes: int = 4 << 20
    max_build_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_chars", "max_k", "max_body_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MRLError(f"limit {name} must be a positive integer, got {v!r}.")
        if isinstance(self.max_build_bytes, bool) or not isinstance(self.max_build_bytes, int) or self.max_build_bytes < 0:
            raise MRLError(f"limit max_build_bytes must be a non-negative integer, got {self.max_build_bytes!r}.")


@dataclass(frozen=True)
class Batching:
    """Dynamic batching: a queue collects requests for up to ``max_wait_ms`` (or until ``max_batch``
    items) and runs them as one batch in a worker thread. ``max_batch=1`` turns batching off."""

    max_batch: int = 64
    max_wait_ms: float = 2.0
    search_max_batch: int = 64
    search_max_wait_ms: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_batch", "search_max_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MRLError(f"batching {name} must be a positive integer, got {v!r}.")
        for name in ("max_wait_ms", "search_max_wait_ms"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1000:
                raise MRLError(f"batching {name} must be in [0, 1000] milliseconds, got {v!r}.")


@dataclass(frozen=True)
class ServeConfig:
    """Everything :func:`mrl.serve.create_app` needs.

    Args:
        model: a sentence-transformers folder or ``all-MiniLM-L6-v2`` (``None``: search by vectors only).
        adaptor: an ``mrl adapt`` folder applied to the model's embeddings (makes any model nested).
        index: an index folder (``None``: embeddings only).
        milvus, collection: instead of ``index``, a Milvus collection (a Milvus Lite file or a
            server URI; token from ``MRL_MILVUS_TOKEN``) written by ``mrl index push``.
        api_key: when set, every endpoint but ``/health`` (and the static page shell) needs
            ``Authorization: Bearer <api_key>``.
        allow_untrained_dimensions: accept ``dimensions < D`` for a model that is not
            Matryoshka-trained and has no adaptor (refused by default: its prefixes are poor).
        model_name: the id clients pass as ``model`` (default: the ``model`` argument).
        report: an ``mrl.eval/1`` JSON whose per-dim curve the page shows (default: ``eval.json``
            in the model folder, when present).
        page_dims: prefix sizes the page compares (the full ``D`` is always added).
        device: torch device for the model.
    """

    model: str | None = None
    adaptor: Path | None = None
    index: Path | None = None
    milvus: str | None = None
    collection: str | None = None
    api_key: str | None = None
    allow_untrained_dimensions: bool = False
    model_name: str | None = None
    report: Path | None = None
    page_dims: tuple[int, ...] = (16, 64)
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)
    device: str | None = None

    def __post_init__(self) -> None:
        if self.model is None and self.index is None and self.milvus is None:
            raise MRLError("nothing to serve: pass --model (embeddings) and/or --index / --milvus (search).")
        if self.milvus is not None and (self.index is not None or not self.collection):
            raise MRLError("--milvus URI needs --collection NAME and replaces --index (serve one or the other).")
        if self.adaptor is not None and self.model is None:
            raise MRLError("--adaptor needs --model: the adaptor maps that model's embeddings.")
        if self.api_key is not None and not self.api_key.strip():
            raise MRLError("the API key is empty; pass a non-empty --api-key (or MRL_API_KEY), or none.")
