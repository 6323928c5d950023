"""Boundary checks shared by every public function: shapes, dtypes and finiteness.

They accept numpy arrays and torch tensors alike and raise :class:`mrl.errors.MRLError`
with a message that says what to change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mrl.errors import MRLError


def _is_floating(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.is_floating_point()
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def check_matrix(x: Any, name: str, *, cols: int | None = None, min_cols: int | None = None) -> None:
    """Check that ``x`` is a finite 2-D float array ``[N, D]``.

    Args:
        x: numpy array or torch tensor.
        name: what the array is, used in the error message.
        cols: if given, the exact number of columns required.
        min_cols: if given, the minimum number of columns required.
    """
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise MRLError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")
    if x.ndim != 2:
        raise MRLError(f"{name} must be 2-D [N, D], got shape {tuple(x.shape)}; reshape it to (n_rows, dim).")
    if not _is_floating(x):
        raise MRLError(f"{name} must hold floating-point values, got dtype {x.dtype}; cast it with .astype('float32').")
    if cols is not None and x.shape[1] != cols:
        raise MRLError(f"{name} has {x.shape[1]} columns but {cols} are required; pass vectors of width {cols}.")
    if min_cols is not None and x.shape[1] < min_cols:
        raise MRLError(f"{name} has {x.shape[1]} columns but at least {min_cols} are required by the dims asked for.")
    check_finite(x, name)


def check_finite(x: Any, name: str) -> None:
    """Raise if ``x`` holds NaN or Inf (the count is reported, so the user can find them)."""
    if isinstance(x, torch.Tensor):
        bad = int((~torch.isfinite(x)).sum().item()) if x.is_floating_point() else 0
    else:
        arr = np.asarray(x)
        bad = int((~np.isfinite(arr)).sum()) if np.issubdtype(arr.dtype, np.floating) else 0
    if bad:
        raise MRLError(f"{name} holds {bad} NaN/Inf values; clean or drop those rows before calling.")


def check_labels(y: Any, n: int, name: str = "labels") -> None:
    """Check that ``y`` is a 1-D integer array of length ``n`` with non-negative values."""
    if not isinstance(y, (np.ndarray, torch.Tensor)):
        raise MRLError(f"{name} must be a numpy array or torch tensor, got {type(y).__name__}.")
    if y.ndim != 1 or y.shape[0] != n:
        raise MRLError(f"{name} must have shape ({n},), got {tuple(y.shape)}; pass one integer label per row.")
    is_int = (not y.is_floating_point() and y.dtype != torch.bool) if isinstance(y, torch.Tensor) else np.issubdtype(y.dtype, np.integer)
    if not is_int:
        raise MRLError(f"{name} must be integers, got dtype {y.dtype}; cast with .astype('int64').")
    if n and int(y.min()) < 0:
        raise MRLError(f"{name} must be non-negative class ids, found {int(y.min())}.")
