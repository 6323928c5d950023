"""Matryoshka classification heads: one logit set per nested prefix of the embedding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mrl.errors import MRLError
from mrl.nesting import validate_dims


class MatryoshkaLinear(nn.Module):
    """Linear heads over nested prefixes ``x[:, :m]`` for every ``m`` in ``matryoshka_dims``.

    Two parameterisations, as in the MRL paper:

    * ``efficient=False`` (MRL): an ``nn.ModuleList`` of independent ``nn.Linear(m_i, C)`` heads.
      ``state_dict`` keys: ``heads.{i}.weight`` ``[C, m_i]``, ``heads.{i}.bias`` ``[C]``.
    * ``efficient=True`` (MRL-E): one shared ``nn.Linear(D, C)``; head *i* uses ``W[:, :m_i]`` and the
      shared bias. All prefixes cost about one full ``[N, D] x [D, C]`` matmul: the input is split
      into the chunks between consecutive dims, each chunk gives a partial product, and a cumulative
      sum over chunks yields every prefix's logits. ``state_dict`` keys: ``linear.weight`` ``[C, D]``,
      ``linear.bias`` ``[C]``.

    Args:
        in_features: embedding width ``D``; ``matryoshka_dims`` must not exceed it. The last dim may
            be smaller than ``D`` (e.g. the fixed-feature baseline reads only ``x[:, :d]``).
        num_classes: ``C``.
        matryoshka_dims: strictly increasing prefix sizes.
        efficient: MRL-E weight sharing when True.
        bias: whether heads have a bias.

    Shape:
        - Input: ``[N, D]``.
        - Output: ``[G, N, C]`` logits with ``G = len(matryoshka_dims)``, in the order of the dims.

    Example:
        >>> head = MatryoshkaLinear(64, 10, (8, 16, 32, 64))
        >>> head(torch.randn(5, 64)).shape
        torch.Size([4, 5, 10])
    """

    def __init__(self, in_features: int, num_classes: int, matryoshka_dims: Sequence[int], *, efficient: bool = False, bias: bool = True) -> None:
        super().__init__()
        if in_features <= 0 or num_classes <= 0:
            raise MRLError(f"in_features and num_classes must be positive, got {in_features} and {num_classes}.")
        self.matryoshka_dims = validate_dims(matryoshka_dims, in_features, require_full=False)
        self.in_features = in_features
        self.num_classes = num_classes
        self.efficient = efficient
        if efficient:
            self.linear = nn.Linear(self.matryoshka_dims[-1], num_classes, bias=bias)
        else:
            self.heads = nn.ModuleList(nn.Linear(m, num_classes, bias=bias) for m in self.matryoshka_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise MRLError(f"MatryoshkaLinear expects input [N, {self.in_features}], got {tuple(x.shape)}.")
        if not self.efficient:
            return torch.stack([head(x[:, :m]) for head, m in zip(self.heads, self.matryoshka_dims)])
        w = self.linear.weight
        bounds = (0, *self.matryoshka_dims)
        partial = torch.stack([x[:, a:b] @ w[:, a:b].T for a, b in zip(bounds, bounds[1:])])  # [G, N, C]
        logits = partial.cumsum(dim=0)
        if self.linear.bias is not None:
            logits = logits + self.linear.bias
        return logits

    def extra_repr(self) -> str:
        mode = "MRL-E" if self.efficient else "MRL"
        return f"in_features={self.in_features}, num_classes={self.num_classes}, matryoshka_dims={self.matryoshka_dims}, mode={mode}"
