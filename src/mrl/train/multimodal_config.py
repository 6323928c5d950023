"""The image-text two-tower recipe (``task: multimodal``): a dataclass on the shared recipe road.

Kept apart from the training loop (:mod:`mrl.train.multimodal`) so that reading a recipe does not
import the image and text stacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mrl.errors import MRLError
from mrl.nesting import validate_dims
from mrl.train.recipe import MatryoshkaRecipe, load_recipe, register_task

MODES = ("mrl", "ff")
TEXT_TOWERS = ("frozen", "finetune")
RUNTIME_FIELDS = frozenset({"device", "threads", "progress", "feature_cache"})


@register_task("multimodal")
@dataclass
class MultimodalTrainConfig(MatryoshkaRecipe):
    """An image-text two-tower recipe (``task: multimodal``). ``dataset`` is a folder built by
    ``benchmarks/build_image_text.py`` (:func:`mrl.data.image_text.build_image_text`)."""

    task: str = "multimodal"  # this recipe's trainer (mrl.train.multimodal)
    matryoshka_dims: Any = "8,16,...,256"  # nested prefix sizes; the last is the shared embedding width D
    mode: str = "mrl"  # mrl (loss at every prefix) or ff (loss at D only: the fixed-feature baseline)
    dataset: str | None = None  # image-text data set folder (required)
    backbone: str = "small_resnet"  # image backbone: a registry name or torchvision:<name>
    width: int = 32  # channels of the small ResNet's first stage
    image_features: int = 256  # width of the backbone's pooled features (before the linear map to D)
    text_model: str = "all-MiniLM-L6-v2"  # local sentence-transformers folder (all-MiniLM-L6-v2 is packaged)
    text_tower: str = "frozen"  # frozen (cached encoder features + trained projection) or finetune
    text_hidden: int = 512  # hidden width of the text projection (0: one linear map)
    max_seq_length: int = 32  # tokens kept per caption
    feature_cache: str | None = None  # folder for cached frozen-encoder features (null: OUT/cache)
    epochs: int = 20  # passes over the training pictures
    batch_size: int = 256  # global batch of picture-caption pairs (in-batch negatives)
    optimizer: str = "adamw"  # adamw or sgd
    lr: float = 2e-3  # peak learning rate of the towers (warm-up, then cosine decay to 0)
    text_lr: float = 2e-5  # peak learning rate of a fine-tuned text encoder
    momentum: float = 0.9  # SGD momentum (optimizer: sgd)
    weight_decay: float = 0.05  # decoupled weight decay (not applied to temperatures)
    warmup_steps: int = 50  # linear warm-up steps
    shift: int = 2  # random picture shift in pixels (0: no augmentation)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16

    def validate(self) -> None:
        super().validate()
        if self.dataset is None:
            raise MRLError("dataset is missing; set it to a folder built by benchmarks/build_image_text.py, e.g. --set dataset=data/emoji-icons.")
        validate_dims(self.matryoshka_dims)
        if self.mode not in MODES:
            raise MRLError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.text_tower not in TEXT_TOWERS:
            raise MRLError(f"text_tower must be one of {TEXT_TOWERS}, got {self.text_tower!r}.")
        if self.optimizer not in ("adamw", "sgd") or self.precision not in ("auto", "fp32", "bf16"):
            raise MRLError(f"optimizer must be adamw or sgd and precision auto, fp32 or bf16; got {self.optimizer!r}, {self.precision!r}.")
        for name in ("epochs", "batch_size", "width", "image_features", "max_seq_length"):
            if getattr(self, name) <= 0:
                raise MRLError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.batch_size < 2:
            raise MRLError("batch_size must be >= 2: the other pairs of a batch are the negatives.")
        if not (self.lr > 0 and self.text_lr > 0):
            raise MRLError(f"lr and text_lr must be > 0, got {self.lr} and {self.text_lr}.")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.text_hidden < 0 or self.shift < 0 or self.momentum < 0:
            raise MRLError("weight_decay, warmup_steps, text_hidden, shift and momentum must be >= 0.")

    @property
    def loss_dims(self) -> list[int]:
        """The prefixes the loss trains: every ``matryoshka_dims`` entry, or only ``D`` for ``ff``."""
        return list(self.matryoshka_dims) if self.mode == "mrl" else [self.matryoshka_dims[-1]]

    def differences(self, other: MultimodalTrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields (other than runtime ones) whose values differ: ``{name: (self, other)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]}


def load_multimodal_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None) -> MultimodalTrainConfig:
    """Load a ``task: multimodal`` recipe and apply ``key=value`` overrides."""
    cfg = load_recipe(path, overrides, default_task="multimodal")
    if not isinstance(cfg, MultimodalTrainConfig):
        raise MRLError(f"this recipe is for task {cfg.task!r}, not multimodal; see configs/emoji_icons_multimodal.yaml.")
    return cfg
