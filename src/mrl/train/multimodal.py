"""Two-tower Matryoshka contrastive training (``task: multimodal``), readable top to bottom.

``train_multimodal(config, out_dir)`` trains an image tower and a text tower (see
:mod:`mrl.models.two_tower`) on a data set built by :mod:`mrl.data.image_text`, minimising
:class:`mrl.contrastive.MatryoshkaCLIPLoss`: at every prefix of ``matryoshka_dims`` the symmetric
InfoNCE of the batch's pictures and captions, combined by a :mod:`mrl.weighting` strategy. With
``mode: ff`` only the full width is trained (the fixed-feature baseline, truncated at evaluation).

Each epoch every training picture is seen once, with one of its captions drawn at random; pictures
are shifted by up to ``shift`` pixels (no flips: captions say "left" and "right"). Two captions of a
batch that are the same text are not used as each other's negatives.

Text side: with ``text_tower: frozen`` the sentence encoder's features of every caption are computed
once (cached in ``feature_cache``, default ``OUT/cache``) and only the projection trains; with
``finetune`` the encoder trains too, at ``text_lr``.

Writes into ``out_dir``: ``checkpoint.safetensors`` after every epoch (model, optimizer, scheduler,
weighting and RNG states, epoch reached: ``resume=True`` continues bit for bit), ``metrics.csv``
(train loss per dim, validation recall@10 both ways per dim), and at the end ``model.safetensors`` +
``config.json``. A non-finite loss stops the run with an error before any weight is updated.

Distributed: under ``torchrun`` every rank takes its slice of each global batch, the embeddings are
gathered (with gradients) so the loss sees the whole global batch on every rank, exactly as one
process would; rank 0 alone writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from mrl.contrastive import MAX_LOG_SCALE, MatryoshkaCLIPLoss
from mrl.data.image_text import ImageTextSplit, images_to_tensor, load_image_text
from mrl.errors import CheckpointError, MRLError
from mrl.io import Output, open_output, write_csv, write_json
from mrl.models.text_features import cached_features, load_text_encoder
from mrl.models.two_tower import TwoTower, build_two_tower, check_text_width, embed_images, embed_texts, save_two_tower
from mrl.pair_recall import cross_modal_recall
from mrl.progress import note, progress
from mrl.train import distributed as ddp
from mrl.train.checkpoint import CHECKPOINT_NAME, MODEL_NAME, load_checkpoint, restore, save_checkpoint
from mrl.train.loop import RUN_KIND, build_optimizer, check_run_folder, resolve_device, resolve_precision, seed_everything, write_run_file
from mrl.train.multimodal_config import MultimodalTrainConfig


@dataclass
class MultimodalResult:
    """``history``: one dict per epoch; ``seconds``: training wall-clock (this process's epochs)."""

    out_dir: Path
    history: list[dict[str, Any]]
    seconds: float

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]


def shift_batch(x: torch.Tensor, offsets: torch.Tensor, shift: int) -> torch.Tensor:
    """Shift each picture by its own offset (white fill): pad by ``shift``, crop back to ``S``.

    Shape: ``x`` ``[B, 3, S, S]``, ``offsets`` int ``[B, 2]`` in ``[0, 2*shift]`` -> ``[B, 3, S, S]``.
    """
    if shift == 0:
        return x
    s = x.shape[-1]
    padded = torch.nn.functional.pad(x, (shift,) * 4, value=1.0)  # 1.0 is white after scaling
    ar = torch.arange(s, device=x.device)
    rows = (offsets[:, 0, None] + ar)[:, None, :, None]  # [B, 1, S, 1]
    cols = (offsets[:, 1, None] + ar)[:, None, None, :]  # [B, 1, 1, S]
    b = torch.arange(len(x), device=x.device)[:, None, None, None]
    c = torch.arange(3, device=x.device)[None, :, None, None]
    return padded[b, c, rows, cols]


def _caption_table(split: ImageTextSplit) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """The split's distinct captions and, flattened, each picture's caption ids (``flat``), where
    they start (``start [N]``) and how many there are (``count [N]``)."""
    texts, per_image = split.caption_index()
    count = torch.tensor([len(c) for c in per_image])
    start = torch.cumsum(count, 0) - count
    flat = torch.tensor([t for c in per_image for t in c])
    return texts, flat, start, count


