"""Refitting Matryoshka class heads on frozen embeddings, one weight decay per prefix chosen on validation rows."""

import numpy as np
import pytest
import torch

from mrl.adaptive.head_refit import refit_prefix_heads
from mrl.errors import MRLError
from mrl.evaluate.probe import fit_linear_probe

DIMS = (2, 4, 8)


def _blobs(n, seed, classes=4, width=8):
    """Gaussian classes whose means differ in every coordinate (so every prefix carries signal)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 1.5, size=(classes, width))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(0, 1.0, size=(n, width))).astype(np.float32), y.astype(np.int64)


def test_refit_heads_are_the_probes_folded_and_learn_every_prefix():
    tx, ty = _blobs(600, 1)
    vx, vy = _blobs(300, 2)
    refit = refit_prefix_heads(tx, ty, vx, vy, DIMS, 4, weight_decays=(1e-4, 1e-2))
    logits = refit.heads(torch.from_numpy(vx)).detach().numpy()
    assert logits.shape == (3, 300, 4)
    assert [r["dim"] for r in refit.report] == list(DIMS)
    for g, r in enumerate(refit.report):
        assert set(r["tried"]) == {"0.0001", "0.01"} and r["val_log_loss"] == min(t["log_loss"] for t in r["tried"].values())
        assert r["weight_decay"] == max(float(k) for k, t in r["tried"].items() if t["log_loss"] == r["val_log_loss"])  # ties: the larger decay
        probe = fit_linear_probe(tx[:, : DIMS[g]], ty, num_classes=4, weight_decay=r["weight_decay"], max_iter=300)
        np.testing.assert_allclose(logits[g], probe.predict_logits(vx[:, : DIMS[g]]), rtol=1e-4, atol=1e-4)  # standardisation folded in exactly
        assert (logits[g].argmax(1) == vy).mean() == pytest.approx(r["val_accuracy"])
        assert torch.nn.functional.cross_entropy(torch.from_numpy(logits[g]), torch.from_numpy(vy)).item() == pytest.approx(r["val_log_loss"], rel=1e-4)
    accs = [(logits[g].argmax(1) == vy).mean() for g in range(3)]
    assert accs[0] > 0.4 and accs[-1] > 0.85  # chance is 0.25; the full width separates the blobs
    assert torch.all(refit.heads.weight[0, :, 2:] == 0)  # head 0 reads only its own 2 dims


def test_refit_refusals():
    tx, ty = _blobs(100, 1)
    vx, vy = _blobs(50, 2)
    with pytest.raises(MRLError, match="no training rows"):
        refit_prefix_heads(tx, np.where(ty == 3, 0, ty), vx, vy, DIMS, 4)
    with pytest.raises(MRLError, match="weight_decays must be positive"):
        refit_prefix_heads(tx, ty, vx, vy, DIMS, 4, weight_decays=(0.0,))
    with pytest.raises(MRLError, match="weight_decays must be positive"):
        refit_prefix_heads(tx, ty, vx, vy, DIMS, 4, weight_decays=())
    with pytest.raises(MRLError, match="validation embeddings"):
        refit_prefix_heads(tx, ty, vx[:, :4], vy, DIMS, 4)
    with pytest.raises(MRLError, match="labels go up to 4"):
        refit_prefix_heads(tx, ty, vx, np.where(vy == 0, 4, vy), DIMS, 4)
    with pytest.raises(MRLError, match="dims"):
        refit_prefix_heads(tx, ty, vx, vy, (4, 2), 4)
    with pytest.raises(MRLError, match="training labels"):
        refit_prefix_heads(tx, ty[:-1], vx, vy, DIMS, 4)
