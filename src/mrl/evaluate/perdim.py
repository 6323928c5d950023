"""Evaluate a trained model, or a baseline built from one, at every prefix size.

The result of each evaluation is a *run record*, a JSON-ready dict::

    {"method": "MRL", "seed": 0, "model": "runs/mrl-s0", "dims": [2, 4, ...],
     "per_dim": {"2": {"top1": 0.81, "top5": 0.99, "1nn": 0.79, "map@10": 0.75, "recall@10": 0.97}, ...}}

``top1``/``top5`` are the model's own head at that prefix (for ``pca``/``random`` baselines: a
linear probe fit on the training split). Retrieval metrics follow :mod:`mrl.evaluate.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrl.data.fashion_mnist import FashionMNIST, to_tensor
from mrl.data.registry import from_fashion_mnist, load_image_data, split_fields
from mrl.data.splits import ImageData, ImageSplit, TensorSplit
from mrl.errors import MRLError
from mrl.evaluate.baselines import BASELINES, reductions
from mrl.evaluate.metrics import chance_levels, per_dim_retrieval, topk_accuracy
from mrl.evaluate.probe import fit_linear_probe
from mrl.evaluate.records import config_key, model_config
from mrl.models.classifier import MatryoshkaClassifier, encode
from mrl.progress import progress
from mrl.train.checkpoint import load_model

METHOD_NAMES = {"mrl": "MRL", "mrl-e": "MRL-E", "ff": "FF"}


@dataclass
class Encoded:
    """Embeddings ``[N, D]`` and head logits ``[G, N, C]`` of one split, plus labels ``[N]``."""

    embeddings: np.ndarray
    logits: np.ndarray
    labels: np.ndarray


def encode_split(model: MatryoshkaClassifier, split: ImageSplit | np.ndarray, labels: np.ndarray | None = None, *, device: str | torch.device = "cpu", batch_size: int = 256, desc: str | None = None) -> Encoded:
    """Embeddings and head logits of a split (or of Fashion-MNIST uint8 ``images`` with ``labels``);
    a progress bar when ``desc`` is given."""
    if isinstance(split, np.ndarray):
        assert labels is not None, "pass labels with an image array"
        split = TensorSplit(split, labels, to_tensor)
    emb, logits = encode(model, split.eval_batches(batch_size), device=device, desc=desc)
    assert logits is not None
    return Encoded(emb.numpy(), logits.numpy(), split.labels)


def evaluate_encoded(train: Encoded, test: Encoded, dims: Sequence[int], head_dims: Sequence[int], ks: Sequence[int] = (10,), metric: str = "l2", desc: str | None = None) -> dict[str, dict[str, float]]:
    """Head accuracy (where a head exists) and retrieval at each ``d`` in ``dims`` (a bar when ``desc``)."""
    retrieval = {}
    for d in progress(dims, desc=desc or "dims", unit="dim", disable=desc is None, leave=False):
        retrieval.update(per_dim_retrieval(train.embeddings, train.labels, test.embeddings, test.labels, [d], ks, metric=metric))
    out: dict[str, dict[str, float]] = {}
    for d in dims:
        row: dict[str, float] = {}
        if d in head_dims:
            g = list(head_dims).index(d)
            row["top1"] = topk_accuracy(test.logits[g], test.labels, 1)
            row["top5"] = topk_accuracy(test.logits[g], test.labels, min(5, test.logits.shape[-1]))
        row.update(retrieval[d])
        out[str(d)] = row
    return out


def test_set_info(train: Encoded, test: Encoded, config: dict[str, Any] | None, ks: Sequence[int] = (10,)) -> dict[str, Any]:
    """What a record was measured on, for the report: the dataset's identity (its split-defining
    config fields), the number of test queries and database items, the classes, and each metric's
    chance level (:func:`mrl.evaluate.metrics.chance_levels`)."""
    num_classes = int(max(train.labels.max(), test.labels.max()) + 1)
    return {
        "data": split_fields(config) if config else {},
        "queries": len(test.labels), "database": len(train.labels), "classes": num_classes,
        "chance": chance_levels(train.labels, test.labels, num_classes, ks),
    }


def evaluate_model(model_dir: str | Path, data: ImageData | FashionMNIST | None = None, *, dims: Sequence[int] | None = None, ks: Sequence[int] = (10,), metric: str = "l2", device: str | torch.device = "cpu", method: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate a trained run folder on ``data.test`` (queries) against ``data.train`` (database).

    ``data`` defaults to the dataset of the run's own config (:func:`mrl.data.registry.load_image_data`).

    ``dims`` defaults to the model's ``matryoshka_dims`` (for ``ff`` models, its single dim).
    Returns a run record (see module docstring); ``encoded`` train/test are attached under the
    private key ``"_encoded"`` so callers can reuse them (baselines) without re-encoding.
    """
    model, config = load_model(model_dir, map_location=device)
    head_dims = model.matryoshka_dims
    dims = tuple(dims) if dims is not None else head_dims
    if max(dims) > (head_dims[-1] if config["mode"] == "ff" else model.embed_dim):
        raise MRLError(f"dims {tuple(dims)} go beyond what this {config['mode']} model provides ({head_dims[-1]}).")
    data = as_image_data(data, config)
    tag = Path(model_dir).name
    train = encode_split(model, data.train, device=device, desc=f"{tag}: encode train" if progress else None)
    test = encode_split(model, data.test, device=device, desc=f"{tag}: encode test" if progress else None)
    name = method or METHOD_NAMES[config["mode"]] + (f"-{head_dims[-1]}" if config["mode"] == "ff" else "")
    cfg = model_config(config)
    record = {
        "method": name,
        "mode": config["mode"],
        "seed": config["seed"],
        "model": str(model_dir),
        "dims": [int(d) for d in dims],
        "metric": metric,
        "config": cfg,
        "config_key": config_key(method or METHOD_NAMES[config["mode"]], cfg, metric),
        "per_dim": evaluate_encoded(train, test, dims, head_dims, ks, metric, desc=f"{tag}: dims" if progress else None),
        "test_set": test_set_info(train, test, config, ks),
        "_encoded": (train, test),
    }
    return record


