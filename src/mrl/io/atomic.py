"""Atomic file writes and safe loading.

Every writer goes through :func:`atomic_open`: the bytes land in a temporary file in the target's
folder, are fsynced, then ``os.replace``d over the target and the folder is fsynced. A crash at any
point leaves either the old file or the new one, never a torn file. Files and folders are created
with the permissions the process umask gives (``tempfile`` alone would make them 0600/0700).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from mrl.errors import DataError


def current_umask() -> int:
    """The process umask (read from ``/proc`` where possible, so no other thread sees it change)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is synced)."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# atomic_open's temp file for TARGET: ``.TARGET.<8 characters of tempfile's random names>.tmp``
_ATOMIC_TEMP = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")


def atomic_temp_target(name: str) -> str | None:
    """The target file name whose :func:`atomic_open` temp file is named ``name`` (a write killed
    before its rename leaves one), or ``None`` when ``name`` does not have that exact form."""
    m = _ATOMIC_TEMP.fullmatch(name)
    return m.group(1) if m else None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def make_temp_dir(parent: str | os.PathLike[str], prefix: str) -> Path:
    """A new hidden folder in ``parent`` with the umask's permissions (``mkdtemp`` alone gives 0700)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def folder_files(folder: str | os.PathLike[str], skip: frozenset[str] = frozenset()) -> list[str]:
    """Relative names of every file under ``folder``, sorted (base names in ``skip`` left out); a
    symbolic link to a folder counts as a file (``os.walk`` lists it among the folders and does not enter it)."""
    names = []
    for root, dirs, files in os.walk(folder):
        names += [os.path.join(root, f) for f in files if f not in skip]
        names += [os.path.join(root, d) for d in dirs if os.path.islink(os.path.join(root, d))]
    return sorted(os.path.relpath(n, folder) for n in names)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str], *, owned: Callable[[str], bool]) -> Iterator[Path]:
    """Fill a temporary sibling folder; on success it replaces ``path`` as a whole.

    ``owned(name)`` says whether a file of the folder being replaced (``name`` relative to it) was
    written by the caller. Only those files are deleted, and ownership is read after the swap, so a
    file that appeared after the caller's own checks is never lost: when the old folder holds any
    other file, it is kept as ``<path>.unlisted-files`` (or a numbered sibling) with only those
    files left in it. Commands write folders through :func:`mrl.io.open_output`, which also
    checks first that the folder holds only files mrl wrote.
    """
    target = Path(path)
    tmp = make_temp_dir(target.parent, f".{target.name}.")
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            _retire_folder(old, target, owned)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)


def _retire_folder(old: Path, target: Path, owned: Callable[[str], bool]) -> None:
    """Delete the replaced folder ``old`` when every file in it is ``owned``; otherwise delete only
    the owned files and keep the rest beside ``target`` where the user can see them."""
    names = folder_files(old)
    if all(owned(n) for n in names):
        shutil.rmtree(old, ignore_errors=True)
        return
    for n in names:
        if owned(n):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (old / n).unlink()
    os.replace(old, unlisted_sibling(target))


def unlisted_sibling(target: Path) -> Path:
    """A free name beside ``target`` for files found in a folder that replaced them did not own:
    ``<target>.unlisted-files``, else ``<target>.unlisted-files-1``, ``-2``, ... (an earlier one is
    never overwritten)."""
    keep, n = target.with_name(f"{target.name}.unlisted-files"), 1
    while keep.exists():
        keep, n = target.with_name(f"{target.name}.unlisted-files-{n}"), n + 1
    return keep


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV (columns: every key, in first-seen order), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Strict, stable JSON text: sorted keys, non-finite floats written as ``null``."""
    return json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """``obj`` as indented JSON (see :func:`dumps`), atomically."""
    atomic_write(path, dumps(obj).encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p} is a folder; give the path of a JSON file.")
    if not p.is_file():
        raise DataError(f"{p} does not exist; check the path or produce it first.")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p} is not valid JSON ({exc}); the file is corrupted: regenerate it.") from exc


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write(path, buf.getvalue())


def load_npy(path: str | os.PathLike[str], *, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` without pickle; ``mmap=True`` maps it read-only instead of reading it."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p} is a folder, not a .npy file; give the path of an array written with numpy.save (or a shard folder where a command accepts one).")
    if not p.is_file():
        raise DataError(f"{p} does not exist; write it with `mrl embed` or numpy.save first.")
    if p.suffix == ".npz":
        raise DataError(f"{p} is a .npz archive; save the array alone with numpy.save('x.npy', array).")
    try:
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {p} as a .npy array ({exc}); the file is truncated or not a numpy array.") from exc
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DataError(f"{p} is a .npz archive, not a .npy array; save the array alone with numpy.save('x.npy', array).")
    return arr


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 24) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
