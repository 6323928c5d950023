"""Reading and writing a :class:`~mrl.index.MatryoshkaIndex` folder (format version 2; reads 1).

Version 2 stores the vectors as append-only segments (``vectors.<g>.<j>.npy``: each save writes
the rows added since the previous save as one new segment), so adding rows writes only those rows; ids, tombstones and
metadata are the catalog's files (:mod:`mrl.index.catalog`); first stages and the manifest as in
version 1. Version 3 seals the manifest with its own checksum and records what a save in progress
owns (see :mod:`mrl.index.store`). A save announces its generation ``g``, writes every data file of
``g`` atomically, then swaps ``manifest.json`` (the commit point), and only then deletes the files
the previous manifests listed that the new one no longer names: never a file no manifest listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import ForeignFileError, MRLError
from mrl.index import store
from mrl.index.catalog import Catalog
from mrl.index.first_stage import FirstStage
from mrl.index.funnel import Funnel, FunnelError


def save_index(index: Any, folder: Path, attach: dict[str, bytes] | None = None) -> Path:
    if folder.exists() and not folder.is_dir():
        raise MRLError(f"{folder} is a file; an index is saved into a folder.")
    with store.writer_lock(folder, create=True):
        return _save(index, folder, attach or {})


def _save(index: Any, folder: Path, attach: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    old = store.read_owned(folder)
    for name in attach:
        if Path(name).name != name or name == store.MANIFEST or name.split(".")[0] in ("vectors", "ids", "first", "deleted", "meta"):
            raise MRLError(f"cannot attach {name!r} to an index: use a plain file name that is not manifest.json or an index data file.")
        if (folder / name).exists() and name not in store.owned_files(folder, old):
            raise ForeignFileError(f"{folder / name} exists and was not written by this index; move it away (it is never replaced).")
    owned = store.owned_files(folder, old)
    gen = store.announce_generation(folder, old, attach)  # write-ahead: files of `gen` (and attached ones) are this save's own
    same = index._folder is not None and index._folder.resolve() == folder.resolve()
    segments = []
    for arr, entry in zip(index._segments, index._seg_files):
        if not (same and entry is not None and isinstance(arr, np.memmap)):
            break
        store.check_file(folder, entry, verify=False)  # still there, same size: keep it
        segments.append(entry)
    fresh = index._segments[len(segments):]
    if fresh:
        rows = sum(int(a.shape[0]) for a in fresh)
        written = store.write_npy_stream(folder / f"vectors.{gen}.{len(segments)}.npy", (rows, index.dim), np.dtype(index.dtype), store.chunks_of(fresh))
        segments.append({**written, "rows": rows})
    files: dict[str, Any] = {"segments": segments, **index.catalog.save(folder, gen)}
    attached = dict((old or {}).get("files", {}).get("attached") or {}) if same and old else {}
    attached = {n: e for n, e in attached.items() if n not in attach and (folder / n).is_file()}
    attached.update({name: store.write_bytes(folder / name, data) for name, data in sorted(attach.items())})
    if attached:
        files["attached"] = attached
    first = []
    for key in sorted(index._persist):
        fs = index._stages[key]
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
    stale = sorted((owned | store.generation_files(folder, gen) | set(attach)) - store.referenced(manifest))
    store.write_manifest(folder, {**manifest, "pending": stale})  # the commit point
    store.remove_listed(folder, stale)  # only files a manifest of this index listed
    if stale:
        store.write_manifest(folder, manifest)
    # From now on serve from the saved, memory-mapped copy.
    index._segments = [store.open_vectors(folder / e["file"], e["rows"], index.dim, index.dtype) for e in segments]
    index._seg_files = list(segments)
    index._starts = np.concatenate([[0], np.cumsum([e["rows"] for e in segments], dtype=np.int64)]).astype(np.int64)
    index._folder = folder
    return folder


def load_index(cls: Any, folder: Path, *, verify: bool = True) -> Any:
    """Open a saved index; if a save in another process replaces files meanwhile, read once more."""
    stamp = _stamp(folder / store.MANIFEST)
    try:
        return _load(cls, folder, verify)
    except store.IndexFormatError:
        if stamp is None or _stamp(folder / store.MANIFEST) == stamp:
            raise
        return _load(cls, folder, verify)  # a save committed while we read: read the new state


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino


def _load(cls: Any, folder: Path, verify: bool) -> Any:
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
    index._segments = [store.open_vectors(store.check_file(folder, e, verify), n, index.dim, index.dtype) for e, n in zip(segments, seg_rows)]
    index._seg_files = list(segments)
    index._starts = np.concatenate([[0], np.cumsum(seg_rows, dtype=np.int64)]).astype(np.int64)
    index.catalog = Catalog.load(folder, files, rows, verify)
    for entry in man.get("first_stages") or []:
        path = store.check_file(folder, entry, verify)
        try:
            fs = FirstStage.deserialize(path.read_bytes(), entry, index.metric)
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise store.IndexFormatError(f"cannot read the FAISS first stage {path} ({reason}); the file is corrupted: rebuild the index.") from exc
        if fs.ntotal != rows:
            raise store.IndexFormatError(f"{path} indexes {fs.ntotal} vectors but the manifest says {rows}; rebuild the index.")
        index._stages[fs.key] = fs
        index._persist.add(fs.key)
    for entry in (files.get("attached") or {}).values():  # build.json, tuning.md: listed with their SHA-256, checked like the index's own files
        if (folder / entry["file"]).exists():  # informational: one a user deleted is not needed to search
            store.check_file(folder, entry, verify)
    try:
        index.funnel = Funnel.parse(man["funnel"]) if man.get("funnel") else None
    except FunnelError as exc:
        raise store.IndexFormatError(f"{folder / store.MANIFEST} holds an invalid funnel ({exc}); retune or rebuild the index.") from exc
    index.tuning = man.get("tuning")
    index._folder = folder
    return index
