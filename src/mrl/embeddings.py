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
    with np.errstate(over="ignore", under="ignore"):  # an overflowing row is rescaled below, not warned about on every search
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


def quantize(x: np.ndarray, precision: Precision, *, calibration: np.ndarray | None = None) -> np.ndarray:
    """Quantize embeddings for compact storage / cheap first-stage search.

    * ``float32`` / ``float16``: a cast.
    * ``int8``: FAISS's 8-bit scalar quantizer (``QT_8bit``: per-dimension min/max ranges trained
      on ``calibration``, default ``x`` itself; the quantizer mrl's ``/int8`` index stages use),
      its uint8 codes shifted by -128 (sentence-transformers' ``int8`` convention). Quantize
      queries with the corpus as ``calibration`` so both share the ranges; values outside clip.
    * ``binary``: sign bits packed 8 per byte -> ``uint8`` ``[N, ceil(D/8)]``, FAISS's binary
      layout (sentence-transformers' ``ubinary``). Kept as ``np.packbits(x > 0)``: that one line is
      what sentence-transformers runs too, and importing it (torch + transformers, ~13 s on the
      2-core machine) for it would make the core depend on the ``text`` extra.

    Shape: ``[N, D]`` float -> ``[N, D]`` (float32, float16, int8) or ``[N, ceil(D/8)]`` uint8 (binary);
    ``calibration`` ``[M, D]``.
    """
    check_matrix(x, "embeddings")
    if precision == "float32":
        return np.asarray(x, dtype=np.float32).copy()
    if precision == "float16":
        return np.asarray(x, dtype=np.float16)
    if precision == "int8":
        import faiss

        cal = x if calibration is None else calibration
        check_matrix(cal, "calibration embeddings")
        if cal.shape[1] != x.shape[1]:
            raise MRLError(f"calibration embeddings are {cal.shape[1]}-d but the embeddings are {x.shape[1]}-d; calibrate on embeddings of the same model and dim.")
        sq = faiss.ScalarQuantizer(x.shape[1], faiss.ScalarQuantizer.QT_8bit)
        sq.train(np.ascontiguousarray(cal, dtype=np.float32))
        return (sq.compute_codes(np.ascontiguousarray(x, dtype=np.float32)).astype(np.int16) - 128).astype(np.int8)
    if precision == "binary":
        return np.packbits(np.asarray(x) > 0, axis=1)
    raise MRLError(f"unknown precision {precision!r}; choose one of {PRECISIONS}.")
