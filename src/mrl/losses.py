"""Matryoshka losses: a base loss applied at every nested prefix, combined by a weighting.

Two entry points:

* :class:`MatryoshkaLoss` for classification heads: input logits ``[G, N, C]`` from
  :class:`mrl.heads.MatryoshkaLinear`, base loss e.g. cross-entropy.
* :class:`MatryoshkaEmbeddingLoss` for losses on embeddings (contrastive, ...): each input ``[N, D]``
  is truncated to ``m`` (then L2-normalised when ``normalize=True``) before the base loss.

Both return a :class:`MatryoshkaLossOutput` with the total to backpropagate and the per-dim parts
(detached) so training can log them.

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv:2205.13147.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mrl.errors import MRLError
from mrl.nesting import validate_dims
from mrl.weighting import FixedWeighting, UniformWeighting, Weighting


@dataclass
class MatryoshkaLossOutput:
    """``total``: scalar to backpropagate. ``per_dim``: ``[G]`` detached losses (NaN for dims not
    sampled this step). ``active``: ``[G]`` bool mask of the dims evaluated."""

    total: torch.Tensor
    per_dim: torch.Tensor
    active: torch.Tensor


class _MatryoshkaBase(nn.Module):
    def __init__(self, matryoshka_dims: Sequence[int], matryoshka_weights: Sequence[float] | None, weighting: Weighting | None, n_dims_per_step: int | None) -> None:
        super().__init__()
        self.matryoshka_dims = validate_dims(matryoshka_dims)
        g = len(self.matryoshka_dims)
        if weighting is not None and matryoshka_weights is not None:
            raise MRLError("pass either matryoshka_weights or weighting, not both.")
        if weighting is None:
            weighting = UniformWeighting(g) if matryoshka_weights is None else FixedWeighting(g, matryoshka_weights)
        if weighting.num_dims != g:
            raise MRLError(f"weighting is built for {weighting.num_dims} dims but there are {g} matryoshka_dims.")
        self.weighting = weighting
        if n_dims_per_step is not None and not (isinstance(n_dims_per_step, int) and 1 <= n_dims_per_step <= g):
            raise MRLError(f"n_dims_per_step must be an integer in [1, {g}] or None, got {n_dims_per_step!r}.")
        self.n_dims_per_step = n_dims_per_step

    def _active(self, device: torch.device) -> torch.Tensor:
        g = len(self.matryoshka_dims)
        active = torch.ones(g, dtype=torch.bool, device=device)
        if self.n_dims_per_step is not None and self.n_dims_per_step < g:
            # Uses the global torch RNG so that checkpointed RNG state makes the sampling resumable.
            chosen = torch.randperm(g)[: self.n_dims_per_step]
            active = torch.zeros(g, dtype=torch.bool, device=device)
            active[chosen.to(device)] = True
        return active

    def _combine(self, losses: list[torch.Tensor | None], active: torch.Tensor) -> MatryoshkaLossOutput:
        ref = next(v for v in losses if v is not None)
        stacked = torch.stack([v if v is not None else ref.new_zeros(()) for v in losses])
        total = self.weighting(stacked, active)
        per_dim = torch.where(active, stacked.detach(), torch.full_like(stacked, float("nan")))
        return MatryoshkaLossOutput(total=total, per_dim=per_dim, active=active)

    def get_config_dict(self) -> dict[str, Any]:
        return {"matryoshka_dims": list(self.matryoshka_dims), "n_dims_per_step": self.n_dims_per_step, **self.weighting.get_config_dict()}


class MatryoshkaLoss(_MatryoshkaBase):
    """Weighted sum of ``base_loss(logits[i], target)`` over the Matryoshka heads.

    Args:
        matryoshka_dims: prefix sizes matching the heads' order.
        base_loss: ``f(logits [N, C], target [N]) -> scalar``; default cross-entropy with
            ``label_smoothing``.
        matryoshka_weights: fixed per-dim weights (default all 1). Mutually exclusive with ``weighting``.
        weighting: a :class:`mrl.weighting.Weighting` strategy.
        n_dims_per_step: if set, only this many randomly chosen dims contribute each step.
        label_smoothing: for the default cross-entropy.

    Shape:
        - logits: ``[G, N, C]``; target: ``[N]`` class ids.
        - output: :class:`MatryoshkaLossOutput` with ``total`` scalar and ``per_dim`` ``[G]``.

    Example:
        >>> loss = MatryoshkaLoss((8, 16))
        >>> out = loss(torch.randn(2, 4, 3), torch.tensor([0, 1, 2, 0]))
        >>> out.per_dim.shape
        torch.Size([2])
    """

    def __init__(self, matryoshka_dims: Sequence[int], base_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, *, matryoshka_weights: Sequence[float] | None = None, weighting: Weighting | None = None, n_dims_per_step: int | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__(matryoshka_dims, matryoshka_weights, weighting, n_dims_per_step)
        if not 0.0 <= label_smoothing < 1.0:
            raise MRLError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.base_loss = base_loss or nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # The default cross-entropy runs fused over all prefixes (one kernel); a custom base_loss per prefix.
        self.label_smoothing = label_smoothing if base_loss is None else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> MatryoshkaLossOutput:
        g = len(self.matryoshka_dims)
        if logits.ndim != 3 or logits.shape[0] != g:
            raise MRLError(f"MatryoshkaLoss expects logits [G={g}, N, C], got {tuple(logits.shape)}.")
        active = self._active(logits.device)
        if self.label_smoothing is not None:
            return self._fused(logits, target, active)
        flags = active.tolist()
        losses = [self.base_loss(logits[i], target) if flags[i] else None for i in range(g)]
        return self._combine(losses, active)

    def _fused(self, logits: torch.Tensor, target: torch.Tensor, active: torch.Tensor) -> MatryoshkaLossOutput:
        """Every prefix's cross-entropy in one kernel: the ``[G, N, C]`` logits are read as ``[N * G, C]``
        rows (free for the ``[N, G, C]``-backed view :class:`mrl.heads.MatryoshkaLinear` returns) and
        the per-row losses averaged per prefix. Equal to ``G`` separate mean cross-entropies; the dims
        not sampled this step (``n_dims_per_step``) are computed but weigh zero, as in the loop."""
        g, n, c = logits.shape
        rows = logits.transpose(0, 1).reshape(n * g, c)
        per_row = F.cross_entropy(rows, target.repeat_interleave(g), reduction="none", label_smoothing=self.label_smoothing)
        stacked = per_row.view(n, g).mean(dim=0)
        total = self.weighting(stacked, active)
        per_dim = torch.where(active, stacked.detach(), torch.full_like(stacked, float("nan")))
        return MatryoshkaLossOutput(total=total, per_dim=per_dim, active=active)


def in_batch_negatives_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None, *, scale: float = 20.0) -> torch.Tensor:
    """Contrastive loss with in-batch negatives (InfoNCE / multiple-negatives ranking).

    Inputs should already be L2-normalised, so dot products are cosine similarities.

    Shape:
        - anchor, positive: ``[N, d]``; negative (optional hard negatives): ``[N, d]``.
        - output: scalar; row ``i`` of ``anchor`` must score ``positive[i]`` above every other
          candidate in the batch.
    """
    candidates = positive if negative is None else torch.cat([positive, negative], dim=0)
    scores = scale * anchor @ candidates.T  # [N, N] or [N, 2N]
    target = torch.arange(anchor.shape[0], device=anchor.device)
    return F.cross_entropy(scores, target)


class MatryoshkaEmbeddingLoss(_MatryoshkaBase):
    """Weighted sum of ``base_loss(*[e[:, :m] for e in embeddings])`` over prefixes ``m``.

    Each embedding is truncated to ``m`` then, if ``normalize``, L2-normalised (truncate **then**
    normalise, as OpenAI and sentence-transformers do).

    Args:
        matryoshka_dims: prefix sizes; the last should be the embedding width.
        base_loss: ``f(*embeddings_truncated) -> scalar``; default :func:`in_batch_negatives_loss`.
        matryoshka_weights, weighting, n_dims_per_step: as in :class:`MatryoshkaLoss`.
        normalize: L2-normalise each truncated embedding.

    Shape:
        - each embedding: ``[N, D]`` with ``D >= max(matryoshka_dims)``.
        - output: :class:`MatryoshkaLossOutput`.
    """

    def __init__(self, matryoshka_dims: Sequence[int], base_loss: Callable[..., torch.Tensor] | None = None, *, matryoshka_weights: Sequence[float] | None = None, weighting: Weighting | None = None, n_dims_per_step: int | None = None, normalize: bool = True) -> None:
        super().__init__(matryoshka_dims, matryoshka_weights, weighting, n_dims_per_step)
        self.base_loss = base_loss or in_batch_negatives_loss
        self.normalize = normalize

    def forward(self, *embeddings: torch.Tensor) -> MatryoshkaLossOutput:
        if not embeddings:
            raise MRLError("MatryoshkaEmbeddingLoss needs at least one embedding tensor.")
        for e in embeddings:
            if e.ndim != 2 or e.shape[1] < self.matryoshka_dims[-1]:
                raise MRLError(f"each embedding must be [N, D>={self.matryoshka_dims[-1]}], got {tuple(e.shape)}.")
        active = self._active(embeddings[0].device)
        flags = active.tolist()
        losses: list[torch.Tensor | None] = []
        for i, m in enumerate(self.matryoshka_dims):
            if not flags[i]:
                losses.append(None)
                continue
            parts = [e[:, :m] for e in embeddings]
            if self.normalize:
                parts = [F.normalize(p, dim=-1) for p in parts]
            losses.append(self.base_loss(*parts))
        return self._combine(losses, active)
