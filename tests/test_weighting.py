import math

import pytest
import torch

from mrl.errors import MRLError
from mrl.losses import MatryoshkaEmbeddingLoss, MatryoshkaLoss
from mrl.train import TrainConfig, train
from mrl.train.checkpoint import load_checkpoint
from mrl.weighting import WEIGHTINGS, DynamicWeightAverage, FixedWeighting, FocalWeighting, UncertaintyWeighting, UniformWeighting, Weighting, check_weights, create_weighting

DIMS = (4, 8, 16)
ALL = torch.ones(3, dtype=torch.bool)
ADAPTIVE = ["uncertainty", "dwa", "focal"]


def test_registry_holds_the_strategies():
    assert {"uniform", "fixed", "uncertainty", "dwa", "focal"} <= set(WEIGHTINGS)
    assert isinstance(create_weighting("uniform", 3), UniformWeighting)
    assert isinstance(create_weighting("fixed", 3, weights=[2, 1, 1]), FixedWeighting)
    assert all(isinstance(create_weighting(n, 3), Weighting) for n in ADAPTIVE)


def test_uncertainty_is_kendall_and_learns_inverse_loss_weights():
    w = UncertaintyWeighting(3)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.5, -0.2, 0.0]))
    losses = torch.tensor([2.0, 1.0, 0.5])
    expected = sum(math.exp(-s) * loss + s for s, loss in zip([0.5, -0.2, 0.0], losses.tolist()))
    assert w(losses, ALL).item() == pytest.approx(expected, rel=1e-6)
    # an inactive dim contributes neither its loss nor its log-variance
    assert w(losses, torch.tensor([True, False, True])).item() == pytest.approx(expected - (math.exp(0.2) * 1.0 - 0.2), rel=1e-6)
    # trained on fixed losses, exp(-s_i) -> 1 / L_i (the optimum of exp(-s) L + s)
    w = UncertaintyWeighting(3)
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        w(losses, ALL).backward()
        opt.step()
    assert torch.allclose(w.weights(), 1 / losses, rtol=1e-3)


def test_dwa_follows_the_loss_ratio_softmax():
    w = DynamicWeightAverage(3, temperature=2.0)
    assert torch.equal(w.weights(), torch.ones(3))
    w.on_epoch_end([2.0, 1.0, 1.0])
    assert torch.equal(w.weights(), torch.ones(3))  # needs two epochs
    w.on_epoch_end([1.8, 0.5, 1.0])
    r = torch.tensor([0.9, 0.5, 1.0])
    assert torch.allclose(w.weights(), 3 * torch.softmax(r / 2.0, 0), atol=1e-6)
    assert w.weights().sum().item() == pytest.approx(3.0)
    assert w.weights()[1] < w.weights()[0] < w.weights()[2]  # the prefix that improved least weighs most


def test_focal_boosts_lagging_prefixes_and_keeps_the_best_at_one():
    w = FocalWeighting(3, gamma=1.0, max_weight=3.0, momentum=0.0)
    losses = torch.tensor([2.0, 1.0, 0.5], requires_grad=True)
    first = w(losses, ALL)  # no statistics yet: uniform
    assert first.item() == pytest.approx(3.5)
    assert torch.allclose(w.weights(), torch.tensor([3.0, 2.0, 1.0]))  # 4 capped at max_weight
    second = w(losses, ALL)
    assert second.item() == pytest.approx(3 * 2 + 2 * 1 + 0.5)
    second.backward()
    assert torch.allclose(losses.grad, torch.tensor([3.0, 2.0, 1.0]))  # weights are constants
    w.eval()  # no updates outside training
    w(torch.tensor([0.1, 5.0, 5.0]), ALL)
    assert torch.allclose(w.weights(), torch.tensor([3.0, 2.0, 1.0]))


def test_focal_uses_the_sync_hook_and_skips_unsampled_dims():
    w = FocalWeighting(3, momentum=0.5)
    calls = []
    w.sync = lambda t: calls.append(t.clone()) or t * 1.0
    w(torch.tensor([2.0, 1.0, 1.0]), ALL)
    w(torch.tensor([4.0, 9.0, 3.0]), torch.tensor([True, False, True]))
    assert len(calls) == 2 and calls[1].shape == (6,)
    assert torch.allclose(w.ema, torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["uniform", "fixed", *ADAPTIVE])
