"""Post-hoc Matryoshka adaptor: fitting, saving/loading, CLI, and refusal of bad vectors."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import CheckpointError, MRLError, OutputExistsError
from mrl.evaluate.ir import per_dim_ir
from mrl.models.adaptor import MatryoshkaAdaptor, load_adaptor
from mrl.train.adaptor import AdaptorConfig, fit_adaptor

DIMS = [2, 4, 8, 16, 32]


def frozen(n=600, seed=0):
    """Clustered 32-d vectors whose signal is spread evenly over coordinates (a random rotation),
    so plain truncation is poor; queries are noisy copies of the first 60 rows."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, 6)) * 3
    z = centers[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, 6))
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0][:6]
    x = (z @ basis + 0.05 * rng.normal(size=(n, 32))).astype(np.float32)
    q = (x[:60] + 0.3 * rng.normal(size=(60, 32))).astype(np.float32)
    return x, q


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    x, q = frozen()
    out = tmp_path_factory.mktemp("adp") / "a"
    res = fit_adaptor(x, AdaptorConfig(DIMS, kind="mlp", steps=60, batch_size=128, progress=False), out)
    return out, res, x, q


def test_fit_save_load_roundtrip(fitted):
    out, res, x, _ = fitted
    info = json.loads((out / "adaptor.json").read_text())
    assert info["dim"] == 32 and info["kind"] == "mlp" and info["config"]["matryoshka_dims"] == DIMS
    model = load_adaptor(out)
    np.testing.assert_allclose(model.transform(x), res.model.transform(x), atol=1e-6)
    assert res.history[-1]["loss"] < res.history[0]["loss"] * 1.5  # it ran and did not blow up


def test_adaptor_prefixes_beat_truncation(fitted):
    out, _, x, q = fitted
    model = load_adaptor(out)
    qrels = [(i,) for i in range(60)]
    base = per_dim_ir(q, x, qrels, [2, 4, 8])
    adapted = per_dim_ir(model.transform(q), model.transform(x), qrels, [2, 4, 8])
    for d in (2, 4, 8):
        assert adapted[d]["ndcg@10"] > base[d]["ndcg@10"] + 0.1


def test_pca_init_is_a_rotation():
    x, _ = frozen(200)
    m = MatryoshkaAdaptor(32)
    m.init_pca(torch.as_tensor(x))
    w = m.linear.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-4, rtol=0)
    var = m.transform(x).var(axis=0)
    assert (np.diff(var) <= 1e-4).all()  # components ordered by variance


def test_rotation_adaptor_never_changes_full_width_cosines(tmp_path):
    """kind="rotation" stays orthogonal while it trains: full-width cosines are the original's, its
    small prefixes beat truncation, and it saves and loads like any adaptor."""
    x, q = frozen()
    x = x + 2.0  # a shared offset, as real embeddings have
    q = q + 2.0
    res = fit_adaptor(x, AdaptorConfig(DIMS, kind="rotation", steps=60, batch_size=128, progress=False), tmp_path / "r")
    w = res.model.linear.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)
    assert torch.count_nonzero(res.model.mean) == 0
    cos = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (a / np.linalg.norm(a, axis=1, keepdims=True)).T  # noqa: E731
    np.testing.assert_allclose(cos(res.model.transform(x[:50])), cos(x[:50]), atol=1e-5)
    qrels = [(i,) for i in range(60)]
    base = per_dim_ir(q, x, qrels, [2, 4])
    adapted = per_dim_ir(res.model.transform(q), res.model.transform(x), qrels, [2, 4])
    assert all(adapted[d]["ndcg@10"] > base[d]["ndcg@10"] + 0.05 for d in (2, 4))  # measured: +0.09 and +0.30
    np.testing.assert_allclose(load_adaptor(tmp_path / "r").transform(x), res.model.transform(x), atol=1e-6)


def test_wrong_width_nan_and_corrupt_files(fitted, tmp_path):
    out, _, x, _ = fitted
    model = load_adaptor(out)
    with pytest.raises(MRLError, match="trained on 32-d vectors but got 16-d"):
        model.transform(x[:, :16])
    bad = x[:5].copy()
    bad[1, 3] = np.inf
    with pytest.raises(MRLError, match="NaN/Inf"):
        model.transform(bad)
    with pytest.raises(MRLError, match="NaN/Inf"):
        fit_adaptor(bad, AdaptorConfig([4, 32], steps=1, progress=False))
    with pytest.raises(MRLError, match="larger than the embedding dim"):
        fit_adaptor(x[:, :16], AdaptorConfig(DIMS, steps=1, progress=False))
    with pytest.raises(MRLError, match="pair row for row"):
        fit_adaptor(x, AdaptorConfig(DIMS, steps=1, progress=False, supervised_weight=1.0), pairs=(x[:10], x[:9]))
    with pytest.raises(OutputExistsError):
        fit_adaptor(x, AdaptorConfig(DIMS, steps=1, progress=False), out)
    with pytest.raises(CheckpointError, match="not an adaptor folder"):
        load_adaptor(tmp_path)
    (tmp_path / "adaptor.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_adaptor(tmp_path)


def test_cli_adapt_and_embed_with_adaptor(tmp_path):
    x, q = frozen(300)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "d.npy", x[:60])
    runner = CliRunner()
    res = runner.invoke(app, ["adapt", str(tmp_path / "x.npy"), "--out", str(tmp_path / "a"), "--dims", "2,4,...,32", "--steps", "20", "--queries", str(tmp_path / "q.npy"), "--docs", str(tmp_path / "d.npy")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "adaptor.json").read_text())["pairs"] == 60
    res = runner.invoke(app, ["embed", "--adaptor", str(tmp_path / "a"), "--input", str(tmp_path / "q.npy"), "--out", str(tmp_path / "y.npy")])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), load_adaptor(tmp_path / "a").transform(q), atol=1e-6)
    res = runner.invoke(app, ["apply-adaptor", str(tmp_path / "a"), "--input", str(tmp_path / "q.npy"), "--out", str(tmp_path / "y.npy")])
    assert res.exit_code == 2 and "--overwrite" in res.output
    np.save(tmp_path / "w.npy", x[:, :8])
    res = runner.invoke(app, ["embed", "--adaptor", str(tmp_path / "a"), "--input", str(tmp_path / "w.npy"), "--out", str(tmp_path / "z.npy")])
    assert res.exit_code == 2 and "32-d vectors but got 8-d" in res.output and not (tmp_path / "z.npy").exists()
    res = runner.invoke(app, ["embed", "--out", str(tmp_path / "z.npy")])
    assert res.exit_code == 2 and "give a run folder" in res.output
    res = runner.invoke(app, ["adapt", str(tmp_path / "x.npy"), "--out", str(tmp_path / "b"), "--queries", str(tmp_path / "q.npy")])
    assert res.exit_code == 2 and "both --queries and --docs" in res.output


