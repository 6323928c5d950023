"""Aggregate run records over seeds: mean, std and count per (method family, dim, metric)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from mrl.errors import MRLError

FAMILIES = {"mrl": "MRL", "mrl-e": "MRL-E", "ff": "FF", "pca": "PCA", "random": "Random"}
ORDER = ("MRL", "MRL-E", "FF", "PCA", "Random")


def family(record: dict[str, Any]) -> str:
    """``FF-8`` and ``FF-512`` are one family ``FF`` (one model per d); others map by mode."""
    return FAMILIES.get(record.get("mode", ""), record.get("method", "?"))


def aggregate(records: Iterable[dict[str, Any]]) -> dict[str, dict[int, dict[str, dict[str, float]]]]:
    """``{family: {dim: {metric: {"mean", "std", "n"}}}}`` (std is the sample std, 0 when n = 1)."""
    values: dict[str, dict[int, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for rec in records:
        if "per_dim" not in rec:
            raise MRLError(f"record {rec.get('method', '?')} has no per_dim results; is this an `mrl eval` output?")
        for d, metrics in rec["per_dim"].items():
            for name, v in metrics.items():
                values[family(rec)][int(d)][name].append(float(v))
    out: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for fam in sorted(values, key=lambda f: (ORDER.index(f) if f in ORDER else len(ORDER), f)):
        out[fam] = {}
        for d in sorted(values[fam]):
            out[fam][d] = {}
            for name, vs in values[fam][d].items():
                arr = np.asarray(vs)
                out[fam][d][name] = {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}
    return out