def test_every_strategy_trains_both_losses(name):
    torch.manual_seed(0)
    kwargs = {"weights": [2, 1, 1]} if name == "fixed" else {}
    for make, args in (
        (lambda w: MatryoshkaLoss(DIMS, weighting=w), (torch.randn(3, 8, 5, requires_grad=True), torch.randint(0, 5, (8,)))),
        (lambda w: MatryoshkaEmbeddingLoss(DIMS, weighting=w), (torch.randn(8, 16, requires_grad=True), torch.randn(8, 16, requires_grad=True))),
    ):
        weighting = create_weighting(name, 3, **kwargs)
        loss = make(weighting)
        for _ in range(2):
            out = loss(*args)
            out.total.backward()
        weighting.on_epoch_end(out.per_dim.tolist())
        weighting.on_epoch_end((out.per_dim * 0.9).tolist())
        assert math.isfinite(out.total.item()) and args[0].grad.abs().sum() > 0
        assert weighting.weights().shape == (3,) and bool((weighting.weights() > 0).all())
        if name == "uncertainty":
            assert weighting.log_vars.grad is not None and weighting.log_vars.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ADAPTIVE)
def test_state_dict_round_trip_restores_the_weights(name):
    a = create_weighting(name, 3)
    for losses in ([2.0, 1.0, 0.5], [1.5, 0.9, 0.5], [1.2, 0.8, 0.45]):
        a(torch.tensor(losses), ALL)
        a.on_epoch_end(losses)
    if name == "uncertainty":
        with torch.no_grad():
            a.log_vars.add_(torch.tensor([0.3, -0.1, 0.2]))
    assert not torch.allclose(a.weights(), torch.ones(3))
    b = create_weighting(name, 3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.weights(), b.weights())


def test_resume_restores_adaptive_weights(tiny_config, tmp_path):
    cfg = tiny_config.replace(epochs=3, weighting="dwa", train_subset=400, threads=1)
    straight = train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b", stop_after_epoch=2)
    tensors, _ = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert int(tensors["weighting.epochs_seen"]) == 2 and "weighting.history" in tensors
    resumed = train(cfg, tmp_path / "b", resume=True)
    weights = [k for k in straight.final if k.startswith("weight@")]
    assert weights and any(straight.final[k] != 1.0 for k in weights)  # DWA moved after 2 epochs
    for key, value in straight.final.items():
        if key != "seconds":
            assert resumed.final[key] == pytest.approx(value, abs=1e-6), key


def test_resume_restores_learned_uncertainty(tiny_config, tmp_path):
    cfg = tiny_config.replace(epochs=2, weighting="uncertainty", train_subset=400, threads=1)
    straight = train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b", stop_after_epoch=1)
    resumed = train(cfg, tmp_path / "b", resume=True)
    for d in cfg.matryoshka_dims:
        assert straight.history[0][f"weight@{d}"] != 1.0
        assert resumed.final[f"weight@{d}"] == pytest.approx(straight.final[f"weight@{d}"], abs=1e-6)
        assert resumed.final[f"val_top1@{d}"] == pytest.approx(straight.final[f"val_top1@{d}"], abs=1e-6)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1, 2], "one weight per dim"),
        ([1, 2, 3, 4], "one weight per dim"),
        ([1, -1, 1], ">= 0"),
        ([1, float("nan"), 1], ">= 0"),
        ([0, 0, 0], "all zero"),
        ("1,2,3", "list of numbers"),
        ([1, "x", 1], "list of numbers"),
    ],
)
def test_bad_weight_lists(weights, match):
    with pytest.raises(MRLError, match=match):
        check_weights(weights, 3)
    with pytest.raises(MRLError, match=match):
        create_weighting("fixed", 3, weights=weights)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("nope", {}, "unknown weighting 'nope'; choose one of"),
        ("fixed", {}, "needs \\['weights'\\]"),
        ("dwa", {"temp": 2}, "does not take \\['temp'\\]"),
        ("dwa", {"temperature": 0}, "temperature"),
        ("focal", {"gamma": -1}, "gamma"),
        ("focal", {"max_weight": 0.5}, "max_weight"),
        ("focal", {"momentum": 1.0}, "momentum"),
        ("uncertainty", {"init_log_var": float("inf")}, "init_log_var"),
    ],
)
def test_bad_strategy_names_and_options(name, kwargs, match):
    with pytest.raises(MRLError, match=match):
        create_weighting(name, 3, **kwargs)


def test_config_rejects_bad_weighting_early():
    with pytest.raises(MRLError, match="unknown weighting"):
        TrainConfig(weighting="gradnorm-typo")
    with pytest.raises(MRLError, match="one weight per dim"):
        TrainConfig(matryoshka_weights=[2, 1])
    with pytest.raises(MRLError, match="only used with weighting 'fixed'"):
        TrainConfig(weighting="dwa", matryoshka_weights=[1] * 9)
    with pytest.raises(MRLError, match="needs"):
        TrainConfig(weighting="fixed")
    assert TrainConfig(weighting="focal", weighting_kwargs={"gamma": 2.0}).build_weighting().gamma == 2.0


def test_wrong_number_of_losses():
    with pytest.raises(MRLError, match="expected 3 per-dim losses"):
        create_weighting("focal", 3)(torch.ones(2), torch.ones(2, dtype=torch.bool))
