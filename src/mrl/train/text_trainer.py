"""The sentence-transformers Trainer run behind :func:`mrl.train.text.train_text`.

Holds what the Trainer needs from us: its arguments, a sequential batch sampler (the distill run's
batch order is fixed up front), callbacks that log per-prefix losses to ``metrics.csv`` rows and
checkpoint the loss weighting's state next to the Trainer's own checkpoint (the model card is
:mod:`mrl.train.text_card`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import SequentialSampler
from transformers import TrainerCallback

from mrl.errors import MRLError
from mrl.io import load_safetensors, save_safetensors
from mrl.models.rotation import project_orthogonal_
from mrl.progress import progress, stderr_is_terminal
from mrl.train.text_config import CHECKPOINTS, TextTrainConfig

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


LOSS_STATE = "mrl_loss_state.safetensors"
LOSS_HEADS = "mrl_loss_heads.safetensors"  # loss: classify: the class heads at that step


def _sequential_sampler(dataset: Any, batch_size: int, drop_last: bool, **_: Any) -> Any:
    """Batches in dataset order (the distill dataset is already laid out batch by batch)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last)


class _MetricsCallback(TrainerCallback):
    """Collects per-prefix losses each step; at every log step appends a ``metrics.csv`` row and,
    when stderr is not a terminal, prints one short line at most every ``min_interval`` seconds."""

    def __init__(self, loss: torch.nn.Module, dims: tuple[int, ...], *, min_interval: float = 30.0) -> None:
        self.loss, self.dims, self.min_interval = loss, dims, min_interval
        self.sums = torch.zeros(len(dims), dtype=torch.float64)
        self.count = 0
        self.epoch_sums = torch.zeros(len(dims), dtype=torch.float64)
        self.epoch_count = 0
        self.history: list[dict[str, float]] = []
        self.t0 = time.perf_counter()
        self.last_print = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        per_dim = getattr(self.loss, "last_per_dim", None)
        if per_dim is not None:
            self.sums += per_dim.double().cpu()
            self.count += 1
            self.epoch_sums += per_dim.double().cpu()
            self.epoch_count += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        elapsed = time.perf_counter() - self.t0
        row = {"step": state.global_step, "epoch": float(state.epoch or 0.0), "lr": float(logs.get("learning_rate", float("nan"))), "loss": float(logs["loss"]), "seconds": elapsed}
        if self.count:
            row.update({f"loss@{d}": float(v) for d, v in zip(self.dims, (self.sums / self.count).tolist())})
        self.history.append(row)
        self.sums.zero_()
        self.count = 0
        now = time.perf_counter()
        if not stderr_is_terminal() and (now - self.last_print >= self.min_interval or state.global_step >= state.max_steps):
            self.last_print = now
            print(f"step {state.global_step}/{state.max_steps} loss {row['loss']:.4f} ({elapsed:.0f}s)", file=sys.stderr, flush=True)

    def on_epoch_end(self, args, state, control, **kwargs):
        weighting = getattr(self.loss, "weighting", None)
        if weighting is not None and self.epoch_count:
            weighting.on_epoch_end((self.epoch_sums / self.epoch_count).tolist())
        self.epoch_sums.zero_()
        self.epoch_count = 0


class _ProgressCallback(TrainerCallback):
    """The training bar through :func:`mrl.progress.progress` (one plain line every few seconds
    when stderr is not a terminal) with the last logged loss. Replaces the Trainer's own tqdm bar,
    which redraws into logs and also writes every logged dict."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.step = state.global_step
            self.bar = progress(total=state.max_steps, initial=self.step, desc="training", unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.step)
            self.step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class OrthogonalProjection(TrainerCallback):
    """Keeps a linear layer's weight orthogonal (orthonormal rows) during training: after every
    optimizer step it is replaced by its nearest orthogonal matrix, its polar factor
    (:func:`mrl.models.rotation.project_orthogonal_`: projected gradient descent onto the Stiefel manifold).

    With no bias, such a layer changes no cosine between full-width embeddings: the student's
    full-width rankings then move only where the encoder itself moves. Checkpoints hold the plain,
    already-projected weight, so resuming needs nothing extra.

    Shape: ``linear.weight`` ``[D_out, D_in]`` with ``D_out <= D_in``.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        if linear.bias is not None or linear.weight.shape[0] > linear.weight.shape[1]:
            raise MRLError(f"an orthogonal projection needs no bias and D_out <= D_in, got weight {tuple(linear.weight.shape)} with bias={linear.bias is not None}.")
        self.linear = linear

    def on_step_end(self, args, state, control, **kwargs):
        project_orthogonal_(self.linear.weight)  # not torch's orthogonal parametrization: the Dense layer must stay a plain weight in the Trainer's checkpoints and the saved folder


