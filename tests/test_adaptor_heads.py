"""Adaptor with class heads: fitted on labelled frozen vectors, saved with the adaptor, and driving the
adaptive cascade through `mrl cascade fit/eval --features --labels`; bad labels are refused."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import MRLError
from mrl.models.adaptor import MatryoshkaAdaptor, load_adaptor
from mrl.train.adaptor import AdaptorConfig, fit_adaptor

DIMS = [2, 4, 8, 16, 32]
CLASSES = 6


def labelled(n=900, seed=0):
    """32-d vectors of 6 classes: the class signal lies on 4 random directions, and the first 8
    coordinates also carry large class-free noise, so a short truncation of the raw vectors is weak."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    centers = rng.normal(size=(CLASSES, 4)) * 2.0
    z = centers[y] + 0.6 * rng.normal(size=(n, 4))
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0][:4]
    noise = 0.3 * rng.normal(size=(n, 32))
    noise[:, :8] *= 10.0
    x = (z @ basis + noise).astype(np.float32)
    return x, y.astype(np.int64)


def supervised(**overrides):
    """A purely supervised fit (no geometry terms) unless ``overrides`` say otherwise."""
    kw = {"kind": "mlp", "steps": 300, "batch_size": 128, "lr": 3e-3, "sim_weight": 0.0, "rank_weight": 0.0, "label_weight": 1.0, "progress": False}
    return AdaptorConfig(DIMS, **{**kw, **overrides})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    x, y = labelled()
    out = tmp_path_factory.mktemp("heads") / "a"
    res = fit_adaptor(x[:600], supervised(dropout=0.1, weight_decay=1e-3), out, labels=y[:600])
    return out, res, x, y


def test_heads_are_saved_with_the_adaptor_and_reload_to_the_same_logits(fitted):
    out, res, x, _ = fitted
    info = json.loads((out / "adaptor.json").read_text())
    assert info["num_classes"] == CLASSES and info["head_dims"] == DIMS and info["labelled_rows"] == 600
    model = load_adaptor(out)
    logits = model.logits(x[600:])
    assert logits.shape == (len(DIMS), 300, CLASSES) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, res.model.logits(x[600:]), atol=1e-5)
    assert "ce@2" in res.history[-1] and "loss@2" not in res.history[-1]  # only the class term ran


def test_adapted_small_prefixes_classify_far_better_than_truncation(fitted):
    from mrl.evaluate.probe import fit_linear_probe

    out, _, x, y = fitted
    acc = (load_adaptor(out).logits(x[600:]).argmax(-1) == y[None, 600:]).mean(axis=1)
    probe = fit_linear_probe(x[:600, :4], y[:600], num_classes=CLASSES)
    truncated = (probe.predict_logits(x[600:, :4]).argmax(-1) == y[600:]).mean()
    assert acc[1] > truncated + 0.3, (acc, truncated)  # the 4-d head on the adapted prefix
    assert acc[-1] > 0.85 and acc[2] > 0.85


def test_geometry_terms_and_class_heads_train_together():
    x, y = labelled(300)
    res = fit_adaptor(x, supervised(steps=20, kind="linear", sim_weight=1.0, rank_weight=1.0), labels=y)
    assert {"loss@32", "ce@32"} <= set(res.history[-1]) and res.model.heads is not None


def test_bad_labels_and_weights_are_refused_with_the_fix():
    x, y = labelled(100)
    with pytest.raises(MRLError, match="label_weight is 0"):
        fit_adaptor(x, AdaptorConfig(DIMS, steps=2, progress=False), labels=y)
    with pytest.raises(MRLError, match="needs class labels"):
        fit_adaptor(x, supervised(steps=2))
    with pytest.raises(MRLError, match=r"shape \(100,\)"):
        fit_adaptor(x, supervised(steps=2), labels=y[:50])
    with pytest.raises(MRLError, match="integers"):
        fit_adaptor(x, supervised(steps=2), labels=y.astype(np.float32))
    with pytest.raises(MRLError, match="non-negative"):
        fit_adaptor(x, supervised(steps=2), labels=y - 1)
    with pytest.raises(MRLError, match="single class"):
        fit_adaptor(x, supervised(steps=2), labels=np.zeros(100, dtype=np.int64))
    with pytest.raises(MRLError, match="nothing would be trained"):
        AdaptorConfig(DIMS, sim_weight=0.0, rank_weight=0.0)
    with pytest.raises(MRLError, match="dropout"):
        supervised(dropout=1.0)
    with pytest.raises(MRLError, match="no class heads"):
        MatryoshkaAdaptor(32).logits(x)
    with pytest.raises(MRLError, match="at least 2 classes"):
        MatryoshkaAdaptor(32, num_classes=1, head_dims=DIMS)


