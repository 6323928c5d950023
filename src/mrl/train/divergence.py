"""Stop a diverged run: a non-finite loss or weight ends training with an error, never a saved model.

Every training loop (image, text, adaptor) calls :func:`check_finite_loss` after each step and
:func:`check_finite_weights` before each save, so a run with ``lr=1e12`` fails with one clear line
instead of exiting 0 with NaN weights.
"""

from __future__ import annotations

import torch

from mrl.errors import MRLError
from mrl.losses import MatryoshkaLossOutput


class DivergedError(MRLError):
    """Training produced a non-finite loss or weights; nothing from the diverged steps is saved."""


def check_finite_loss(out: MatryoshkaLossOutput, dims: list[int] | tuple[int, ...], where: str) -> None:
    """Raise :class:`DivergedError` if the total or any evaluated prefix's loss is NaN/Inf.

    ``where`` says when it happened, e.g. ``"epoch 2, step 17"``. Prefixes not sampled this step
    (``out.active`` False, ``per_dim`` NaN by convention) are not errors.
    """
    total_ok = bool(torch.isfinite(out.total.detach()).all())
    active = out.active.to(out.per_dim.device)
    dims_ok = bool(torch.isfinite(out.per_dim[active]).all())
    if total_ok and dims_ok:
        return
    bad = [int(d) for d, v, a in zip(dims, out.per_dim.tolist(), active.tolist()) if a and not (v == v and abs(v) != float("inf"))]
    raise DivergedError(f"training diverged at {where}: non-finite loss (dims {bad or 'total'}); lower lr (or add warm-up) and rerun; nothing after the last finite save was written.")


def check_finite_weights(module: torch.nn.Module, what: str = "model") -> None:
    """Raise :class:`DivergedError` if any floating weight or buffer of ``module`` holds NaN/Inf."""
    bad = [name for name, t in module.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise DivergedError(f"training diverged: {len(bad)} {what} tensors hold NaN/Inf (first: {bad[0]}); lower lr and rerun; nothing was saved.")
