"""Cascades confirmed on held-out calibration rows: the accepted candidate passed the bound on rows
the search never saw, testing stops at the first failure, and bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest
from test_cascade import DIMS, synthetic_logits

from mrl.adaptive.cascade import evaluate_cascade, fit_cascade
from mrl.adaptive.holdout import fit_cascade_holdout, holdout_lower_bound
from mrl.errors import MRLError


def test_accepted_cascade_passed_the_holdout_in_order() -> None:
    logits, labels = synthetic_logits(6000)
    casc = fit_cascade_holdout(logits, labels, DIMS, max_drop=0.005, confidence_level=0.95, objective="final")
    info = casc.calibration["holdout"]
    assert info["rows"] == 3000 and casc.calibration["search_rows"] == 3000 and casc.max_drop == 0.005
    costs = [t["search_expected_cost"] for t in info["tested"]]
    assert costs == sorted(costs, reverse=True)  # most conservative first
    passed = [t["passed"] for t in info["tested"]]
    assert all(passed[:-1]) and (passed[-1] or len(passed) > 1 or info["accepted"] is None)  # stops at the first failure
    assert info["accepted"] is not None and casc.calibration["expected_cost"] < DIMS[-1]  # it does exit early here
    accepted = [t for t in info["tested"] if t["passed"]][-1]
    assert accepted["max_drop_factor"] == info["accepted"] and accepted["holdout_lower_bound"] >= -0.005
    fresh = evaluate_cascade(casc, *synthetic_logits(20000, seed=7))
    assert fresh["drop_points"] <= 0.5


def test_testing_stops_at_the_first_failure(monkeypatch) -> None:
    import mrl.adaptive.holdout as holdout

    logits, labels = synthetic_logits(2000)
    verdicts = iter([0.0, -1.0, 0.0, 0.0])  # the second candidate fails; later ones would pass
    monkeypatch.setattr(holdout, "holdout_lower_bound", lambda *a, **k: next(verdicts))
    casc = holdout.fit_cascade_holdout(logits, labels, DIMS, max_drop=0.002)
    tested = casc.calibration["holdout"]["tested"]
    assert [t["passed"] for t in tested] == [True, False]
    assert casc.calibration["holdout"]["accepted"] == tested[0]["max_drop_factor"]


def test_nothing_confirmed_means_always_full_width(monkeypatch) -> None:
    import mrl.adaptive.holdout as holdout

    logits, labels = synthetic_logits(2000)
    monkeypatch.setattr(holdout, "holdout_lower_bound", lambda *a, **k: -1.0)
    casc = holdout.fit_cascade_holdout(logits, labels, DIMS, max_drop=0.002)
    assert casc.calibration["holdout"]["accepted"] is None and len(casc.calibration["holdout"]["tested"]) == 1
    assert all(t == np.inf for t in casc.thresholds[:-1]) and casc.thresholds[-1] == -np.inf
    _, exits = casc.predict(logits)
    assert (exits == len(DIMS) - 1).all() and casc.calibration["expected_cost"] == sum(DIMS)  # cumulative: every head


def test_paired_lower_bound_matches_the_fit_criterion() -> None:
    logits, labels = synthetic_logits(3000)
    casc = fit_cascade(logits, labels, DIMS, max_drop=0.002, confidence_level=0.95)
    assert holdout_lower_bound(casc, logits, labels, 0.95) >= -0.002 - 1e-12  # what fit_cascade enforced
    full = fit_cascade(logits, labels, DIMS, max_drop=0.0)
    full.thresholds = (*([np.inf] * (len(DIMS) - 1)), -np.inf)
    assert holdout_lower_bound(full, logits, labels, 0.95) == 0.0


def test_bad_settings_are_refused() -> None:
    logits, labels = synthetic_logits(300)
    with pytest.raises(MRLError, match="holdout is the fraction"):
        fit_cascade_holdout(logits, labels, DIMS, holdout=1.0)
    with pytest.raises(MRLError, match="ladder"):
        fit_cascade_holdout(logits, labels, DIMS, ladder=(0.5, 2.0))
    with pytest.raises(MRLError, match="confidence_level"):
        fit_cascade_holdout(logits, labels, DIMS, confidence_level=0.3)
    with pytest.raises(MRLError, match="too few"):
        fit_cascade_holdout(logits[:, :3], labels[:3], DIMS, holdout=0.2)
