"""Evaluate a set of run folders (and the baselines derived from fixed-feature runs) in one go."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mrl.data.fashion_mnist import FashionMNIST
from mrl.data.splits import ImageData
from mrl.errors import MRLError
from mrl.evaluate.baselines import REDUCERS
from mrl.evaluate.perdim import evaluate_baseline, evaluate_model, public


def evaluate_runs(run_dirs: Sequence[str | Path], data: ImageData | FashionMNIST | None = None, *, baselines: Sequence[str] = (), baseline_dims: Sequence[int] | None = None, ks: Sequence[int] = (10,), metric: str = "l2", device: str | torch.device = "cpu", log: Any = None, progress: bool = False) -> list[dict[str, Any]]:
    """Evaluate every run; for each full-width FF run also the ``baselines`` (``pca``, ``random``).

    ``data``: the dataset the runs were trained on (default: loaded from each run's config).

    ``baseline_dims`` defaults to the union of the Matryoshka runs' dims (else powers of two).
    Returns JSON-ready run records.
    """
    unknown = set(baselines) - set(REDUCERS)
    if unknown:
        raise MRLError(f"unknown baselines {sorted(unknown)}; choose from {REDUCERS}.")
    records = []
    sources = []
    for run in run_dirs:
        if log:
            log(f"evaluating {run}")
        rec = evaluate_model(run, data, ks=ks, metric=metric, device=device, progress=progress)
        train, test = rec["_encoded"]
        if rec["mode"] == "ff" and rec["dims"][-1] == train.embeddings.shape[1]:
            sources.append((run, rec["seed"], train, test, rec["config"]))
        records.append(public(rec))
    if baselines and not sources:
        raise MRLError("PCA/random baselines reduce a full-width fixed-feature model; include an FF run whose dim equals embed_dim (e.g. FF-512).")
    dims = baseline_dims or sorted({d for r in records if r["mode"] != "ff" for d in r["dims"]})
    if baselines and not dims:
        width = sources[0][2].embeddings.shape[1]
        dims = [2**i for i in range(1, width.bit_length()) if 2**i < width] + [width]
    for run, seed, train, test, cfg in sources:
        for method in baselines:
            if log:
                log(f"baseline {method} of {run}")
            records.append(evaluate_baseline(method, train, test, dims, ks=ks, metric=metric, seed=seed, source=str(run), source_config=cfg, progress_bar=progress))
    return records
