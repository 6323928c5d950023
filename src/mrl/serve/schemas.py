"""Request bodies (pydantic) and response builders of the HTTP API.

``/v1/embeddings`` follows OpenAI's shape (``input`` as texts or token-id arrays, ``model``, ``dimensions``, ``encoding_format``;
``data[i] = {object, index, embedding}``, ``usage``). Unknown fields are refused (a typo such as
``dimension`` must not be silently ignored); NaN/Inf are refused in vectors. Limits that depend on
the server's configuration are checked in the routes, not here.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class EmbeddingRequest(BaseModel):
    """OpenAI ``POST /v1/embeddings`` body: texts, or token-id arrays of the served model's tokenizer."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[StrictInt] | list[list[StrictInt]] = Field(
        description="A text, a list of texts, or token ids of the served model's tokenizer (one list of ints, or a list of them), as OpenAI accepts.")
    model: str | None = Field(None, description="The served model's id (see GET /v1/models).")
    dimensions: StrictInt | None = Field(None, description="Keep the first `dimensions` values, then L2-normalise (1..D).")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class SearchRequest(BaseModel):
    """``POST /v1/search`` body: texts (encoded by the served model) or full-width vectors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    input: str | list[str] | None = Field(None, description="Query text(s), encoded by the served model.")
    vectors: list[list[float]] | None = Field(None, description="Full-width query vectors [B, D].")
    k: StrictInt = Field(10, description="Results per query.")
    funnel: str | None = Field(None, description="Explicit funnel, e.g. '32:1000 -> 128:100 -> 384:10'.")
    recall_target: float | None = Field(None, gt=0.0, le=1.0, description="Pick the fastest tuned funnel whose recall@k meets this.")
    return_text: StrictBool = Field(False, description="Also return each hit's passage (needs a text store in the index folder).")
    model: str | None = None
    filter: str | dict[str, Any] | None = Field(None, description='Metadata filter, e.g. \'lang == "en"\' or {"lang": ["en", "de"]}.')


class ReloadRequest(BaseModel):
    """``POST /admin/reload`` body (optional): another index folder to swap to."""

    model_config = ConfigDict(extra="forbid")

    index: str | None = Field(None, description="Index folder (default: the folder being served).")


def encode_vector(v: np.ndarray, fmt: str) -> list[float] | str:
    """One embedding as OpenAI sends it: a float list, or base64 of little-endian float32 bytes."""
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii")
    return v.tolist()


def embeddings_response(vectors: np.ndarray, fmt: str, model: str, tokens: int) -> dict[str, Any]:
    """Shape: ``vectors [N, d]`` -> OpenAI's list response."""
    return {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": encode_vector(v, fmt)} for i, v in enumerate(vectors)],
            "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
