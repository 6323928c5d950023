"""Training data for label-free distillation: neighbour-structured batches over a text pool.

A ranking loss learns nothing about fine neighbourhoods from random batches (their texts are all
far apart), so, as the adaptor does, every batch is built from a few random anchors plus each
anchor's nearest neighbours in the teacher's embedding space. The whole order of the run
(``steps x batch_size`` text ids) is fixed up front from the seed, so the Trainer iterates it
sequentially and a resumed run skips exactly the batches already seen.

``general`` texts (optional) join the pool; a share ``general_fraction`` of the anchors is drawn
from them, and neighbours come from the whole pool.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from mrl.embeddings import l2_normalize
from mrl.errors import MRLError
from mrl.knn import knn_search

if TYPE_CHECKING:
    from datasets import Dataset


_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


def pseudo_query(text: str, *, max_words: int = 24) -> str | None:
    """A text's first sentence, cut to ``max_words`` words; None when that is the whole text.

    Label-free stand-in for the short queries of retrieval (a one-line summary, a signature): the
    teacher places it near its own document, so prefixes trained on both learn that geometry.
    """
    words = _SENTENCE_END.split(text.strip(), maxsplit=1)[0].split()[:max_words]
    query = " ".join(words)
    return query if query and len(words) < len(text.split()) else None


def with_pseudo_queries(texts: tuple[str, ...], *, max_words: int = 24) -> tuple[str, ...]:
    """``texts`` followed by each one's :func:`pseudo_query` (those not already in the pool)."""
    seen = set(texts)
    extra: list[str] = []
    for t in texts:
        q = pseudo_query(t, max_words=max_words)
        if q is not None and q not in seen:
            seen.add(q)
            extra.append(q)
    return texts + tuple(extra)


def neighbour_table(x: np.ndarray, k: int) -> np.ndarray:
    """Ids of each row's ``k`` nearest neighbours by cosine, self excluded (exact FAISS search).

    Shape: ``[N, D] -> [N, min(k, N-1)]`` int64.
    """
    xn = l2_normalize(x)
    _, ids = knn_search(xn, xn, min(k + 1, x.shape[0]), metric="ip")
    out = np.empty((ids.shape[0], ids.shape[1] - 1), dtype=np.int64)
    for i, row in enumerate(ids):  # drop self wherever ties put it
        others = row[row != i]
        out[i] = others[: out.shape[1]] if others.size >= out.shape[1] else np.pad(others, (0, out.shape[1] - others.size), constant_values=row[0])
    return out


def batch_order(neighbours: np.ndarray, steps: int, batch_size: int, *, group: int, seed: int, general_start: int | None = None, general_fraction: float = 0.0) -> np.ndarray:
    """Text ids of the whole run, batch after batch: anchors each followed by their neighbours.

    Args:
        neighbours: ``[N, k]`` neighbour ids (``k >= group - 1``).
        steps, batch_size: the run's length and the texts per batch.
        group: texts per anchor (the anchor and ``group - 1`` neighbours not yet in the batch).
        seed: seed of the anchor order.
        general_start: ids ``>= general_start`` are general text (None: no general text).
        general_fraction: share of anchors drawn from the general texts.

    Shape: -> ``[steps * batch_size]`` int64; each batch holds distinct ids.
    """
    n = neighbours.shape[0]
    if batch_size < 2 or batch_size > n:
        raise MRLError(f"batch_size must be in [2, {n}] (the number of distinct training texts), got {batch_size}.")
    rng = np.random.default_rng(seed)
    domain = np.arange(n if general_start is None else general_start)
    general = np.arange(general_start, n) if general_start is not None else np.arange(0)
    streams = [_stream(domain, rng), _stream(general, rng) if general.size else None]
    out = np.empty(steps * batch_size, dtype=np.int64)
    for s in range(steps):
        batch: dict[int, None] = {}
        while len(batch) < batch_size:
            src = 1 if streams[1] is not None and rng.random() < general_fraction else 0
            a = next(streams[src])
            if a in batch:
                continue
            batch[a] = None
            for j in neighbours[a, : group - 1]:
                if len(batch) >= batch_size:
                    break
                batch.setdefault(int(j), None)
        out[s * batch_size : (s + 1) * batch_size] = list(batch)
    return out


def _stream(ids: np.ndarray, rng: np.random.Generator):
    """Endless anchor ids: one seeded permutation after another."""
    while True:
        yield from (int(i) for i in rng.permutation(ids))


def distill_dataset(texts: tuple[str, ...], order: np.ndarray) -> Dataset:
    """A ``datasets.Dataset`` with ``text`` and ``label`` (the teacher row id), in run order."""
    from datasets import Dataset

    return Dataset.from_dict({"text": [texts[i] for i in order], "label": order.tolist()})
