"""``loss: classify``: Matryoshka cross-entropy of one class head per prefix, on a text encoder.

The MRL paper's objective on a sentence encoder: the model's embedding is L2-normalised and
multiplied by ``scale``; for every prefix ``m`` a linear head (:class:`mrl.heads.MatryoshkaLinear`,
independent heads) classifies ``e[:m]``, and the per-prefix cross-entropies combine through an
:mod:`mrl.weighting` strategy. The heads are parameters of the loss, so the sentence-transformers
Trainer optimises them with the encoder (at their own learning rate); they are saved into the model
folder (:mod:`mrl.models.text_heads`) for the adaptive cascade.

``self_distill`` adds, for every prefix short of full width, ``KL(p_full || p_m)`` against the full
head's (detached) class distribution: the small heads learn to agree with the full head, which is
what lets a cascade stop early without changing the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrl.errors import MRLError
from mrl.heads import MatryoshkaLinear
from mrl.models.text_heads import heads_input
from mrl.nesting import validate_dims
from mrl.weighting import UniformWeighting, Weighting


class PrefixClassifierLoss(nn.Module):
    """Matryoshka cross-entropy over per-prefix class heads.

    Args:
        model: the ``SentenceTransformer`` being trained.
        class_names: one name per class id.
        matryoshka_dims: prefix sizes (the last is the model's width).
        weighting: how per-prefix losses combine (default uniform).
        scale: the unit-norm embedding is multiplied by this before the heads (an inverse temperature).
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.
        self_distill: weight of the prefix heads' KL to the full head's distribution (0: off).

    Shape:
        - sentence_features: one tokenised batch of ``B`` texts.
        - labels: ``[B]`` int64 class ids in ``[0, C)``.
        - output: scalar.
    """

    def __init__(self, model: nn.Module, class_names: Sequence[str], matryoshka_dims: Sequence[int], *, weighting: Weighting | None = None, scale: float = 10.0, label_smoothing: float = 0.1, self_distill: float = 0.0) -> None:
        super().__init__()
        dims = validate_dims(matryoshka_dims)
        if len(class_names) < 2:
            raise MRLError(f"classification needs at least 2 classes, got {len(class_names)}.")
        if not scale > 0 or not 0 <= label_smoothing < 1 or not self_distill >= 0:
            raise MRLError(f"need head_scale > 0, 0 <= label_smoothing < 1 and self_distill >= 0, got {scale}, {label_smoothing} and {self_distill}.")
        self.model = model
        self.class_names = tuple(class_names)
        self.matryoshka_dims = dims
        self.heads = MatryoshkaLinear(dims[-1], len(class_names), dims)
        self.weighting = weighting or UniformWeighting(len(dims))
        if self.weighting.num_dims != len(dims):
            raise MRLError(f"weighting is built for {self.weighting.num_dims} dims but there are {len(dims)} matryoshka_dims.")
        self.scale, self.label_smoothing, self.self_distill = scale, label_smoothing, self_distill
        self.last_per_dim: Tensor | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        feats = list(sentence_features)
        if len(feats) != 1:
            raise MRLError(f"loss: classify reads one text column, got {len(feats)}; give rows of (text, label).")
        emb = self.model(feats[0])["sentence_embedding"].float()
        if emb.shape[1] != self.heads.in_features:
            raise MRLError(f"the model emits {emb.shape[1]}-d embeddings but the heads read {self.heads.in_features}; end matryoshka_dims at the model width.")
        logits = self.heads(heads_input(emb, self.scale))  # [G, B, C]
        y = labels.long().reshape(-1)
        per_dim = [F.cross_entropy(lg, y, label_smoothing=self.label_smoothing) for lg in logits]
        if self.self_distill:
            target = F.log_softmax(logits[-1].detach(), dim=-1)
            for g in range(len(per_dim) - 1):
                per_dim[g] = per_dim[g] + self.self_distill * F.kl_div(F.log_softmax(logits[g], dim=-1), target, log_target=True, reduction="batchmean")
        stacked = torch.stack(per_dim)
        total = self.weighting(stacked, torch.ones_like(stacked, dtype=torch.bool))
        if not torch.isfinite(total.detach()):
            raise MRLError("the classify loss became non-finite (NaN/Inf); training stopped before saving: lower lr or head_lr.")
        self.last_per_dim = stacked.detach()
        return total

    def get_config_dict(self) -> dict[str, Any]:
        return {"loss": "PrefixClassifierLoss", "matryoshka_dims": list(self.matryoshka_dims), "num_classes": len(self.class_names), "scale": self.scale, "label_smoothing": self.label_smoothing, "self_distill": self.self_distill, **self.weighting.get_config_dict()}
