"""Atomic file writes and safe loading.

Every writer goes through :func:`atomic_write`: the bytes land in a temporary file in the target's
folder, are fsynced, then ``os.replace``d over the target and the folder is fsynced. A crash at any
point leaves either the old file or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mrl.errors import CheckpointError, DataError, OutputExistsError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a temporary sibling folder; on success it replaces ``path`` as a whole.

    The previous folder is moved aside first and deleted only after the new one is in place; on
    failure the temporary folder is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV (columns: every key, in first-seen order), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
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
    if not p.is_file():
        raise DataError(f"{p} does not exist; write it with `mrl embed` or numpy.save first.")
    try:
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {p} as a .npy array ({exc}); the file is truncated or not a numpy array.") from exc


def save_safetensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, st_save(tensors, metadata=metadata))


def load_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load tensors and metadata; raise :class:`CheckpointError` on a missing or corrupted file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; train a model first or check the path.")
    raw = p.read_bytes()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, RuntimeError) as exc:
        raise CheckpointError(f"{p} is not a valid safetensors file ({exc}); it is truncated or corrupted: retrain or restore it.") from exc
    return tensors, header.get("__metadata__", {}) or {}


def guard_output(path: str | os.PathLike[str], overwrite: bool, exists: Callable[[Path], bool] | None = None) -> Path:
    """Refuse to write into ``path`` when it already holds results, unless ``overwrite``."""
    p = Path(path)
    holds = exists(p) if exists is not None else (p.is_file() or (p.is_dir() and any(p.iterdir())))
    if holds and not overwrite:
        raise OutputExistsError(f"{p} already holds results; pass --overwrite (overwrite=True) to replace them, or choose another output.")
    return p
