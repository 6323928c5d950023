"""Reading a tuning record: the recall target check and the choice of a tuned funnel.

The tuner (:mod:`mrl.index.tune`) writes a record whose ``frontier`` lists the funnels it timed
with their measured recall and latency; every backend (the local index, Milvus, the server) picks
from it with :func:`choose_funnel`. This module sits below all of them and imports none, so the
import direction stays one-way: ``funnel -> frontier -> matryoshka_index / backends -> backend``.
"""

from __future__ import annotations

from typing import Any

from mrl.errors import MRLError
from mrl.index.funnel import Funnel

__all__ = ["check_target", "choose_funnel"]


def check_target(target_recall: float) -> float:
    """A recall target in ``(0, 1]`` as a float, else an :class:`MRLError` naming the fix."""
    if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0.0 < float(target_recall) <= 1.0:
        raise MRLError(f"target recall must be in (0, 1], got {target_recall!r}; e.g. 0.99 for recall@k >= 99%.")
    return float(target_recall)


def choose_funnel(tuning: dict[str, Any] | None, recall_target: float, dim: int) -> Funnel:
    """The fastest funnel of a tuning record's frontier whose measured recall meets ``recall_target``."""
    target = check_target(recall_target)
    frontier = (tuning or {}).get("frontier") or []
    if not frontier:
        raise MRLError("this index holds no tuning record; tune it first (`mrl tune FOLDER` or `mrl index build --recall-target R`), or pass a funnel.")
    ok = [p for p in frontier if float(p["recall"]) >= target]
    if not ok:
        best = max(frontier, key=lambda p: float(p["recall"]))
        raise MRLError(f"no tuned funnel reached recall {target}: the best recorded is {best['funnel']} at {float(best['recall']):.4f}; retune with --recall-target {target}, or pass funnel '{dim}:K' for exact search.")
    return Funnel.parse(min(ok, key=lambda p: float(p["ms_per_query"]))["funnel"])
