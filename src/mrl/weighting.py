"""How per-prefix losses are combined into one training loss.

A :class:`Weighting` receives the per-dim losses ``[G]`` of a step and returns the scalar to
backpropagate. Strategies are registered by name so configs can say ``weighting: uniform``.

Shape:
    - ``losses``: ``[G]`` per-dim losses (graph attached); ``active``: ``[G]`` bool mask of the dims
      evaluated this step (all True unless ``n_dims_per_step`` samples a subset).
    - returns a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mrl.errors import MRLError


class Weighting(nn.Module):
    """Base class: combine per-dim losses with weights ``w_i`` (default: all ones)."""

    name = "base"

    def __init__(self, num_dims: int) -> None:
        super().__init__()
        if num_dims <= 0:
            raise MRLError(f"num_dims must be positive, got {num_dims}.")
        self.num_dims = num_dims

    def weights(self) -> torch.Tensor:
        """Current weights ``[G]`` (detached), for logging and checkpoints."""
        return torch.ones(self.num_dims)

    def forward(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        if losses.shape != (self.num_dims,):
            raise MRLError(f"expected {self.num_dims} per-dim losses, got shape {tuple(losses.shape)}.")
        w = self.weights().to(losses.device, losses.dtype)
        return (w * torch.where(active, losses, torch.zeros_like(losses))).sum()

    def on_epoch_end(self, mean_losses: Sequence[float]) -> None:
        """Hook for strategies that adapt once per epoch (no-op by default)."""

    def get_config_dict(self) -> dict[str, Any]:
        return {"weighting": self.name}


class UniformWeighting(Weighting):
    """Every prefix weighs 1 (the paper's default)."""

    name = "uniform"


class FixedWeighting(Weighting):
    """User-given non-negative weights, e.g. the paper's boost ``[2, 1, 1, ...]`` of the smallest dim."""

    name = "fixed"

    def __init__(self, num_dims: int, weights: Sequence[float]) -> None:
        super().__init__(num_dims)
        w = check_weights(weights, num_dims)
        self.register_buffer("fixed", torch.tensor(w, dtype=torch.float32))

    def weights(self) -> torch.Tensor:
        return self.fixed.detach().clone()

    def get_config_dict(self) -> dict[str, Any]:
        return {"weighting": self.name, "matryoshka_weights": self.fixed.tolist()}


def check_weights(weights: Sequence[float], num_dims: int) -> list[float]:
    """Validate a weight list: right length, finite, non-negative, not all zero."""
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError) as exc:
        raise MRLError(f"matryoshka_weights must be a list of numbers, got {weights!r}.") from exc
    if len(w) != num_dims:
        raise MRLError(f"matryoshka_weights has {len(w)} entries but there are {num_dims} matryoshka_dims; give one weight per dim.")
    if any(not torch.isfinite(torch.tensor(v)) or v < 0 for v in w):
        raise MRLError(f"matryoshka_weights must be finite and >= 0, got {w}.")
    if sum(w) == 0:
        raise MRLError("matryoshka_weights are all zero, so nothing would be trained; give at least one positive weight.")
    return w


WEIGHTINGS: dict[str, Callable[..., Weighting]] = {
    "uniform": UniformWeighting,
    "fixed": FixedWeighting,
}


def create_weighting(name: str, num_dims: int, **kwargs: Any) -> Weighting:
    """Build a registered strategy by name, e.g. ``create_weighting("fixed", 4, weights=[2, 1, 1, 1])``."""
    if name not in WEIGHTINGS:
        raise MRLError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}.")
    return WEIGHTINGS[name](num_dims, **kwargs)