def evaluate_baseline(method: str, train: Encoded, test: Encoded, dims: Sequence[int], *, ks: Sequence[int] = (10,), metric: str = "l2", seed: int = 0, source: str = "", source_config: dict[str, Any] | None = None, progress_bar: bool = False) -> dict[str, Any]:
    """PCA / random-subset reduction of a fixed-feature embedding to each ``d``, plus a linear probe.

    The probe is fit on the training split's reduced embeddings; retrieval uses the reduced vectors.
    """
    per_dim: dict[str, dict[str, float]] = {}
    num_classes = int(max(train.labels.max(), test.labels.max()) + 1)
    steps = reductions(method, train.embeddings, [test.embeddings], dims, seed=seed)
    for d, tr, (te,) in progress(steps, desc=f"{method} of {Path(source).name}: dims", total=len(dims), unit="dim", disable=not progress_bar, leave=False):
        probe = fit_linear_probe(tr, train.labels, num_classes=num_classes, seed=seed)
        logits = probe.predict_logits(te)
        row = {"top1": topk_accuracy(logits, test.labels, 1), "top5": topk_accuracy(logits, test.labels, min(5, num_classes))}
        row.update(per_dim_retrieval(tr, train.labels, te, test.labels, [d], ks, metric=metric)[int(d)])
        per_dim[str(d)] = row
    label = BASELINES[method].label
    cfg = {"source": source_config or {}, "width": int(train.embeddings.shape[1])}  # identifies the configuration (not the seed)
    return {"method": label, "mode": method, "seed": seed, "model": source, "dims": [int(d) for d in dims], "metric": metric, "per_dim": per_dim,
            "config": cfg, "config_key": config_key(label, cfg, metric), "test_set": test_set_info(train, test, source_config, ks)}


def as_image_data(data: ImageData | FashionMNIST | None, config: dict[str, Any]) -> ImageData:
    """``data`` as :class:`ImageData`; ``None`` loads the dataset named by a run's ``config``."""
    if data is None:
        return load_image_data(config)
    return from_fashion_mnist(data) if isinstance(data, FashionMNIST) else data


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record without private (``_``-prefixed) keys, ready for JSON."""
    return {k: v for k, v in record.items() if not k.startswith("_")}
