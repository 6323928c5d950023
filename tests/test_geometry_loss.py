"""The label-free geometry loss of the adaptor/rotation fit: the fast per-prefix path equals the
plain per-prefix definition, and a rotation's fit keeps its full-width term."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mrl.losses import MatryoshkaEmbeddingLoss
from mrl.train.adaptor import AdaptorConfig, fit_adaptor
from mrl.train.geometry_loss import GeometryLoss, PrefixGeometryLoss
from mrl.weighting import create_weighting

DIMS = (4, 8, 16, 32)


def reference(cfg: AdaptorConfig, target: torch.Tensor):
    """The definition, one prefix at a time (the fit's loss before the fast path)."""

    def one(y: torch.Tensor) -> torch.Tensor:
        s = y @ y.T
        off = ~torch.eye(s.shape[0], dtype=torch.bool)
        loss = cfg.sim_weight * (s - target).abs()[off].mean()
        if cfg.rank_weight:
            mask = torch.where(off, 0.0, float("-inf"))
            teacher = F.softmax(target / cfg.tau + mask, dim=1)
            student = F.log_softmax(s / cfg.tau + mask, dim=1)
            loss = loss + cfg.rank_weight * (teacher * (torch.log(teacher.clamp_min(1e-12)) - student)).masked_fill(~off, 0.0).sum(1).mean()
        return loss

    return one


@pytest.mark.parametrize(("sim", "rank", "weighting", "kwargs"), [(1.0, 1.0, "uniform", {}), (0.5, 0.0, "fixed", {"weights": [2, 1, 1, 0.5]}), (0.0, 2.0, "uniform", {})])
def test_prefix_geometry_loss_equals_the_per_prefix_definition(sim, rank, weighting, kwargs):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(70, 32, generator=gen) + 0.5
    xn = F.normalize(x, dim=1)
    target = xn @ xn.T
    z = (x @ torch.linalg.qr(torch.randn(32, 32, generator=gen))[0] + 0.3 * torch.randn(70, 32, generator=gen)).requires_grad_(True)  # not a rotation of x: |S_m - S| is off its kink at full width
    cfg = AdaptorConfig(list(DIMS), sim_weight=sim, rank_weight=rank)
    want = MatryoshkaEmbeddingLoss(DIMS, reference(cfg, target), weighting=create_weighting(weighting, len(DIMS), **kwargs))(z)
    (g_want,) = torch.autograd.grad(want.total, z)
    geometry = GeometryLoss(cfg)
    geometry.target = target
    got = PrefixGeometryLoss(DIMS, geometry, weighting=create_weighting(weighting, len(DIMS), **kwargs))(z)
    (g_got,) = torch.autograd.grad(got.total, z)
    torch.testing.assert_close(got.per_dim, want.per_dim, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-4)
    plain = MatryoshkaEmbeddingLoss(DIMS, geometry)(z)  # GeometryLoss alone is the same per-prefix loss
    torch.testing.assert_close(plain.per_dim, MatryoshkaEmbeddingLoss(DIMS, reference(cfg, target))(z).per_dim, atol=1e-5, rtol=1e-5)


def test_rotation_fit_keeps_its_full_width_term():
    """A rotation cannot change full-width cosines, yet that term's Euclidean gradient (normal to the
    rotations) feeds AdamW's second moments before the projection: leaving it out changed the fit
    (benchmarks/RESULTS.md, fit-speed), so the fit keeps it and logs it."""
    xs = (np.random.default_rng(0).normal(size=(200, 16)) + 0.3).astype(np.float32)
    res = fit_adaptor(xs, AdaptorConfig([4, 8, 16], kind="rotation", steps=10, batch_size=64, progress=False))
    assert {"loss@4", "loss@8", "loss@16"} <= set(res.history[-1])
