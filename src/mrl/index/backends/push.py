"""Copy a local index folder into a Milvus collection: batched, resumable, with a progress bar.

The collection records the push's source (folder, generation, checksum of its ids) and how many
live rows are done after every batch. Batches are *upserts*, so a batch repeated after a kill
replaces itself; a rerun resumes after the last recorded batch and never starts over. A collection
holding a push of a different index (or not made by mrl) is refused, never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.index.backends.milvus import MilvusError, MilvusIndex
from mrl.index.funnel import Funnel


def default_prefix_dims(index: Any) -> list[int]:
    """Prefix fields a push creates: every rerank dim of the index's funnel and of its tuned frontier
    (so both rerank placements can run it), else one stage-1 prefix of ``min(64, D/2)``."""
    funnels = [index.funnel] if index.funnel else []
    funnels += [Funnel.parse(p["funnel"]) for p in (index.tuning or {}).get("frontier") or []]
    dims = {s.dim for f in funnels if f.first.precision == "float32" for s in f.stages if s.dim < index.dim}
    return sorted(dims) or [max(2, min(64, index.dim // 2))]


def push(folder: str | os.PathLike[str], uri: str, collection: str, *, prefix_dims: list[int] | None = None, batch_size: int = 5000, index_type: str = "FLAT",
         calibrate: bool = True, progress: bool = True, token: str | None = None, timeout: float = 10.0, funnel: Funnel | None = None, tuning: dict[str, Any] | None = None,
         log: Callable[[str], None] | None = None) -> MilvusIndex:
    """Copy the live rows (vectors, ids, metadata) and the tuned funnel of a local index to Milvus.

    Args:
        folder: a local index folder (``mrl index build``).
        uri, collection: where to (Milvus Lite file or server URI).
        prefix_dims: prefix fields to create (default :func:`default_prefix_dims`).
        batch_size: rows per upsert (and per recorded progress step).
        calibrate: afterwards, time server vs client rerank of the funnel and record the faster.
        funnel, tuning: record these (a tuning made in memory for the collection) instead of the
            folder's own; the folder is only read, never changed.
    """
    from mrl.index import MatryoshkaIndex
    from mrl.index.store import read_manifest
    from mrl.progress import progress as progress_bar

    log = log or (lambda _m: None)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MRLError(f"batch_size must be a positive integer, got {batch_size!r}.")
    folder = Path(folder)
    index = MatryoshkaIndex.load(folder)
    if tuning is not None:
        index.funnel, index.tuning = funnel, tuning
    man = read_manifest(folder)
    source = {"folder": str(folder.resolve()), "generation": int(man["generation"]), "ids_sha256": man["files"]["ids"]["sha256"], "count": index.count}
    default = index.funnel if index.funnel and index.funnel.first.precision == "float32" else None
    if index.funnel and default is None:
        log(f"note: the index's funnel {index.funnel} starts with {index.funnel.first.precision} codes, which Milvus cannot search; no default funnel is recorded (tune one for Milvus with `mrl index push --recall-target R`).")
    dims = sorted(set(prefix_dims)) if prefix_dims else default_prefix_dims(index)
    target = MilvusIndex.create(uri, collection, dim=index.dim, metric=index.metric, prefix_dims=dims, schema=index.schema, index_type=index_type, token=token, timeout=timeout, exist_ok=True)
    state = target.push_state
    if state and state.get("source") != source:
        raise MilvusError(f"collection {collection!r} holds a push of another index ({state.get('source', {}).get('folder')}, generation {state.get('source', {}).get('generation')}); "
                          "push into a new --collection name (or drop that one yourself).")
    if not state and target.count:
        raise MilvusError(f"collection {collection!r} already holds {target.count} rows that no push of {folder} wrote; push into a new --collection name.")
    live = np.flatnonzero(~index.catalog.deleted)
    done = int(state.get("rows_done", 0)) if state else 0
    if state.get("done"):
        log(f"{collection}: push of {folder} already complete ({done} rows)")
        return target
    if done:
        log(f"{collection}: resuming the push of {folder} after {done} of {live.size} rows")
    bar = progress_bar(total=live.size, initial=done, unit="vec", desc=f"push {collection}", disable=not progress)
    for start in range(done, live.size, batch_size):
        rows = live[start : start + batch_size]
        meta = index.catalog.metadata(rows) if index.schema else None
        target.upsert(index.gather(rows, index.dim), index.ids[rows], meta, batch_size=batch_size)
        target.set_properties(push={"source": source, "rows_done": int(start + rows.size), "resumed_from": done, "done": False})
        bar.update(rows.size)
    bar.close()
    target.flush()
    target.set_properties(push={"source": source, "rows_done": int(live.size), "resumed_from": done, "done": True},
                          funnel=str(default) if default else "", tuning=_milvus_tuning(index.tuning))
    if calibrate and default is not None and len(default.stages) > 1 and live.size:
        rng = np.random.default_rng(0)
        q = index.gather(np.sort(rng.choice(live, size=min(64, live.size), replace=False)), index.dim)
        for f, t in target.calibrate(q, [default]).items():
            log(f"rerank placement for {f}: client {t['client'] * 1000 / len(q):.2f} ms/query, server {t['server'] * 1000 / len(q):.2f} ms/query -> {t['chosen']}")
    return target


def _milvus_tuning(tuning: dict[str, Any] | None) -> Any:
    from mrl.index.backends.milvus import _slim

    return _slim(tuning) or ""
