"""A backbone plus a :class:`mrl.heads.MatryoshkaLinear` head, for the three training modes.

* ``mrl``:   independent heads on every prefix in ``matryoshka_dims``.
* ``mrl-e``: one weight-shared head sliced per prefix.
* ``ff``:    the fixed-feature baseline: a single head reading only ``x[:, :d]`` where ``d`` is the
  last (only) entry of ``matryoshka_dims``; its embedding is that ``d``-dim prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from mrl.errors import MRLError
from mrl.heads import MatryoshkaLinear
from mrl.models.vision import create_backbone
from mrl.nesting import validate_dims
from mrl.progress import progress

MODES = ("mrl", "mrl-e", "ff")


class MatryoshkaClassifier(nn.Module):
    """``backbone`` -> embedding ``[N, D]`` -> ``MatryoshkaLinear`` -> logits ``[G, N, C]``.

    Shape:
        - ``forward(x)``: images ``[N, C_in, H, W]`` -> logits ``[G, N, num_classes]``.
        - ``embed(x)``: images -> embeddings ``[N, D]`` (raw, not normalised).
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, num_classes: int, matryoshka_dims: Sequence[int], mode: str = "mrl", *, prefix_calibration: str = "none") -> None:
        super().__init__()
        if mode not in MODES:
            raise MRLError(f"unknown mode {mode!r}; choose one of {MODES}.")
        dims = validate_dims(matryoshka_dims, embed_dim, require_full=(mode != "ff"))
        if mode == "ff" and len(dims) != 1:
            raise MRLError(f"mode 'ff' trains one head at one dim; got matryoshka_dims={dims}. Pass a single dim, e.g. [{dims[-1]}].")
        self.backbone = backbone
        self.mode = mode
        self.embed_dim = embed_dim
        self.head = MatryoshkaLinear(embed_dim, num_classes, dims, efficient=(mode == "mrl-e"), prefix_calibration=prefix_calibration if mode == "mrl-e" else "none")

    @property
    def matryoshka_dims(self) -> tuple[int, ...]:
        return self.head.matryoshka_dims

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_classifier(*, backbone: str, embed_dim: int | None, num_classes: int, matryoshka_dims: Sequence[int], mode: str, width: int | None = None, in_channels: int = 1, prefix_calibration: str = "none") -> MatryoshkaClassifier:
    """Factory used by training and loading: the same arguments always give the same architecture.

    ``embed_dim=None`` takes the backbone's native width; ``prefix_calibration`` applies to ``mrl-e``.
    """
    net = create_backbone(backbone, embed_dim, in_channels=in_channels, width=width)
    return MatryoshkaClassifier(net, net.embed_dim, num_classes, matryoshka_dims, mode, prefix_calibration=prefix_calibration)


@torch.no_grad()
def encode(model: MatryoshkaClassifier, inputs: torch.Tensor | Iterable[torch.Tensor], *, batch_size: int = 1024, device: str | torch.device = "cpu", with_logits: bool = True, desc: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model`` in eval mode over ``inputs``: a tensor (cut into ``batch_size`` chunks) or an
    iterable of preprocessed batches (e.g. a DataLoader's images, in order). A progress bar
    (:mod:`mrl.progress`) is shown when ``desc`` is given.

    Shape:
        - inputs: ``[N, C_in, H, W]`` preprocessed images, or batches ``[B, C_in, H, W]``.
        - returns ``(embeddings [N, D] float32 on CPU, logits [G, N, C] float32 on CPU or None)``.
    """
    was_training = model.training
    model.eval()
    embs, logits = [], []
    if isinstance(inputs, torch.Tensor):
        starts = range(0, inputs.shape[0], batch_size)
        batches: Iterable[torch.Tensor] = progress((inputs[s : s + batch_size] for s in starts), desc=desc or "encoding", total=len(starts), unit="batch", disable=desc is None, leave=False)
    else:
        batches = progress(inputs, desc=desc or "encoding", total=len(inputs) if hasattr(inputs, "__len__") else None, unit="batch", disable=desc is None, leave=False)
    for batch in batches:
        x = batch.to(device, non_blocking=True)
        e = model.embed(x)
        embs.append(e.float().cpu())
        if with_logits:
            logits.append(model.head(e).float().cpu())
    model.train(was_training)
    emb = torch.cat(embs) if embs else torch.empty(0, model.embed_dim)
    return emb, (torch.cat(logits, dim=1) if with_logits and logits else None)