class _LossStateCallback(TrainerCallback):
    """Saves the loss's own state into each checkpoint folder (safetensors): the weighting's
    buffers/parameters and, for ``loss: classify``, the class heads (the Trainer saves only the model)."""

    def __init__(self, loss: torch.nn.Module) -> None:
        self.loss = loss

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        weighting = getattr(self.loss, "weighting", None)
        if weighting is not None and weighting.state_dict():
            save_safetensors(folder / LOSS_STATE, weighting.state_dict())
        heads = getattr(self.loss, "heads", None)
        if heads is not None:
            save_safetensors(folder / LOSS_HEADS, heads.state_dict())


def _restore_loss_state(loss: torch.nn.Module, checkpoint: Path) -> None:
    weighting = getattr(loss, "weighting", None)
    if weighting is not None and (checkpoint / LOSS_STATE).is_file():
        tensors, _ = load_safetensors(checkpoint / LOSS_STATE)
        weighting.load_state_dict(tensors)
    heads = getattr(loss, "heads", None)
    if heads is not None:
        if not (checkpoint / LOSS_HEADS).is_file():
            raise MRLError(f"{checkpoint} has no class heads ({LOSS_HEADS}), so this classify run cannot resume from it; train again with --overwrite.")
        tensors, _ = load_safetensors(checkpoint / LOSS_HEADS)
        try:
            heads.load_state_dict(tensors)
        except RuntimeError as exc:
            raise MRLError(f"the class heads in {checkpoint} do not fit this run ({exc}); resume with the same data and dims, or train again with --overwrite.") from exc


def _last_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return found[-1] if found else None


def run_trainer(cfg: TextTrainConfig, model: SentenceTransformer, loss: torch.nn.Module, data: Any, out: Path, *, total: int, device: str, bf16: bool, resume: bool, dims: tuple[int, ...], callbacks: list[TrainerCallback] | None = None) -> tuple[SentenceTransformer, list[dict[str, float]], int, float]:
    """Run ``SentenceTransformerTrainer`` for ``total`` steps; returns (model, history, steps, seconds).
    ``callbacks`` join the Trainer's (e.g. :class:`OrthogonalProjection`)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers.trainer_callback import PrinterCallback

    ckpt_dir = out / CHECKPOINTS
    lr_mapping = {}
    dense_idx = [i for i, m in enumerate(model) if type(m).__name__ == "Dense"]
    if dense_idx:  # the new linear layer learns faster than the pretrained encoder
        lr_mapping[rf"^model\.{dense_idx[-1]}\.linear\."] = cfg.projection_lr
    if getattr(loss, "heads", None) is not None:  # loss: classify: new heads learn faster than the encoder
        lr_mapping[r"^heads\."] = cfg.head_lr
    sampler = _sequential_sampler if cfg.loss == "distill" else (BatchSamplers.NO_DUPLICATES if cfg.loss in ("mnrl", "cached_mnrl") else BatchSamplers.BATCH_SAMPLER)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir), max_steps=total, per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio, lr_scheduler_type="linear", max_grad_norm=1.0, bf16=bf16, use_cpu=device == "cpu", seed=cfg.seed, data_seed=cfg.seed,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2, logging_steps=cfg.log_every, logging_first_step=False, report_to="none",
        disable_tqdm=True, dataloader_drop_last=True, batch_sampler=sampler, learning_rate_mapping=lr_mapping, dataloader_num_workers=0,
    )
    metrics = _MetricsCallback(loss, dims)
    all_callbacks = [metrics, _LossStateCallback(loss), *([_ProgressCallback()] if cfg.progress else []), *(callbacks or [])]  # our bar instead of the Trainer's tqdm (disable_tqdm)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss, callbacks=all_callbacks)
    trainer.remove_callback(PrinterCallback)  # its per-log dict lines flood logs; _MetricsCallback prints throttled ones
    checkpoint = _last_checkpoint(ckpt_dir) if resume else None
    if checkpoint is not None:
        _restore_loss_state(loss, checkpoint)
    start_step = int(checkpoint.name.split("-")[-1]) if checkpoint is not None else 0
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    seconds = time.perf_counter() - t0
    model.eval()
    return model, metrics.history, trainer.state.global_step - start_step, seconds
