"""Refit Matryoshka class heads on a trained encoder's frozen embeddings, one regularisation per prefix.

Heads trained *with* the encoder (``loss: classify``) see a moving target: their last epochs fit
features that kept changing under them, and one weight decay serves 8 dims and 384 alike. Once the
encoder is final, each prefix's head is a convex problem on fixed features (multinomial logistic
regression), so it can be solved to convergence and regularised for its own width: small prefixes
want little weight decay (they underfit), wide ones more (they overfit the training rows). The
weight decay of each prefix is chosen on *validation* rows, never on the rows a cascade is calibrated
or reported on, by validation log-loss rather than accuracy: a cascade stops on the heads'
confidences, and the log-loss (a proper scoring rule) rewards confidences that rank right, where
accuracy alone picks the least regularised, over-confident wide heads.

Each head is fitted with :func:`mrl.evaluate.probe.fit_linear_probe` (full-batch L-BFGS on
standardised features, deterministic), and the standardisation is folded into the head's weight and
bias, so the result is a plain :class:`~mrl.heads.MatryoshkaLinear` reading the same inputs as before.

No label smoothing: it flattens the confidences that a cascade ranks samples by.

Example:
    >>> refit = refit_prefix_heads(train_x, train_y, val_x, val_y, dims=(8, 16, 32, 64), num_classes=10)
    >>> refit.heads(torch.from_numpy(val_x)).shape   # [G, N, C]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mrl.checks import check_labels, check_matrix
from mrl.errors import MRLError
from mrl.evaluate.probe import fit_linear_probe
from mrl.heads import MatryoshkaLinear
from mrl.nesting import validate_dims

WEIGHT_DECAYS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)  # L2 on the weights of standardised features (see fit_linear_probe)


@dataclass
class HeadRefit:
    """Refitted heads and, per prefix, every candidate's validation log-loss and accuracy and the chosen weight decay."""

    heads: MatryoshkaLinear
    report: list[dict[str, Any]]


def refit_prefix_heads(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    dims: Sequence[int],
    num_classes: int,
    *,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    max_iter: int = 300,
    seed: int = 0,
) -> HeadRefit:
    """Fit one linear head per prefix on frozen head inputs; each prefix keeps the weight decay with
    the lowest validation log-loss (ties: the larger decay).

    Args:
        train_x: ``[N, D]`` head inputs of the training rows (what the heads read, e.g. the unit-norm
            embedding times the heads' scale); head ``i`` reads ``[:, :dims[i]]``.
        train_y: ``[N]`` class ids in ``[0, num_classes)``.
        val_x, val_y: ``[M, D]`` and ``[M]``: validation rows (not trained on, not the calibration rows).
        dims: the prefixes, strictly increasing, each at most ``D``.
        num_classes: ``C``; every class must occur in ``train_y``.
        weight_decays: the candidates tried for every prefix (positive).

    Returns:
        :class:`HeadRefit` with ``heads`` (``[N, D] -> [G, N, C]``) and a per-prefix report.
    """
    check_matrix(train_x, "training embeddings")
    check_matrix(val_x, "validation embeddings", cols=np.shape(train_x)[1])
    check_labels(train_y, train_x.shape[0], "training labels")
    check_labels(val_y, val_x.shape[0], "validation labels")
    width = train_x.shape[1]
    dims = validate_dims(dims, width, require_full=False)
    if int(np.max(train_y)) >= num_classes or int(np.max(val_y)) >= num_classes:
        raise MRLError(f"labels go up to {max(int(np.max(train_y)), int(np.max(val_y)))} but there are {num_classes} classes.")
    missing = np.setdiff1d(np.arange(num_classes), train_y)
    if missing.size:
        raise MRLError(f"{missing.size} of {num_classes} classes have no training rows (e.g. class {int(missing[0])}); a head cannot learn them. Add rows of every class.")
    decays = sorted({float(w) for w in weight_decays})
    if not decays or decays[0] <= 0 or not np.isfinite(decays[-1]):
        raise MRLError(f"weight_decays must be positive numbers, e.g. {WEIGHT_DECAYS}; got {tuple(weight_decays)}.")
    heads = MatryoshkaLinear(width, num_classes, dims)
    weight = torch.zeros_like(heads.weight)
    bias = torch.zeros_like(heads.bias)
    val_targets = torch.from_numpy(np.asarray(val_y, dtype=np.int64))
    report = []
    for g, d in enumerate(dims):
        tx, vx = np.ascontiguousarray(train_x[:, :d]), np.ascontiguousarray(val_x[:, :d])
        tried, t0 = [], time.perf_counter()
        for wd in decays:
            probe = fit_linear_probe(tx, train_y, num_classes=num_classes, weight_decay=wd, max_iter=max_iter, seed=seed)
            logits = torch.from_numpy(probe.predict_logits(vx))
            nll = float(torch.nn.functional.cross_entropy(logits, val_targets))
            tried.append((nll, wd, probe, float((logits.argmax(dim=1).numpy() == val_y).mean())))
        nll, wd, probe, acc = min(tried, key=lambda t: (t[0], -t[1]))
        w = probe.linear.weight.detach() / probe.std  # fold the standardisation: W (x - mu) / s + b
        weight[g, :, :d] = w
        bias[g] = probe.linear.bias.detach() - w @ probe.mean
        report.append({"dim": d, "weight_decay": wd, "val_log_loss": nll, "val_accuracy": acc, "tried": {f"{t[1]:g}": {"log_loss": t[0], "accuracy": t[3]} for t in tried}, "fit_seconds": time.perf_counter() - t0})
    with torch.no_grad():
        heads.weight.copy_(weight)
        heads.bias.copy_(bias)
    return HeadRefit(heads.eval(), report)
