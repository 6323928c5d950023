"""The label-free objective of the adaptor/rotation fit: per-prefix similarity matching + listwise ranking.

For a batch of ``B`` frozen vectors with teacher cosines ``S`` (``[B, B]``, the original full vectors)
and adapted prefix cosines ``S_m``, the loss of prefix ``m`` is

    sim_weight * mean_{i != j} |S_m - S| + rank_weight * mean_i KL(softmax(S_i / tau) || softmax(S_m,i / tau))

(self-pairs excluded). :class:`GeometryLoss` is that loss for one prefix; :class:`PrefixGeometryLoss`
sums it over the Matryoshka prefixes (any :mod:`mrl.weighting` strategy) and is the fast path of the
fit: the teacher side of the KL is computed once per batch rather than once per prefix, and prefix
``m``'s Gram matrix is the previous prefix's plus one ``[B, m - m_prev]`` block product, so all
prefixes together cost one ``B x B x max(m)`` product instead of one ``B x B x m`` product each.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mrl.losses import MatryoshkaEmbeddingLoss, MatryoshkaLossOutput


class GeometryLoss:
    """Similarity matching + neighbour ranking of one prefix against ``target``.

    ``target`` (``[B, B]`` cosine similarities of the original vectors) is set once per batch; the
    teacher's softmax and its negative entropy are computed at that moment, shared by every prefix.
    ``cfg`` needs ``sim_weight``, ``rank_weight`` and ``tau`` (e.g. :class:`mrl.train.adaptor.AdaptorConfig`).

    Shape: ``y`` ``[B, m]`` truncated and L2-normalised prefixes -> scalar.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._target: torch.Tensor | None = None

    @property
    def target(self) -> torch.Tensor | None:
        return self._target

    @target.setter
    def target(self, target: torch.Tensor) -> None:
        b = target.shape[0]
        self._target = target
        self._diag = torch.eye(b, dtype=torch.bool, device=target.device)
        self._off = (~self._diag).to(target.dtype)
        self._pairs = max(1, b * (b - 1))
        self._mask = torch.zeros_like(target).masked_fill_(self._diag, float("-inf"))
        if self.cfg.rank_weight:
            teacher = F.softmax(target / self.cfg.tau + self._mask, dim=1)  # 0 on the diagonal
            self._teacher = teacher
            self._neg_entropy = (teacher * torch.log(teacher.clamp_min(1e-12))).sum(1).mean()

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.from_similarities(y @ y.T)

    def from_similarities(self, s: torch.Tensor) -> torch.Tensor:
        """The loss of one prefix from its cosine matrix ``s`` ``[B, B]``."""
        assert self._target is not None, "set target (the batch's [B, B] teacher cosines) first"
        loss = self.cfg.sim_weight * ((s - self._target).abs() * self._off).sum() / self._pairs
        if self.cfg.rank_weight:
            student = F.log_softmax(s / self.cfg.tau + self._mask, dim=1).masked_fill(self._diag, 0.0)
            kl = self._neg_entropy - (self._teacher * student).sum(1).mean()
            loss = loss + self.cfg.rank_weight * kl
        return loss


class PrefixGeometryLoss(MatryoshkaEmbeddingLoss):
    """:class:`GeometryLoss` at every prefix (truncate, then L2-normalise), weighted and summed.

    The same value as ``MatryoshkaEmbeddingLoss(dims, GeometryLoss(cfg))``, computed from running
    Gram matrices and squared norms (see the module docstring).

    Shape: ``z`` ``[B, D]`` with ``D >= max(matryoshka_dims)`` -> :class:`mrl.losses.MatryoshkaLossOutput`.
    """

    def __init__(self, matryoshka_dims: Any, geometry: GeometryLoss, **kwargs: Any) -> None:
        super().__init__(matryoshka_dims, geometry, **kwargs)
        self.geometry = geometry

    def forward(self, *embeddings: torch.Tensor) -> MatryoshkaLossOutput:
        (z,) = embeddings
        active = self._active(z.device)
        flags = active.tolist()
        losses: list[torch.Tensor | None] = []
        gram = sq = None
        prev = 0
        for i, m in enumerate(self.matryoshka_dims):
            block = z[:, prev:m]
            gram = block @ block.T if gram is None else gram + block @ block.T
            sq = (block * block).sum(1) if sq is None else sq + (block * block).sum(1)
            prev = m
            if not flags[i]:
                losses.append(None)
                continue
            inv = sq.clamp_min(1e-24).rsqrt()  # F.normalize's eps (1e-12 on the norm)
            losses.append(self.geometry.from_similarities(gram * inv[:, None] * inv[None, :]))
        return self._combine(losses, active)
