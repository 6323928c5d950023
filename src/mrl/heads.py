"""Matryoshka classification heads: one logit set per nested prefix of the embedding, in one matmul.

Both parameterisations of the MRL paper are computed the same way: the heads are laid out as one
block weight ``[G * C, D]`` whose block ``i`` is zero beyond column ``m_i`` (a fixed prefix mask), so
a single GEMM ``x @ W_block.T`` yields every prefix's logits. This is mathematically the per-head
computation (the masked entries are multiplied by exact zeros and receive exact-zero gradients), but
it costs one kernel instead of ``G`` small ones, which is what made MRL launch-bound on a GPU.
The price is ``G * C * D`` stored weights instead of ``C * sum(m_i)`` for MRL (e.g. 18.4M instead of
4.1M for ResNet-50 on ImageNet with dims 8..2048); the extra GEMM work is under 1% of a ResNet-50 step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mrl.errors import MRLError
from mrl.nesting import validate_dims

# How an MRL-E head may be calibrated per prefix on top of its one shared weight matrix. ``owner``
# variants change only how the shared weight is trained (see MatryoshkaLinear), not the forward pass.
PREFIX_CALIBRATIONS = ("none", "scale", "bias", "scale_bias", "owner", "owner_bias")


class MatryoshkaLinear(nn.Module):
    """Linear heads over nested prefixes ``x[:, :m]`` for every ``m`` in ``matryoshka_dims``.

    Two parameterisations, as in the MRL paper:

    * ``efficient=False`` (MRL): independent heads; head *i* has its own ``[C, m_i]`` weight and
      ``[C]`` bias. Stored as ``weight`` ``[G, C, D]`` (zero beyond column ``m_i`` in block *i*;
      :meth:`head_weight` gives the ``[C, m_i]`` view) and ``bias`` ``[G, C]``.
    * ``efficient=True`` (MRL-E): one shared ``weight`` ``[C, D]`` and ``bias`` ``[C]``; head *i*
      uses ``W[:, :m_i]``. ``prefix_calibration`` adds per-prefix parameters that do not untie the
      weights: ``scale`` a learned logit scale ``exp(log_scale[i])`` per prefix (a temperature;
      ``log_scale`` ``[G]``, init 0), ``bias`` a per-prefix bias ``prefix_bias`` ``[G, C]`` (init 0)
      added to the shared one, or ``scale_bias`` both. ``owner`` keeps the forward pass of plain MRL-E
      but routes the gradient of each column block ``W[:, m_{i-1}:m_i]`` only from the smallest head
      that contains it (head *i*); wider heads read those columns as constants. The small prefixes
      then train their weights as freely as MRL's independent heads, while one ``W`` is still stored
      and served. ``owner_bias`` adds the per-prefix bias.

    Either way the forward pass is one masked block GEMM (see the module docstring).

    Args:
        in_features: embedding width ``D``; ``matryoshka_dims`` must not exceed it. The last dim may
            be smaller than ``D`` (e.g. the fixed-feature baseline reads only ``x[:, :d]``).
        num_classes: ``C``.
        matryoshka_dims: strictly increasing prefix sizes.
        efficient: MRL-E weight sharing when True.
        bias: whether heads have a bias.
        prefix_calibration: MRL-E only, one of ``none``, ``scale``, ``bias``, ``scale_bias``, ``owner``, ``owner_bias``.

    Shape:
        - Input: ``[N, D]``.
        - Output: ``[G, N, C]`` logits with ``G = len(matryoshka_dims)``, in the order of the dims
          (a view of an ``[N, G, C]`` buffer; :class:`mrl.losses.MatryoshkaLoss` reads it without a copy).

    Example:
        >>> head = MatryoshkaLinear(64, 10, (8, 16, 32, 64))
        >>> head(torch.randn(5, 64)).shape
        torch.Size([4, 5, 10])
    """

    def __init__(self, in_features: int, num_classes: int, matryoshka_dims: Sequence[int], *, efficient: bool = False, bias: bool = True, prefix_calibration: str = "none") -> None:
        super().__init__()
        if in_features <= 0 or num_classes <= 0:
            raise MRLError(f"in_features and num_classes must be positive, got {in_features} and {num_classes}.")
        if prefix_calibration not in PREFIX_CALIBRATIONS:
            raise MRLError(f"prefix_calibration must be one of {PREFIX_CALIBRATIONS}, got {prefix_calibration!r}.")
        if prefix_calibration != "none" and not efficient:
            raise MRLError(f"prefix_calibration={prefix_calibration!r} applies to MRL-E (efficient=True) only; MRL heads are already independent per prefix.")
        self.matryoshka_dims = validate_dims(matryoshka_dims, in_features, require_full=False)
        self.in_features = in_features
        self.num_classes = num_classes
        self.efficient = efficient
        self.prefix_calibration = prefix_calibration
        g = len(self.matryoshka_dims)
        dims = torch.tensor(self.matryoshka_dims)
        # mask[i, 0, j] = 1 where column j belongs to prefix i (j < m_i); not saved: it follows from the dims.
        self.register_buffer("mask", (torch.arange(in_features)[None, :] < dims[:, None]).float().unsqueeze(1), persistent=False)
        # Initialised exactly as the per-head layout was (nn.Linear's default init, drawn head by head in the
        # same order), so a seed gives the same starting point, and the same run, as before the fusion.
        pad = lambda w: F.pad(w.detach(), (0, in_features - w.shape[1]))  # noqa: E731
        if efficient:
            shared = nn.Linear(self.matryoshka_dims[-1], num_classes, bias=bias)
            self.weight = nn.Parameter(pad(shared.weight))
            self.bias = nn.Parameter(shared.bias.detach().clone()) if bias else None
            self.log_scale = nn.Parameter(torch.zeros(g)) if "scale" in prefix_calibration else None
            # owned[i, 0, j] = 1 where column j is trained by head i (m_{i-1} <= j < m_i).
            owned = self.mask - F.pad(self.mask[:-1], (0, 0, 0, 0, 1, 0))
            self.register_buffer("owned", owned if prefix_calibration.startswith("owner") else None, persistent=False)
            self.prefix_bias = nn.Parameter(torch.zeros(g, num_classes)) if "bias" in prefix_calibration else None
        else:
            heads = [nn.Linear(m, num_classes, bias=bias) for m in self.matryoshka_dims]
            self.weight = nn.Parameter(torch.stack([pad(h.weight) for h in heads]))
            self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads])) if bias else None
        self.register_load_state_dict_pre_hook(_upgrade_per_head_state)

    def block_weight(self) -> torch.Tensor:
        """The masked block weight. Shape: ``[G, C, D]``."""
        w = self.weight if not self.efficient else self.weight.unsqueeze(0)
        if self.efficient and self.owned is not None:
            # Same values as w * mask; the gradient of each column reaches W only through its owner head.
            return w.detach() * (self.mask - self.owned) + w * self.owned
        w = w * self.mask
        if self.efficient and self.log_scale is not None:
            w = w * self.log_scale.exp().view(-1, 1, 1)
        return w

    def block_bias(self) -> torch.Tensor | None:
        """Bias of every head. Shape: ``[G, C]`` (None without bias)."""
        g = len(self.matryoshka_dims)
        if not self.efficient:
            return self.bias
        b = self.bias.expand(g, -1) if self.bias is not None else None
        if self.prefix_bias is not None:
            b = self.prefix_bias if b is None else b + self.prefix_bias
        return b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise MRLError(f"MatryoshkaLinear expects input [N, {self.in_features}], got {tuple(x.shape)}.")
        g, c = len(self.matryoshka_dims), self.num_classes
        b = self.block_bias()
        logits = F.linear(x, self.block_weight().reshape(g * c, self.in_features), None if b is None else b.reshape(g * c))
        return logits.view(x.shape[0], g, c).transpose(0, 1)

    def head_weight(self, i: int) -> torch.Tensor:
        """Effective ``[C, m_i]`` weight of head ``i`` (scale included for calibrated MRL-E)."""
        m = self.matryoshka_dims[i]
        w = self.weight[i, :, :m] if not self.efficient else self.weight[:, :m]
        if self.efficient and self.log_scale is not None:
            w = w * self.log_scale[i].exp()
        return w

    def head_logits(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Logits of head ``i`` alone, for code that runs one prefix at a time (cascades).

        Shape: ``x`` ``[N, >= m_i]`` (only the first ``m_i`` columns are read) -> ``[N, C]``.
        """
        b = self.block_bias()
        return F.linear(x[:, : self.matryoshka_dims[i]], self.head_weight(i), None if b is None else b[i])

    def get_config_dict(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "num_classes": self.num_classes, "matryoshka_dims": list(self.matryoshka_dims), "efficient": self.efficient, "prefix_calibration": self.prefix_calibration}

    def extra_repr(self) -> str:
        mode = "MRL-E" if self.efficient else "MRL"
        cal = f", prefix_calibration={self.prefix_calibration}" if self.efficient else ""
        return f"in_features={self.in_features}, num_classes={self.num_classes}, matryoshka_dims={self.matryoshka_dims}, mode={mode}{cal}"


def _upgrade_per_head_state(module: MatryoshkaLinear, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any) -> None:
    """Read weights saved by the earlier per-head layout (``heads.{i}.weight``/``linear.weight``) into
    the block layout, so models trained before the heads were fused still load."""
    if f"{prefix}linear.weight" in state_dict:
        w = state_dict.pop(f"{prefix}linear.weight")
        state_dict[f"{prefix}weight"] = F.pad(w, (0, module.in_features - w.shape[1]))
        if f"{prefix}linear.bias" in state_dict:
            state_dict[f"{prefix}bias"] = state_dict.pop(f"{prefix}linear.bias")
    if f"{prefix}heads.0.weight" in state_dict:
        g = len(module.matryoshka_dims)
        ws = [state_dict.pop(f"{prefix}heads.{i}.weight") for i in range(g)]
        state_dict[f"{prefix}weight"] = torch.stack([F.pad(w, (0, module.in_features - w.shape[1])) for w in ws])
        if f"{prefix}heads.0.bias" in state_dict:
            state_dict[f"{prefix}bias"] = torch.stack([state_dict.pop(f"{prefix}heads.{i}.bias") for i in range(g)])
