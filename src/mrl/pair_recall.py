"""Recall@k of cross-modal retrieval at every Matryoshka prefix (part of the core).

Each query has a set of relevant database items (a caption's pictures, a picture's captions); the
query counts as a hit at ``k`` when any of them is among its ``k`` nearest items. Vectors are
truncated to the prefix, L2-normalised and searched exactly by inner product (FAISS), the same
rule as everywhere else (truncate, then normalise).

Example:
    >>> r = pair_recall(text_emb, image_emb, captions_to_images, dims=(8, 64), ks=(1, 10))
    >>> r[8]["recall@10"]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrl.embeddings import truncate
from mrl.errors import MRLError
from mrl.knn import knn_search


def relevance_codes(relevant: Sequence[Sequence[int]], num_items: int) -> np.ndarray:
    """Sorted int64 codes ``query * num_items + item`` of every relevant (query, item) pair."""
    rows = np.repeat(np.arange(len(relevant), dtype=np.int64), [len(r) for r in relevant])
    cols = np.fromiter((i for r in relevant for i in r), dtype=np.int64, count=len(rows))
    if len(cols) and (cols.min() < 0 or cols.max() >= num_items):
        raise MRLError(f"relevant item ids must be in [0, {num_items}), got {int(cols.min())}..{int(cols.max())}.")
    return np.unique(rows * num_items + cols)


def pair_recall(queries: np.ndarray, database: np.ndarray, relevant: Sequence[Sequence[int]], dims: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[int, dict[str, float]]:
    """``{d: {"recall@k": hit rate}}`` for every prefix ``d`` in ``dims``.

    Args:
        queries: query embeddings; row ``q`` is relevant to ``database`` rows ``relevant[q]``.
        database: the searched embeddings.
        relevant: one non-empty list of database row ids per query.
        dims: prefix sizes (each at most ``D``).
        ks: cut-offs (each at most the database size).

    Shape:
        - queries ``[Q, D]``, database ``[M, D]`` float.
    """
    if len(relevant) != len(queries):
        raise MRLError(f"need one relevant list per query: {len(relevant)} lists for {len(queries)} queries.")
    if any(len(r) == 0 for r in relevant):
        raise MRLError("every query needs at least one relevant item.")
    m = database.shape[0]
    if not ks or min(ks) < 1 or max(ks) > m:
        raise MRLError(f"ks must be in [1, {m}] (the database size), got {list(ks)}.")
    codes = relevance_codes(relevant, m)
    out: dict[int, dict[str, float]] = {}
    base = np.arange(len(queries), dtype=np.int64)[:, None] * m
    for d in dims:
        _, ids = knn_search(truncate(database, int(d)), truncate(queries, int(d)), max(ks), metric="ip")
        hit = np.isin(base + ids, codes)  # [Q, kmax]
        out[int(d)] = {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks}
    return out


def cross_modal_recall(image_emb: np.ndarray, text_emb: np.ndarray, image_texts: Sequence[Sequence[int]], dims: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[int, dict[str, float]]:
    """Text->image and image->text recall@k at every prefix.

    ``image_texts[i]`` lists the rows of ``text_emb`` that caption picture ``i``; a caption's
    relevant pictures are all pictures it captions.

    Shape: ``image_emb`` ``[N, D]``, ``text_emb`` ``[T, D]``. Returns ``{d: {"t2i_recall@k", "i2t_recall@k"}}``.
    """
    text_images: list[list[int]] = [[] for _ in range(len(text_emb))]
    for i, texts in enumerate(image_texts):
        for t in texts:
            text_images[t].append(i)
    t2i = pair_recall(text_emb, image_emb, text_images, dims, [min(k, len(image_emb)) for k in ks])
    i2t = pair_recall(image_emb, text_emb, image_texts, dims, [min(k, len(text_emb)) for k in ks])
    return {d: {**{f"t2i_recall@{k}": t2i[d][f"recall@{min(k, len(image_emb))}"] for k in ks}, **{f"i2t_recall@{k}": i2t[d][f"recall@{min(k, len(text_emb))}"] for k in ks}} for d in t2i}
