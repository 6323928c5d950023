"""On-disk layout of a Matryoshka index: full-``D`` vectors stored once, memory-mapped, plus ids.

A folder holds::

    manifest.json             format, format_version (3), dim, dtype, rows, count (live), metric,
                              generation, files {segments: [{file, bytes, sha256, rows}], ids,
                              deleted?, meta?, attached?}, first_stages, funnel, tuning,
                              pending_generation?, pending? (see below), checksum (of the manifest)
    vectors.<gen>.<j>.npy     [n_j, D] float32 or float16 segments, read with np.load(mmap_mode="r")
    ids.<gen>.npy             [N] int64 user ids; deleted/meta files: see mrl.index.catalog
    first.<gen>.<key>.faiss   serialized FAISS first-stage structures (prefix flat/int8/binary/HNSW)
    tuning.md, tuning.png     attached files (``files.attached``), e.g. the tuning frontier

Ownership: an index deletes only files its manifests list (:func:`owned_files`); a file of the
folder that no manifest names (a user's ``vectors.npy`` or ``first.7.backup``) is never touched,
and a save never replaces one (it picks a generation whose names are free).

Crash safety: a save first records in the current manifest the generation it is about to write
(``pending_generation``: files of that generation are the save's own), writes every data file under
that new generation (each atomically: temp, fsync, rename), then swaps ``manifest.json`` (temp,
fsync, ``os.replace``; the commit point) listing the previous generation's files as ``pending``,
deletes those, and drops them from the manifest. A crash at any point before the swap leaves the
old manifest pointing at the old, untouched files; after it, the new index is complete; leftovers
are always listed, so the next save removes them. Loading checks the manifest's own checksum and
field types, the format version, and that every file exists with the recorded size and (by default)
SHA-256.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import DataError, ForeignFileError, MRLError
from mrl.io import atomic_open, atomic_temp_target, check_seal, read_json, sha256_file
from mrl.io import write_manifest as write_sealed
from mrl.knn import RETRIEVAL_METRICS

FORMAT = "mrl.index"
FORMAT_VERSION = 3  # 3: the manifest carries its own checksum, pending files and attached files
READ_VERSIONS = (1, 2, 3)
SEALED_FROM = 3  # manifests of this version on must carry a valid checksum
MANIFEST = "manifest.json"
DTYPES = ("float32", "float16")
_CHUNK = 1 << 16  # rows per streamed chunk


class IndexFormatError(DataError):
    """An index folder is missing, truncated, corrupted, or from an incompatible version."""



def write_npy_stream(path: Path, shape: tuple[int, ...], dtype: np.dtype, chunks: Iterable[np.ndarray]) -> dict[str, Any]:
    """Atomically write a ``.npy`` from row chunks without holding it all in memory.

    Returns ``{"file", "bytes", "sha256"}`` of the written file.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, header)
    digest = hashlib.sha256(head.getvalue())  # hashed while writing: no second pass over the file
    rows = 0
    with atomic_open(path, "wb") as fh:
        fh.write(head.getvalue())
        for chunk in chunks:
            arr = np.ascontiguousarray(chunk, dtype=dtype)
            rows += arr.shape[0]
            digest.update(memoryview(arr).cast("B"))
            fh.write(memoryview(arr).cast("B"))
    if rows != (shape[0] if shape else 1):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise MRLError(f"internal error: wrote {rows} rows to {path}, expected {shape[0]}.")
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


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


def read_owned(folder: Path) -> dict[str, Any] | None:
    """The manifest of an index folder as a save finds it (possibly a save in progress), checksum
    verified; ``None`` if the folder has none. Raises if the folder holds another kind of output."""
    p = folder / MANIFEST
    if not p.is_file():
        return None
    man = read_json(p)
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ForeignFileError(f"{p} is not an mrl index manifest; save the index in another folder (nothing there is replaced).")
    if "checksum" in man or int(man.get("format_version") or 0) >= SEALED_FROM:
        check_seal(man, p)
    return man


def _bad(folder: Path, what: str) -> IndexFormatError:
    return IndexFormatError(f"{folder / MANIFEST} {what}; the manifest is corrupted: rebuild the index.")


