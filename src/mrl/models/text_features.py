"""Sentence-encoder features for the text tower: computed once (frozen encoder) or on the fly.

A frozen encoder maps each distinct caption to the same vector at every step, so
:func:`cached_features` computes them once and keeps them in a ``.npy`` keyed by the encoder folder
(path, file sizes and modification times), ``max_seq_length`` and the texts; training then runs only
the projection on the text side. A fine-tuned encoder runs inside the step
(:func:`encoder_forward`), with gradients.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mrl.errors import DataError
from mrl.io import load_npy, save_npy, write_json
from mrl.models.text import load_sentence_transformer, model_dim, resolve_model_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def load_text_encoder(name: str, *, max_seq_length: int, device: str | torch.device = "cpu") -> tuple[SentenceTransformer, int]:
    """The local sentence-transformers encoder ``name`` (never downloaded) and its width."""
    st = load_sentence_transformer(name, device=str(device))
    st.max_seq_length = max_seq_length
    return st, model_dim(st)


def encoder_forward(st: SentenceTransformer, texts: Sequence[str]) -> torch.Tensor:
    """Sentence embeddings of ``texts`` with gradients (for a fine-tuned encoder).

    Shape: ``len(texts)`` strings -> ``[N, width]``.
    """
    prepare = getattr(st, "preprocess", None) or st.tokenize  # sentence-transformers renamed tokenize
    feats = prepare(list(texts))
    device = next(st.parameters()).device
    return st({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()})["sentence_embedding"]


@torch.inference_mode()
def encode_features(st: SentenceTransformer, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
    """Sentence embeddings of ``texts`` (fp32, no gradients), batch by batch.

    Shape: returns float32 ``[N, width]``.
    """
    was_training = st.training
    st.eval()
    try:
        parts = [encoder_forward(st, texts[i : i + batch_size]).float().cpu().numpy() for i in range(0, len(texts), batch_size)]
    finally:
        st.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _fingerprint(model: str, max_seq_length: int, texts: Sequence[str]) -> str:
    folder = resolve_model_path(model)
    files = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
    h = hashlib.sha256(json.dumps([str(folder.resolve()), files, max_seq_length]).encode())
    for t in texts:
        h.update(t.encode() + b"\0")
    return h.hexdigest()[:24]


def cached_features(model: str, texts: Sequence[str], cache_dir: str | os.PathLike[str], *, max_seq_length: int, batch_size: int = 256) -> np.ndarray:
    """Frozen-encoder features of ``texts``, read from ``cache_dir`` or computed and stored there.

    Shape: returns float32 ``[len(texts), width]``, row ``i`` for ``texts[i]``.
    """
    key = _fingerprint(model, max_seq_length, texts)
    path = Path(cache_dir) / f"text-features-{key}.npy"
    if path.is_file():
        try:
            feats = load_npy(path)
            if feats.shape[0] == len(texts) and np.isfinite(feats).all():
                return feats
        except DataError:
            pass  # a damaged cache entry is recomputed and replaced below
    st, _ = load_text_encoder(model, max_seq_length=max_seq_length)
    feats = encode_features(st, texts, batch_size=batch_size).astype(np.float32)
    save_npy(path, feats)
    write_json(path.with_suffix(".json"), {"model": str(model), "max_seq_length": max_seq_length, "count": len(texts), "dim": int(feats.shape[1])})
    return feats
