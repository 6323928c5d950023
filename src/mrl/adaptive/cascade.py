"""Adaptive classification: stop at the smallest Matryoshka prefix whose head is confident.

A cascade over the model's heads ``dims = (d_1 < ... < d_G)`` evaluates head 1; if its confidence
reaches threshold ``t_1`` the sample exits with that prediction, otherwise head 2 is evaluated, and so
on; the last head (full ``D``) always answers. Confidence is the max softmax probability
(``score="maxprob"``) or the margin between the two largest probabilities (``score="margin"``).

:func:`fit_cascade` learns the thresholds on a calibration split (e.g. Fashion-MNIST *val*) so that
accuracy stays within ``max_drop`` of the full-``D`` head (default 0.001 = 0.1 points) at the lowest
expected cost, then :func:`evaluate_cascade` reports on a disjoint split (e.g. *test*).

Search: thresholds are chosen by coordinate descent over per-stage candidate values (quantiles of
that stage's confidences, plus ``+inf`` = "never exit here"), starting from the best single shared
threshold and from "always go to full D"; every candidate of a stage is evaluated at once
(``[K, N]`` arrays), so there is no per-sample loop. The cost minimised is ``objective="cumulative"``
(sum of the dims of every head evaluated: what inference really pays) or ``"final"`` (the dim of the
exit head: the paper's "expected dims").

Example:
    >>> logits = np.random.randn(4, 100, 10).astype("float32"); labels = np.random.randint(0, 10, 100)
    >>> casc = fit_cascade(logits, labels, dims=(8, 16, 32, 64))
    >>> report = evaluate_cascade(casc, logits, labels)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from mrl.adaptive.cost import cumulative_dims
from mrl.checks import check_labels
from mrl.errors import MRLError
from mrl.io import check_seal, read_json, write_manifest
from mrl.nesting import validate_dims

SCORES = ("maxprob", "margin")
OBJECTIVES = ("cumulative", "final")
SCHEMA = "mrl.cascade/1"
CASCADE_NAME = "cascade.json"


def _check_logits(logits: np.ndarray, labels: np.ndarray | None, dims: Sequence[int]) -> np.ndarray:
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().numpy()
    if not isinstance(logits, np.ndarray) or logits.ndim != 3:
        raise MRLError(f"logits must be a [G, N, C] array (one logit matrix per head), got {getattr(logits, 'shape', type(logits).__name__)}.")
    if not np.issubdtype(logits.dtype, np.floating):
        raise MRLError(f"logits must be floating point, got {logits.dtype}.")
    if logits.shape[0] != len(dims):
        raise MRLError(f"logits hold {logits.shape[0]} heads but {len(dims)} dims were given ({tuple(dims)}); pass the model's matryoshka_dims.")
    if logits.shape[1] == 0 or logits.shape[2] < 2:
        raise MRLError(f"logits need at least one sample and two classes, got shape {logits.shape}.")
    if not np.isfinite(logits).all():
        raise MRLError("logits hold NaN/Inf values; the model or its inputs are broken.")
    if labels is not None:
        check_labels(labels, logits.shape[1])
        if int(labels.max()) >= logits.shape[2]:
            raise MRLError(f"labels go up to {int(labels.max())} but the heads have {logits.shape[2]} classes.")
    return logits


def confidence(logits: np.ndarray, score: str = "maxprob") -> tuple[np.ndarray, np.ndarray]:
    """Per-head predictions and confidences.

    Shape: logits ``[G, N, C]`` -> (predictions ``[G, N]`` int64, confidences ``[G, N]`` float64).
    """
    if score not in SCORES:
        raise MRLError(f"score must be one of {SCORES}, got {score!r}.")
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    top2 = -np.partition(-p, 1, axis=-1)[..., :2]  # [G, N, 2], largest first
    pred = logits.argmax(axis=-1)
    conf = top2[..., 0] if score == "maxprob" else top2[..., 0] - top2[..., 1]
    return pred.astype(np.int64), conf


def exit_stages(conf: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Index of the first stage whose confidence reaches its threshold (the last stage always exits).

    Shape: conf ``[G, N]``, thresholds ``[G]`` -> ``[N]`` int64.
    """
    passes = conf >= np.asarray(thresholds, dtype=np.float64)[:, None]
    passes[-1] = True
    return passes.argmax(axis=0)


