"""The bend of the ``kind="residual"`` adaptor: a bounded residual MLP on the leading coordinates only.

A rotation ``z = W x`` (orthogonal ``W``, no centring) cannot bend, which is what the smallest prefixes
need; a free non-linear map can, but then every full-width cosine moves too. :class:`LeadingResidual`
adds a learned correction to the first ``lead`` coordinates ``h = z[:lead]`` of ``z`` only, and caps
its length at ``max_bend`` times the length of ``h``, per vector:

    f(x) = [h + c(x) g(z), z[lead:]],   g(z) = W2 GELU(W1 z + b1) + b2,   c(x) = min(1, max_bend |h| / |g(z)|)

so the coordinates ``lead..D`` stay the rotation's, every prefix ``m <= lead`` can bend, and a vector's
full-width direction moves by at most about ``max_bend |h| / |z|``, whatever the input (a query unlike
every fitting text included). The cap is what keeps full width: in the OOD measurements of issue 26
(MiniLM; man pages, Python docs, WordNet) an uncapped bend lost 0.9-1.8 nDCG@10 points at full width on
Python docs (bending its queries alone cost 3.5), and weighting the full-width loss up 5x did not help
(that loss sees the fitting texts only, never a query); with ``max_bend = 0.3`` full width stayed at most
0.2 points below the base model on all three sets (benchmarks/RESULTS.md, text-ood-residual). The last
layer starts at zero, so a fit starts exactly at the rotation.
"""

from __future__ import annotations

import torch
from torch import nn

from mrl.errors import MRLError


class LeadingResidual(nn.Module):
    """``z -> z + [g(z), 0]`` with ``g`` an MLP ``D -> hidden -> lead`` whose output layer starts at zero.

    Args:
        dim: width ``D`` of ``z``.
        lead: how many leading coordinates the residual may change, ``1 <= lead <= dim``.
        hidden: width of the MLP's hidden layer.
        max_bend: cap on ``|bend| / |z[:lead]|`` per vector, ``> 0``.

    Shape:
        - input: ``[N, D]``.
        - output: ``[N, D]``; columns ``lead:`` are the input's, unchanged; ``|out[:, :lead] - z[:, :lead]|
          <= max_bend |z[:, :lead]|`` row by row.

    Raises:
        MRLError: ``lead``, ``hidden`` or ``max_bend`` out of range.

    Example:
        >>> block = LeadingResidual(8, lead=4, hidden=16)
        >>> z = torch.randn(3, 8)
        >>> bool((block(z) == z).all())  # zero-initialised: the identity until trained
        True
    """

    def __init__(self, dim: int, lead: int, hidden: int, max_bend: float = 0.3) -> None:
        super().__init__()
        for name, v in (("residual_dim", lead), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MRLError(f"{name} must be a positive integer, got {v!r}.")
        if lead > dim:
            raise MRLError(f"residual_dim {lead} is above the embedding width {dim}; the residual changes the leading residual_dim coordinates, so use <= {dim} (e.g. 64).")
        if isinstance(max_bend, bool) or not isinstance(max_bend, (int, float)) or not 0 < max_bend < float("inf"):
            raise MRLError(f"residual_bend (the cap on the bend's length relative to the leading coordinates') must be a finite number > 0, got {max_bend!r}; e.g. 0.3.")
        self.dim, self.lead, self.hidden, self.max_bend = dim, lead, hidden, float(max_bend)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, lead))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z[:, : self.lead]
        bend = self.net(z)
        limit = self.max_bend * h.norm(dim=1, keepdim=True)
        head = h + bend * torch.clamp(limit / bend.norm(dim=1, keepdim=True).clamp_min(1e-12), max=1.0)
        return torch.cat([head, z[:, self.lead :]], dim=1) if self.lead < self.dim else head
