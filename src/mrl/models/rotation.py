"""An orthogonal start for a projection on top of an encoder: centred principal axes, mean last.

Sentence embeddings share a large mean direction. A prefix of any rotation that keeps part of that
direction carries a constant offset common to every text, which dominates small-prefix cosines.
:func:`mean_last_rotation` puts the mean direction into the last coordinate alone and fills the
others with the principal axes of the centred data orthogonal to it, so that

* every prefix short of full width is exactly a centred PCA projection (no offset), and
* the full-width map is orthogonal with no bias: every full-width cosine is unchanged.
"""

from __future__ import annotations

import torch

from mrl.errors import MRLError


def mean_last_rotation(x: torch.Tensor) -> torch.Tensor:
    """Orthogonal ``W`` whose rows are the centred principal axes (by decreasing variance) in the
    complement of the mean direction, followed by the mean direction itself.

    Shape: ``x`` ``[N, D]`` (``N >= 2``) -> ``W`` ``[D, D]`` float32 with ``W @ W.T = I``.

    Raises:
        MRLError: ``x`` is not a finite ``[N >= 2, D]`` matrix.
    """
    if x.ndim != 2 or x.shape[0] < 2 or not torch.isfinite(x).all():
        raise MRLError(f"a rotation needs finite embeddings [N >= 2, D], got shape {tuple(x.shape)}.")
    x = x.double()
    mu = x.mean(0)
    centred = x - mu
    norm = mu.norm()
    if norm <= 1e-12 * max(1.0, x.abs().max().item()):  # no mean direction: plain centred PCA axes
        _, vecs = torch.linalg.eigh(torch.cov(centred.T))
        return vecs.flip(1).T.float()
    u = mu / norm
    off_mean = centred - (centred @ u)[:, None] * u[None, :]  # the centred data, mean direction removed
    cov = off_mean.T @ off_mean / (x.shape[0] - 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending; u spans (numerically) the null space
    axes = vecs.flip(1).T[:-1]  # the D-1 axes of largest variance
    axes = axes - (axes @ u)[:, None] * u[None, :]  # exactly orthogonal to u
    w = torch.cat([axes, u[None, :]])
    q, r = torch.linalg.qr(w.T)  # re-orthonormalise, keeping each row's direction and order
    return (q * torch.sign(torch.diagonal(r))).T.float()


@torch.no_grad()
def project_orthogonal_(weight: torch.Tensor, *, tol: float = 1e-6, max_iter: int = 8) -> torch.Tensor:
    """Replace ``weight`` in place by its nearest matrix with orthonormal rows, the polar factor
    ``(W W^T)^{-1/2} W`` (the projection step of gradient descent on the Stiefel manifold).

    After an optimizer step ``W`` is close to orthogonal, where a few Newton-Schulz iterations
    ``W <- 1.5 W - 0.5 (W W^T) W`` (two matrix products each, quadratic convergence) reach the polar
    factor far faster than a decomposition; far from it (``|W W^T - I| > 0.5``), or if they stall,
    the factor comes from the eigendecomposition of the symmetric ``W W^T`` in float64 (an SVD
    routine may fail to converge when every singular value is close to 1).

    Used beside ``torch.nn.utils.parametrizations.orthogonal``: the rotation fit moves along the
    rotations with torch's Cayley parametrization by default (``fit_adaptor(kind="rotation")``,
    ``orthogonal="cayley"``) and calls this once at the end to square away float32 rounding; its
    ``orthogonal="polar"`` option projects after every AdamW step (benchmarks/RESULTS.md, fit-speed,
    compares the two); and in the Trainer path (:class:`mrl.train.text_trainer.OrthogonalProjection`)
    the sentence-transformers ``Dense`` layer must stay a plain weight in the Trainer's checkpoints and
    the saved folder.

    Shape: ``[D_out, D_in]`` with ``D_out <= D_in``; returns ``weight``.

    Raises:
        MRLError: ``weight`` holds NaN/Inf or is rank-deficient (no orthogonal factor).
    """
    if not torch.isfinite(weight).all():
        raise MRLError("the projection weight holds NaN/Inf; training diverged (lower the learning rate).")
    w = weight.double()
    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    for _ in range(max_iter):
        gram = w @ w.T
        err = (gram - eye).abs().max().item()
        if err <= tol:
            return weight.copy_(w.to(weight.dtype))
        if err > 0.5:
            break
        w = 1.5 * w - 0.5 * gram @ w
    vals, vecs = torch.linalg.eigh(w @ w.T)
    if vals.min() <= 1e-10 * max(1.0, float(vals.max())):
        raise MRLError("the projection weight lost rank, so it has no orthogonal factor; lower the learning rate.")
    inv_sqrt = (vecs * vals.rsqrt()) @ vecs.T
    return weight.copy_((inv_sqrt @ w).to(weight.dtype))
