"""Resumable checkpoints in one safetensors file, written atomically.

Layout of ``checkpoint.safetensors``:

* tensors ``model.<key>`` (weights and buffers), ``optim.<param>.<key>`` (optimizer state tensors),
  ``weighting.<key>`` (adaptive weighting state) and ``rng.torch`` (CPU generator state);
* metadata ``state``: JSON with the epoch reached, the config, optimizer param groups and non-tensor
  state, scheduler state, numpy/python RNG states and the metrics history.

A single file replaced with ``os.replace`` means a crash mid-save leaves the previous checkpoint.
The final model is saved separately as ``model.safetensors`` with its config in the metadata.
Kept instead of accelerate's ``save_state``: that writes optimizer, scheduler and RNG states as
pickles in several files, not atomically (see :mod:`mrl.train.loop` for the comparison).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrl.errors import CheckpointError
from mrl.io import load_safetensors, save_safetensors, verify_output
from mrl.models.classifier import MatryoshkaClassifier, build_classifier

CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | os.PathLike[str], *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, weighting: nn.Module | None, epoch: int, config: dict[str, Any], history: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    """Atomically write everything needed to continue training after ``epoch`` (1-based, completed)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _split_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    if weighting is not None:
        tensors.update({f"weighting.{k}": v for k, v in weighting.state_dict().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    np_state = np.random.get_state()
    state = {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "config": config,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python_rng": _py_state_to_json(random.getstate()),
        "history": history,
        "extra": extra or {},
    }
    save_safetensors(path, tensors, metadata={"state": json.dumps(state)})


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; returns ``(tensors, state)``. Raises :class:`CheckpointError` if corrupted."""
    tensors, meta = load_safetensors(path)
    try:
        state = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has no readable training state; it is not an mrl checkpoint or it is corrupted.") from exc
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {state.get('format_version')}, this mrl reads {FORMAT_VERSION}; retrain with this version.")
    return tensors, state


def restore(tensors: dict[str, torch.Tensor], state: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, weighting: nn.Module | None) -> None:
    """Load model/optimizer/scheduler/weighting/RNG states from :func:`load_checkpoint` output."""
    try:
        model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(_join_optimizer(tensors, state["optimizer"]))
        if weighting is not None:
            weighting.load_state_dict({k[len("weighting.") :]: v for k, v in tensors.items() if k.startswith("weighting.")})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match the model/optimizer being resumed ({exc}); resume with the config it was written with.") from exc
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    npst = state["numpy_rng"]
    np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), *npst[2:]))
    random.setstate(_py_state_from_json(state["python_rng"]))


def _py_state_to_json(st: tuple[Any, ...]) -> list[Any]:
    return [st[0], list(st[1]), st[2]]


def _py_state_from_json(st: list[Any]) -> tuple[Any, ...]:
    return (st[0], tuple(st[1]), st[2])


def save_model(path: str | os.PathLike[str], model: MatryoshkaClassifier, config: dict[str, Any], num_classes: int, *, in_channels: int = 1, classes: tuple[str, ...] | None = None) -> None:
    """Write the trained weights with what is needed to rebuild the architecture (config, number
    of classes, input channels) and the class names."""
    meta = {"format_version": str(FORMAT_VERSION), "config": json.dumps(config), "num_classes": str(num_classes), "in_channels": str(in_channels)}
    if classes is not None:
        meta["classes"] = json.dumps(list(classes))
    save_safetensors(path, model.state_dict(), metadata=meta)


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[MatryoshkaClassifier, dict[str, Any]]:
    """Rebuild a :class:`MatryoshkaClassifier` from ``model.safetensors`` (or a run folder holding it).

    Returns ``(model in eval mode, config dict)``. Models written before the heads were fused (per-head
    weight names) and before ``in_channels``/``prefix_calibration`` existed load too. In a run
    folder, its manifest is verified first (checksum, and the size and SHA-256 of the model and of
    ``config.json``); the weights and their header are verified by their own hashes.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_NAME
    verify_output(p.parent, [p.name, CONFIG_NAME])
    tensors, meta = load_safetensors(p)
    try:
        config = json.loads(meta["config"])
        num_classes = int(meta["num_classes"])
        in_channels = int(meta.get("in_channels", 1))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{p} lacks the mrl model metadata (config, num_classes); it was not written by mrl.") from exc
    model = build_classifier(
        backbone=config["backbone"], embed_dim=config.get("embed_dim"), num_classes=num_classes, matryoshka_dims=config["matryoshka_dims"], mode=config["mode"],
        width=config.get("width"), in_channels=in_channels, prefix_calibration=config.get("prefix_calibration", "none"),
    )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{p} weights do not match the architecture in its metadata ({exc}).") from exc
    return model.to(map_location).eval(), config
