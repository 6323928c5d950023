"""Adaptive classification cascades: threshold fitting, evaluation, persistence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mrl.adaptive.cascade import Cascade, cascade_forward, confidence, evaluate_cascade, exit_stages, fit_cascade, oracle
from mrl.errors import MRLError

DIMS = (2, 4, 8, 16, 32, 64)


def synthetic_logits(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Heads that get more accurate with the prefix size, like a Matryoshka model's."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    logits = rng.normal(size=(len(DIMS), n, 10)).astype(np.float32)
    strength = np.linspace(0.8, 4.0, len(DIMS))[:, None] * rng.uniform(0.3, 1.7, n)[None, :]
    logits[:, np.arange(n), labels] += strength
    return logits, labels


def test_fit_keeps_accuracy_and_cuts_cost() -> None:
    logits, labels = synthetic_logits()
    for score in ("maxprob", "margin"):
        for objective in ("cumulative", "final"):
            casc = fit_cascade(logits, labels, DIMS, max_drop=0.001, score=score, objective=objective)
            rep = evaluate_cascade(casc, logits, labels)
            assert rep["accuracy"] >= rep["full_accuracy"] - 0.001 - 1e-12  # on the calibration split itself
            assert rep["expected_dim"] < DIMS[-1] / 2 and rep["expected_cost"] < sum(DIMS)
            assert casc.thresholds[-1] == -np.inf
            assert abs(sum(rep["exit_fraction"].values()) - 1.0) < 1e-9


def test_predict_matches_per_sample_reference() -> None:
    logits, labels = synthetic_logits(500)
    casc = fit_cascade(logits, labels, DIMS, max_drop=0.01)
    pred, ex = casc.predict(logits)
    probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    for n in range(0, 500, 7):  # a plain loop as the reference
        for g in range(len(DIMS)):
            if g == len(DIMS) - 1 or probs[g, n].max() >= casc.thresholds[g]:
                assert ex[n] == g and pred[n] == logits[g, n].argmax()
                break


def test_larger_budget_never_costs_more() -> None:
    logits, labels = synthetic_logits()
    costs = [fit_cascade(logits, labels, DIMS, max_drop=d).calibration["expected_cost"] for d in (0.0, 0.005, 0.02)]
    assert costs[0] >= costs[1] >= costs[2]


def test_exit_stages_and_confidence() -> None:
    conf = np.array([[0.9, 0.2, 0.5], [0.95, 0.6, 0.1], [0.0, 0.0, 0.0]])
    assert exit_stages(conf, np.array([0.8, 0.5, -np.inf])).tolist() == [0, 1, 2]
    logits = np.log(np.array([[[0.7, 0.2, 0.1]]]))
    assert np.allclose(confidence(logits, "margin")[1], 0.5) and np.allclose(confidence(logits, "maxprob")[1], 0.7)


def test_oracle_bound() -> None:
    labels = np.array([0, 1, 2])
    # sample 0 right at every head, sample 1 right only at the last, sample 2 never right
    logits = np.zeros((3, 3, 3), dtype=np.float32)
    logits[:, 0, 0] = 5
    logits[:, 1, 0] = 5
    logits[2, 1, 1] = 10
    logits[:, 2, 0] = 5
    o = oracle(logits, labels, (4, 8, 16))
    assert o["accuracy"] == pytest.approx(2 / 3)
    assert o["expected_dim_when_right"] == pytest.approx((4 + 16) / 2)
    assert o["expected_dim"] == pytest.approx((4 + 16 + 16) / 3)


def test_report_fields_and_fixed_prefix() -> None:
    logits, labels = synthetic_logits(seed=1)
    casc = fit_cascade(logits, labels, DIMS)
    test_logits, test_labels = synthetic_logits(seed=2)
    rep = evaluate_cascade(casc, test_logits, test_labels)
    per_dim = rep["per_dim_accuracy"]
    fixed = rep["fixed_dim"]
    assert per_dim[str(fixed)] >= rep["accuracy"] - 1e-12
    assert all(per_dim[str(d)] < rep["accuracy"] for d in DIMS if d < fixed)
    assert rep["ratio_final"] == pytest.approx(fixed / rep["expected_dim"])
    assert rep["oracle"]["expected_dim"] <= rep["expected_dim"]


def test_save_load_roundtrip(tmp_path) -> None:
    logits, labels = synthetic_logits(800)
    casc = fit_cascade(logits, labels, DIMS)
    path = tmp_path / "cascade.json"
    casc.save(path)
    text = path.read_text()
    assert "inf" not in text.replace("threshold_encoding", "").replace("(+inf", "").replace("(-inf", "")  # strict JSON: no "inf" strings
    doc = json.loads(text)
    assert doc["thresholds"][-1] == -1.0 and doc["schema"] == "mrl.cascade/1"
    back = Cascade.load(path)
    assert back.thresholds == casc.thresholds and back.dims == casc.dims
    assert (back.predict(logits)[0] == casc.predict(logits)[0]).all()
    never = Cascade(dims=DIMS, thresholds=(np.inf,) * (len(DIMS) - 1) + (-np.inf,))
    never.save(path)
    assert json.loads(path.read_text())["thresholds"] == [None] * (len(DIMS) - 1) + [-1.0]
    assert Cascade.load(path).thresholds == never.thresholds  # +inf and -inf round-trip exactly
    path.write_text(text.replace('"max_drop": 0.001', '"max_drop": 0.5'))
    with pytest.raises(MRLError, match="checksum"):
        Cascade.load(path)
    path.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(MRLError, match="cascade fit"):
        Cascade.load(path)


def test_bad_inputs() -> None:
    logits, labels = synthetic_logits(100)
    with pytest.raises(MRLError, match="heads"):
        fit_cascade(logits, labels, DIMS[:-1])
    bad = logits.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(MRLError, match="NaN"):
        fit_cascade(bad, labels, DIMS)
    with pytest.raises(MRLError, match="max_drop"):
        fit_cascade(logits, labels, DIMS, max_drop=1.5)
    with pytest.raises(MRLError, match="score"):
        fit_cascade(logits, labels, DIMS, score="entropy")
    with pytest.raises(MRLError, match="labels"):
        fit_cascade(logits, labels[:-1], DIMS)
    with pytest.raises(MRLError, match="increasing"):
        fit_cascade(logits, labels, (2, 4, 4, 16, 32, 64))


def test_cascade_forward_matches_logit_cascade() -> None:
    from mrl.models.classifier import build_classifier, encode

    torch.manual_seed(0)
    for mode in ("mrl", "mrl-e"):
        model = build_classifier(backbone="small_resnet", embed_dim=16, num_classes=10, matryoshka_dims=(4, 8, 16), mode=mode, width=4).eval()
        x = torch.randn(64, 1, 28, 28)
        _, logits = encode(model, x)
        lg = logits.numpy()
        labels = lg[-1].argmax(-1)
        casc = fit_cascade(lg, labels, (4, 8, 16), max_drop=0.2)
        pred, stage = cascade_forward(model, x, casc)
        ref_pred, ref_stage = casc.predict(lg)
        assert (stage.numpy() == ref_stage).all() and (pred.numpy() == ref_pred).all()


def test_cli_fit_eval_end_to_end(tiny_config, fmnist_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from mrl.cli import app
    from mrl.models.classifier import build_classifier
    from mrl.train.checkpoint import save_model

    run = tmp_path / "run"  # an untrained model is enough to exercise the commands end to end
    cfg = tiny_config.to_dict()
    torch.manual_seed(0)
    net = build_classifier(backbone=cfg["backbone"], embed_dim=cfg["embed_dim"], num_classes=10, matryoshka_dims=cfg["matryoshka_dims"], mode=cfg["mode"], width=cfg["width"])
    save_model(run / "model.safetensors", net, cfg, 10)
    runner = CliRunner()
    res = runner.invoke(app, ["cascade", "fit", str(run), "--data-root", str(fmnist_dir), "--max-drop", "1.0"])
    assert res.exit_code == 0, res.output
    casc = Cascade.load(run / "cascade.json")
    assert casc.calibration["split"] == "val" and casc.max_drop == pytest.approx(0.01)
    res = runner.invoke(app, ["cascade", "eval", str(run), "--data-root", str(fmnist_dir), "--out", str(tmp_path / "rep.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["n"] == 300 and 0 < rep["expected_dim"] <= 32
    res = runner.invoke(app, ["cascade", "eval", str(run), "--split", "val", "--data-root", str(fmnist_dir)])
    assert res.exit_code == 2 and "disjoint" in res.output
    res = runner.invoke(app, ["cascade", "fit", str(run), "--data-root", str(fmnist_dir)])
    assert res.exit_code == 2 and "overwrite" in res.output


def test_confidence_level_is_more_conservative() -> None:
    logits, labels = synthetic_logits()
    plain = fit_cascade(logits, labels, DIMS, max_drop=0.002)
    safe = fit_cascade(logits, labels, DIMS, max_drop=0.002, confidence_level=0.95)
    assert safe.calibration["expected_cost"] >= plain.calibration["expected_cost"]
    assert safe.calibration["accuracy"] >= plain.calibration["accuracy"]
    with pytest.raises(MRLError, match="confidence_level"):
        fit_cascade(logits, labels, DIMS, confidence_level=1.0)