def test_cli_adapt_with_labels_then_cascade_fit_and_eval(tmp_path):
    x, y = labelled(1200)
    for name, rows in (("train", slice(0, 600)), ("cal", slice(600, 900)), ("test", slice(900, 1200))):
        np.save(tmp_path / f"{name}.npy", x[rows])
        np.save(tmp_path / f"{name}_y.npy", y[rows])
    runner = CliRunner()
    a = tmp_path / "a"
    res = runner.invoke(app, ["adapt", str(tmp_path / "train.npy"), "--labels", str(tmp_path / "train_y.npy"), "--out", str(a), "--dims", "2,4,...,32", "--kind", "mlp", "--steps", "300", "--batch-size", "128", "--lr", "3e-3", "--sim-weight", "0", "--rank-weight", "0"])
    assert res.exit_code == 0, res.output
    assert "6-class heads at dims [2, 4, 8, 16, 32]" in res.output
    fit = ["cascade", "fit", str(a), "--features", str(tmp_path / "cal.npy"), "--labels", str(tmp_path / "cal_y.npy"), "--confidence", "0.95", "--objective", "final"]
    res = runner.invoke(app, fit)
    assert res.exit_code == 0, res.output
    manifest = json.loads((a / "manifest.json").read_text())
    assert "cascade.json" in manifest["files"]  # listed in the adaptor folder: a refit replaces it
    res = runner.invoke(app, ["cascade", "eval", str(a), "--features", str(tmp_path / "test.npy"), "--labels", str(tmp_path / "test_y.npy"), "--out", str(tmp_path / "report.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == 300 and report["expected_dim"] < 32 and report["accuracy"] > 0.85
    # The calibration rows are refused as the report rows, whatever --split says.
    res = runner.invoke(app, ["cascade", "eval", str(a), "--features", str(tmp_path / "cal.npy"), "--labels", str(tmp_path / "cal_y.npy")])
    assert res.exit_code == 2 and "calibrated on" in res.output
    res = runner.invoke(app, ["cascade", "fit", str(a), "--features", str(tmp_path / "cal.npy"), "--overwrite"])
    assert res.exit_code == 2 and "--labels Y.npy" in res.output
    res = runner.invoke(app, ["cascade", "fit", str(a), "--features", str(tmp_path / "cal.npy"), "--labels", str(tmp_path / "train_y.npy"), "--overwrite"])
    assert res.exit_code == 2 and "shape (300,)" in res.output
    before = (a / "cascade.json").read_bytes()
    res = runner.invoke(app, fit)
    assert res.exit_code == 2 and "--overwrite" in res.output and (a / "cascade.json").read_bytes() == before
    # --holdout confirms the thresholds on rows the search never saw; it needs a confidence level.
    res = runner.invoke(app, [*fit[:-4], "--holdout", "0.5", "--overwrite"])
    assert res.exit_code == 2 and "pass --confidence too" in res.output and (a / "cascade.json").read_bytes() == before
    res = runner.invoke(app, [*fit, "--holdout", "0.5", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((a / "cascade.json").read_text())["calibration"]["holdout"]["rows"] == 150
    # An adaptor without heads, and labels that do not match the embeddings, are refused.
    res = runner.invoke(app, ["adapt", str(tmp_path / "train.npy"), "--out", str(tmp_path / "plain"), "--dims", "2,4,...,32", "--steps", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["cascade", "fit", str(tmp_path / "plain"), "--features", str(tmp_path / "cal.npy"), "--labels", str(tmp_path / "cal_y.npy")])
    assert res.exit_code == 2 and "no class heads" in res.output
    res = runner.invoke(app, ["adapt", str(tmp_path / "train.npy"), "--labels", str(tmp_path / "cal_y.npy"), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "one class id per embedding row" in res.output and not (tmp_path / "b").exists()
