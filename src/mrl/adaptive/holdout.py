"""Cascade thresholds whose accuracy bound is checked on calibration rows the search never saw.

:func:`mrl.adaptive.cascade.fit_cascade` keeps the cheapest thresholds that pass its bound on the
rows it searched. Picking the cheapest passing candidate among thousands biases the bound: on new
data the cascade loses a little more than the confidence level promises. :func:`fit_cascade_holdout`
takes the selection out of the guarantee by fixed-sequence testing:

1. the calibration rows are split (seeded) into a *search* part and a *holdout* part;
2. on the search part, a ladder of cascades is fitted with ``max_drop`` scaled by ``ladder``
   (e.g. 0, 1/4, 1/2, 1 times the budget), and ordered from the most expensive (most conservative)
   to the cheapest, all before the holdout is read;
3. on the holdout part, they are tested in that order with the same one-sided bound (cascade minus
   full head, paired, normal approximation) and the search stops at the first that fails; the last
   one that passed is returned (the always-full-D cascade when none does).

Because the candidates and their order are fixed before the holdout is read, testing them one
after another at the full confidence level keeps the chance of returning a cascade that loses more
than ``max_drop`` at about ``1 - confidence_level``, with no multiplicity correction. The price is
that the thresholds are searched on fewer rows.

Example:
    >>> casc = fit_cascade_holdout(logits, labels, dims=(8, 16, 32, 64), max_drop=0.001, confidence_level=0.95)
    >>> casc.calibration["holdout"]["accepted"]
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from mrl.adaptive.cascade import Cascade, _check_logits, evaluate_cascade, fit_cascade, paired_lower_bound
from mrl.errors import MRLError
from mrl.nesting import validate_dims

LADDER = (0.0, 0.25, 0.5, 1.0)


def holdout_lower_bound(cascade: Cascade, logits: np.ndarray, labels: np.ndarray, confidence_level: float) -> float:
    """One-sided lower confidence bound of (cascade accuracy - full-head accuracy) on these rows, as a
    fraction: the bound :func:`fit_cascade` enforces (:func:`mrl.adaptive.cascade.paired_lower_bound`).

    Shape: logits ``[G, N, C]``, labels ``[N]``.
    """
    pred, _ = cascade.predict(logits)
    labels = np.asarray(labels)
    right, full_right = pred == labels, logits[-1].argmax(axis=-1) == labels
    z = NormalDist().inv_cdf(confidence_level)
    return float(paired_lower_bound(int(right.sum()), int(full_right.sum()), int((right != full_right).sum()), labels.shape[0], z))


def fit_cascade_holdout(
    logits: np.ndarray,
    labels: np.ndarray,
    dims: Sequence[int],
    *,
    max_drop: float = 0.001,
    confidence_level: float = 0.95,
    holdout: float = 0.5,
    ladder: Sequence[float] = LADDER,
    seed: int = 0,
    **fit_options: object,
) -> Cascade:
    """Fit cascades on a search part of the calibration rows and keep the cheapest one that the
    held-out part confirms, testing from the most conservative (see the module docstring).

    Args:
        logits: ``[G, N, C]`` head logits on the calibration rows; labels ``[N]``.
        dims: the heads' prefixes, strictly increasing (the last is the full head).
        max_drop: allowed accuracy loss vs the full head, as a fraction (0.001 = 0.1 points).
        confidence_level: one-sided level of the bound, used on both parts (e.g. 0.95).
        holdout: fraction of the rows held out for the check, in (0, 1).
        ladder: multiples of ``max_drop`` fitted on the search part, each in [0, 1].
        seed: seed of the split.
        fit_options: passed to :func:`fit_cascade` (``score``, ``objective``, ``n_candidates`` ...).

    Returns:
        The accepted :class:`Cascade`. Its ``calibration`` accuracy and cost are measured on the
        holdout rows, and ``calibration["holdout"]`` records every candidate tested.
    """
    dims = validate_dims(dims)
    logits = _check_logits(logits, labels, dims)
    if not 0.0 < holdout < 1.0:
        raise MRLError(f"holdout is the fraction of calibration rows kept for the check, in (0, 1); got {holdout}, e.g. 0.5.")
    if not 0.5 <= confidence_level < 1.0:
        raise MRLError(f"confidence_level must be in [0.5, 1), e.g. 0.95; got {confidence_level}.")
    steps = sorted({float(f) for f in ladder})
    if not steps or steps[0] < 0.0 or steps[-1] > 1.0:
        raise MRLError(f"ladder holds multiples of max_drop in [0, 1], e.g. {LADDER}; got {tuple(ladder)}.")
    n = logits.shape[1]
    n_hold = round(holdout * n)
    if n_hold < 2 or n - n_hold < 2:
        raise MRLError(f"{n} calibration rows are too few to split {holdout:.2f} / {1 - holdout:.2f}; pass more rows or another --holdout.")
    order = np.random.default_rng(seed).permutation(n)
    hold, search = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    labels = np.asarray(labels)
    candidates = [fit_cascade(logits[:, search], labels[search], dims, max_drop=max_drop * f, confidence_level=confidence_level, **fit_options) for f in steps]  # type: ignore[arg-type]
    ranked = sorted(zip(steps, candidates), key=lambda fc: -fc[1].calibration["expected_cost"])  # most conservative first
    score = str(fit_options.get("score", "maxprob"))
    objective = str(fit_options.get("objective", "cumulative"))
    always_full = Cascade(dims=dims, thresholds=(*([np.inf] * (len(dims) - 1)), -np.inf), score=score, objective=objective, max_drop=max_drop)
    accepted, accepted_factor, tested = always_full, None, []
    for factor, casc in ranked:
        bound = holdout_lower_bound(casc, logits[:, hold], labels[hold], confidence_level)
        passed = bound >= -max_drop - 1e-12
        tested.append({"max_drop_factor": factor, "search_expected_cost": casc.calibration["expected_cost"], "holdout_lower_bound": bound, "passed": passed})
        if not passed:
            break
        accepted, accepted_factor = casc, factor
    report = evaluate_cascade(accepted, logits[:, hold], labels[hold])
    accepted.max_drop = max_drop
    accepted.calibration = {
        "n": n,
        "search_rows": len(search),
        "full_accuracy": report["full_accuracy"],
        "accuracy": report["accuracy"],
        "expected_cost": report["expected_cost"] if accepted.objective == "cumulative" else report["expected_dim"],
        "objective": accepted.objective,
        "confidence_level": confidence_level,
        "holdout": {"rows": n_hold, "seed": seed, "accepted": accepted_factor, "tested": tested},
    }
    return accepted
