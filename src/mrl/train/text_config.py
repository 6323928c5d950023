"""The ``task: text`` recipe (:class:`TextTrainConfig`) and the names the text trainers share.

Below both :mod:`mrl.train.text` (the run) and :mod:`mrl.train.text_trainer` (the Trainer behind it),
so each imports it one way and neither imports the other back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mrl.errors import MRLError
from mrl.train.adaptor import ORTHOGONAL_MAPS
from mrl.train.recipe import MatryoshkaRecipe, load_recipe, register_task
from mrl.train.text_losses import LOSSES

CHECKPOINTS = "checkpoints"
PROJECTIONS = ("pca", "rotation", "adaptor", "none")


@register_task("text")
@dataclass
class TextTrainConfig(MatryoshkaRecipe):
    """A text training recipe (``task: text`` in YAML); the defaults are the label-free recipe.

    ``dataset``: for ``loss: distill``/``mse_distill`` the texts to adapt on (``wordnet``, a BEIR
    folder's ``unlabeled.jsonl``, a ``.txt`` or ``.jsonl``); for the pair losses ``wordnet`` or a pair
    file (JSONL/CSV/TSV with ``anchor``, ``positive`` and optional ``negative``); for ``classify``
    labelled texts (``wordnet-classes`` or a ``.jsonl`` with ``text`` and ``label``).
    """

    task: str = "text"  # this recipe's trainer (mrl.train.text)
    matryoshka_dims: Any = "8,16,...,384"  # nested prefix sizes; the last is the output width
    model: str = "all-MiniLM-L6-v2"  # base sentence-transformers folder, or all-MiniLM-L6-v2 (packaged)
    loss: str = "distill"  # distill (label-free, keeps the base model) | mnrl | cached_mnrl | cosent | mse_distill | classify (class heads per prefix)
    dataset: str = "wordnet"  # texts (distill, mse_distill), pairs (mnrl, cached_mnrl, cosent) or labelled texts (classify); see the class docstring
    data_root: str | None = None  # folder with WordNet's data.noun (default /usr/share/wordnet or $MRL_WORDNET)
    general_text: str | None = None  # distill: general texts mixed into the pool (same kinds of source as dataset)
    general_fraction: float = 0.0  # distill: share of batch anchors drawn from general_text
    max_texts: int | None = 20000  # distill: at most this many distinct texts from dataset (a seeded sample)
    teacher: str | None = None  # distill/mse_distill: teacher folder (null: the base model itself, frozen)
    projection: str = "adaptor"  # distill: linear layer on top, initialised from a fitted unsupervised adaptor | pca (centred) | rotation (orthogonal, no bias: centred PCA axes with the mean direction last, kept orthogonal while training: full-width cosines depend on the encoder alone) | none (no layer)
    projection_lr: float = 1e-3  # learning rate of that linear layer
    init_steps: int = 500  # projection: adaptor / rotation: steps of the unsupervised adaptor fit (kind linear / rotation) on the cached base embeddings that initialises it (rotation: 0, or matryoshka_dims ending below the model width, = the mean-last PCA rotation itself)
    init_lr: float = 1e-3  # learning rate of that fit (AdamW, cosine decay)
    init_orthogonal: str = "cayley"  # rotation: how that fit keeps W orthogonal, cayley (torch's parametrization) | polar (projected AdamW); mrl.train.adaptor.ORTHOGONAL_MAPS
    neighbours: int = 7  # distill: neighbours of each batch anchor put in the same batch
    tau: float = 0.05  # distill: temperature of the listwise ranking KL
    sim_weight: float = 1.0  # distill: weight of similarity matching
    rank_weight: float = 1.0  # distill: weight of the ranking KL
    rank_boost: float = 2.0  # distill: ranking weight multiplier for prefixes <= rank_boost_max_dim
    rank_boost_max_dim: int = 32  # distill: largest prefix whose ranking term is boosted
    full_weight: float = 2.0  # distill: multiplier of the full-width prefix loss (never forget)
    pair_weight: float = 0.0  # distill with pairs: weight of the in-batch-negatives pair term
    pseudo_queries: bool = False  # distill: add each text's first sentence (<= 24 words) to the pool, so prefixes learn short-query <-> document geometry
    train_layers: int | None = None  # train only the top N transformer layers (null: all); the rest stay frozen (cheaper, forgets less)
    dropout: bool = True  # keep the encoder's dropout while training (false: every dropout layer off; distill with trained encoder layers: the student then starts exactly at the teacher, so the full-width term measures real drift rather than dropout noise, ~0.12 of loss at step 0 on MiniLM)
    max_train: int | None = None  # pair losses: keep at most this many training pairs (null: all)
    epochs: int = 1  # passes over the data (ignored when max_steps is set)
    max_steps: int | None = None  # exact number of optimisation steps (null: epochs x data / batch; distill: 0 = no encoder steps, the base model plus its fitted projection)
    batch_size: int = 64  # texts (distill) or pairs per step
    mini_batch_size: int = 32  # cached_mnrl: forward chunk size
    lr: float = 2e-5  # peak AdamW learning rate of the encoder (linear warm-up, then linear decay)
    weight_decay: float = 0.01  # AdamW weight decay, >= 0
    warmup_ratio: float = 0.1  # share of the steps spent warming up, in [0, 1)
    scale: float = 20.0  # inverse temperature of in-batch-negatives losses
    max_seq_length: int = 128  # tokens kept per text
    log_every: int = 20  # steps between metrics.csv rows
    save_steps: int = 100  # steps between checkpoints of the encoder steps and of the projection fit (which also checkpoints at least once a minute); resume after a kill from the last one
    bf16: bool | None = None  # bf16 autocast (null: where it is native: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 / AMX; elsewhere fp32 is faster)
    head_lr: float = 2e-3  # classify: learning rate of the class heads
    head_scale: float = 10.0  # classify: the unit-norm embedding is multiplied by this before the heads
    label_smoothing: float = 0.1  # classify: cross-entropy label smoothing, in [0, 1)
    self_distill: float = 0.0  # classify: weight of each smaller head's KL to the full head's class distribution (cascades stop earlier when the heads agree)
    cache_dir: str | None = None  # where teacher encodings are cached (null: $MRL_CACHE or ~/.cache/mrl/embeddings)

    def validate(self) -> None:
        super().validate()
        if self.loss not in LOSSES:
            raise MRLError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.projection not in PROJECTIONS:
            raise MRLError(f"projection must be one of {PROJECTIONS}, got {self.projection!r}.")
        for name in ("epochs", "batch_size", "max_seq_length", "log_every", "save_steps", "mini_batch_size", "rank_boost_max_dim"):
            if getattr(self, name) <= 0:
                raise MRLError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.batch_size < 2:
            raise MRLError("batch_size must be >= 2: in-batch similarities need at least two texts per batch.")
        if self.neighbours < 0:
            raise MRLError(f"neighbours must be >= 0, got {self.neighbours}.")
        if self.init_steps < 0 or (self.init_steps == 0 and self.projection == "adaptor"):
            raise MRLError(f"init_steps must be > 0 for projection: adaptor (>= 0 for rotation), got {self.init_steps}.")
        if not (isinstance(self.init_lr, (int, float)) and not isinstance(self.init_lr, bool) and self.init_lr > 0):
            raise MRLError(f"init_lr must be a positive learning rate (e.g. 0.005), got {self.init_lr!r}.")
        if self.init_orthogonal not in ORTHOGONAL_MAPS:
            raise MRLError(f"init_orthogonal must be one of {ORTHOGONAL_MAPS}, got {self.init_orthogonal!r}.")
        for name in ("max_steps", "max_train", "max_texts"):
            v = getattr(self, name)
            if v is not None and v <= 0 and not (name == "max_steps" and v == 0 and self.loss == "distill" and self.projection != "none"):
                raise MRLError(f"{name} must be a positive integer or null, got {v!r} (max_steps: 0 only for loss: distill with a projection: the base model plus its fitted projection).")
        if not self.lr > 0 or not self.projection_lr > 0 or not self.scale > 0 or not self.tau > 0 or not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            raise MRLError(f"need lr, projection_lr, scale, tau > 0, 0 <= warmup_ratio < 1 and weight_decay >= 0; got {self.lr}, {self.projection_lr}, {self.scale}, {self.tau}, {self.warmup_ratio}, {self.weight_decay}.")
        if min(self.sim_weight, self.rank_weight, self.rank_boost, self.full_weight, self.pair_weight) < 0:
            raise MRLError("sim_weight, rank_weight, rank_boost, full_weight and pair_weight must be >= 0.")
        if not 0 <= self.general_fraction <= 1 or (self.general_fraction > 0 and not self.general_text):
            raise MRLError(f"general_fraction must be in [0, 1] and needs general_text when > 0; got {self.general_fraction} with general_text={self.general_text!r}.")
        if self.train_layers is not None and self.train_layers < 0:
            raise MRLError(f"train_layers must be >= 0 or null (all), got {self.train_layers}.")
        if not self.head_lr > 0 or not self.head_scale > 0 or not 0 <= self.label_smoothing < 1 or not self.self_distill >= 0:
            raise MRLError(f"need head_lr > 0, head_scale > 0, 0 <= label_smoothing < 1 and self_distill >= 0; got {self.head_lr}, {self.head_scale}, {self.label_smoothing}, {self.self_distill}.")
        if self.loss == "classify" and self.dataset == "wordnet":
            raise MRLError("loss: classify trains on labelled texts; set dataset: wordnet-classes or a .jsonl of {\"text\": ..., \"label\": ...} lines (dataset: wordnet holds pairs).")
        if self.pair_weight and self.loss == "distill":
            raise MRLError("pair_weight > 0 needs pairs, which the text-only distill dataset does not hold; set pair_weight: 0.")


def load_text_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TextTrainConfig:
    """Load a ``task: text`` YAML recipe and apply ``key=value`` overrides (values parsed as YAML)."""
    cfg = load_recipe(path, overrides, default_task="text")
    if not isinstance(cfg, TextTrainConfig):
        raise MRLError(f"this recipe is for task {cfg.task!r}, not text; see configs/text_distill.yaml for a text recipe.")
    return cfg
