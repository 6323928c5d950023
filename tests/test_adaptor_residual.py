"""kind="residual": a fixed rotation plus a residual MLP on the leading coordinates only (issue 26)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import MRLError
from mrl.models.adaptor import MatryoshkaAdaptor, load_adaptor
from mrl.models.residual import LeadingResidual
from mrl.models.rotation import mean_last_rotation
from mrl.train.adaptor import AdaptorConfig, fit_adaptor
from mrl.train.geometry_loss import GeometryLoss, PrefixGeometryLoss

DIMS = [2, 4, 8, 16, 32]
LEAD = 8


def frozen(n=400, seed=0):
    """Clustered 32-d vectors spread over every coordinate, with the shared offset real embeddings have."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(30, 6)) * 3
    z = centers[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, 6))
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0][:6]
    return (z @ basis + 0.05 * rng.normal(size=(n, 32)) + 2.0).astype(np.float32)


def prefix_loss(model: MatryoshkaAdaptor, x: np.ndarray) -> float:
    """The fit's label-free objective (uniform over DIMS) on all of ``x`` at once."""
    cfg = AdaptorConfig(DIMS)
    geometry = GeometryLoss(cfg)
    xt = torch.as_tensor(x)
    xn = F.normalize(xt, dim=1)
    geometry.target = xn @ xn.T
    with torch.no_grad():
        return float(PrefixGeometryLoss(DIMS, geometry)(model(xt)).total)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    x = frozen()
    out = tmp_path_factory.mktemp("res") / "a"
    res = fit_adaptor(x, AdaptorConfig(DIMS, kind="residual", residual_dim=LEAD, hidden=32, steps=80, batch_size=128, lr=3e-3, progress=False, threads=1), out)
    return out, res, x


def test_residual_starts_at_the_rotation_and_bends_only_the_leading_coordinates_within_the_cap(fitted):
    _, res, x = fitted
    start = MatryoshkaAdaptor(32, "residual", 32, residual_dim=LEAD)
    start.init_pca(torch.as_tensor(x))
    torch.testing.assert_close(start.linear.weight.detach(), mean_last_rotation(torch.as_tensor(x)))
    cos = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (a / np.linalg.norm(a, axis=1, keepdims=True)).T  # noqa: E731
    np.testing.assert_allclose(cos(start.transform(x)), cos(x), atol=1e-5)  # zero-initialised: a rotation, full width unchanged
    w = res.model.linear.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)  # the rotation trained and stayed orthogonal
    y, rotated = res.model.transform(x), x @ w.numpy().T
    np.testing.assert_allclose(y[:, LEAD:], rotated[:, LEAD:], atol=1e-5)  # the tail is the rotation's
    bend = np.linalg.norm(y[:, :LEAD] - rotated[:, :LEAD], axis=1)
    head = np.linalg.norm(rotated[:, :LEAD], axis=1)
    assert bend.max() > 1e-2  # the head did bend ...
    assert (bend <= res.model.residual_bend * head + 1e-5).all()  # ... never beyond the cap, on any input
    far = (10 * np.random.default_rng(1).normal(size=(50, 32))).astype(np.float32)  # nothing like the fitting rows
    yf, rf = res.model.transform(far), far @ w.numpy().T
    assert (np.linalg.norm(yf[:, :LEAD] - rf[:, :LEAD], axis=1) <= 0.3 * np.linalg.norm(rf[:, :LEAD], axis=1) + 1e-4).all()


def test_residual_fit_lowers_the_prefix_loss_below_its_start(fitted):
    _, res, x = fitted
    start = MatryoshkaAdaptor(32, "residual", 32, residual_dim=LEAD)
    start.init_pca(torch.as_tensor(x))
    before, after = prefix_loss(start, x), prefix_loss(res.model, x)
    assert after < 0.5 * before, (before, after)  # measured: 15.7 -> 2.2


def test_residual_save_load_roundtrip_is_bitwise(fitted):
    out, res, x = fitted
    info = json.loads((out / "adaptor.json").read_text())
    assert info["kind"] == "residual" and info["residual_dim"] == LEAD and info["residual_bend"] == 0.3 and info["hidden"] == 32
    loaded = load_adaptor(out)
    assert loaded.residual_dim == LEAD and loaded.residual_bend == 0.3
    for key, value in res.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    np.testing.assert_array_equal(loaded.transform(x), res.model.transform(x))


def test_residual_options_are_validated_before_any_write(tmp_path):
    x = frozen(64)
    with pytest.raises(MRLError, match="kind 'residual' only"):
        AdaptorConfig(DIMS, kind="rotation", residual_dim=8)
    with pytest.raises(MRLError, match="positive integer"):
        AdaptorConfig(DIMS, kind="residual", residual_dim=0)
    with pytest.raises(MRLError, match="residual_bend must be a finite number > 0"):
        AdaptorConfig(DIMS, kind="residual", residual_bend=float("nan"))
    with pytest.raises(MRLError, match="above the embedding width 32"):
        fit_adaptor(x, AdaptorConfig(DIMS, kind="residual", residual_dim=64, steps=1, progress=False), tmp_path / "a")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MRLError, match="residual_dim must be a positive integer"):
        LeadingResidual(32, lead=0, hidden=8)
    assert MatryoshkaAdaptor(16, "residual").residual_dim == 16  # the default 64, at most D
    runner = CliRunner()
    np.save(tmp_path / "x.npy", x)
    res = runner.invoke(app, ["adapt", str(tmp_path / "x.npy"), "--out", str(tmp_path / "b"), "--kind", "residual", "--residual-dim", "40"])
    assert res.exit_code == 2 and "above the embedding width 32" in res.output and not (tmp_path / "b").exists()
    res = runner.invoke(app, ["adapt", str(tmp_path / "x.npy"), "--out", str(tmp_path / "c"), "--kind", "residual", "--residual-dim", "4", "--residual-bend", "0.5", "--steps", "3", "--batch-size", "32", "--threads", "1"])
    assert res.exit_code == 0, res.output
    loaded = load_adaptor(tmp_path / "c")
    assert (loaded.residual_dim, loaded.residual_bend) == (4, 0.5)
