"""How per-prefix losses are combined into one training loss.

A :class:`Weighting` receives the per-dim losses ``[G]`` of a step and returns the scalar to
backpropagate. Strategies are registered by name so configs can say ``weighting: uncertainty``.

Strategies (one small class each, same interface):

* ``uniform``: every prefix weighs 1 (the paper's default).
* ``fixed``: a user list, e.g. the paper's boost ``[2, 1, 1, ...]`` of the smallest prefix.
* ``uncertainty``: a learned log-variance ``s_i`` per prefix, total ``sum exp(-s_i) L_i + s_i``
  (Kendall, Gal & Cipolla, CVPR 2018). The ``s_i`` are parameters trained by the optimizer.
* ``dwa``: dynamic weight average, ``w_i = G softmax(r_i / T)`` with ``r_i`` the ratio of the last
  two epochs' mean losses, so prefixes whose loss falls slowest get more weight (Liu, Johns &
  Davison, CVPR 2019). Updated once per epoch.
* ``focal``: a focal-style boost of lagging prefixes, ``w_i = min((L_i / min_j L_j)^gamma, max_weight)``
  on an exponential moving average of the per-prefix losses, updated every step. The best prefix
  keeps weight 1, so it never loses signal; lagging (usually small) prefixes get up to
  ``max_weight``. Same idea as focal loss (Lin et al., ICCV 2017) applied across tasks, as in
  dynamic task prioritization (Guo et al., ECCV 2018).

All adaptive state is a registered buffer or parameter, so ``state_dict()`` (saved by
:mod:`mrl.train.checkpoint`) holds everything and a resumed run continues with the same weights.

Distributed training: strategies that adapt from batch statistics call :attr:`Weighting.sync`
(set by the training loop to an all-reduce mean) so every rank computes the same weights.

Shape:
    - ``losses``: ``[G]`` per-dim losses (graph attached); ``active``: ``[G]`` bool mask of the dims
      evaluated this step (all True unless ``n_dims_per_step`` samples a subset).
    - returns a scalar tensor.

Example:
    >>> w = create_weighting("focal", 3, gamma=1.0)
    >>> total = w(torch.tensor([2.0, 1.0, 0.5]), torch.ones(3, dtype=torch.bool))
    >>> w.weights().shape
    torch.Size([3])
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from mrl.errors import MRLError

W = TypeVar("W", bound="Weighting")

# name -> strategy class; filled by @register_weighting (timm's @register_model style): one source of truth.
WEIGHTINGS: dict[str, Callable[..., Weighting]] = {}


def register_weighting(name: str) -> Callable[[type[W]], type[W]]:
    """Class decorator: make ``weighting: name`` in a recipe build this strategy."""

    def wrap(cls: type[W]) -> type[W]:
        if name in WEIGHTINGS:
            raise MRLError(f"internal error: weighting {name!r} is registered twice.")
        WEIGHTINGS[name] = cls
        return cls

    return wrap


class Weighting(nn.Module):
    """Base class: combine per-dim losses with weights ``w_i`` (default: all ones).

    Subclasses override :meth:`weights` (and, if they learn from the losses, :meth:`observe`,
    :meth:`on_epoch_end` or :meth:`forward`).
    """

    name = "base"

    def __init__(self, num_dims: int) -> None:
        super().__init__()
        if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims <= 0:
            raise MRLError(f"num_dims must be a positive integer, got {num_dims!r}.")
        self.num_dims = num_dims
        # Averages a tensor over the ranks of a distributed run; None in a single process.
        self.sync: Callable[[torch.Tensor], torch.Tensor] | None = None

    def weights(self) -> torch.Tensor:
        """Current weights ``[G]`` (detached), for logging and checkpoints."""
        return torch.ones(self.num_dims)

    def _check(self, losses: torch.Tensor, active: torch.Tensor) -> None:
        if losses.shape != (self.num_dims,):
            raise MRLError(f"expected {self.num_dims} per-dim losses, got shape {tuple(losses.shape)}.")
        if active.shape != (self.num_dims,):
            raise MRLError(f"expected an active mask of shape ({self.num_dims},), got {tuple(active.shape)}.")

    def forward(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        self._check(losses, active)
        w = self.weights().to(losses.device, losses.dtype)
        if self.training:
            self.observe(losses.detach(), active)
        return (w * torch.where(active, losses, torch.zeros_like(losses))).sum()

    def observe(self, losses: torch.Tensor, active: torch.Tensor) -> None:
        """Per-step hook (training mode only) after the weights of this step were taken; no-op here.

        Shape: ``losses`` ``[G]`` detached, ``active`` ``[G]`` bool.
        """

    def on_epoch_end(self, mean_losses: Sequence[float]) -> None:
        """Hook for strategies that adapt once per epoch (no-op by default).

        ``mean_losses``: ``G`` mean training losses of the epoch (already averaged over ranks).
        """

    def _synced(self, values: torch.Tensor) -> torch.Tensor:
        return self.sync(values) if self.sync is not None else values

    def get_config_dict(self) -> dict[str, Any]:
        return {"weighting": self.name}


@register_weighting("uniform")
class UniformWeighting(Weighting):
    """Every prefix weighs 1 (the paper's default)."""

    name = "uniform"


@register_weighting("fixed")
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


@register_weighting("uncertainty")
class UncertaintyWeighting(Weighting):
    """Learned homoscedastic-uncertainty weights (Kendall et al. 2018).

    Each prefix has a parameter ``s_i = log sigma_i^2`` (init ``init_log_var``); the loss is
    ``sum_i exp(-s_i) L_i + s_i`` over the active prefixes. At the optimum ``s_i = log L_i``, so a
    prefix's weight ``exp(-s_i)`` tends to ``1 / L_i``: noisy (high-loss) prefixes are down-weighted.

    Args:
        num_dims: ``G``.
        init_log_var: starting ``s_i`` (0 means weight 1).

    References:
        Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
        Geometry and Semantics", CVPR 2018.
    """

    name = "uncertainty"

    def __init__(self, num_dims: int, init_log_var: float = 0.0) -> None:
        super().__init__(num_dims)
        if not math.isfinite(init_log_var):
            raise MRLError(f"init_log_var must be finite, got {init_log_var}.")
        self.init_log_var = float(init_log_var)
        self.log_vars = nn.Parameter(torch.full((num_dims,), self.init_log_var))

    def weights(self) -> torch.Tensor:
        return torch.exp(-self.log_vars.detach()).clone()

    def forward(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        self._check(losses, active)
        s = self.log_vars.to(losses.dtype)
        terms = torch.exp(-s) * losses + s
        return torch.where(active, terms, torch.zeros_like(terms)).sum()

    def get_config_dict(self) -> dict[str, Any]:
        return {"weighting": self.name, "init_log_var": self.init_log_var}


@register_weighting("dwa")
class DynamicWeightAverage(Weighting):
    """Dynamic weight average (Liu et al. 2019), updated at the end of every epoch.

    ``w_i(t) = G exp(r_i / T) / sum_j exp(r_j / T)`` with ``r_i = L_i(t-1) / L_i(t-2)`` the ratio of
    the last two epochs' mean losses; weights are 1 until two epochs have been seen. The weights
    sum to ``G`` like uniform's, so the overall loss scale (and the tuned learning rate) is kept.

    Args:
        num_dims: ``G``.
        temperature: ``T`` > 0; larger is closer to uniform.

    References:
        Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.
    """

    name = "dwa"

    def __init__(self, num_dims: int, temperature: float = 2.0) -> None:
        super().__init__(num_dims)
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise MRLError(f"dwa temperature must be a finite number > 0, got {temperature!r}.")
        self.temperature = float(temperature)
        self.register_buffer("history", torch.zeros(2, num_dims, dtype=torch.float64))  # [older, newer]
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("current", torch.ones(num_dims))

    def weights(self) -> torch.Tensor:
        return self.current.detach().clone()

    def on_epoch_end(self, mean_losses: Sequence[float]) -> None:
        new = torch.as_tensor(list(mean_losses), dtype=torch.float64, device=self.history.device)
        if new.shape != (self.num_dims,):
            raise MRLError(f"expected {self.num_dims} epoch losses, got {tuple(new.shape)}.")
        # A prefix never sampled this epoch (n_dims_per_step) keeps its previous loss.
        if int(self.epochs_seen) > 0:
            new = torch.where(torch.isfinite(new) & (new > 0), new, self.history[1])
        self.history.copy_(torch.stack([self.history[1], new]))
        self.epochs_seen += 1
        if int(self.epochs_seen) >= 2:
            older, newer = self.history[0], self.history[1]
            ok = torch.isfinite(older) & torch.isfinite(newer) & (older > 0)
            ratio = torch.where(ok, newer / older.clamp(min=1e-12), torch.ones_like(newer))
            w = self.num_dims * torch.softmax(ratio / self.temperature, dim=0)
            self.current.copy_(w.to(self.current.dtype))

    def get_config_dict(self) -> dict[str, Any]:
        return {"weighting": self.name, "temperature": self.temperature}


@register_weighting("focal")
class FocalWeighting(Weighting):
    """Boost prefixes whose loss lags: ``w_i = clamp((L_i / min_j L_j)^gamma, 1, max_weight)``.

    ``L`` is an exponential moving average (``momentum``) of the per-prefix training losses, updated
    after every step (averaged over ranks in distributed runs); the weights of a step come from the
    average *before* that step. The best prefix always weighs 1, so the full-width prefix keeps
    its signal while the small prefixes, whose loss is higher, get up to ``max_weight``.

    Args:
        num_dims: ``G``.
        gamma: focusing exponent >= 0 (0 gives uniform).
        max_weight: cap on any weight (>= 1).
        momentum: EMA factor in [0, 1).

    References:
        Guo et al., "Dynamic Task Prioritization for Multitask Learning", ECCV 2018 (focal-style
        weighting of hard tasks); Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """

    name = "focal"

    def __init__(self, num_dims: int, gamma: float = 1.0, max_weight: float = 4.0, momentum: float = 0.9) -> None:
        super().__init__(num_dims)
        if not (math.isfinite(gamma) and gamma >= 0):
            raise MRLError(f"focal gamma must be finite and >= 0, got {gamma}.")
        if not (math.isfinite(max_weight) and max_weight >= 1):
            raise MRLError(f"focal max_weight must be finite and >= 1, got {max_weight}.")
        if not 0 <= momentum < 1:
            raise MRLError(f"focal momentum must be in [0, 1), got {momentum}.")
        self.gamma, self.max_weight, self.momentum = float(gamma), float(max_weight), float(momentum)
        self.register_buffer("ema", torch.zeros(num_dims, dtype=torch.float64))
        self.register_buffer("seen", torch.zeros(num_dims, dtype=torch.bool))

    def weights(self) -> torch.Tensor:
        if not bool(self.seen.all()):
            return torch.ones(self.num_dims, device=self.ema.device)
        ref = self.ema.min().clamp(min=1e-12)
        w = (self.ema / ref).pow(self.gamma).clamp(1.0, self.max_weight)
        return w.float().detach().clone()

    def observe(self, losses: torch.Tensor, active: torch.Tensor) -> None:
        values = torch.where(active, losses, torch.zeros_like(losses)).to(self.ema.device, torch.float64)
        counts = active.to(self.ema.device, torch.float64)
        packed = self._synced(torch.cat([values, counts]))
        values, counts = packed[: self.num_dims], packed[self.num_dims :]
        hit = counts > 0
        mean = values / counts.clamp(min=1e-12)
        blended = torch.where(self.seen, self.momentum * self.ema + (1 - self.momentum) * mean, mean)
        self.ema.copy_(torch.where(hit & torch.isfinite(mean), blended, self.ema))
        self.seen |= hit

    def get_config_dict(self) -> dict[str, Any]:
        return {"weighting": self.name, "gamma": self.gamma, "max_weight": self.max_weight, "momentum": self.momentum}


def check_weights(weights: Sequence[float], num_dims: int) -> list[float]:
    """Validate a weight list: right length, finite, non-negative, not all zero."""
    if isinstance(weights, (str, bytes)):
        raise MRLError(f"matryoshka_weights must be a list of numbers, got {weights!r}.")
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError) as exc:
        raise MRLError(f"matryoshka_weights must be a list of numbers, got {weights!r}.") from exc
    if len(w) != num_dims:
        raise MRLError(f"matryoshka_weights has {len(w)} entries but there are {num_dims} matryoshka_dims; give one weight per dim.")
    if any(not math.isfinite(v) or v < 0 for v in w):
        raise MRLError(f"matryoshka_weights must be finite and >= 0, got {w}.")
    if sum(w) == 0:
        raise MRLError("matryoshka_weights are all zero, so nothing would be trained; give at least one positive weight.")
    return w


def create_weighting(name: str, num_dims: int, **kwargs: Any) -> Weighting:
    """Build a registered strategy by name, e.g. ``create_weighting("fixed", 4, weights=[2, 1, 1, 1])``."""
    if name not in WEIGHTINGS:
        raise MRLError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}.")
    factory = WEIGHTINGS[name]
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p not in ("self", "num_dims")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise MRLError(f"weighting {name!r} does not take {unknown}; it accepts {accepted or 'no options'}.")
    missing = [p for p, spec in params.items() if p not in ("self", "num_dims") and spec.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        hint = " (set matryoshka_weights: [...], one per dim)" if name == "fixed" else ""
        raise MRLError(f"weighting {name!r} needs {missing}{hint}.")
    return factory(num_dims, **kwargs)


def weighting_from_config(num_dims: int, name: str = "uniform", options: dict[str, Any] | None = None, matryoshka_weights: Sequence[float] | None = None) -> Weighting:
    """The weighting a recipe asks for: ``matryoshka_weights`` implies ``fixed``, else strategy ``name``."""
    if matryoshka_weights is not None:
        if name not in ("uniform", "fixed"):
            raise MRLError(f"matryoshka_weights is only used with weighting 'fixed', not {name!r}; drop one of them.")
        return create_weighting("fixed", num_dims, weights=matryoshka_weights)
    return create_weighting(name, num_dims, **(options or {}))
