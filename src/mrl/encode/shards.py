"""Sharded embedding files: fixed-size ``.npy`` shards plus one manifest, written by any executor.

A shard folder holds::

    manifest.json        format "mrl.shards", model {name, sha256, ...}, dim, dtype, rows,
                         rows_per_shard, sources [{file, bytes, sha256, rows}], settings,
                         shards [{index, start, rows, file, bytes, sha256}], complete
    shard-00000.npy      [rows_per_shard, dim] float32/float16, rows start..start+rows of the input
    ids.txt              (optional) the input's record ids, one per line, in row order

Shard ``i`` always covers input rows ``[i * rows_per_shard, (i + 1) * rows_per_shard)``, so any
executor (this process, a Ray actor, another machine) can encode any pending shard on its own:
:func:`write_shard` writes the array atomically (temp file, fsync, rename) and returns its entry;
:meth:`ShardSet.record` adds the entry to the manifest under a file lock (re-reading the manifest
first, so concurrent writers never lose each other's shards); :meth:`ShardSet.claim` lets several
executors share one folder without encoding the same shard twice. The manifest lists only finished
shards: a killed job leaves at worst an unlisted file, which the next run rewrites. A resumed run
checks the model hash and the input files' hashes against the manifest and encodes only the shards
it does not list.

Reading: :func:`open_shards` verifies every listed shard (size always, SHA-256 on request) and
memory-maps them; :meth:`ShardReader.chunks` streams them in row order and :meth:`ShardReader.array`
concatenates (small sets only, e.g. queries).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import DataError, MRLError, OutputExistsError
from mrl.io import atomic_open, atomic_temp_target, read_json, sha256_file, write_json
from mrl.io.proof import matches_entry

FORMAT = "mrl.shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IDS_FILE = "ids.txt"
HASH_FILE = "texthash.npy"
DTYPES = ("float32", "float16")
# Keys of the manifest that must match for a run to resume into an existing folder.
_RESUME_KEYS = ("model", "dim", "dtype", "rows", "rows_per_shard", "sources", "settings")


class ShardFormatError(DataError):
    """A shard folder is missing, inconsistent with its manifest, or from another encoding."""



def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def source_entry(path: str | os.PathLike[str], rows: int) -> dict[str, Any]:
    """Manifest entry of one input file: absolute path, size, SHA-256 and the rows read from it."""
    p = Path(path).resolve()
    return {"file": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p), "rows": int(rows)}


def write_shard(folder: str | os.PathLike[str], index: int, start: int, vectors: np.ndarray, dtype: str = "float32") -> dict[str, Any]:
    """Atomically write shard ``index`` (input rows ``start..start+n``) and return its manifest entry.

    Reusable by any executor; call :meth:`ShardSet.record` with the entry afterwards.

    Shape: ``vectors [n, dim]`` float -> file ``[n, dim]`` of ``dtype``.
    """
    if dtype not in DTYPES:
        raise MRLError(f"shard dtype must be one of {DTYPES}, got {dtype!r}.")
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise MRLError(f"a shard holds a 2-D float array [rows, dim], got {vectors.dtype} {vectors.shape}.")
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(vectors, dtype=dtype)
    if not np.isfinite(arr).all():
        raise MRLError(f"shard {index} holds NaN/Inf values (or overflows {dtype}); the model produced non-finite embeddings: check the model, or store float32.")
    path = Path(folder) / shard_name(index)
    with atomic_open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
    return {"index": int(index), "start": int(start), "rows": int(arr.shape[0]), "file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder``'s manifest (one manifest writer at a time), waiting for it.

    The lock file lives in mrl's per-user lock folder (:func:`mrl.io.lock.lock_path`), never in the
    user's output folder. Locks are per machine: on a Ray cluster the driver alone records shards.
    """
    from filelock import FileLock

    from mrl.io.lock import lock_path

    lp = lock_path(folder / MANIFEST)
    lp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with FileLock(str(lp), thread_local=False):
        yield


def _check_manifest(folder: Path, man: Any) -> dict[str, Any]:
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ShardFormatError(f"{folder / MANIFEST} is not a shard manifest (format {FORMAT!r}); point to a folder written by `mrl encode`.")
    if man.get("format_version") != FORMAT_VERSION:
        raise ShardFormatError(f"{folder} holds shard format version {man.get('format_version')!r}, this mrl reads {FORMAT_VERSION}; re-encode with this version.")
    for key in ("dim", "dtype", "rows", "rows_per_shard", "shards", "model"):
        if key not in man:
            raise ShardFormatError(f"{folder / MANIFEST} lacks {key!r}; the manifest is corrupted: re-encode into a new folder.")
    return man