@dataclass
class Cascade:
    """Learned per-stage thresholds. ``thresholds[-1]`` is ``-inf`` (the full head always answers);
    ``+inf`` means "never exit at this stage". In JSON see :data:`THRESHOLD_ENCODING`."""

    dims: tuple[int, ...]
    thresholds: tuple[float, ...]
    score: str = "maxprob"
    objective: str = "cumulative"
    max_drop: float = 0.001
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dims = validate_dims([int(d) for d in self.dims])
        if len(self.thresholds) != len(self.dims):
            raise MRLError(f"a cascade needs one threshold per dim: {len(self.thresholds)} thresholds for {len(self.dims)} dims.")
        if self.score not in SCORES:
            raise MRLError(f"score must be one of {SCORES}, got {self.score!r}.")
        self.thresholds = tuple(float(t) for t in self.thresholds)

    def predict(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cascade predictions from all heads' logits (as if computed lazily).

        Shape: logits ``[G, N, C]`` -> (predictions ``[N]``, exit stage index ``[N]``).
        """
        logits = _check_logits(logits, None, self.dims)
        pred, conf = confidence(logits, self.score)
        ex = exit_stages(conf, np.asarray(self.thresholds))
        return pred[ex, np.arange(pred.shape[1])], ex

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dims"] = list(self.dims)
        d["thresholds"] = [_encode_threshold(t) for t in self.thresholds]
        d["threshold_encoding"] = THRESHOLD_ENCODING
        d["schema"] = SCHEMA
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cascade:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise MRLError(f"not a cascade file (expected schema {SCHEMA!r}, got {d.get('schema') if isinstance(d, dict) else type(d).__name__}); refit it with `mrl cascade fit`.")
        try:
            return cls(dims=tuple(d["dims"]), thresholds=tuple(_decode_threshold(t) for t in d["thresholds"]), score=d["score"], objective=d.get("objective", "cumulative"), max_drop=float(d["max_drop"]), calibration=d.get("calibration", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise MRLError(f"cascade file is missing or has a malformed field ({exc}); refit it with `mrl cascade fit`.") from exc

    def save(self, path: str | Path) -> None:
        """Atomically write the thresholds as JSON, sealed with its own checksum (see
        :data:`THRESHOLD_ENCODING` for the two infinite thresholds)."""
        write_manifest(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        """Read a cascade JSON; its checksum (when present) must match."""
        doc = read_json(path)
        if isinstance(doc, dict) and "checksum" in doc:
            check_seal(doc, path)
        return cls.from_dict(doc)


# JSON has no infinity: the two infinite thresholds are stored as a null and a negative number.
THRESHOLD_ENCODING = "null = never exit at this stage (+inf); a negative number = always exit here (-inf; confidences lie in [0, 1])"


def _encode_threshold(t: float) -> float | None:
    if t == np.inf:
        return None
    return -1.0 if t == -np.inf else float(t)


def _decode_threshold(t: Any) -> float:
    if t is None:
        return float("inf")
    value = float(t)  # also reads the strings "inf"/"-inf" of older files
    if isinstance(t, bool) or value != value:
        raise ValueError(f"threshold {t!r} is not a number")
    return -np.inf if value < 0 else value


def _stage_candidates(conf_g: np.ndarray, n: int) -> np.ndarray:
    """About ``n`` thresholds at quantiles of ``conf_g``, each halfway between two observed values
    (so tiny float differences at inference cannot flip a decision), plus ``-inf`` (always exit
    here) and ``+inf`` (never exit here)."""
    u = np.unique(conf_g)
    idx = np.unique(np.linspace(1, len(u) - 1, n).round().astype(np.int64)) if len(u) > 1 else np.zeros(0, dtype=np.int64)
    mids = (u[idx - 1] + u[idx]) / 2.0
    return np.concatenate([[-np.inf], mids, [np.inf]])


def _best_for_stage(g: int, cand: np.ndarray, thresholds: np.ndarray, conf: np.ndarray, correct: np.ndarray, cost_of: np.ndarray, feasible_fn: Any) -> tuple[float, float, int]:
    """Try every candidate threshold at stage ``g`` with the others fixed; all candidates at once.

    Returns (threshold, mean cost, number correct) of the cheapest feasible candidate (ties: more correct).
    """
    _, N = conf.shape
    passes = conf >= thresholds[:, None]
    passes[-1] = True
    before = passes[:g].any(axis=0) if g else np.zeros(N, dtype=bool)
    first_before = passes[:g].argmax(axis=0) if g else np.zeros(N, dtype=np.int64)
    after = passes[g + 1 :].argmax(axis=0) + g + 1  # always defined: the last stage passes
    take_g = conf[g][None, :] >= cand[:, None]  # [K, N]
    ex = np.where(before[None, :], first_before[None, :], np.where(take_g, g, after[None, :]))  # [K, N]
    cols = np.arange(N)[None, :]
    hit = correct[ex, cols]
    n_correct = hit.sum(axis=1)
    cost = cost_of[ex].mean(axis=1)
    feasible = feasible_fn(n_correct, (hit != correct[-1][None, :]).sum(axis=1))
    if not feasible.any():
        return float(thresholds[g]), np.inf, -1
    order = np.lexsort((-n_correct, cost))  # cheapest first, then most correct
    best = order[feasible[order]][0]
    return float(cand[best]), float(cost[best]), int(n_correct[best])


def paired_lower_bound(n_correct: Any, full_correct: int, n_disagree: Any, n: int, z: float) -> np.ndarray:
    """One-sided lower bound of (cascade accuracy - full-head accuracy), as a fraction, from counts.

    Per sample the paired difference is -1, 0 or +1, so its mean is ``(n_correct - full_correct) / n``
    and its mean square is ``n_disagree / n`` (samples where the two are not both right or both
    wrong); the bound is the mean minus ``z`` standard errors (normal approximation).
    Shape: ``n_correct`` and ``n_disagree`` scalars or ``[K]`` (one per candidate) -> same shape.
    """
    diff = (np.asarray(n_correct, dtype=np.float64) - full_correct) / n
    se = np.sqrt(np.maximum(np.asarray(n_disagree, dtype=np.float64) / n - diff**2, 0.0) / n)
    return diff - z * se


def fit_cascade(logits: np.ndarray, labels: np.ndarray, dims: Sequence[int], *, max_drop: float = 0.001, score: str = "maxprob", objective: str = "cumulative", confidence_level: float | None = None, n_candidates: int = 200, max_passes: int = 10) -> Cascade:
    """Learn per-stage thresholds on a calibration split.

    Args:
        logits: ``[G, N, C]`` head logits, one matrix per prefix in ``dims``.
        labels: ``[N]`` integer labels.
        dims: the prefixes of the heads, strictly increasing (the last is the full head).
        max_drop: allowed accuracy loss vs the last (full-D) head, as a fraction (0.001 = 0.1 points).
        score: ``"maxprob"`` (max softmax) or ``"margin"`` (top-1 minus top-2 probability).
        objective: minimise ``"cumulative"`` cost (sum of dims evaluated) or the ``"final"`` exit dim.
        confidence_level: if given (e.g. 0.95), require the *one-sided lower confidence bound* of the
            paired accuracy difference (cascade minus full head, per sample in {-1, 0, 1}) to stay
            above ``-max_drop`` instead of the point estimate: thresholds then hold on new data with
            that probability (normal approximation) instead of only on the calibration split. The
            search keeps the cheapest thresholds that pass, and that selection makes the realised
            coverage lower than nominal (benchmarks/RESULTS.md, section cascade-holdout);
            :func:`mrl.adaptive.holdout.fit_cascade_holdout` confirms them on rows the search never saw.
        n_candidates: quantiles of each stage's confidence tried as thresholds.

    Returns:
        :class:`Cascade` with the thresholds and calibration statistics.
    """
    dims = validate_dims(dims)
    logits = _check_logits(logits, labels, dims)
    if not 0.0 <= max_drop < 1.0:
        raise MRLError(f"max_drop is an accuracy fraction in [0, 1), got {max_drop}; e.g. 0.001 for 0.1 points.")
    if objective not in OBJECTIVES:
        raise MRLError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
    pred, conf = confidence(logits, score)
    correct = pred == np.asarray(labels)[None, :]  # [G, N]
    G, N = conf.shape
    cost_of = cumulative_dims(dims).astype(np.float64) if objective == "cumulative" else np.asarray(dims, dtype=np.float64)
    full_correct = int(correct[-1].sum())
    if confidence_level is not None and not 0.5 <= confidence_level < 1.0:
        raise MRLError(f"confidence_level must be in [0.5, 1), e.g. 0.95; got {confidence_level}.")
    z = NormalDist().inv_cdf(confidence_level) if confidence_level is not None else 0.0

    def feasible_fn(n_correct: np.ndarray, n_disagree: np.ndarray) -> np.ndarray:
        return paired_lower_bound(n_correct, full_correct, n_disagree, N, z) >= -max_drop - 1e-12

    def evaluate(th: np.ndarray) -> tuple[float, int, bool]:
        ex = exit_stages(conf, th)
        hit = correct[ex, np.arange(N)]
        return float(cost_of[ex].mean()), int(hit.sum()), bool(feasible_fn(hit.sum(), (hit != correct[-1]).sum()))

    # Start 1: one threshold shared by every stage (a 1-D scan, all candidates at once).
    shared = _stage_candidates(conf[:-1].ravel(), n_candidates)
    passes = conf[None, :-1, :] >= shared[:, None, None]  # [K, G-1, N]
    ex = np.where(passes.any(axis=1), passes.argmax(axis=1), G - 1)
    hit = correct[ex, np.arange(N)[None, :]]
    ok = feasible_fn(hit.sum(axis=1), (hit != correct[-1][None, :]).sum(axis=1))
    costs = np.where(ok, cost_of[ex].mean(axis=1), np.inf)
    t_shared = shared[int(np.argmin(costs))] if ok.any() else np.inf
    starts = [np.full(G, np.inf), np.full(G, t_shared)]
    cands = [_stage_candidates(conf[g], n_candidates) for g in range(G - 1)]
    best_th, best_cost = None, np.inf
    for th in starts:
        th = th.copy()
        th[-1] = -np.inf
        cur_cost, _, _ = evaluate(th)
        for _ in range(max_passes):
            improved = False
            for g in range(G - 1):
                t, c, _ = _best_for_stage(g, cands[g], th, conf, correct, cost_of, feasible_fn)
                if c < cur_cost - 1e-12:
                    th[g], cur_cost, improved = t, c, True
            if not improved:
                break
        c, nc, ok_ = evaluate(th)
        if ok_ and c < best_cost:
            best_th, best_cost = th, c
    assert best_th is not None  # all-inf (always full D) is always feasible
    c, nc, _ = evaluate(best_th)
    calib = {"n": N, "full_accuracy": full_correct / N, "accuracy": nc / N, "expected_cost": c, "objective": objective, "confidence_level": confidence_level}
    return Cascade(dims=dims, thresholds=tuple(best_th), score=score, objective=objective, max_drop=max_drop, calibration=calib)


def oracle(logits: np.ndarray, labels: np.ndarray, dims: Sequence[int]) -> dict[str, float]:
    """The oracle bound: each sample uses the smallest prefix whose head is right (when any is).

    Returns ``accuracy`` (any head right), ``expected_dim`` over all samples (samples no head gets
    right count as ``D``) and ``expected_dim_when_right`` over the samples some head gets right.
    """
    logits = _check_logits(logits, labels, dims)
    correct = logits.argmax(axis=-1) == np.asarray(labels)[None, :]
    any_right = correct.any(axis=0)
    first = correct.argmax(axis=0)
    d = np.asarray(dims, dtype=np.float64)
    used = np.where(any_right, d[first], d[-1])
    return {
        "accuracy": float(any_right.mean()),
        "expected_dim": float(used.mean()),
        "expected_dim_when_right": float(d[first][any_right].mean()) if any_right.any() else float("nan"),
    }


def evaluate_cascade(cascade: Cascade, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Report a fitted cascade on a (disjoint) split.

    Returns a JSON-ready dict: ``accuracy``, ``expected_dim`` (mean exit dim), ``expected_cost``
    (mean sum of dims of the heads evaluated), ``full_accuracy`` (last head), ``per_dim_accuracy``,
    ``exit_fraction`` per stage, the ``oracle`` bound, and the smallest single fixed prefix whose
    accuracy reaches the cascade's (``fixed_dim``) with ``ratio_final = fixed_dim / expected_dim`` and
    ``ratio_cumulative = fixed_dim / expected_cost``; also ``D / expected_dim``.
    """
    dims = cascade.dims
    logits = _check_logits(logits, labels, dims)
    labels = np.asarray(labels)
    pred, ex = cascade.predict(logits)
    N = labels.shape[0]
    acc = float((pred == labels).mean())
    per_dim = (logits.argmax(axis=-1) == labels[None, :]).mean(axis=1)
    d = np.asarray(dims, dtype=np.float64)
    reaching = np.flatnonzero(per_dim >= acc - 1e-12)
    fixed_dim = int(dims[reaching[0]]) if reaching.size else None
    exp_dim = float(d[ex].mean())
    exp_cost = float(cumulative_dims(dims)[ex].mean())
    return {
        "n": N,
        "score": cascade.score,
        "objective": cascade.objective,
        "max_drop": cascade.max_drop,
        "accuracy": acc,
        "full_accuracy": float(per_dim[-1]),
        "drop_points": 100.0 * float(per_dim[-1] - acc),
        "expected_dim": exp_dim,
        "expected_cost": exp_cost,
        "full_dim": int(dims[-1]),
        "ratio_to_full": float(dims[-1] / exp_dim),
        "fixed_dim": fixed_dim,
        "ratio_final": float(fixed_dim / exp_dim) if fixed_dim else None,
        "ratio_cumulative": float(fixed_dim / exp_cost) if fixed_dim else None,
        "exit_fraction": {str(dm): float((ex == g).mean()) for g, dm in enumerate(dims)},
        "per_dim_accuracy": {str(dm): float(a) for dm, a in zip(dims, per_dim)},
        "oracle": oracle(logits, labels, dims),
        "thresholds": [_encode_threshold(t) for t in cascade.thresholds],
        "threshold_encoding": THRESHOLD_ENCODING,
    }


@torch.no_grad()
def cascade_forward(model: torch.nn.Module, images: torch.Tensor, cascade: Cascade) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a :class:`~mrl.models.classifier.MatryoshkaClassifier` lazily: the backbone once, then each
    head only on the samples still undecided (one batched matmul per stage, no per-sample loop).

    Shape: images ``[N, C_in, H, W]`` -> (predictions ``[N]`` int64, exit stage ``[N]`` int64).
    """
    head = model.head
    if tuple(head.matryoshka_dims) != tuple(cascade.dims):
        raise MRLError(f"cascade dims {cascade.dims} do not match the model's heads {tuple(head.matryoshka_dims)}; refit the cascade on this model.")
    emb = model.embed(images)
    n = emb.shape[0]
    pred = torch.full((n,), -1, dtype=torch.int64)
    stage = torch.full((n,), len(cascade.dims) - 1, dtype=torch.int64)
    active = torch.arange(n)
    for g, d in enumerate(cascade.dims):
        z = head.head_logits(emb[active, :d], g)
        p = torch.softmax(z.double(), dim=-1)
        top2 = p.topk(2, dim=-1).values
        conf = top2[:, 0] if cascade.score == "maxprob" else top2[:, 0] - top2[:, 1]
        done = conf >= cascade.thresholds[g] if g < len(cascade.dims) - 1 else torch.ones_like(conf, dtype=torch.bool)
        pred[active[done]] = z[done].argmax(dim=-1)
        stage[active[done]] = g
        active = active[~done]
        if active.numel() == 0:
            break
    return pred, stage

