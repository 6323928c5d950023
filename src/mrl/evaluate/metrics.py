"""Classification and retrieval metrics. Nearest-neighbour search goes through FAISS.

Retrieval protocol (the paper's): database = training split, queries = test split, an item is
relevant when it has the query's label. Vectors are truncated to the prefix and searched exactly,
by Euclidean distance (``metric="l2"``, the default for image runs), cosine (``"cosine"``:
truncate, L2-normalise, inner product) or raw inner product (``"ip"``).

* ``1nn``: accuracy of the label of the nearest database item.
* ``map@k``: mean over queries of AP@k = (1/k) * sum_{i<=k} P@i * rel_i. As in the paper, AP is
  normalised by ``k`` (not by the number of relevant items retrieved), which with thousands of
  relevant items per class equals the mean of precision@i over relevant positions scaled by the
  fraction of the k slots that are relevant.
* ``recall@k``: fraction of queries with at least one relevant item in the top k (hit rate; the
  usual definition when each query has many relevant items).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrl.checks import check_labels, check_matrix
from mrl.embeddings import truncate
from mrl.errors import MRLError
from mrl.knn import RETRIEVAL_METRICS, check_metric, knn_search

METRICS = RETRIEVAL_METRICS


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits. Shape: ``[N, C]``, ``[N]``."""
    check_matrix(logits, "logits")
    check_labels(labels, logits.shape[0])
    if not 1 <= k <= logits.shape[1]:
        raise MRLError(f"k must be in [1, {logits.shape[1]}], got {k}.")
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())




def retrieval_metrics(neighbor_labels: np.ndarray, query_labels: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Label-based retrieval metrics from the labels of each query's ranked neighbours.

    Shape: neighbor_labels ``[Nq, K]`` (best first), query_labels ``[Nq]``.
    Returns ``{"1nn", "map@k", "recall@k", "precision@k"}`` for each ``k`` in ``ks`` (``k <= K``).
    """
    rel = neighbor_labels == query_labels[:, None]  # [Nq, K]
    out = {"1nn": float(rel[:, 0].mean())}
    for k in ks:
        if k > rel.shape[1]:
            raise MRLError(f"k={k} exceeds the {rel.shape[1]} neighbours retrieved.")
        r = rel[:, :k].astype(np.float64)
        prec_at_i = np.cumsum(r, axis=1) / np.arange(1, k + 1)
        out[f"map@{k}"] = float(((prec_at_i * r).sum(axis=1) / k).mean())
        out[f"recall@{k}"] = float(r.any(axis=1).mean())
        out[f"precision@{k}"] = float(r.mean())
    return out


def chance_levels(db_labels: np.ndarray, query_labels: np.ndarray, num_classes: int, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """What each metric scores when the embedding carries no information (the report's chance line).

    Heads: a uniform guess, ``top1`` = 1/C, ``top5`` = min(5, C)/C. Retrieval with a random
    ranking: each retrieved item is relevant with probability p_q, the share of the query's class in
    the database, so ``1nn`` = mean p_q, ``recall@k`` = mean 1 - (1 - p_q)^k, ``precision@k`` =
    mean p_q and ``map@k`` = mean (p_q H_k + p_q^2 (k - H_k)) / k, with H_k = sum_{i<=k} 1/i
    (E[P@i rel_i] = (p + (i - 1) p^2) / i; draws with replacement, exact for a large database).

    Shape: db_labels ``[N]``, query_labels ``[Nq]`` (ints in ``[0, C)``).
    """
    share = np.bincount(np.asarray(db_labels, dtype=np.int64), minlength=num_classes) / max(len(db_labels), 1)
    p = share[np.asarray(query_labels, dtype=np.int64)]
    out = {"top1": 1.0 / num_classes, "top5": min(5, num_classes) / num_classes, "1nn": float(p.mean())}
    for k in ks:
        h = float(np.sum(1.0 / np.arange(1, k + 1)))
        out[f"map@{k}"] = float(((p * h + p**2 * (k - h)) / k).mean())
        out[f"recall@{k}"] = float((1 - (1 - p) ** k).mean())
        out[f"precision@{k}"] = float(p.mean())
    return out


def per_dim_retrieval(db: np.ndarray, db_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray, dims: Sequence[int], ks: Sequence[int] = (10,), *, metric: str = "l2") -> dict[int, dict[str, float]]:
    """Retrieval metrics at every prefix ``d`` in ``dims`` (exact search on the truncated vectors).

    ``metric="cosine"``: truncate, L2-normalise, inner product. ``"ip"``: inner product of the raw
    truncated vectors. ``metric="l2"``: Euclidean distance on the raw truncated vectors; the
    default for vision embeddings, whose post-ReLU prefixes lose their magnitude (the only signal
    left at d = 1-2) when normalised.

    Shape: db ``[Nb, D]``, queries ``[Nq, D]`` with ``D >= max(dims)``; labels ``[Nb]``, ``[Nq]``.
    """
    check_matrix(db, "database embeddings", min_cols=max(dims))
    check_matrix(queries, "query embeddings", cols=db.shape[1])
    check_labels(db_labels, db.shape[0], "database labels")
    check_labels(query_labels, queries.shape[0], "query labels")
    check_metric(metric)
    kmax = max(ks)
    normalize = metric == "cosine"
    results = {}
    for d in dims:
        _, ids = knn_search(truncate(db, d, normalize=normalize), truncate(queries, d, normalize=normalize), kmax, metric="l2" if metric == "l2" else "ip")
        results[int(d)] = retrieval_metrics(db_labels[ids], query_labels, ks)
    return results