def _is_int(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _check_entry(folder: Path, entry: Any, where: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not _is_int(entry.get("bytes"), 0) or not isinstance(entry.get("sha256"), str):
        raise _bad(folder, f"has a malformed file entry at {where} ({entry!r})")
    if Path(entry["file"]).name != entry["file"] or entry["file"] in (MANIFEST, "", ".", ".."):
        raise _bad(folder, f"names a file outside the index folder at {where} ({entry['file']!r})")


def not_a_folder(folder: Path) -> IndexFormatError:
    """The error for an index path that is not a folder: a file (say which file), or nothing there."""
    if folder.is_file():
        hint = f"give the folder that holds it: {folder.parent}" if folder.name == MANIFEST else "give the index folder (the one `mrl index build` wrote)"
        return IndexFormatError(f"{folder} is a file, not an index folder; {hint}.")
    return IndexFormatError(f"index folder {folder} does not exist; build one with `mrl index build` or check the path.")


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read ``manifest.json``: verify its checksum, version and the type of every field it holds."""
    if not folder.is_dir():
        raise not_a_folder(folder)
    man = read_json(folder / MANIFEST)
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise IndexFormatError(f"{folder / MANIFEST} is not an mrl index manifest (format {FORMAT!r}); point to a folder written by MatryoshkaIndex.save.")
    if man.get("format_version") not in READ_VERSIONS:
        raise IndexFormatError(f"{folder} holds index format version {man.get('format_version')!r}, this mrl reads versions {READ_VERSIONS}; rebuild the index with this version (`mrl index build`).")
    try:
        if "checksum" in man or man["format_version"] >= SEALED_FROM:
            check_seal(man, folder / MANIFEST)
    except DataError as exc:
        raise IndexFormatError(str(exc)) from exc
    if man.get("state") == "building":
        raise IndexFormatError(f"{folder} holds an index whose first save was interrupted; rebuild it with `mrl index build ... --overwrite`.")
    for key in ("dim", "dtype", "count", "metric", "generation", "files", *(("rows",) if man["format_version"] >= 2 else ())):
        if key not in man:
            raise _bad(folder, f"lacks {key!r}")
    if not _is_int(man["dim"], 1):
        raise _bad(folder, f"has dim {man['dim']!r} where a positive integer is required")
    for key in ("count", "generation", *(("rows",) if man["format_version"] >= 2 else ())):
        if not _is_int(man[key], 0):
            raise _bad(folder, f"has {key} {man[key]!r} where a non-negative integer is required")
    if man["dtype"] not in DTYPES:
        raise IndexFormatError(f"{folder / MANIFEST} has dtype {man['dtype']!r}; expected one of {DTYPES}.")
    if man["metric"] not in RETRIEVAL_METRICS:
        raise _bad(folder, f"has metric {man['metric']!r} where one of {RETRIEVAL_METRICS} is required")
    files = man["files"]
    if not isinstance(files, dict):
        raise _bad(folder, "has a files entry that is not a mapping")
    if man["format_version"] == 1:
        entries = [(f"files.{k}", files.get(k)) for k in ("vectors", "ids")]
    else:
        segments = files.get("segments")
        if not isinstance(segments, list):
            raise _bad(folder, "lacks the list of vector segments")
        entries = [(f"files.segments[{i}]", e) for i, e in enumerate(segments)] + [("files.ids", files.get("ids"))]
        entries += [("files.deleted", files["deleted"])] if files.get("deleted") else []
        for i, e in enumerate(segments):
            if isinstance(e, dict) and not _is_int(e.get("rows"), 0):
                raise _bad(folder, f"has segment {i} without a row count")
        meta = files.get("meta") or {}
        if not isinstance(meta, dict) or not all(isinstance(m, dict) for m in meta.values()):
            raise _bad(folder, "has malformed metadata entries")
        for field, m in meta.items():
            entries += [(f"files.meta.{field}.values", m.get("values"))] + ([(f"files.meta.{field}.vocab", m["vocab"])] if "vocab" in m else [])
    attached = files.get("attached") or {}
    if not isinstance(attached, dict):
        raise _bad(folder, "has attached files that are not a mapping")
    entries += [(f"files.attached.{k}", e) for k, e in attached.items()]
    for where, entry in entries:
        _check_entry(folder, entry, where)
    stages = man.get("first_stages") or []
    if not isinstance(stages, list):
        raise _bad(folder, f"has first_stages {stages!r} where a list is required")
    for i, entry in enumerate(stages):
        _check_entry(folder, entry, f"first_stages[{i}]")
        if not _is_int(entry.get("dim"), 1) or not isinstance(entry.get("precision"), str) or not isinstance(entry.get("kind"), str):
            raise _bad(folder, f"has a malformed first stage {i} (dim/precision/kind)")
    if man.get("funnel") is not None and not isinstance(man["funnel"], str):
        raise _bad(folder, f"has funnel {man['funnel']!r} where a spec string or null is required")
    if man.get("tuning") is not None and not isinstance(man["tuning"], dict):
        raise _bad(folder, "has a tuning record that is not a mapping")
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
    """Atomically replace ``manifest.json``, sealed with its own checksum (a save's commit point)."""
    write_sealed(folder / MANIFEST, manifest)


def referenced(manifest: dict[str, Any]) -> set[str]:
    """Every data file name a manifest (any readable version) names."""
    files = manifest.get("files") or {}
    if manifest.get("format_version") == 1:
        names = {files[k]["file"] for k in ("vectors", "ids") if isinstance(files.get(k), dict)}
    else:
        names = {e["file"] for e in files.get("segments") or []}
        names |= {files["ids"]["file"]} if isinstance(files.get("ids"), dict) else set()
        if files.get("deleted"):
            names.add(files["deleted"]["file"])
        for entry in (files.get("meta") or {}).values():
            names |= {entry["values"]["file"], *([entry["vocab"]["file"]] if "vocab" in entry else [])}
    names |= {e["file"] for e in (files.get("attached") or {}).values()}
    names |= {e["file"] for e in manifest.get("first_stages") or []}
    return {n for n in names if isinstance(n, str) and Path(n).name == n and n != MANIFEST}


_OURS = r"(?:vectors|ids|first|deleted|meta)"


def generation_files(folder: Path, gen: int) -> set[str]:
    """Files of ``folder`` named like this module's files of generation ``gen`` (and the temp files
    of their interrupted atomic writes, ``.<name>.<random>.tmp``)."""
    pattern = re.compile(rf"^(?:{_OURS}\.{int(gen)}\..+|\.{_OURS}\.{int(gen)}\..+\.tmp)$")
    return {p.name for p in folder.iterdir() if pattern.match(p.name)} if folder.is_dir() else set()


def owned_files(folder: Path, manifest: dict[str, Any] | None) -> set[str]:
    """Files the index can prove it wrote: those the manifest names, those it lists as ``pending``
    (left to delete by a save), and those of its ``pending_generation`` (written by a save that had
    announced that generation before creating any of its files)."""
    if not manifest:
        return set()
    names = referenced(manifest) | {n for n in manifest.get("pending") or [] if isinstance(n, str) and Path(n).name == n and n != MANIFEST}
    if _is_int(manifest.get("pending_generation"), 1):
        names |= generation_files(folder, manifest["pending_generation"])
    return names


def announce_generation(folder: Path, old: dict[str, Any] | None, extra: Iterable[str] = ()) -> int:
    """Write-ahead for a save: pick the next generation whose file names no foreign file uses, and
    record it in the manifest (``pending_generation``, plus ``extra`` names in ``pending``) before
    any of those files exists."""
    owned = owned_files(folder, old)
    gen = int(old.get("generation") or 0) + 1 if old else 1
    while generation_files(folder, gen) - owned:  # a file we did not write has such a name: never replace it
        gen += 1
    for tmp in folder.glob(f".{glob.escape(MANIFEST)}.*.tmp"):  # an interrupted swap of our own manifest
        if atomic_temp_target(tmp.name) == MANIFEST:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    stub = {"format": FORMAT, "format_version": FORMAT_VERSION, "state": "building", "generation": 0}
    pending = sorted({*((old or {}).get("pending") or []), *extra})
    write_manifest(folder, {**(old or stub), "pending_generation": gen, **({"pending": pending} if pending else {})})
    return gen


def remove_listed(folder: Path, names: Iterable[str]) -> None:
    """Delete the named files (ones a manifest listed) and the temp files of interrupted writes of them."""
    for name in names:
        if Path(name).name != name or name in (MANIFEST, "", ".", ".."):
            continue  # never follow a name outside the folder
        temps = [t for t in folder.glob(f".{glob.escape(name)}.*.tmp") if atomic_temp_target(t.name) == name]  # exactly atomic_open's form
        for p in [folder / name, *temps]:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                p.unlink()


def chunks_of(arrays: Iterable[np.ndarray], rows: int = _CHUNK) -> Iterable[np.ndarray]:
    for arr in arrays:
        for start in range(0, arr.shape[0], rows):
            yield arr[start : start + rows]


@contextlib.contextmanager
def writer_lock(folder: Path, timeout: float = 0.0, *, create: bool = False) -> Any:
    """Hold the index folder's exclusive writer lock (one writer at a time; readers never wait).

    The lock is :func:`mrl.io.writer_lock` (no lock file in the folder); a second writer gets an
    :class:`mrl.errors.OutputLockedError` at once naming the fix. ``timeout`` is kept for callers
    and must be 0. ``create``: the folder may not exist yet (a new index); otherwise a missing folder
    is an error (and is not created).
    """
    from mrl.io import writer_lock as io_writer_lock

    if timeout:
        raise MRLError("internal error: index writer locks do not wait (timeout must be 0).")
    if not create and not folder.is_dir():
        raise not_a_folder(folder)
    with io_writer_lock(folder):
        yield folder
