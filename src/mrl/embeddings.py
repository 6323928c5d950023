"""Operations on Matryoshka embeddings: truncate (then L2-normalise) and quantize.

All functions take numpy arrays ``[N, D]`` (float) and never modify their input.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from mrl.checks import check_matrix
from mrl.errors import MRLError

Precision = Literal["float32", "float16", "int8", "binary"]
PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8", "binary")
EMBEDDINGS_KIND = "mrl.embeddings"  # the sidecar format of every embeddings file mrl writes


def array_sha256(x: np.ndarray) -> str:
    """SHA-256 of an array's bytes (C order), as recorded in the sidecars. Shape: ``x`` any."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation. Shape: ``[..., d] -> [..., d]`` float32 (a new array).

    Safe for any finite input: rows whose norm overflows float32 (``|x| ~ 1e20`` and up) or
    underflows are scaled by their largest entry first. All-zero rows stay zero.
    """
    return normalize_rows_(np.array(x, dtype=np.float32, copy=True), eps)


def normalize_rows_(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """L2-normalise the last axis of float32 ``x`` **in place** and return it (see :func:`l2_normalize`).

    The common case costs one norm; only rows whose squared norm overflows or underflows take a
    second pass that divides by the row's largest magnitude before normalising.
    """
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    bad = ~np.isfinite(norms) | (norms < 1e-18)
    if bad.any():
        scale = np.abs(x).max(axis=-1, keepdims=True)
        fix = bad & (scale > 0)
        np.divide(x, scale, out=x, where=fix)
        norms = np.where(fix, np.linalg.norm(x, axis=-1, keepdims=True), norms)
    x /= np.maximum(norms, eps)
    return x


def truncate(x: np.ndarray, dim: int, *, normalize: bool = True) -> np.ndarray:
    """Keep the first ``dim`` coordinates, then L2-normalise (the order matters: truncate first).

    Shape: ``[N, D] -> [N, dim]`` float32, contiguous, a new array.

    Raises:
        MRLError: ``dim`` outside ``[1, D]``, non-2-D input, or NaN/Inf values.
    """
    check_matrix(x, "embeddings")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= x.shape[1]:
        raise MRLError(f"truncate_dim must be an integer in [1, {x.shape[1]}] (the embedding dim), got {dim!r}.")
    out = np.array(x[:, :dim], dtype=np.float32, order="C", copy=True)
    return l2_normalize(out) if normalize else out


def quantize(x: np.ndarray, precision: Precision) -> np.ndarray:
    """Quantize embeddings for compact storage / cheap first-stage search.

    * ``float32`` / ``float16``: a cast.
    * ``int8``: symmetric per-dimension scaling by the max absolute value -> ``int8`` in [-127, 127].
    * ``binary``: sign bits packed 8 per byte (``np.packbits``) -> ``uint8`` ``[N, ceil(D/8)]``,
      the layout FAISS binary indexes expect.
    """
    check_matrix(x, "embeddings")
    if precision == "float32":
        return np.asarray(x, dtype=np.float32).copy()
    if precision == "float16":
        return np.asarray(x, dtype=np.float16)
    if precision == "int8":
        scale = np.abs(x).max(axis=0, keepdims=True)
        scale[scale == 0] = 1.0
        return np.clip(np.rint(x / scale * 127.0), -127, 127).astype(np.int8)
    if precision == "binary":
        return np.packbits(np.asarray(x) > 0, axis=1)
    raise MRLError(f"unknown precision {precision!r}; choose one of {PRECISIONS}.")
