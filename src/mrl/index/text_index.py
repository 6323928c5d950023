"""Build a searchable index folder from passages: encode, store, tune the funnel, attach the texts.

:func:`build_text_index` is what ``mrl serve --texts FILE --index DIR`` runs when ``DIR`` holds no
index yet; the folder it writes is a plain :class:`~mrl.index.MatryoshkaIndex` folder plus its text
store (:mod:`mrl.index.texts`), so ``mrl index search|info`` and later reloads read it unchanged.

Example:
    >>> ids, texts = read_texts("corpus.jsonl")
    >>> build_text_index("idx", ids, texts, encode=lambda batch: model.encode(batch))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mrl.errors import MRLError
from mrl.index.matryoshka_index import MatryoshkaIndex
from mrl.index.texts import write_text_store
from mrl.progress import progress

MIN_TUNE = 500  # below this many passages exact search is already instant: no tuning


def build_text_index(
    folder: str | os.PathLike[str],
    ids: np.ndarray,
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    *,
    batch_size: int = 256,
    target_recall: float | None = 0.99,
    k: int = 10,
    threads: int = 2,
    log: Callable[[str], None] | None = None,
) -> MatryoshkaIndex:
    """Encode ``texts`` in batches, save a cosine index at ``folder``, tune it, attach the texts.

    Args:
        folder: a new index folder (refused if it already holds an index).
        ids: ``[N]`` int64 ids, one per passage.
        encode: ``encode(list of strings) -> [n, D]`` float full-width vectors.
        target_recall: tune the default funnel to this recall@``k`` (``None``: exact search only).

    Raises:
        MRLError: the folder already holds an index, or the encoder returns the wrong shape.
    """
    from mrl.index import store
    from mrl.index.tune import apply, tune

    log = log or (lambda _m: None)
    out = Path(folder)
    if (out / store.MANIFEST).exists():
        raise MRLError(f"{out} already holds an index; serve it with --index {out} (without --texts) or pick a new folder.")
    index: MatryoshkaIndex | None = None
    bar = progress(total=len(texts), desc="encoding passages", unit="text")
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        vecs = np.asarray(encode(chunk), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(chunk):
            raise MRLError(f"the encoder returned {vecs.shape} for {len(chunk)} passages; it must return one row per passage.")
        index = index or MatryoshkaIndex(vecs.shape[1], metric="cosine")
        index.add(vecs, np.asarray(ids[start : start + len(chunk)], dtype=np.int64))
        bar.update(len(chunk))
    bar.close()
    if index is None:
        raise MRLError("no passages to index.")
    index.save(out)
    if target_recall is not None and index.count >= MIN_TUNE:
        import faiss

        faiss.omp_set_num_threads(threads)
        log(f"tuning the funnel for recall@{k} >= {target_recall} on {index.count} passages")
        result = tune(index, k=k, target_recall=target_recall, sample=min(500, index.count // 2), threads=threads, log=log)
        if result.funnel is not None:
            apply(index, result)
            index.save(out)
    write_text_store(out, ids, texts)
    return index
