"""Reading and writing a :class:`~mrl.index.MatryoshkaIndex` folder (format version 2; reads 1).

Version 2 stores the vectors as append-only segments (``vectors.<g>.<j>.npy``: each save writes
the rows added since the previous save as one new segment), so adding rows writes only those rows; ids, tombstones and
metadata are the catalog's files (:mod:`mrl.index.catalog`); first stages and the manifest as in
version 1. Every data file of generation ``g`` is written atomically, then ``manifest.json`` is
swapped (the commit point), and only then are files the new manifest no longer names deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrl.index import store
from mrl.index.catalog import Catalog
from mrl.index.first_stage import FirstStage
from mrl.index.funnel import Funnel


def save_index(index: Any, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    old = store.read_manifest(folder) if (folder / store.MANIFEST).is_file() else None
    gen = int(old["generation"]) + 1 if old else 1
    same = index._folder is not None and index._folder.resolve() == folder.resolve()  # noqa: SLF001
    segments = []
    for arr, entry in zip(index._segments, index._seg_files):  # noqa: SLF001 - the stored prefix is kept as is
        if not (same and entry is not None and isinstance(arr, np.memmap)):
            break
        store.check_file(folder, entry, verify=False)  # still there, same size: keep it
        segments.append(entry)
    fresh = index._segments[len(segments):]  # noqa: SLF001 - in memory or mapped from elsewhere: one new file
    if fresh:
        rows = sum(int(a.shape[0]) for a in fresh)
        written = store.write_npy_stream(folder / f"vectors.{gen}.{len(segments)}.npy", (rows, index.dim), np.dtype(index.dtype), store.chunks_of(fresh))
        segments.append({**written, "rows": rows})
    files: dict[str, Any] = {"segments": segments, **index.catalog.save(folder, gen)}
    first = []
    for key in sorted(index._persist):  # noqa: SLF001
        fs = index._stages[key]  # noqa: SLF001
        first.append({**fs.meta(), **store.write_bytes(folder / f"first.{gen}.{key}.faiss", fs.serialize())})
    manifest = {
        "format": store.FORMAT,
        "format_version": store.FORMAT_VERSION,
        "dim": index.dim,
        "dtype": index.dtype,
        "rows": index.rows,
        "count": index.count,
        "metric": index.metric,
        "generation": gen,
        "files": files,
        "first_stages": first,
        "funnel": str(index.funnel) if index.funnel else None,
        "tuning": index.tuning,
    }
    store.write_manifest(folder, manifest)  # the commit point
    store.remove_unreferenced(folder, store.referenced(manifest))
    # From now on serve from the saved, memory-mapped copy.
    index._segments = [store.open_vectors(folder / e["file"], e["rows"], index.dim, index.dtype) for e in segments]  # noqa: SLF001
    index._seg_files = list(segments)  # noqa: SLF001
    index._starts = np.concatenate([[0], np.cumsum([e["rows"] for e in segments], dtype=np.int64)]).astype(np.int64)  # noqa: SLF001
    index._folder = folder  # noqa: SLF001
    return folder


def load_index(cls: Any, folder: Path, *, verify: bool = True) -> Any:
    man = store.read_manifest(folder)
    try:
        index = cls(int(man["dim"]), metric=man["metric"], dtype=man["dtype"])
        files = man["files"]
        if man["format_version"] == 1:  # one vectors file, ids, no tombstones or metadata
            rows = int(man["count"])
            segments = [{**files["vectors"], "rows": rows}] if rows else []
        else:
            rows = int(man["rows"])
            segments = files["segments"]
        seg_rows = [int(e["rows"]) for e in segments]
    except (KeyError, TypeError, ValueError) as exc:
        raise store.IndexFormatError(f"{folder / store.MANIFEST} is incomplete ({exc}); rebuild the index.") from exc
    if sum(seg_rows) != rows:
        raise store.IndexFormatError(f"{folder / store.MANIFEST} lists segments of {sum(seg_rows)} rows for an index of {rows}; the manifest is corrupted: rebuild the index.")
    index._segments = [store.open_vectors(store.check_file(folder, e, verify), n, index.dim, index.dtype) for e, n in zip(segments, seg_rows)]  # noqa: SLF001
    index._seg_files = list(segments)  # noqa: SLF001
    index._starts = np.concatenate([[0], np.cumsum(seg_rows, dtype=np.int64)]).astype(np.int64)  # noqa: SLF001
    index.catalog = Catalog.load(folder, files, rows, verify)
    for entry in man.get("first_stages") or []:
        path = store.check_file(folder, entry, verify)
        fs = FirstStage.deserialize(path.read_bytes(), entry, index.metric)
        if fs.ntotal != rows:
            raise store.IndexFormatError(f"{path} indexes {fs.ntotal} vectors but the manifest says {rows}; rebuild the index.")
        index._stages[fs.key] = fs  # noqa: SLF001
        index._persist.add(fs.key)  # noqa: SLF001
    index.funnel = Funnel.parse(man["funnel"]) if man.get("funnel") else None
    index.tuning = man.get("tuning")
    index._folder = folder  # noqa: SLF001
    return index