def train_multimodal(config: MultimodalTrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False, stop_after_epoch: int | None = None) -> MultimodalResult:
    """Train a two-tower Matryoshka model (or its FF baseline); one process or one torchrun rank.

    Args:
        config: the run's :class:`MultimodalTrainConfig`.
        out_dir: folder for checkpoint, metrics and model.
        resume: continue from ``out_dir/checkpoint.safetensors`` (the config must match it, except
            runtime fields such as ``device`` and ``threads``).
        overwrite: allow writing into a folder that already holds a run.
        stop_after_epoch: stop (as if killed) once this many epochs are complete; for tests.
    """
    out = check_run_folder(out_dir, resume=resume, overwrite=overwrite)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    ctx = ddp.init_distributed(device)
    try:
        if not ctx.is_main:  # rank 0 alone locks the run folder and writes it (files listed in its manifest)
            return _train(config, out, None, ctx, ddp.rank_device(device, ctx), resume=resume, stop_after_epoch=stop_after_epoch)
        with open_output(out, RUN_KIND, overwrite=overwrite, append=resume) as writer:
            return _train(config, out, writer, ctx, ddp.rank_device(device, ctx), resume=resume, stop_after_epoch=stop_after_epoch)
    finally:
        ddp.shutdown(ctx)


def _text_side(config: MultimodalTrainConfig, texts: list[str], out: Path, ctx: ddp.DistContext, writer: Output | None = None) -> tuple[torch.Tensor | None, Any, int]:
    """(cached features of ``texts`` or None, the encoder being fine-tuned or None, encoder width)."""
    if config.text_tower == "finetune":
        encoder, width = load_text_encoder(config.text_model, max_seq_length=config.max_seq_length)
        return None, encoder, width
    cache = Path(config.feature_cache) if config.feature_cache else out / "cache"
    if writer is not None and not config.feature_cache:
        writer.claim_dir("cache")  # the run's own cache folder, listed in its manifest
    if ctx.is_main:  # rank 0 encodes and writes the cache; the others then read it
        feats = cached_features(config.text_model, texts, cache, max_seq_length=config.max_seq_length)
    ddp.barrier(ctx)
    if not ctx.is_main:
        feats = cached_features(config.text_model, texts, cache, max_seq_length=config.max_seq_length)
    return torch.from_numpy(feats), None, int(feats.shape[1])


def _validate(model: TwoTower, config: MultimodalTrainConfig, val: ImageTextSplit, val_feats: torch.Tensor | None, device: torch.device) -> dict[str, float]:
    """Validation recall@10, text->image and image->text, at every prefix."""
    texts, per_image = val.caption_index()
    img = embed_images(model, val.images, device=device)
    txt = embed_texts(model, config.to_dict(), texts, features=None if val_feats is None else val_feats.numpy())
    rec = cross_modal_recall(img, txt, per_image, config.matryoshka_dims, ks=(10,))
    model.train()
    return {f"val_{way}_recall@10@{d}": r[f"{way}_recall@10"] for d, r in rec.items() for way in ("t2i", "i2t")}


