"""The image-classification recipe (``task: image``, the default): a dataclass on the shared recipe road."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mrl.errors import MRLError
from mrl.models.classifier import MODES
from mrl.nesting import validate_dims
from mrl.train.recipe import MatryoshkaRecipe, load_recipe, register_task

# Fields that may differ between a checkpoint and the config that resumes it.
RUNTIME_FIELDS = frozenset({"device", "threads", "progress", "epochs", "precision"})
PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("sgd", "adamw")
DATASETS = ("fashion_mnist",)


@register_task("image")
@dataclass
class TrainConfig(MatryoshkaRecipe):
    """Everything that defines an image training run. Defaults are the Fashion-MNIST recipe.

    For ``mode: ff`` ``matryoshka_dims`` is the single fixed-feature size (e.g. ``[8]``) and the
    model still has an ``embed_dim``-wide backbone.
    """

    task: str = "image"  # this recipe's trainer (mrl.train.loop)
    matryoshka_dims: Any = "2,4,...,512"  # nested prefix sizes; for mode ff the single feature size
    dataset: str = "fashion_mnist"  # image dataset to train on
    data_root: str | None = None  # folder with the dataset files (default: the Debian install or $MRL_FASHION_MNIST)
    val_size: int = 5000  # training images held out for validation (and cascade calibration)
    train_subset: int | None = None  # train on only the first N training images (null: all)
    backbone: str = "small_resnet"  # backbone registry name, or torchvision:<resnet name>
    width: int = 16  # channels of the small ResNet's first stage
    embed_dim: int = 512  # embedding width D
    mode: str = "mrl"  # mrl (a head per prefix), mrl-e (one sliced head) or ff (one fixed-size head)
    epochs: int = 3  # passes over the training set
    batch_size: int = 256  # global batch (split across processes under DDP)
    optimizer: str = "sgd"  # sgd (Nesterov) or adamw
    lr: float = 0.1  # peak learning rate (after warm-up; cosine decay to 0)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # decoupled (adamw) or L2 (sgd) weight decay, >= 0
    label_smoothing: float = 0.1  # cross-entropy label smoothing in [0, 1)
    warmup_steps: int = 100  # linear warm-up steps
    augment: bool = True  # random horizontal flips
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16

    def validate(self) -> None:
        super().validate()
        if self.dataset not in DATASETS:
            raise MRLError(f"dataset {self.dataset!r} is not an image dataset mrl trains on; use one of {DATASETS}, or `task: text` (see configs/wordnet_minilm.yaml) for sentence encoders.")
        if self.mode not in MODES:
            raise MRLError(f"mode must be one of {MODES}, got {self.mode!r}.")
        validate_dims(self.matryoshka_dims, self.embed_dim, require_full=self.mode != "ff")
        if self.mode == "ff" and len(self.matryoshka_dims) != 1:
            raise MRLError(f"mode 'ff' takes a single dim in matryoshka_dims (the fixed feature size), got {self.matryoshka_dims}.")
        if self.precision not in PRECISIONS:
            raise MRLError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise MRLError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        for name in ("epochs", "batch_size", "width", "embed_dim", "val_size"):
            if getattr(self, name) <= 0:
                raise MRLError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if not self.lr > 0:
            raise MRLError(f"lr must be > 0, got {self.lr}.")
        if self.weight_decay < 0 or self.momentum < 0 or self.warmup_steps < 0:
            raise MRLError(f"weight_decay, momentum and warmup_steps must be >= 0, got {self.weight_decay}, {self.momentum}, {self.warmup_steps}.")
        if not 0 <= self.label_smoothing < 1:
            raise MRLError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.train_subset is not None and self.train_subset <= 0:
            raise MRLError(f"train_subset must be a positive integer or null, got {self.train_subset}.")

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields (other than runtime ones) whose values differ: ``{name: (self, other)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]}


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Load an image recipe (YAML or the defaults) and apply overrides (``["epochs=5"]`` or a dict).

    Raises:
        MRLError: the recipe is for another task, or a field is invalid.
    """
    cfg = load_recipe(path, overrides)
    if not isinstance(cfg, TrainConfig):
        raise MRLError(f"this recipe is for task {cfg.task!r}, not image classification; run it with `mrl train`.")
    return cfg
