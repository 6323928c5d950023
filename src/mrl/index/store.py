"""On-disk layout of a Matryoshka index: full-``D`` vectors stored once, memory-mapped, plus ids.

A folder holds::

    manifest.json             format, format_version (2), dim, dtype, rows, count (live), metric,
                              generation, files {segments: [{file, bytes, sha256, rows}], ids,
                              deleted?, meta?}, first_stages, funnel, tuning
    vectors.<gen>.<j>.npy     [n_j, D] float32 or float16 segments, read with np.load(mmap_mode="r")
    ids.<gen>.npy             [N] int64 user ids; deleted/meta files: see mrl.index.catalog
    first.<gen>.<key>.faiss   serialized FAISS first-stage structures (prefix flat/int8/binary/HNSW)

Crash safety: a save writes every data file under a new generation number (each atomically: temp,
fsync, rename), then swaps ``manifest.json`` last (temp, fsync, ``os.replace``), and only then deletes
the previous generation's files. A crash at any point before the swap leaves the old manifest
pointing at the old, untouched files; after it, the new index is complete. Loading checks the format
version, that every file exists with the recorded size and (by default) SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import DataError, MRLError
from mrl.io import atomic_open, read_json, write_json

FORMAT = "mrl.index"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
DTYPES = ("float32", "float16")
_CHUNK = 1 << 16  # rows per streamed chunk


class IndexFormatError(DataError):
    """An index folder is missing, truncated, corrupted, or from an incompatible version."""


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_npy_stream(path: Path, shape: tuple[int, ...], dtype: np.dtype, chunks: Iterable[np.ndarray]) -> dict[str, Any]:
    """Atomically write a ``.npy`` from row chunks without holding it all in memory.

    Returns ``{"file", "bytes", "sha256"}`` of the written file.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    rows = 0
    with atomic_open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for chunk in chunks:
            arr = np.ascontiguousarray(chunk, dtype=dtype)
            rows += arr.shape[0]
            fh.write(arr.tobytes())
    if rows != (shape[0] if shape else 1):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise MRLError(f"internal error: wrote {rows} rows to {path}, expected {shape[0]}.")
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_bytes(path: Path, data: bytes) -> dict[str, Any]:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def check_file(folder: Path, entry: dict[str, Any], verify: bool) -> Path:
    """Check one manifest file entry: present, recorded size, and (``verify``) SHA-256."""
    try:
        path = folder / entry["file"]
        size, digest = int(entry["bytes"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexFormatError(f"{folder / MANIFEST} has a malformed file entry {entry!r}; the manifest is corrupted: rebuild the index.") from exc
    if not path.is_file():
        raise IndexFormatError(f"index file {path} is missing; the index folder is incomplete: restore it or rebuild with `mrl index build`.")
    actual = path.stat().st_size
    if actual != size:
        raise IndexFormatError(f"index file {path} has {actual} bytes but the manifest records {size}; it is truncated or corrupted: rebuild the index.")
    if verify and sha256_file(path) != digest:
        raise IndexFormatError(f"index file {path} fails its SHA-256 checksum; it is corrupted: rebuild the index.")
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and version-check ``manifest.json``."""
    if not folder.is_dir():
        raise IndexFormatError(f"index folder {folder} does not exist; build one with `mrl index build` or check the path.")
    man = read_json(folder / MANIFEST)
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise IndexFormatError(f"{folder / MANIFEST} is not an mrl index manifest (format {FORMAT!r}); point to a folder written by MatryoshkaIndex.save.")
    if man.get("format_version") not in READ_VERSIONS:
        raise IndexFormatError(f"{folder} holds index format version {man.get('format_version')!r}, this mrl reads version {FORMAT_VERSION}; rebuild the index with this version (`mrl index build`).")
    for key in ("dim", "dtype", "count", "metric", "generation", "files", *(("rows",) if man["format_version"] >= 2 else ())):
        if key not in man:
            raise IndexFormatError(f"{folder / MANIFEST} lacks {key!r}; the manifest is corrupted: rebuild the index.")
    if man["dtype"] not in DTYPES:
        raise IndexFormatError(f"{folder / MANIFEST} has dtype {man['dtype']!r}; expected one of {DTYPES}.")
    return man


def open_vectors(path: Path, count: int, dim: int, dtype: str) -> np.ndarray:
    """Memory-map the vectors file read-only and check its shape and dtype against the manifest."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"cannot map {path} ({exc}); the file is corrupted: rebuild the index.") from exc
    if arr.shape != (count, dim) or arr.dtype != np.dtype(dtype):
        raise IndexFormatError(f"{path} holds {arr.dtype} {arr.shape}, the manifest says {dtype} {(count, dim)}; the index is inconsistent: rebuild it.")
    return arr


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """The commit point of a save: atomically replace ``manifest.json``."""
    write_json(folder / MANIFEST, manifest)


def referenced(manifest: dict[str, Any]) -> set[str]:
    """Every data file name a (version 2) manifest names."""
    files = manifest["files"]
    names = {e["file"] for e in files["segments"]} | {files["ids"]["file"]} | {e["file"] for e in manifest.get("first_stages") or []}
    if files.get("deleted"):
        names.add(files["deleted"]["file"])
    for entry in (files.get("meta") or {}).values():
        names |= {entry["values"]["file"], *([entry["vocab"]["file"]] if "vocab" in entry else [])}
    return names


_OURS = re.compile(r"^(?:vectors|ids|first|deleted|meta)\.\d+\..+$")


def remove_unreferenced(folder: Path, keep: set[str]) -> None:
    """Delete data files of older generations not named in ``keep``, and stray temp files of ours.

    Only names this module writes (``vectors|ids|first|deleted|meta.<generation>.…`` and their
    ``.…tmp`` siblings from an interrupted write) are candidates: anything else in the folder is
    left alone.
    """
    for p in folder.iterdir():
        if p.name == MANIFEST or p.name in keep:
            continue
        tmp_of = p.name[1:].rsplit(".", 2)[0] if p.name.startswith(".") and p.name.endswith(".tmp") else None
        if _OURS.match(p.name) or (tmp_of is not None and (_OURS.match(tmp_of) or tmp_of == MANIFEST)):
            with contextlib.suppress(OSError):
                p.unlink()


def chunks_of(arrays: Iterable[np.ndarray], rows: int = _CHUNK) -> Iterable[np.ndarray]:
    for arr in arrays:
        for start in range(0, arr.shape[0], rows):
            yield arr[start : start + rows]


LOCK_NAME = ".mrl-writer.lock"


@contextlib.contextmanager
def writer_lock(folder: Path, timeout: float = 0.0) -> Any:
    """Hold the index folder's exclusive writer lock (one writer at a time; readers never wait).

    A second writer gets an :class:`MRLError` at once (``timeout=0``) naming the fix.
    """
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_NAME))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise MRLError(f"another process is writing to the index {folder} (lock {folder / LOCK_NAME} is held); wait for it to finish, then retry.") from exc
    try:
        yield folder
    finally:
        lock.release()
