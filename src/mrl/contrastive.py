"""Symmetric image-text contrastive loss (CLIP's InfoNCE) at every Matryoshka prefix.

At each prefix ``m`` both towers' embeddings are truncated to ``m`` and L2-normalised (truncate
**then** normalise); the similarity matrix of a batch is scaled by a learned inverse temperature and
each picture must pick its own caption among the batch's captions, and each caption its own
picture. The per-prefix losses are combined by a :mod:`mrl.weighting` strategy.

Each prefix has its own learned temperature: cosine similarities of an 8-dim prefix spread
differently from those of the full vector, and one shared temperature would be a compromise for all.
The log inverse temperatures are passed in (the model owns them, as in CLIP) and clamped at
``log(100)`` as CLIP does.

References:
    Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021.
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022 (ALIGN experiments).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mrl.errors import MRLError
from mrl.losses import MatryoshkaLossOutput, _MatryoshkaBase
from mrl.weighting import Weighting

MAX_LOG_SCALE = math.log(100.0)
INIT_TEMPERATURE = 0.07  # CLIP's initial temperature


def clip_loss(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor, same_text: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised picture and caption embeddings.

    Args:
        image, text: row ``i`` of each is a matching pair.
        log_scale: scalar log inverse temperature (clamped at ``log(100)``).
        same_text: optional ``[N, N]`` bool, True where captions ``i`` and ``j`` are the same text;
            such off-diagonal pairs are not used as negatives (they are not wrong answers).

    Shape:
        - image, text: ``[N, d]``; output: scalar.
    """
    logits = log_scale.clamp(max=MAX_LOG_SCALE).exp() * image @ text.T  # [N, N]
    if same_text is not None:
        off = same_text & ~torch.eye(len(image), dtype=torch.bool, device=image.device)
        logits = logits.masked_fill(off, float("-inf"))
    target = torch.arange(len(image), device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class MatryoshkaCLIPLoss(_MatryoshkaBase):
    """Weighted sum over prefixes ``m`` of :func:`clip_loss` on the ``m``-dim prefixes of both towers.

    Args:
        matryoshka_dims: prefix sizes; the last is at most the embedding width.
        matryoshka_weights, weighting, n_dims_per_step: as in :class:`mrl.losses.MatryoshkaLoss`.

    Shape:
        - image, text: ``[N, D]``; log_scales: ``[G]`` (one per prefix); same_text: ``[N, N]`` bool or None.
        - output: :class:`mrl.losses.MatryoshkaLossOutput` (``per_dim`` ``[G]``).

    Example:
        >>> loss = MatryoshkaCLIPLoss((8, 16))
        >>> out = loss(torch.randn(4, 16), torch.randn(4, 16), torch.zeros(2))
        >>> out.per_dim.shape
        torch.Size([2])
    """

    def __init__(self, matryoshka_dims: Sequence[int], *, matryoshka_weights: Sequence[float] | None = None, weighting: Weighting | None = None, n_dims_per_step: int | None = None) -> None:
        super().__init__(matryoshka_dims, matryoshka_weights, weighting, n_dims_per_step)

    def forward(self, image: torch.Tensor, text: torch.Tensor, log_scales: torch.Tensor, same_text: torch.Tensor | None = None) -> MatryoshkaLossOutput:
        g, top = len(self.matryoshka_dims), self.matryoshka_dims[-1]
        if image.ndim != 2 or text.shape != image.shape or image.shape[1] < top:
            raise MRLError(f"picture and caption embeddings must both be [N, D>={top}], got {tuple(image.shape)} and {tuple(text.shape)}.")
        if image.shape[0] < 2:
            raise MRLError("a contrastive batch needs at least 2 pairs (the other pairs are the negatives).")
        if log_scales.shape != (g,):
            raise MRLError(f"log_scales must hold one value per prefix ({g}), got shape {tuple(log_scales.shape)}.")
        active = self._active(image.device)
        flags = active.tolist()
        losses: list[torch.Tensor | None] = []
        for i, m in enumerate(self.matryoshka_dims):
            if not flags[i]:
                losses.append(None)
                continue
            losses.append(clip_loss(F.normalize(image[:, :m].float(), dim=-1), F.normalize(text[:, :m].float(), dim=-1), log_scales[i], same_text))
        return self._combine(losses, active)


def initial_log_scales(num_dims: int) -> torch.Tensor:
    """``[G]`` log inverse temperatures at CLIP's initial temperature 0.07."""
    return torch.full((num_dims,), math.log(1.0 / INIT_TEMPERATURE))
