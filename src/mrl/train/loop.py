"""The training loop for Matryoshka image classifiers, readable top to bottom.

``train(config, out_dir)`` writes into ``out_dir``:

* ``checkpoint.safetensors`` after every epoch (atomic; everything needed by ``resume=True``),
* ``metrics.csv`` one row per epoch (train loss per dim, validation top-1 per dim, lr, seconds),
* ``model.safetensors`` + ``config.json`` at the end.

Determinism: the shuffling and augmentation of epoch ``e`` come from a generator seeded with
``(seed, e)``, and the global RNG states are checkpointed, so a run stopped after any epoch and
resumed reaches the same weights as an uninterrupted run (same device and thread count).

Distributed: under ``torchrun`` (see :mod:`mrl.train.distributed`) the same function runs on every
rank: the model is wrapped in DDP, each global batch is split across ranks, metrics are
all-reduced and rank 0 alone writes files. On CUDA the forward pass runs under bf16 autocast
(``precision: auto``) with channels-last tensors, batches are staged in pinned memory and copied
with ``non_blocking=True``.

Why this loop is not on accelerate (the text path runs on it through the sentence-transformers
Trainer): checked on accelerate 1.16, ``Accelerator.save_state(safe_serialization=True)`` writes only
the model weights as safetensors; optimizer, scheduler, GradScaler and RNG states
(``random_states_<rank>.pkl``) and custom objects are ``torch.save`` pickles, the data position is
restored only for accelerate's own seedable sampler or a ``StatefulDataLoader``, and the files are
written one after another into a folder (a kill mid-save leaves old and new states mixed). The
reliability rules here (safetensors only, one checkpoint file replaced atomically, the ``(seed,
epoch)`` order resumed exactly) would keep :mod:`mrl.train.checkpoint` anyway; accelerate would
replace only the DDP setup of :mod:`mrl.train.distributed`, not worth a second framework here.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from mrl.data.registry import load_image_data
from mrl.data.splits import ImageSplit
from mrl.errors import CheckpointError, MRLError
from mrl.io import Output, check_output, open_output, write_csv, write_json
from mrl.losses import MatryoshkaLoss, MatryoshkaLossOutput
from mrl.models.classifier import MatryoshkaClassifier, build_classifier, encode
from mrl.models.vision import load_backbone_weights
from mrl.progress import note, progress
from mrl.train import distributed as ddp
from mrl.train.checkpoint import CHECKPOINT_NAME, MODEL_NAME, load_checkpoint, restore, save_checkpoint, save_model
from mrl.train.config import TrainConfig
from mrl.train.divergence import check_finite_loss, check_finite_weights


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



def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch.

    torch's global generator gets ``seed`` on every rank, because what it draws must agree across
    ranks (model initialisation, the dims sampled by ``n_dims_per_step``); python's and numpy's
    generators are per rank (``seed + rank``) for anything rank-local.
    """
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed)


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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the forward pass: ``auto`` is bf16 on CUDA and full fp32 elsewhere."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return torch.bfloat16 if precision == "bf16" else None


