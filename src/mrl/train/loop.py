"""The training loop for Matryoshka image classifiers, readable top to bottom.

``train(config, out_dir)`` writes into ``out_dir``:

* ``checkpoint.safetensors`` after every epoch (atomic; everything needed by ``resume=True``),
* ``metrics.csv`` one row per epoch (train loss per dim, validation top-1 per dim, lr, seconds),
* ``model.safetensors`` + ``config.json`` at the end.

Determinism: the shuffling and augmentation of epoch ``e`` come from a generator seeded with
``(seed, e)``, and the global RNG states are checkpointed, so a run stopped after any epoch and
resumed reaches the same weights as an uninterrupted run (same device and thread count).
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mrl.data.fashion_mnist import load_fashion_mnist, to_tensor
from mrl.errors import CheckpointError, MRLError
from mrl.io import atomic_write, guard_output, write_json
from mrl.losses import MatryoshkaLoss
from mrl.models.classifier import MatryoshkaClassifier, build_classifier, encode
from mrl.train.checkpoint import CHECKPOINT_NAME, MODEL_NAME, load_checkpoint, restore, save_checkpoint, save_model
from mrl.train.config import TrainConfig
from mrl.weighting import Weighting, create_weighting


@dataclass
class TrainResult:
    """``history``: one dict per epoch; ``final``: the last epoch's dict; ``seconds``: wall-clock."""

    out_dir: Path
    history: list[dict[str, Any]]
    seconds: float

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise MRLError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda'.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MRLError("device 'cuda' was asked for but CUDA is not available; use device=auto or cpu.")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_weighting(config: TrainConfig) -> Weighting:
    g = len(config.matryoshka_dims)
    if config.matryoshka_weights is not None:
        if config.weighting not in ("uniform", "fixed"):
            raise MRLError(f"matryoshka_weights is only used with weighting 'fixed', not {config.weighting!r}; drop one of them.")
        return create_weighting("fixed", g, weights=config.matryoshka_weights)
    return create_weighting(config.weighting, g, **config.weighting_kwargs)


def build_optimizer(config: TrainConfig, params: list[torch.nn.Parameter], total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (Nesterov) or AdamW, with linear warm-up then cosine decay to 0, stepped per batch."""
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warm = min(config.warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total_steps - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def evaluate_heads(model: MatryoshkaClassifier, inputs: torch.Tensor, labels: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Top-1 accuracy of every head on a split: ``{"val_top1@<d>": acc}``."""
    _, logits = encode(model, inputs, device=device)
    assert logits is not None
    acc = (logits.argmax(-1) == labels).float().mean(dim=1)
    return {f"val_top1@{d}": float(a) for d, a in zip(model.matryoshka_dims, acc)}


def _write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for row in history for k in row))
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path, buf.getvalue().encode())


def _output_holds_run(p: Path) -> bool:
    return (p / MODEL_NAME).exists() or (p / CHECKPOINT_NAME).exists()


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False, stop_after_epoch: int | None = None) -> TrainResult:
    """Train a Matryoshka (or fixed-feature) classifier on Fashion-MNIST.

    Args:
        config: the run's :class:`TrainConfig`.
        out_dir: folder for checkpoint, metrics and final model.
        resume: continue from ``out_dir/checkpoint.safetensors``; the config must match the one
            stored there (except runtime fields such as ``device`` and ``threads``).
        overwrite: allow writing into a folder that already holds a run.
        stop_after_epoch: stop (as if killed) once this many epochs are complete; for tests.

    Returns:
        :class:`TrainResult` with the per-epoch history.
    """
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.exists():
            raise CheckpointError(f"nothing to resume: {ckpt_path} does not exist; drop --resume to start a new run.")
    else:
        guard_output(out, overwrite, _output_holds_run)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    seed_everything(config.seed)

    data = load_fashion_mnist(config.data_root, val_size=config.val_size)
    train_images, train_labels = data.train.images, data.train.labels
    if config.train_subset is not None:
        train_images, train_labels = train_images[: config.train_subset], train_labels[: config.train_subset]
    x_train, y_train = to_tensor(train_images), torch.from_numpy(train_labels)
    x_val, y_val = to_tensor(data.val.images), torch.from_numpy(data.val.labels)
    if device.type == "cuda":
        x_train, y_train = x_train.pin_memory(), y_train.pin_memory()

    model = build_classifier(backbone=config.backbone, embed_dim=config.embed_dim, num_classes=data.num_classes, matryoshka_dims=config.matryoshka_dims, mode=config.mode, width=config.width).to(device)
    weighting = build_weighting(config).to(device)
    loss_fn = MatryoshkaLoss(config.matryoshka_dims, weighting=weighting, n_dims_per_step=config.n_dims_per_step, label_smoothing=config.label_smoothing)
    n = x_train.shape[0]
    steps_per_epoch = max(n // config.batch_size, 1)
    params = list(model.parameters()) + list(weighting.parameters())
    optimizer, scheduler = build_optimizer(config, params, steps_per_epoch * config.epochs)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        tensors, state = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(state["config"])
        diff = saved.differences(config)
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"cannot resume: the config contradicts the checkpoint ({detail}); resume with the original config or start a new run in another folder.")
        if config.epochs != saved.epochs:
            raise CheckpointError(f"cannot resume: epochs={config.epochs} but the checkpoint was planned for {saved.epochs} (the LR schedule depends on it); keep epochs={saved.epochs}.")
        restore(tensors, state, model=model, optimizer=optimizer, scheduler=scheduler, weighting=weighting)
        start_epoch, history = state["epoch"], state["history"]

    dims = config.matryoshka_dims
    t_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        sums = torch.zeros(len(dims), dtype=torch.float64)
        counts = torch.zeros(len(dims), dtype=torch.float64)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress, leave=False)
        for step in bar:
            idx = perm[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = x_train[idx], y_train[idx]
            if config.augment:
                x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss_out = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss_out.total.backward()
            optimizer.step()
            scheduler.step()
            per_dim = loss_out.per_dim.double().cpu()
            seen = ~torch.isnan(per_dim)
            sums += torch.where(seen, per_dim, 0.0)
            counts += seen.double()
            if step % 20 == 0:
                bar.set_postfix_str(" ".join(f"{d}:{v:.2f}" for d, v in zip(dims, per_dim.tolist()) if v == v))
        bar.close()
        mean_losses = (sums / counts.clamp(min=1)).tolist()
        weighting.on_epoch_end(mean_losses)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": float(sum(v for v in mean_losses))}
        row.update({f"train_loss@{d}": v for d, v in zip(dims, mean_losses)})
        row.update({f"weight@{d}": float(w) for d, w in zip(dims, weighting.weights().tolist())})
        row.update(evaluate_heads(model, x_val, y_val, device))
        row["seconds"] = time.perf_counter() - t_epoch
        history.append(row)
        if config.progress:
            accs = " ".join(f"{d}:{row[f'val_top1@{d}']:.3f}" for d in dims)
            tqdm.write(f"epoch {epoch + 1}/{config.epochs}  loss {row['train_loss']:.3f}  val top-1 per dim {accs}  ({row['seconds']:.0f}s)")
        _write_metrics(out / "metrics.csv", history)
        save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, weighting=weighting, epoch=epoch + 1, config=config.to_dict(), history=history)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            return TrainResult(out, history, time.perf_counter() - t_start)

    save_model(out / MODEL_NAME, model, config.to_dict(), data.num_classes)
    write_json(out / "config.json", config.to_dict())
    return TrainResult(out, history, time.perf_counter() - t_start)
