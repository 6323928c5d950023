"""Resident memory of a loaded index structure: the growth of the process's anonymous RSS when it is read.

``measured_load`` reads a FAISS or usearch file after returning freed heap pages to the OS (``malloc_trim``), so
the RssAnon delta is what the structure holds rather than reused heap (``benchmarks/retrieval_ram.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from pathlib import Path
from typing import Any

import faiss
import retrieval_bench as rb


def trim() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RssAnon deltas measure what is held."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def anon() -> int:
    return rb.rss()["RssAnon"]


def load_structure(path: Path, usearch: bool) -> Any:
    if usearch:
        from usearch.index import Index

        return Index.restore(str(path))
    return faiss.read_index(str(path))


def measured_load(path: Path, usearch: bool, n: int) -> tuple[Any, float]:
    """``(structure, RssAnon growth per vector)`` of reading ``path``."""
    trim()
    a0 = anon()
    ix = load_structure(path, usearch)
    trim()
    return ix, (anon() - a0) / n
