"""Group evaluation records by configuration and aggregate over seeds: mean, std and count.

A *group* is one method family (MRL, MRL-E, FF, PCA, Random, or the record's own method name)
trained with one configuration (``config_key`` of :mod:`mrl.evaluate.records`); its records differ
only in the seed. Cells average over a group's seeds, never over different models: two MRL runs with
different recipes become two rows, labelled with the fields that differ (``MRL (epochs=10)``).
FF is one family across d (FF-2 ... FF-512: one model per d, as in the paper).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.evaluate.baselines import BASELINES

FAMILIES = {"mrl": "MRL", "mrl-e": "MRL-E", "ff": "FF", **{name: b.label for name, b in BASELINES.items()}}
ORDER = ("MRL", "MRL-E", "FF", *(b.label for b in BASELINES.values()))


def family(record: dict[str, Any]) -> str:
    """``FF-8`` and ``FF-512`` are one family ``FF`` (one model per d); others map by mode."""
    return FAMILIES.get(record.get("mode", ""), record.get("method", "?"))


@dataclass
class Group:
    """Records of one family and configuration (they differ only in the seed)."""

    label: str
    family: str
    key: str
    config: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seeds(self) -> list[Any]:
        return sorted({r.get("seed") for r in self.records}, key=str)


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _legacy_key(rec: dict[str, Any]) -> str:
    """Records written before configurations were recorded: the method name (FF: the family)."""
    return f"legacy:{family(rec) if rec.get('mode') == 'ff' else rec.get('method', '?')}"


def groups(records: Iterable[dict[str, Any]]) -> list[Group]:
    """Records grouped by (family, configuration), in the canonical family order.

    Raises:
        MRLError: a record has no ``per_dim``; or two records of one configuration share a seed and
            a dim (the same run passed twice, or runs whose seeds were not varied).
    """
    by_key: dict[tuple[str, str], Group] = {}
    for rec in records:
        if not isinstance(rec, dict) or "per_dim" not in rec:
            raise MRLError(f"record {rec.get('method', '?') if isinstance(rec, dict) else rec!r} has no per_dim results; is this an `mrl eval` output?")
        fam = family(rec)
        key = str(rec.get("config_key") or _legacy_key(rec))
        grp = by_key.setdefault((fam, key), Group(fam, fam, key, rec.get("config") or {}))
        clash = [r for r in grp.records if r.get("seed") == rec.get("seed") and set(r["per_dim"]) & set(rec["per_dim"])]
        if clash:
            raise MRLError(f"two results of one configuration share seed {rec.get('seed')!r} ({clash[0].get('model', '?')} and {rec.get('model', '?')}); pass each run once, or train the repeats with different seeds.")
        grp.records.append(rec)
    out = sorted(by_key.values(), key=lambda g: (ORDER.index(g.family) if g.family in ORDER else len(ORDER), g.family, g.key))
    for fam in {g.family for g in out}:  # disambiguate several configurations of one family
        same = [g for g in out if g.family == fam]
        if len(same) < 2:
            continue
        flats = [_flat(g.config) for g in same]
        keys = sorted({k for f in flats for k in f if len({repr(x.get(k)) for x in flats}) > 1})
        for i, (g, f) in enumerate(zip(same, flats)):
            detail = ", ".join(f"{k}={f.get(k)}" for k in keys[:3]) or f"#{i + 1}"
            g.label = f"{fam} ({detail})"
    return out


def aggregate(records: Iterable[dict[str, Any]]) -> dict[str, dict[int, dict[str, dict[str, float]]]]:
    """``{row label: {dim: {metric: {"mean", "std", "n"}}}}`` over the seeds of each configuration
    (std is the sample std, 0 when n = 1). The label is the family when it has one configuration."""
    out: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for g in groups(records):
        values: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for rec in g.records:
            for d, metrics in rec["per_dim"].items():
                for name, v in metrics.items():
                    if v is not None:
                        values[int(d)][name].append(float(v))
        out[g.label] = {}
        for d in sorted(values):
            out[g.label][d] = {}
            for name, vs in values[d].items():
                arr = np.asarray(vs)
                out[g.label][d][name] = {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}
    return out
