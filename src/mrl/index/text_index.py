"""Build a searchable index folder from passages: encode (resumably), store, tune the funnel, attach the texts.

:func:`build_text_index` is what ``mrl serve --texts FILE --index DIR`` runs when ``DIR`` holds no
index yet; the folder it writes is a plain :class:`~mrl.index.MatryoshkaIndex` folder plus its text
store (:mod:`mrl.index.texts`), so ``mrl index search|info`` and later reloads read it unchanged.

Encoding is the long part (minutes for tens of thousands of passages on a laptop CPU), so it is
written as resumable shards (:mod:`mrl.encode.shards`, the format ``mrl encode`` writes) into the
staging folder ``DIR/.encoding/`` first: a killed first start keeps every finished shard, and the
same command resumes where it stopped when the encoder (``model_id``) and the passages are the
same (anything else is refused, naming the folder). Once the index is saved, tuned and its texts
attached, the staging files (only those its manifest lists) are deleted.

Example:
    >>> ids, texts = read_texts("corpus.jsonl")
    >>> build_text_index("idx", ids, texts, encode=lambda batch: model.encode(batch), model_id=model_hash(path))
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.index.matryoshka_index import MatryoshkaIndex
from mrl.index.texts import write_text_store
from mrl.progress import progress

MIN_TUNE = 500  # below this many passages exact search is already instant: no tuning
STAGING = ".encoding"  # DIR/.encoding: the shards of a first build in progress
ROWS_PER_SHARD = 2048  # the unit of resume: a kill loses at most this many passages of encoding
PROBE = 64  # passages encoded first to measure the speed behind the time estimate


def passages_hash(ids: np.ndarray, texts: Sequence[str]) -> str:
    """SHA-256 of the ids and texts in order: the staging shards belong to exactly these passages."""
    h = hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _encode_rows(encode: Callable[[list[str]], np.ndarray], texts: Sequence[str], batch_size: int, bar: Any = None) -> np.ndarray:
    """Encode ``texts`` in batches. Shape: ``n`` strings -> ``[n, D]`` float32."""
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        vecs = np.asarray(encode(chunk), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(chunk):
            raise MRLError(f"the encoder returned {vecs.shape} for {len(chunk)} passages; it must return one row per passage.")
        out.append(vecs)
        if bar is not None:
            bar.update(len(chunk))
    return np.concatenate(out) if len(out) > 1 else out[0]


def build_text_index(
    folder: str | os.PathLike[str],
    ids: np.ndarray,
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    *,
    model_id: str = "",
    batch_size: int = 256,
    rows_per_shard: int = ROWS_PER_SHARD,
    target_recall: float | None = 0.99,
    k: int = 10,
    threads: int = 2,
    log: Callable[[str], None] | None = None,
) -> MatryoshkaIndex:
    """Encode ``texts`` into resumable shards, save a cosine index at ``folder``, tune it, attach the texts.

    Args:
        folder: a new (or empty) index folder; a folder holding only an unfinished build's
            ``.encoding/`` resumes it.
        ids: ``[N]`` int64 ids, one per passage.
        encode: ``encode(list of strings) -> [n, D]`` float full-width vectors.
        model_id: what identifies the encoder (e.g. :func:`mrl.models.text.model_hash` of its
            folder): an unfinished build resumes only with the same ``model_id`` and passages.
        rows_per_shard: passages per staging shard (the unit of resume).
        target_recall: tune the default funnel to this recall@``k`` (``None``: exact search only).
        log: one-line progress messages (the passage count and time estimate come first).

    Raises:
        MRLError: the folder already holds an index or other files, an unfinished build there is of
            other passages or another encoder, or the encoder returns the wrong shape.
    """
    from mrl.encode.shards import ShardSet, open_shards, write_shard
    from mrl.index import store
    from mrl.index.tune import apply, tune

    log = log or (lambda _m: None)
    out = Path(folder)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or ids.shape[0] != len(texts):
        raise MRLError(f"{ids.shape} ids for {len(texts)} passages; give one id per passage.")
    if not len(texts):
        raise MRLError("no passages to index.")
    if (out / store.MANIFEST).exists():
        raise MRLError(f"{out} already holds an index; serve it with --index {out} (without --texts) or pick a new folder.")
    if out.exists() and not out.is_dir():
        raise MRLError(f"{out} is a file; --index names the folder to build the index in.")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name != STAGING)
        if foreign:
            raise MRLError(f"{out} holds files but no index ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); pick a new or empty folder for --index.")
    n = len(texts)
    t0 = time.perf_counter()
    probe = _encode_rows(encode, texts[: min(PROBE, n)], batch_size)  # the speed behind the estimate (and the width)
    rate = probe.shape[0] / max(time.perf_counter() - t0, 1e-6)
    dim = int(probe.shape[1])
    stage = out / STAGING
    header = {"model": {"name": "mrl serve encoder", "sha256": model_id}, "dim": dim, "dtype": "float32", "rows": n, "rows_per_shard": int(rows_per_shard),
              "sources": [{"file": "passages", "rows": n, "sha256": passages_hash(ids, texts)}], "settings": {"normalize": False, "purpose": "mrl serve --texts first build"}}
    try:
        shards = ShardSet.create_or_resume(stage, header)
    except MRLError as exc:
        raise MRLError(f"{stage} holds an unfinished build of other passages or another model ({exc}); move that folder away to start over, "
                       "or rerun with the same --texts, --max-texts and --model to resume it.") from exc
    pending = shards.pending()
    left = sum(b - a for a, b in map(shards.shard_rows, pending))
    resumed = f"; resuming: {n - left:,} already encoded in {stage}" if left < n else f"; a kill keeps the finished shards in {stage}: rerun the same command to resume"
    log(f"{n:,} passages: encoding {left:,} takes about {_duration(left / rate)} at ~{rate:,.0f} passages/s (measured on the first {probe.shape[0]})"
        f"{', then the funnel is tuned' if target_recall is not None and n >= MIN_TUNE else ''}{resumed}")
    bar = progress(total=n, initial=n - left, desc="encoding passages", unit="text")
    for i in pending:
        start, stop = shards.shard_rows(i)
        reuse = probe.shape[0] if start == 0 else 0  # the probe's rows are the first rows of shard 0
        bar.update(min(reuse, stop))
        vecs = probe[:stop] if reuse >= stop else _encode_rows(encode, texts[start + reuse : stop], batch_size, bar)
        if 0 < reuse < stop:
            vecs = np.concatenate([probe, vecs])
        shards.record(write_shard(stage, i, start, vecs))
    bar.close()
    reader = open_shards(stage)
    index = MatryoshkaIndex(dim, metric="cosine")
    start = 0
    for block in reader.chunks():
        index.add(np.asarray(block, dtype=np.float32), ids[start : start + block.shape[0]])
        start += block.shape[0]
    if target_recall is not None and index.count >= MIN_TUNE:
        import faiss

        faiss.omp_set_num_threads(threads)
        log(f"tuning the funnel for recall@{k} >= {target_recall} on {index.count:,} passages")
        result = tune(index, k=k, target_recall=target_recall, sample=min(500, index.count // 2), threads=threads, log=log)
        if result.funnel is not None:
            apply(index, result)
    index.save(out)
    write_text_store(out, ids, texts)
    _remove_staging(stage, reader.manifest)
    return index


def remove_leftover_staging(folder: str | os.PathLike[str]) -> bool:
    """Delete ``folder/.encoding`` left by a first build killed after its index was saved (the index
    folder is complete, the staging shards are redundant). Returns whether one was removed."""
    from mrl.encode.shards import MANIFEST, is_shard_folder
    from mrl.io import read_json

    stage = Path(folder) / STAGING
    if not is_shard_folder(stage):
        return False
    _remove_staging(stage, read_json(stage / MANIFEST))
    return True


def _remove_staging(stage: Path, manifest: dict[str, Any]) -> None:
    """Delete the staging shards: only the files the shard manifest lists whose size and SHA-256
    prove they are the ones it recorded (:func:`mrl.encode.shards.proven_listed_files`), then the
    manifest, then the folder if nothing else is left in it (a file we did not write stays, and so does
    the folder)."""
    from mrl.encode.shards import MANIFEST, proven_listed_files

    mine, _ = proven_listed_files(stage, manifest)
    for p in [*mine, stage / MANIFEST]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    with contextlib.suppress(OSError):
        stage.rmdir()  # not empty: something we did not write is there, and stays