@dataclass
class ShardSet:
    """A shard folder being written: the planned header plus the shards finished so far.

    Build with :meth:`create_or_resume`.
    """

    folder: Path
    manifest: dict[str, Any]
    claims: dict[int, str] = field(default_factory=dict, repr=False)  # shard index -> the text of our claim file

    @property
    def rows_per_shard(self) -> int:
        return int(self.manifest["rows_per_shard"])

    @property
    def num_shards(self) -> int:
        return -(-int(self.manifest["rows"]) // self.rows_per_shard)

    def shard_rows(self, index: int) -> tuple[int, int]:
        """``(start, stop)`` input rows of shard ``index``."""
        start = index * self.rows_per_shard
        return start, min(start + self.rows_per_shard, int(self.manifest["rows"]))

    def finished(self) -> dict[int, dict[str, Any]]:
        return {int(e["index"]): e for e in self.manifest["shards"]}

    def pending(self) -> list[int]:
        """Shard indexes not yet listed in the manifest (re-read from disk: other executors may write)."""
        self.manifest = _check_manifest(self.folder, read_json(self.folder / MANIFEST))
        done = self.finished()
        return [i for i in range(self.num_shards) if i not in done or not self._intact(done[i])]

    def claim(self, index: int, *, stale_after: float = 3600.0) -> bool:
        """Claim shard ``index`` for this process (so concurrent executors on one folder split the
        work); ``False`` when another live claim holds it or the shard is already listed.

        A claim is the file ``.claim-<index>`` (created exclusively) holding ``host pid time``; a
        claim whose process is gone (same host) or older than ``stale_after`` seconds is broken.
        Release with :meth:`release` after :meth:`record`.
        """
        path = self.folder / f".claim-{index:05d}"
        me = f"{socket.gethostname()} {os.getpid()} {time.time():.0f}"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path, stale_after):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.claims[index] = me
            if index not in self.pending():  # listed (intact) by another executor since we looked
                self.release(index)
                return False
            return True
        return False

    def release(self, index: int) -> None:
        """Delete our claim on shard ``index``: only a file still holding the text this process wrote
        (a claim broken as stale and taken by another executor is theirs, and stays)."""
        me = self.claims.pop(index, None)
        path = self.folder / f".claim-{index:05d}"
        with contextlib.suppress(FileNotFoundError):
            if me is not None and path.read_text() == me:
                path.unlink()

    @staticmethod
    def _stale(path: Path, stale_after: float) -> bool:
        try:
            host, pid_text, t_text = path.read_text().split()
            pid, t = int(pid_text), float(t_text)
        except (OSError, ValueError):
            try:
                st = path.stat()
            except FileNotFoundError:
                return True
            if st.st_size:  # not the "host pid time" a claim holds: not ours, never broken
                raise OutputExistsError(f"{path} is not a shard claim mrl wrote; move it away (it is never deleted), then rerun.") from None
            return time.time() - st.st_mtime > stale_after  # empty: killed between its exclusive create and the write
        if time.time() - t > stale_after:
            return True
        if host == socket.gethostname():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def _intact(self, entry: dict[str, Any]) -> bool:
        p = self.folder / entry["file"]
        return p.is_file() and p.stat().st_size == int(entry["bytes"])

    def record(self, entry: dict[str, Any], **extra: Any) -> None:
        """Add a finished shard (and optional top-level fields) to the manifest, under the folder lock."""
        start, stop = self.shard_rows(int(entry["index"]))
        if int(entry["start"]) != start or int(entry["rows"]) != stop - start:
            raise MRLError(f"shard {entry['index']} must hold input rows {start}..{stop}, got start {entry['start']} with {entry['rows']} rows.")
        with _locked(self.folder):
            man = _check_manifest(self.folder, read_json(self.folder / MANIFEST))
            shards = [e for e in man["shards"] if int(e["index"]) != int(entry["index"])] + [entry]
            man["shards"] = sorted(shards, key=lambda e: int(e["index"]))
            man.update(extra)
            man["complete"] = len(man["shards"]) == self.num_shards
            write_json(self.folder / MANIFEST, man)
            self.manifest = man

    def update(self, **fields: Any) -> None:
        """Set top-level manifest fields (e.g. a fidelity measurement), under the folder lock."""
        with _locked(self.folder):
            man = _check_manifest(self.folder, read_json(self.folder / MANIFEST))
            man.update(fields)
            write_json(self.folder / MANIFEST, man)
            self.manifest = man

    @classmethod
    def create_or_resume(cls, folder: str | os.PathLike[str], header: dict[str, Any], *, overwrite: bool = False, ids: list[str] | None = None, text_hashes: np.ndarray | None = None) -> ShardSet:
        """Open ``folder`` for writing the encoding described by ``header``.

        ``header`` holds ``model``, ``dim``, ``dtype``, ``rows``, ``rows_per_shard``, ``sources`` and
        ``settings`` (plus anything descriptive). An existing manifest with the same values resumes;
        a different one is refused unless ``overwrite`` (which deletes only the files that manifest
        lists). ``ids``: the input's record ids in row order, written once to ``ids.txt``;
        ``text_hashes``: a 64-bit hash of every input text (``[rows]`` uint64), written once to
        ``texthash.npy`` so a later encoding of changed inputs can reuse unchanged rows.
        """
        folder = Path(folder)
        if header.get("dtype") not in DTYPES:
            raise MRLError(f"shard dtype must be one of {DTYPES}, got {header.get('dtype')!r}.")
        if int(header.get("rows_per_shard", 0)) < 1:
            raise MRLError(f"rows_per_shard must be a positive integer, got {header.get('rows_per_shard')!r}.")
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            if (folder / MANIFEST).is_file():
                old = _check_manifest(folder, read_json(folder / MANIFEST))
                diff = [k for k in _RESUME_KEYS if old.get(k) != header.get(k)]
                if not diff:
                    me = cls(folder, old)
                    for tmp in folder.glob(".shard-*.npy.*.tmp"):  # a shard write killed mid-way
                        target = atomic_temp_target(tmp.name)  # exactly atomic_open's temp name of a shard file, or skipped
                        if target is None or not re.fullmatch(r"shard-\d{5}\.npy", target):
                            continue
                        claim = folder / f".claim-{target[6:11]}"
                        if not claim.exists() or cls._stale(claim, 3600.0):  # not another executor's write in progress
                            with contextlib.suppress(FileNotFoundError):
                                tmp.unlink()
                    return me
                if not overwrite:
                    raise OutputExistsError(f"{folder} holds shards of a different encoding ({', '.join(diff)} differ); use another output folder, or pass --overwrite to replace them.")
                _remove_listed(folder, old)
            elif any(p.name != ".manifest.lock" for p in folder.iterdir()):  # a lock file older mrl versions left in the folder
                raise OutputExistsError(f"{folder} is not empty and holds no shard manifest; choose an empty or new output folder.")
            man = {"format": FORMAT, "format_version": FORMAT_VERSION, **header, "shards": [], "complete": False}
            if ids is not None:
                if len(ids) != int(header["rows"]):
                    raise MRLError(f"{len(ids)} ids for {header['rows']} rows; give one id per input row.")
                data = "".join(f"{i}\n" for i in ids).encode()
                with atomic_open(folder / IDS_FILE, "wb") as fh:
                    fh.write(data)
                man["ids"] = {"file": IDS_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            if text_hashes is not None:
                buf = io.BytesIO()
                np.save(buf, np.asarray(text_hashes, dtype=np.uint64), allow_pickle=False)
                with atomic_open(folder / HASH_FILE, "wb") as fh:
                    fh.write(buf.getvalue())
                man["texthash"] = {"file": HASH_FILE, "bytes": len(buf.getvalue()), "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
            write_json(folder / MANIFEST, man)
            return cls(folder, man)


def proven_listed_files(folder: Path, man: dict[str, Any]) -> tuple[list[Path], list[Path]]:
    """The files an encoding manifest lists (its shards, its ids and text-hash files), split into those
    whose size and SHA-256 prove they are the files it recorded, and listed names holding other bytes
    (a user's file put there since: never to be deleted). Names that are missing or not plain file
    names are left out of both."""
    entries = [*man.get("shards", []), *(man.get(key) for key in ("ids", "texthash"))]
    mine, foreign = [], []
    for e in entries:
        name = (e or {}).get("file")
        if not (isinstance(name, str) and name and "/" not in name and (folder / name).is_file()):
            continue
        p = folder / name
        (mine if matches_entry(p, e) else foreign).append(p)
    return mine, foreign


def _remove_listed(folder: Path, man: dict[str, Any]) -> None:
    """Delete the files an old manifest lists, then the manifest, each only after its size and SHA-256
    prove it is the file that manifest recorded; a listed name holding other bytes stops the removal first."""
    mine, foreign = proven_listed_files(folder, man)
    if foreign:
        raise OutputExistsError(f"{foreign[0]} is listed by the old encoding's manifest but holds other bytes now; move it away (it is never deleted), then rerun with --overwrite.")
    for p in mine:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    (folder / MANIFEST).unlink()


@dataclass
class ShardReader:
    """A finished shard folder, memory-mapped. Build with :func:`open_shards`.

    Shape: ``rows`` x ``dim`` in row order of the encoded input.
    """

    folder: Path
    manifest: dict[str, Any]
    arrays: list[np.ndarray]

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def dtype(self) -> str:
        return str(self.manifest["dtype"])

    def chunks(self) -> Iterator[np.ndarray]:
        """The shards in row order (read-only memory maps)."""
        yield from self.arrays

    def array(self) -> np.ndarray:
        """All rows in one in-memory array (for small sets such as queries). Shape: ``[rows, dim]``."""
        return np.concatenate(self.arrays) if len(self.arrays) > 1 else np.array(self.arrays[0])

    def ids(self) -> list[str] | None:
        """The input's record ids in row order (``None`` when the input had none)."""
        entry = self.manifest.get("ids")
        if not entry:
            return None
        path = self.folder / entry["file"]
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ShardFormatError(f"{path} is missing or fails its SHA-256 checksum; re-encode the folder.")
        return data.decode().split("\n")[:-1]


def finished_rows(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray, list[tuple[int, np.ndarray]]] | None:
    """What a (possibly unfinished) shard folder can lend to another encoding: its manifest, the
    text hash of every input row, and its intact finished shards as ``(start row, memory map)``.
    ``None`` when the folder has no text hashes (or no manifest)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return None
    man = _check_manifest(folder, read_json(folder / MANIFEST))
    entry = man.get("texthash")
    if not entry or not (folder / entry["file"]).is_file():
        return None
    hashes = np.load(folder / entry["file"], allow_pickle=False)
    shards = []
    for e in man["shards"]:
        f = folder / e["file"]
        if f.is_file() and f.stat().st_size == int(e["bytes"]):
            shards.append((int(e["start"]), np.load(f, mmap_mode="r", allow_pickle=False)))
    return man, hashes, shards


def is_shard_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a shard manifest or a folder holding one."""
    p = Path(path)
    man = p if p.name == MANIFEST else p / MANIFEST
    if not man.is_file():
        return False
    try:
        return read_json(man).get("format") == FORMAT
    except (DataError, AttributeError):
        return False


def open_shards(path: str | os.PathLike[str], *, verify: bool = False) -> ShardReader:
    """Open a finished shard folder (or its ``manifest.json``) for reading.

    Every listed shard must exist with its recorded size, shape and dtype (``verify``: SHA-256 too);
    an incomplete encoding is refused with the command that finishes it.
    """
    p = Path(path)
    folder = p.parent if p.name == MANIFEST else p
    if not (folder / MANIFEST).is_file():
        raise ShardFormatError(f"{folder} holds no {MANIFEST}; encode into it with `mrl encode` first.")
    man = _check_manifest(folder, read_json(folder / MANIFEST))
    rps, rows, dim = int(man["rows_per_shard"]), int(man["rows"]), int(man["dim"])
    n_shards = -(-rows // rps)
    shards = sorted(man["shards"], key=lambda e: int(e["index"]))
    if [int(e["index"]) for e in shards] != list(range(n_shards)):
        raise ShardFormatError(f"{folder} lists {len(shards)} of {n_shards} shards: the encoding is unfinished; rerun the same `mrl encode` command to resume it.")
    arrays = []
    for e in shards:
        f = folder / e["file"]
        if not f.is_file() or f.stat().st_size != int(e["bytes"]):
            raise ShardFormatError(f"shard {f} is missing or has the wrong size; rerun the same `mrl encode` command (with --overwrite if it refuses) to rewrite it.")
        if verify and sha256_file(f) != e["sha256"]:
            raise ShardFormatError(f"shard {f} fails its SHA-256 checksum; it is corrupted: delete it from the manifest by re-encoding with --overwrite.")
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ShardFormatError(f"cannot map shard {f} ({exc}); re-encode the folder.") from exc
        start, stop = int(e["index"]) * rps, min((int(e["index"]) + 1) * rps, rows)
        if arr.shape != (stop - start, dim) or arr.dtype != np.dtype(man["dtype"]):
            raise ShardFormatError(f"shard {f} holds {arr.dtype} {arr.shape}, the manifest expects {man['dtype']} {(stop - start, dim)}; re-encode the folder.")
        arrays.append(arr)
    return ShardReader(folder, man, arrays)