def test_orthogonal_projection_is_the_polar_factor_and_refuses_broken_weights():
    from mrl.models.rotation import project_orthogonal_

    rng = torch.Generator().manual_seed(0)
    near = torch.linalg.qr(torch.randn(24, 24, generator=rng))[0][:16] + 1e-3 * torch.randn(16, 24, generator=rng)  # Newton-Schulz path
    far = torch.randn(16, 24, generator=rng)  # eigendecomposition path
    for w in (near, far):
        u, _, vh = torch.linalg.svd(w.double(), full_matrices=False)
        torch.testing.assert_close(project_orthogonal_(w.clone()), (u @ vh).float(), atol=1e-5, rtol=0)
    with pytest.raises(MRLError, match="NaN"):
        project_orthogonal_(torch.full((4, 4), float("nan")))
    with pytest.raises(MRLError, match="lost rank"):
        project_orthogonal_(torch.zeros(4, 4))


_KILLED_FIT = """
import sys
import numpy as np
from pathlib import Path
from mrl.train.adaptor import AdaptorConfig, FitCheckpoint, fit_adaptor
x = np.load(sys.argv[1])
fit_adaptor(x, AdaptorConfig([4, 8, 16, 32], kind="rotation", steps=int(sys.argv[3]), batch_size=64, threads=1, progress=False), checkpoint=FitCheckpoint(Path(sys.argv[2]), every_steps=5))
"""


def test_rotation_fit_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    """A fit checkpoints (model, optimizer, scheduler, RNGs, sampler, step) atomically every N steps:
    SIGKILL mid-fit, then `resume` finishes with exactly the weights of an uninterrupted fit."""
    import signal
    import subprocess
    import sys
    import time

    from mrl.train.adaptor import FitCheckpoint
    from mrl.train.checkpoint import load_checkpoint

    steps = 600
    x = (np.random.default_rng(3).normal(size=(300, 32)) + 0.4).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ckpt = tmp_path / "fit.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_FIT, str(tmp_path / "x.npy"), str(ckpt), str(steps)])
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done = load_checkpoint(ckpt)[1]["epoch"]
    assert proc.returncode == -signal.SIGKILL and 0 < done < steps
    # one thread in both processes: bitwise equality needs the same reduction order (the default uses every core torch has)
    cfg = AdaptorConfig([4, 8, 16, 32], kind="rotation", steps=steps, batch_size=64, threads=1, progress=False)
    resumed = fit_adaptor(x, cfg, checkpoint=FitCheckpoint(ckpt, resume=True, every_steps=5))
    whole = fit_adaptor(x, cfg)
    assert torch.equal(resumed.model.linear.weight, whole.model.linear.weight) and resumed.history == whole.history
    assert load_checkpoint(ckpt)[1]["epoch"] == steps  # the finished fit is kept: a later resume returns it at once
    with pytest.raises(CheckpointError, match="another fit"):
        fit_adaptor(x[:200], cfg, checkpoint=FitCheckpoint(ckpt, resume=True))


@pytest.mark.parametrize("orthogonal", ["cayley", "polar"])
def test_both_orthogonal_maps_fit_a_rotation_saved_as_a_plain_weight(tmp_path, orthogonal):
    """kind="rotation" moves along the rotations (Cayley, the default) or projects after each AdamW
    step (polar): either way the saved weight is one plain orthogonal matrix, moved from its mean-last
    PCA start with a lower prefix loss, and loads back unchanged."""
    from mrl.models.rotation import mean_last_rotation

    x, _ = frozen()
    x = x + 2.0
    cfg = AdaptorConfig(DIMS, kind="rotation", orthogonal=orthogonal, steps=40, lr=5e-3, batch_size=128, progress=False)
    res = fit_adaptor(x, cfg, tmp_path / "r")
    w = res.model.linear.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=2e-6, rtol=0)
    assert set(res.model.state_dict()) == {"mean", "linear.weight"}  # no parametrization left behind
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert not torch.allclose(w, mean_last_rotation(torch.as_tensor(x)), atol=1e-3)  # it moved
    torch.testing.assert_close(load_adaptor(tmp_path / "r").linear.weight, w)
    with pytest.raises(MRLError, match="orthogonal must be one of"):
        AdaptorConfig(DIMS, kind="rotation", orthogonal="qr")