def _train(config: MultimodalTrainConfig, out: Path, writer: Output | None, ctx: ddp.DistContext, device: torch.device, *, resume: bool, stop_after_epoch: int | None) -> MultimodalResult:
    ckpt_path = out / CHECKPOINT_NAME
    ddp.check_global_batch(config.batch_size, ctx)
    seed_everything(config.seed, ctx.rank)

    data = load_image_text(config.dataset)
    train, val = data.split("train"), data.split("val")
    if len(train) < config.batch_size:
        raise MRLError(f"the training split has {len(train)} pictures, fewer than batch_size={config.batch_size}; lower batch_size.")
    texts, flat, start, count = _caption_table(train)
    val_texts, _ = val.caption_index()
    feats, encoder, text_dim = _text_side(config, texts + val_texts, out, ctx, writer)
    train_feats, val_feats = (feats[: len(texts)], feats[len(texts) :]) if feats is not None else (None, None)
    x_train = images_to_tensor(train.images)

    model = build_two_tower(config.to_dict(), text_dim, encoder).to(device)
    check_text_width(text_dim, model.text.in_dim, config.text_model)
    weighting = config.build_weighting().to(device) if config.mode == "mrl" else None
    loss_fn = MatryoshkaCLIPLoss(config.loss_dims, weighting=weighting, n_dims_per_step=config.n_dims_per_step if config.mode == "mrl" else None)
    weighting = loss_fn.weighting
    if ctx.enabled:
        weighting.sync = lambda t: ddp.all_reduce_mean(t, ctx)
    amp_dtype = resolve_precision(config.precision, device)
    n = len(train)
    steps_per_epoch = n // config.batch_size
    groups = [
        {"params": [p for name, p in model.named_parameters() if not name.startswith(("encoder.", "log_scales"))]},
        {"params": [model.log_scales], "weight_decay": 0.0},
        {"params": list(weighting.parameters()), "weight_decay": 0.0},
    ]
    if encoder is not None:
        groups.append({"params": list(model.encoder.parameters()), "lr": config.text_lr})
    optimizer, scheduler = build_optimizer(config, [g for g in groups if g["params"]], steps_per_epoch * config.epochs)  # type: ignore[arg-type]

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        tensors, state = load_checkpoint(ckpt_path)
        saved = MultimodalTrainConfig.from_dict(state["config"])
        diff = saved.differences(config)
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"cannot resume: the config contradicts the checkpoint ({detail}); resume with the original config or start a new run in another folder.")
        restore(tensors, state, model=model, optimizer=optimizer, scheduler=scheduler, weighting=weighting)
        start_epoch, history = state["epoch"], state["history"]

    net: torch.nn.Module = model
    if ctx.enabled:
        # sampled prefixes leave some temperatures without gradient; a fine-tuned encoder's pooler has none
        unused = encoder is not None or (config.mode == "mrl" and config.n_dims_per_step is not None and config.n_dims_per_step < len(config.loss_dims))
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused)
    dims = config.loss_dims
    t_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        net.train()
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        pick = flat[start + (torch.rand(n, generator=gen) * count).long().clamp(max=count - 1)]  # one caption id per picture
        offsets = torch.randint(0, 2 * config.shift + 1, (n, 2), generator=gen)
        sums = torch.zeros(len(dims), dtype=torch.float64)
        seen = torch.zeros(len(dims), dtype=torch.float64)
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", unit="step", disable=not (config.progress and ctx.is_main), leave=False)
        for step in bar:
            global_idx = perm[step * config.batch_size : (step + 1) * config.batch_size]
            idx = ddp.shard_batch(global_idx, ctx)
            x = shift_batch(x_train[idx], offsets[idx], config.shift).to(device, non_blocking=True)
            caption_ids = pick[idx]
            text_in = train_feats[caption_ids].to(device) if train_feats is not None else [texts[i] for i in caption_ids.tolist()]
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else torch.autocast(device.type, enabled=False)
            with autocast:
                img, txt = net(x, text_in)
            img, txt = ddp.gather_with_grad(img.float(), ctx), ddp.gather_with_grad(txt.float(), ctx)
            all_ids = pick[global_idx].to(device)
            loss_out = loss_fn(img, txt, model.log_scales, all_ids[:, None] == all_ids[None, :])
            finite = ddp.all_reduce_sum(torch.isfinite(loss_out.total.detach()).float().reshape(1), ctx)
            if finite.item() < ctx.world_size:
                per = ", ".join(f"{d}: {v:.3g}" for d, v in zip(dims, loss_out.per_dim.tolist()))
                raise MRLError(f"training diverged: the loss is not finite at epoch {epoch + 1}, step {step + 1} (per-dim loss {per}); no weights were saved from this epoch. Lower lr (now {config.lr}) and start again, or --resume from the last checkpoint with a lower lr in a new run.")
            optimizer.zero_grad(set_to_none=True)
            loss_out.total.backward()
            if ctx.enabled:
                ddp.average_gradients(list(weighting.parameters()), ctx)
            optimizer.step()
            scheduler.step()
            per_dim = loss_out.per_dim.detach().double().cpu()
            ok = ~torch.isnan(per_dim)
            sums += torch.where(ok, per_dim, 0.0)
            seen += ok.double()
            if step % 10 == 0 and not bar.disable:
                bar.set_postfix_str(" ".join(f"{d}:{v:.2f}" for d, v in zip(dims, per_dim.tolist()) if v == v))
        bar.close()
        mean_losses = (sums / seen.clamp(min=1)).tolist()
        weighting.on_epoch_end(mean_losses)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": float(sum(mean_losses))}
        row.update({f"train_loss@{d}": v for d, v in zip(dims, mean_losses)})
        row.update({f"temperature@{d}": math.exp(-min(s, MAX_LOG_SCALE)) for d, s in zip(dims, model.log_scales.detach().cpu().tolist())})
        ddp.broadcast_buffers(model, ctx)  # evaluate (and save) rank 0's batch-norm statistics
        row.update(_validate(model, config, val, val_feats, device))
        row["seconds"] = time.perf_counter() - t_epoch
        history.append(row)
        if ctx.is_main:
            if config.progress:
                top = config.matryoshka_dims
                note(f"epoch {epoch + 1}/{config.epochs}  loss {row['train_loss']:.3f}  val text->image recall@10 per dim " + " ".join(f"{d}:{row[f'val_t2i_recall@10@{d}']:.3f}" for d in top) + f"  ({row['seconds']:.0f}s)")
            state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "weighting": weighting, "epoch": epoch + 1, "config": config.to_dict(), "history": history, "extra": {"world_size": ctx.world_size}}
            write_run_file(writer, "metrics.csv", lambda p: write_csv(p, history))
            write_run_file(writer, CHECKPOINT_NAME, lambda p, state=state: save_checkpoint(p, **state))
        ddp.barrier(ctx)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            return MultimodalResult(out, history, time.perf_counter() - t_start)

    if ctx.is_main:
        write_run_file(writer, MODEL_NAME, lambda p: save_two_tower(p, model, config.to_dict(), text_dim, data.image_size))
        write_run_file(writer, "config.json", lambda p: write_json(p, config.to_dict()))
    ddp.barrier(ctx)
    return MultimodalResult(out, history, time.perf_counter() - t_start)