def fetch_batch(images: torch.Tensor, labels: torch.Tensor, flips: torch.Tensor | None, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather a batch (with horizontal flips where ``flips`` says so) and move it to ``device``.

    On CUDA the batch is staged in pinned memory and copied with ``non_blocking=True`` into a
    channels-last tensor; on CPU it is returned as is.

    Shape:
        - images ``[N, 1, H, W]`` float, labels ``[N]``, flips ``[N]`` bool or None, idx ``[B]``.
        - returns ``(x [B, 1, H, W], y [B])`` on ``device``.
    """
    x, y = images[idx], labels[idx]
    if flips is not None:
        x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
    if device.type != "cuda":
        return x, y
    x = x.pin_memory().to(device, non_blocking=True, memory_format=torch.channels_last)
    return x, y.pin_memory().to(device, non_blocking=True)


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to ``device`` (CUDA: non-blocking copies into a channels-last tensor; batches
    come from pinned memory). Shape: ``x`` ``[B, C, H, W]``, ``y`` ``[B]``."""
    if device.type != "cuda":
        return x, y
    return x.to(device, non_blocking=True, memory_format=torch.channels_last), y.to(device, non_blocking=True)


def train_step(net: torch.nn.Module, loss_fn: MatryoshkaLoss, optimizer: torch.optim.Optimizer, scheduler: Any, x: torch.Tensor, y: torch.Tensor, *, amp_dtype: torch.dtype | None = None, extra_params: list[torch.nn.Parameter] | None = None, ctx: ddp.DistContext | None = None) -> MatryoshkaLossOutput:
    """One optimisation step: forward (under autocast if ``amp_dtype``), backward, step.

    ``net`` may be DDP-wrapped (DDP averages the model's gradients); ``extra_params`` (a learned
    weighting's) are averaged over ranks here.

    Shape: ``x`` ``[B, C, H, W]``, ``y`` ``[B]``; returns the loss output (``per_dim`` ``[G]``).
    """
    autocast = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with autocast:
        loss_out = loss_fn(net(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss_out.total.backward()
    if ctx is not None and extra_params:
        ddp.average_gradients(extra_params, ctx)
    optimizer.step()
    scheduler.step()
    return loss_out


def evaluate_heads(model: MatryoshkaClassifier, split: ImageSplit, device: torch.device, ctx: ddp.DistContext | None = None) -> dict[str, float]:
    """Top-1 accuracy of every head on a split: ``{"val_top1@<d>": acc}``.

    Under DDP each rank scores a contiguous shard and the correct counts are all-reduced.
    """
    ctx = ctx or ddp.DistContext()
    n = len(split)
    lo, hi = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    labels = torch.from_numpy(split.labels)
    if ctx.enabled:
        split = split.slice(lo, hi)
    _, logits = encode(model, split.eval_batches(), device=device)
    correct = (logits.argmax(-1) == labels[lo:hi]).sum(dim=1).double() if logits is not None else torch.zeros(len(model.matryoshka_dims), dtype=torch.float64)
    correct = ddp.all_reduce_sum(correct, ctx)
    return {f"val_top1@{d}": float(c) / max(n, 1) for d, c in zip(model.matryoshka_dims, correct.tolist())}


RUN_KIND = "mrl.run"  # the manifest format of a training run folder (see mrl.io.ownership)


def check_run_folder(out_dir: str | Path, *, resume: bool, overwrite: bool, inputs: list[Any] | None = None) -> Path:
    """Fail early, writing nothing: refuse a folder that is not a new/empty folder or a previous
    run (``overwrite``), or to resume from nothing."""
    out = Path(out_dir)
    if resume and not (out / CHECKPOINT_NAME).is_file():
        raise CheckpointError(f"nothing to resume: {out / CHECKPOINT_NAME} does not exist; drop --resume to start a new run.")
    check_output(out, RUN_KIND, overwrite=overwrite, append=resume, inputs=inputs or [])
    return out


def write_run_file(out: Output | None, name: str, writer: Any) -> None:
    """Write output file ``name`` through the run folder's manifest (rank 0 only: ``out`` is None elsewhere)."""
    if out is not None:
        with out.file(name) as path:
            writer(path)


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False, stop_after_epoch: int | None = None) -> TrainResult:
    """Train a Matryoshka (or fixed-feature) classifier on the recipe's image dataset.

    Runs in this process, or, when started by ``torchrun`` (``WORLD_SIZE`` > 1 in the
    environment), as one rank of a DDP job (see :mod:`mrl.train.distributed`).

    Args:
        config: the run's :class:`TrainConfig`.
        out_dir: folder for checkpoint, metrics and final model.
        resume: continue from ``out_dir/checkpoint.safetensors``; the config must match the one
            stored there (except runtime fields such as ``device`` and ``threads``). A checkpoint
            written with another number of processes resumes too: the global batch and data order
            do not depend on it.
        overwrite: allow writing into a folder that already holds a run.
        stop_after_epoch: stop (as if killed) once this many epochs are complete; for tests.

    Returns:
        :class:`TrainResult` with the per-epoch history.
    """
    out = Path(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    ctx = ddp.init_distributed(device)
    try:
        if not ctx.is_main:  # rank 0 alone checks, locks and writes the run folder
            return _train(config, out, None, ctx, ddp.rank_device(device, ctx), resume=resume, stop_after_epoch=stop_after_epoch)
        check_run_folder(out, resume=resume, overwrite=overwrite)
        with open_output(out, RUN_KIND, overwrite=overwrite, append=resume) as writer:
            return _train(config, out, writer, ctx, ddp.rank_device(device, ctx), resume=resume, stop_after_epoch=stop_after_epoch)
    finally:
        ddp.shutdown(ctx)


def _train(config: TrainConfig, out: Path, writer: Output | None, ctx: ddp.DistContext, device: torch.device, *, resume: bool, stop_after_epoch: int | None) -> TrainResult:
    ckpt_path = out / CHECKPOINT_NAME
    ddp.check_global_batch(config.batch_size, ctx)
    seed_everything(config.seed, ctx.rank)

    log = note if ctx.is_main and config.progress else None
    data = load_image_data(config.to_dict(), log=log)
    train_split = data.train.subset(config.train_subset)

    model = build_classifier(backbone=config.backbone, embed_dim=config.embed_dim, num_classes=data.num_classes, matryoshka_dims=config.matryoshka_dims, mode=config.mode, width=config.width, in_channels=data.in_channels, prefix_calibration=config.prefix_calibration)
    if config.weights and not resume:
        load_backbone_weights(model.backbone, config.weights)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = resolve_precision(config.precision, device)
    weighting = config.build_weighting().to(device)
    if ctx.enabled:
        weighting.sync = lambda t: ddp.all_reduce_mean(t, ctx)
    loss_fn = MatryoshkaLoss(config.matryoshka_dims, weighting=weighting, n_dims_per_step=config.n_dims_per_step, label_smoothing=config.label_smoothing)
    n = len(train_split)
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
        saved_world = int(state.get("extra", {}).get("world_size", 1))
        if saved_world != ctx.world_size and ctx.is_main and config.progress:
            note(f"note: resuming a checkpoint written by {saved_world} process(es) with {ctx.world_size}; data order and global batch are unchanged, batch-norm statistics are per process.")
        if ctx.rank > 0:  # the checkpoint holds rank 0's python/numpy states; keep rank-local streams distinct
            random.seed(config.seed + ctx.rank + 7919 * start_epoch)
            np.random.seed((config.seed + ctx.rank + 7919 * start_epoch) % 2**32)

    net: torch.nn.Module = model
    if ctx.enabled:
        unused = config.n_dims_per_step is not None and config.n_dims_per_step < len(config.matryoshka_dims)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused)
    extra_params = list(weighting.parameters())

    dims = config.matryoshka_dims
    t_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        net.train()
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        index_batches = [ddp.shard_batch(perm[step * config.batch_size : (step + 1) * config.batch_size], ctx) for step in range(steps_per_epoch)]
        batches = train_split.train_batches(index_batches, gen, augment=config.augment, pin_memory=device.type == "cuda")
        sums = torch.zeros(len(dims), dtype=torch.float64, device=device)
        counts = torch.zeros(len(dims), dtype=torch.float64, device=device)
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not (config.progress and ctx.is_main), leave=False)
        for step, (x, y) in zip(bar, batches):
            x, y = to_device(x, y, device)
            loss_out = train_step(net, loss_fn, optimizer, scheduler, x, y, amp_dtype=amp_dtype, extra_params=extra_params, ctx=ctx)
            check_finite_loss(loss_out, dims, f"epoch {epoch + 1}, step {step + 1}")
            per_dim = loss_out.per_dim.detach().double()
            seen = loss_out.active.to(per_dim.device)  # prefixes evaluated this step (n_dims_per_step samples some)
            sums += torch.where(seen, per_dim, 0.0)
            counts += seen.double()
            if step % 20 == 0 and not bar.disable:
                bar.set_postfix_str(" ".join(f"{d}:{v:.2f}" for d, v in zip(dims, per_dim.tolist()) if v == v))
        bar.close()
        skipped = train_split.skipped()
        if skipped and log:
            log(f"epoch {epoch + 1}: skipped {len(skipped)} unreadable training image(s), e.g. {skipped[0]}")
        sums, counts = ddp.all_reduce_sum(sums, ctx), ddp.all_reduce_sum(counts, ctx)
        mean_losses = (sums / counts.clamp(min=1)).cpu().tolist()
        weighting.on_epoch_end(mean_losses)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": float(sum(v for v in mean_losses))}
        row.update({f"train_loss@{d}": v for d, v in zip(dims, mean_losses)})
        row.update({f"weight@{d}": float(w) for d, w in zip(dims, weighting.weights().tolist())})
        ddp.broadcast_buffers(model, ctx)  # evaluate (and save) rank 0's batch-norm statistics
        row.update(evaluate_heads(model, data.val, device, ctx))
        row["seconds"] = time.perf_counter() - t_epoch
        history.append(row)
        if ctx.is_main:
            if config.progress:
                accs = " ".join(f"{d}:{row[f'val_top1@{d}']:.3f}" for d in dims)
                note(f"epoch {epoch + 1}/{config.epochs}  loss {row['train_loss']:.3f}  val top-1 per dim {accs}  ({row['seconds']:.0f}s)")
            check_finite_weights(model)
            state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "weighting": weighting, "epoch": epoch + 1, "config": config.to_dict(), "history": history, "extra": {"world_size": ctx.world_size}}
            write_run_file(writer, "metrics.csv", lambda p: write_csv(p, history))
            write_run_file(writer, CHECKPOINT_NAME, lambda p, state=state: save_checkpoint(p, **state))
        ddp.barrier(ctx)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            return TrainResult(out, history, time.perf_counter() - t_start)

    if ctx.is_main:
        check_finite_weights(model)
        write_run_file(writer, MODEL_NAME, lambda p: save_model(p, model, config.to_dict(), data.num_classes, in_channels=data.in_channels, classes=data.classes))
        write_run_file(writer, "config.json", lambda p: write_json(p, config.to_dict()))
        if data.report:
            write_run_file(writer, "dataset.json", lambda p: write_json(p, data.report))
    ddp.barrier(ctx)
    return TrainResult(out, history, time.perf_counter() - t_start)
