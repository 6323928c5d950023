"""Exact nearest-neighbour search with FAISS (the one exact search every module uses).

Part of the core: the adaptor's neighbour table, the per-dim evaluation and the IR metrics all call
:func:`knn_search`, so it sits below every package that needs it.
"""

from __future__ import annotations

import faiss
import numpy as np

from mrl.checks import check_matrix
from mrl.errors import MRLError

# The retrieval metrics every searcher offers (evaluation and index alike): "cosine" truncates, then
# L2-normalises, then ranks by inner product; "ip" ranks raw (truncated) vectors by inner product;
# "l2" by Euclidean distance.
RETRIEVAL_METRICS = ("cosine", "ip", "l2")


def check_metric(metric: str) -> str:
    """Return ``metric`` if it is one of :data:`RETRIEVAL_METRICS`, else raise a one-line error."""
    if metric not in RETRIEVAL_METRICS:
        raise MRLError(f"metric must be one of {', '.join(RETRIEVAL_METRICS)}, got {metric!r}.")
    return metric


def knn_search(database: np.ndarray, queries: np.ndarray, k: int, *, metric: str = "ip", threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` with FAISS: ``metric="ip"`` (``IndexFlatIP``) or ``"l2"`` (``IndexFlatL2``).

    Shape: database ``[Nb, d]``, queries ``[Nq, d]`` float32 -> (scores or squared distances
    ``[Nq, k]``, ids ``[Nq, k]``), best first.
    """
    check_matrix(database, "database")
    check_matrix(queries, "queries", cols=database.shape[1])
    if not 1 <= k <= database.shape[0]:
        raise MRLError(f"k must be in [1, {database.shape[0]}] (the database size), got {k}.")
    if threads:
        faiss.omp_set_num_threads(threads)
    # FAISS only uses BLAS above this many queries; small dims are faster through BLAS too.
    faiss.cvar.distance_compute_blas_threshold = 20
    if metric not in ("ip", "l2"):
        raise MRLError(f"metric must be 'ip' or 'l2', got {metric!r}.")
    index = faiss.IndexFlatIP(database.shape[1]) if metric == "ip" else faiss.IndexFlatL2(database.shape[1])
    index.add(np.ascontiguousarray(database, dtype=np.float32))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids
