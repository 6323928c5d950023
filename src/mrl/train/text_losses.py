"""Losses for text Matryoshka training on the sentence-transformers Trainer.

Two kinds, both ``nn.Module``\\ s with the sentence-transformers loss signature
``forward(sentence_features, labels) -> scalar``:

* :class:`PrefixDistillLoss` (``loss: distill``, the default recipe): label-free distillation from a
  frozen teacher. ``labels`` are row ids into a table of teacher embeddings computed once before
  training. At every prefix ``m`` the student's truncated-then-normalised embeddings must reproduce
  the teacher's full-width cosine similarity structure on the batch: similarity matching
  ``mean |S_m - S|`` plus listwise ranking ``KL(softmax(S/tau) || softmax(S_m/tau))`` per row (the
  adaptor's objective, :mod:`mrl.train.adaptor`), with the ranking term boosted on the smallest
  prefixes and the full prefix weighted up (never forget). With two text columns (anchor,
  positive) a contrastive in-batch-negatives term is added. Because only similarity matrices are
  compared, a teacher of another width needs no projection.
* :class:`WeightedMatryoshkaLoss`: sentence-transformers' ``MatryoshkaLoss`` around any base loss
  (``mnrl``, ``cached_mnrl``, ``cosent``, ``mse_distill``) whose per-prefix losses are combined by
  an :mod:`mrl.weighting` strategy (``uniform``/``fixed`` map onto ``matryoshka_weights`` directly).

Both keep the last step's raw per-prefix losses in ``last_per_dim`` (logged to ``metrics.csv``) and
raise :class:`mrl.errors.MRLError` on a non-finite loss, before the optimizer can write NaN weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrl.errors import MRLError
from mrl.losses import in_batch_negatives_loss
from mrl.nesting import validate_dims
from mrl.weighting import FixedWeighting, UniformWeighting, Weighting

PAIR_LOSSES = ("mnrl", "cached_mnrl", "cosent", "mse_distill")
LOSSES = ("distill", *PAIR_LOSSES, "classify")  # classify: mrl.train.text_classify


def _check_finite(total: Tensor, what: str) -> None:
    if not torch.isfinite(total.detach()).all():
        raise MRLError(f"the {what} loss became non-finite (NaN/Inf); training stopped before saving: lower lr or check the data for empty texts.")


def similarity_targets(teacher: Tensor) -> Tensor:
    """Teacher cosine similarities. Shape: ``[B, Dt] -> [B, B]`` float32."""
    t = F.normalize(teacher.float(), dim=-1)
    return t @ t.T


def geometry_loss(student: Tensor, target: Tensor, *, tau: float, sim_weight: float, rank_weight: float) -> Tensor:
    """Similarity matching + listwise ranking KL of one prefix against the teacher's similarities.

    Shape: student ``[B, m]`` (L2-normalised), target ``[B, B]`` -> scalar.
    """
    s = student @ student.T
    b = s.shape[0]
    off = ~torch.eye(b, dtype=torch.bool, device=s.device)
    loss = sim_weight * (s - target).abs()[off].mean()
    if rank_weight:
        mask = torch.zeros_like(s).masked_fill(~off, float("-inf"))
        teacher = F.softmax(target / tau + mask, dim=1)
        log_student = F.log_softmax(s / tau + mask, dim=1)
        kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - log_student)).masked_fill(~off, 0.0).sum(1).mean()
        loss = loss + rank_weight * kl
    return loss


class PrefixDistillLoss(nn.Module):
    """Label-free Matryoshka distillation of a frozen teacher's similarity structure.

    Args:
        model: the student ``SentenceTransformer`` (trainable).
        teacher: teacher embeddings of every training text, one row per text id.
        matryoshka_dims: prefix sizes (the last is the student's width).
        weighting: how per-prefix losses combine (default uniform).
        tau: temperature of the ranking KL.
        sim_weight, rank_weight: weights of similarity matching and ranking KL.
        rank_boost, rank_boost_max_dim: the ranking weight is multiplied by ``rank_boost`` at
            prefixes ``<= rank_boost_max_dim`` (small prefixes must rank neighbours right above all).
        full_weight: extra multiplier of the full-width prefix loss (keeps full-D near the teacher).
        pair_weight, scale: weight and inverse temperature of the in-batch-negatives term used when
            the batch has two text columns (anchor, positive).

    Shape:
        - sentence_features: one tokenised batch per text column, ``B`` texts each.
        - labels: ``[B]`` or ``[B, C]`` int64 row ids into ``teacher`` (one per column).
        - teacher: ``[N, Dt]`` (any ``Dt``: only similarities are compared).
        - output: scalar.

    Example:
        >>> loss = PrefixDistillLoss(model, torch.as_tensor(teacher_emb), [8, 16, 32, 64, 128, 256, 384])
    """

    def __init__(self, model: nn.Module, teacher: Tensor, matryoshka_dims: Sequence[int], *, weighting: Weighting | None = None, tau: float = 0.05, sim_weight: float = 1.0, rank_weight: float = 1.0, rank_boost: float = 1.0, rank_boost_max_dim: int = 32, full_weight: float = 1.0, pair_weight: float = 0.0, scale: float = 20.0) -> None:
        super().__init__()
        self.model = model
        self.matryoshka_dims = validate_dims(matryoshka_dims)
        if teacher.ndim != 2 or teacher.shape[0] < 2:
            raise MRLError(f"teacher embeddings must be [N>=2, Dt], got {tuple(teacher.shape)}.")
        if not torch.isfinite(teacher).all():
            raise MRLError("teacher embeddings hold NaN/Inf; the teacher model or its inputs are broken.")
        if min(tau, scale) <= 0 or min(sim_weight, rank_weight, rank_boost, full_weight, pair_weight) < 0:
            raise MRLError("distill loss needs tau > 0, scale > 0 and non-negative weights.")
        self.register_buffer("teacher", F.normalize(teacher.float(), dim=-1), persistent=False)
        g = len(self.matryoshka_dims)
        self.weighting = weighting or UniformWeighting(g)
        if self.weighting.num_dims != g:
            raise MRLError(f"weighting is built for {self.weighting.num_dims} dims but there are {g} matryoshka_dims.")
        self.tau, self.sim_weight, self.rank_weight, self.scale = tau, sim_weight, rank_weight, scale
        self.rank_boost, self.rank_boost_max_dim, self.full_weight, self.pair_weight = rank_boost, rank_boost_max_dim, full_weight, pair_weight
        self.last_per_dim: Tensor | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        feats = list(sentence_features)
        columns = [self.model(f)["sentence_embedding"].float() for f in feats]  # C x [B, D]
        ids = labels.long().reshape(labels.shape[0], -1)  # [B, C]
        if ids.shape[1] != len(columns):
            raise MRLError(f"distill labels hold {ids.shape[1]} teacher ids per row but the batch has {len(columns)} text columns.")
        emb = torch.cat(columns)  # [C*B, D], column after column
        t = self.teacher[ids.T.reshape(-1)]  # [C*B, Dt], in the same order
        target = t @ t.T  # [C*B, C*B] teacher cosine similarities
        if emb.shape[1] < self.matryoshka_dims[-1]:
            raise MRLError(f"the student emits {emb.shape[1]}-d embeddings, below the largest matryoshka dim {self.matryoshka_dims[-1]}.")
        losses = []
        for m in self.matryoshka_dims:
            s = F.normalize(emb[:, :m], dim=-1)
            rank = self.rank_weight * (self.rank_boost if m <= self.rank_boost_max_dim else 1.0)
            loss = geometry_loss(s, target, tau=self.tau, sim_weight=self.sim_weight, rank_weight=rank)
            if self.pair_weight and len(columns) >= 2:
                a, p = s.split(columns[0].shape[0])[:2]
                loss = loss + self.pair_weight * in_batch_negatives_loss(a, p, scale=self.scale)
            if m == self.matryoshka_dims[-1]:
                loss = loss * self.full_weight
            losses.append(loss)
        stacked = torch.stack(losses)
        total = self.weighting(stacked, torch.ones_like(stacked, dtype=torch.bool))
        _check_finite(total, "distill")
        self.last_per_dim = stacked.detach()
        return total

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": "PrefixDistillLoss", "matryoshka_dims": list(self.matryoshka_dims), "tau": self.tau, "sim_weight": self.sim_weight, "rank_weight": self.rank_weight,
            "rank_boost": self.rank_boost, "rank_boost_max_dim": self.rank_boost_max_dim, "full_weight": self.full_weight, "pair_weight": self.pair_weight, "scale": self.scale,
            "teacher_rows": int(self.teacher.shape[0]), "teacher_dim": int(self.teacher.shape[1]), **self.weighting.get_config_dict(),
        }


def _st_matryoshka_loss() -> type:
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    return MatryoshkaLoss


class WeightedMatryoshkaLoss(nn.Module):
    """sentence-transformers' ``MatryoshkaLoss`` with per-prefix losses combined by an
    :mod:`mrl.weighting` strategy.

    ``uniform`` and ``fixed`` become ``MatryoshkaLoss``' own ``matryoshka_weights``; adaptive strategies
    (``uncertainty``, ``dwa``, ``focal``) evaluate the base loss once per prefix on the shared forward
    pass (the same ``ForwardDecorator`` caching ``MatryoshkaLoss`` uses) and let the strategy weigh
    them. Gradient-caching base losses (``cached_mnrl``) support ``uniform``/``fixed`` only.

    Shape: as the base loss (``sentence_features`` per column, ``labels`` ``[B]`` or ``[B, D]``).
    """

    def __init__(self, model: nn.Module, loss: nn.Module, matryoshka_dims: Sequence[int], weighting: Weighting | None = None, n_dims_per_step: int | None = None) -> None:
        super().__init__()
        dims = validate_dims(matryoshka_dims)
        self.model = model
        self.weighting = weighting or UniformWeighting(len(dims))
        static = isinstance(self.weighting, (UniformWeighting, FixedWeighting))
        self.inner = _st_matryoshka_loss()(model, loss, list(dims), matryoshka_weights=self.weighting.weights().tolist() if static else None, n_dims_per_step=n_dims_per_step or -1)
        if not static and self.inner.uses_gradient_cache:
            raise MRLError(f"weighting {self.weighting.name!r} needs per-prefix losses, which cached_mnrl does not expose; use weighting uniform or fixed (matryoshka_weights) with cached_mnrl.")
        self.static = static
        self.matryoshka_dims = dims
        self.n_dims_per_step = n_dims_per_step
        self.last_per_dim: Tensor | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        if self.static:
            total = self.inner(sentence_features, labels)
            _check_finite(total, "matryoshka")
            return total
        from sentence_transformers.sentence_transformer.losses.matryoshka import ForwardDecorator

        feats = list(sentence_features)
        original = self.model.forward
        g = len(self.matryoshka_dims)
        active = torch.ones(g, dtype=torch.bool)
        if self.n_dims_per_step and self.n_dims_per_step < g:
            active[:] = False
            active[torch.randperm(g)[: self.n_dims_per_step]] = True
        losses: list[Tensor] = []
        try:
            decorated = ForwardDecorator(original)
            self.model.forward = decorated
            width = self.matryoshka_dims[-1]
            # Descending, as MatryoshkaLoss does: the first (full-width) call fills the forward cache.
            for i in reversed(range(g)):
                m = self.matryoshka_dims[i]
                decorated.set_dim(m)
                lab = labels[..., :m] if isinstance(labels, Tensor) and labels.ndim in (2, 3) and labels.shape[-1] == width else labels
                losses.append(self.inner.loss(feats, lab) if bool(active[i]) or i == g - 1 else None)
        finally:
            self.model.forward = original
        losses = losses[::-1]
        ref = losses[-1]
        stacked = torch.stack([v if v is not None else ref.new_zeros(()) for v in losses])
        total = self.weighting(stacked, active.to(stacked.device))
        _check_finite(total, "matryoshka")
        self.last_per_dim = stacked.detach()
        return total

    def get_config_dict(self) -> dict[str, Any]:
        return {**self.inner.get_config_dict(), **self.weighting.get_config_dict()}


def build_pair_loss(name: str, model: nn.Module, *, scale: float = 20.0, mini_batch_size: int = 32) -> nn.Module:
    """The base loss ``name`` of sentence-transformers (wrapped by :class:`WeightedMatryoshkaLoss`).

    * ``mnrl``: MultipleNegativesRankingLoss (anchor, positive[, negative] columns).
    * ``cached_mnrl``: its gradient-cached variant (large batches in small memory).
    * ``cosent``: CoSENTLoss (sentence1, sentence2, score columns).
    * ``mse_distill``: MSELoss to teacher embeddings given as the ``label`` column (same width).
    """
    from sentence_transformers.sentence_transformer import losses

    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=scale)
    if name == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=mini_batch_size, show_progress_bar=False)
    if name == "cosent":
        return losses.CoSENTLoss(model)
    if name == "mse_distill":
        return losses.MSELoss(model)
    raise MRLError(f"unknown loss {name!r}; choose one of {LOSSES}.")
