"""Per-dimension IR evaluation of text embeddings: nDCG@10, recall@10/100, MRR@10.

Protocol: each query is searched against the whole corpus by cosine similarity at prefix ``d``
(truncate to ``d``, then L2-normalise, then exact inner-product search with FAISS). With ``qrels``
(binary relevance):

* ``ndcg@10``: DCG@10 = sum_{i<=10} rel_i / log2(i + 1), divided by the ideal DCG@10;
* ``recall@k``: relevant documents in the top ``k`` / relevant documents (BEIR's definition);
* ``mrr@10``: 1 / rank of the first relevant document in the top 10 (0 if none).

Results use the run-record shape of :mod:`mrl.evaluate.perdim` (``method``, ``mode``, ``seed``,
``model``, ``dims``, ``per_dim{d: {metric: value}}``) so ``mrl report`` renders them.

Encoding (:func:`cached_encode`) shows a progress bar and caches the float32 embeddings on disk as
``.npy``, keyed by a hash of the model weights + settings and a hash of the texts (atomic writes:
an interrupted encode never leaves a cache entry).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl.checks import check_matrix
from mrl.embeddings import truncate
from mrl.errors import MRLError
from mrl.knn import knn_search
from mrl.io import load_npy, save_npy
from mrl.models.text import model_hash

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

IR_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def encode_texts(model: SentenceTransformer, texts: Sequence[str], *, batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """Full-width embeddings of ``texts`` (as the model outputs them).

    Shape: ``N`` strings -> ``[N, D]`` float32.
    """
    if not texts:
        raise MRLError("no texts to encode.")
    emb = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True, normalize_embeddings=False, truncate_dim=None)
    # ST applies the model's own truncate_dim when set; we always cache the full width.
    emb = np.asarray(emb, dtype=np.float32)
    check_matrix(emb, "encoded embeddings")
    return emb


def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def cached_encode(model_path: str | os.PathLike[str], texts: Sequence[str], cache_dir: str | os.PathLike[str], *, max_seq_length: int | None = None, batch_size: int = 128, progress: bool = True, model: SentenceTransformer | None = None) -> np.ndarray:
    """:func:`encode_texts` with an on-disk cache ``cache_dir/<model-hash>-<texts-hash>.npy``.

    ``model`` may be passed to avoid reloading it; it must be the model at ``model_path``.
    Shape: ``N`` strings -> ``[N, D]`` float32.
    """
    from mrl.models.text import load_sentence_transformer, resolve_model_path

    path = resolve_model_path(model_path)
    key = f"{model_hash(path, max_seq_length)[:16]}-{texts_hash(texts)[:16]}"
    cache = Path(cache_dir) / f"{key}.npy"
    if cache.is_file():
        emb = load_npy(cache)
        if emb.shape[0] == len(texts):
            return emb
    if model is None:
        model = load_sentence_transformer(path)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    emb = encode_texts(model, texts, batch_size=batch_size, progress=progress)
    save_npy(cache, emb)
    return emb


def qrels_keys(qrels: Sequence[Sequence[int]], n_corpus: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode relevance as sorted int64 keys ``query * n_corpus + doc`` and count per query.

    Shape: ``Nq`` lists of corpus rows -> (keys ``[R]``, n_relevant ``[Nq]``).
    """
    counts = np.array([len(r) for r in qrels], dtype=np.int64)
    if (counts == 0).any():
        raise MRLError(f"{int((counts == 0).sum())} queries have no relevant document; drop them.")
    q = np.repeat(np.arange(len(qrels), dtype=np.int64), counts)
    d = np.fromiter((int(x) for r in qrels for x in r), dtype=np.int64, count=int(counts.sum()))
    if d.min() < 0 or d.max() >= n_corpus:
        raise MRLError(f"qrels point at corpus rows outside [0, {n_corpus}).")
    return np.unique(q * n_corpus + d), counts


def ir_metrics(ids: np.ndarray, qrels: Sequence[Sequence[int]], n_corpus: int, ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """nDCG@10, MRR@10 and recall@k from ranked corpus ids.

    Shape: ids ``[Nq, K]`` (best first, ``K >= max(10, *ks)`` or the corpus size), qrels ``Nq`` lists.
    """
    keys, n_rel = qrels_keys(qrels, n_corpus)
    if ids.shape[0] != len(qrels):
        raise MRLError(f"{ids.shape[0]} ranked lists for {len(qrels)} queries.")
    flat = np.arange(ids.shape[0], dtype=np.int64)[:, None] * n_corpus + ids.astype(np.int64)
    rel = np.isin(flat, keys) & (ids >= 0)  # [Nq, K]; FAISS pads with -1 when K > corpus
    k10 = min(10, rel.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, k10 + 2))
    dcg = (rel[:, :k10] * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k10) - 1]
    first = np.where(rel[:, :k10].any(axis=1), rel[:, :k10].argmax(axis=1) + 1, np.inf)
    out = {"ndcg@10": float((dcg / ideal).mean()), "mrr@10": float((1.0 / first).mean())}
    for k in ks:
        out[f"recall@{k}"] = float((rel[:, :k].sum(axis=1) / n_rel).mean())
    return out


def per_dim_ir(queries: np.ndarray, corpus: np.ndarray, qrels: Sequence[Sequence[int]], dims: Sequence[int], ks: Sequence[int] = (10, 100), *, threads: int | None = None) -> dict[int, dict[str, float]]:
    """IR metrics at every prefix ``d`` (truncate, L2-normalise, exact cosine search).

    Shape: queries ``[Nq, D]``, corpus ``[Nc, D]`` (same ``D >= max(dims)``), qrels ``Nq`` lists.

    Raises:
        MRLError: NaN/Inf, queries and corpus of different widths, dims above ``D``.
    """
    check_matrix(corpus, "corpus embeddings")
    check_matrix(queries, "query embeddings")
    if queries.shape[1] != corpus.shape[1]:
        raise MRLError(f"query embeddings are {queries.shape[1]}-d but corpus embeddings are {corpus.shape[1]}-d; encode both with the same model (and adaptor).")
    if len(qrels) != queries.shape[0]:
        raise MRLError(f"{queries.shape[0]} query embeddings but {len(qrels)} qrels entries; they must match row for row.")
    if not dims or max(dims) > corpus.shape[1] or min(dims) < 1:
        raise MRLError(f"dims {tuple(dims)} must lie in [1, {corpus.shape[1]}] (the embedding dim).")
    k = min(max(10, *ks), corpus.shape[0])
    out = {}
    for d in dims:
        _, ids = knn_search(truncate(corpus, int(d)), truncate(queries, int(d)), k, metric="ip", threads=threads)
        out[int(d)] = ir_metrics(ids, qrels, corpus.shape[0], ks)
    return out


def ir_record(method: str, mode: str, queries: np.ndarray, corpus: np.ndarray, qrels: Sequence[Sequence[int]], dims: Sequence[int], *, model: str = "", seed: int = 0, ks: Sequence[int] = (10, 100), **extra: Any) -> dict[str, Any]:
    """A run record (the :mod:`mrl.evaluate.perdim` shape) with IR metrics per dim."""
    per_dim = per_dim_ir(queries, corpus, qrels, dims, ks)
    return {"method": method, "mode": mode, "seed": seed, "model": model, "dims": [int(d) for d in dims], "metric": "cosine", "per_dim": {str(d): v for d, v in per_dim.items()}, **extra}
