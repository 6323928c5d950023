"""The image-classification recipe (``task: image``, the default): a dataclass on the shared recipe road."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrl.data.registry import check_dataset_options, dataset_image_size
from mrl.errors import MRLError
from mrl.heads import PREFIX_CALIBRATIONS
from mrl.models.classifier import MODES
from mrl.models.vision import get_backbone_spec
from mrl.nesting import validate_dims
from mrl.train.recipe import MatryoshkaRecipe, load_recipe, register_task

# Fields that may differ between a checkpoint and the config that resumes it.
RUNTIME_FIELDS = frozenset({"device", "threads", "progress", "epochs", "precision", "num_workers"})
PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("sgd", "adamw")


@register_task("image")
@dataclass
class TrainConfig(MatryoshkaRecipe):
    """Everything that defines an image training run. Defaults are the Fashion-MNIST recipe.

    For ``mode: ff`` ``matryoshka_dims`` is the single fixed-feature size (e.g. ``[8]``) and the
    model still has an ``embed_dim``-wide backbone.
    """

    task: str = "image"  # this recipe's trainer (mrl.train.loop)
    matryoshka_dims: Any = "2,4,...,512"  # nested prefix sizes; for mode ff the single feature size
    dataset: str = "fashion_mnist"  # a registered image dataset: fashion_mnist (IDX files) or imagefolder (data_root/train/<class>/*, val/<class>/*)
    data_root: str | None = None  # dataset folder (fashion_mnist default: the Debian install or $MRL_FASHION_MNIST)
    val_size: int = 5000  # fashion_mnist: training images held out for validation (and cascade calibration)
    val_fraction: float = 0.1  # imagefolder: share of each training class held out for validation (and for test when there is no val/ folder)
    train_subset: int | None = None  # train on only N training images (fashion_mnist: the first N; imagefolder: a fixed random N)
    image_size: int | None = None  # imagefolder: side of the square training and eval crops (null: 224); fashion_mnist is 28
    image_mode: str = "RGB"  # imagefolder: RGB or L (grayscale); every image is converted to it
    mean: list[float] | None = None  # imagefolder: per-channel normalisation mean (null: ImageNet's for RGB, 0.5 for L)
    std: list[float] | None = None  # imagefolder: per-channel normalisation std (null: ImageNet's for RGB, 0.5 for L)
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # imagefolder training: random resized crop area range ([1, 1]: whole image)
    crop_pct: float = 0.875  # imagefolder eval: resize to image_size / crop_pct, then centre-crop image_size (timm's crop_pct)
    num_workers: int | None = None  # imagefolder: DataLoader worker processes (null: min(4, CPU cores))
    bad_images: str = "skip"  # imagefolder: unreadable images are skipped with a count and their paths, or fail the run before training
    scan_images: bool = True  # imagefolder: decode every image once when the dataset opens, so bad ones are found before training
    backbone: str = "small_resnet"  # a registered backbone (mrl.models.vision.list_backbones()), e.g. torchvision:resnet50
    width: int = 16  # channels of the small ResNet's first stage
    embed_dim: int | None = None  # embedding width D (null: the backbone's native width: 512 small_resnet/resnet18, 2048 resnet50); else a projection
    weights: str | None = None  # start the backbone from this local file (.safetensors, or .pth read with weights_only=True); nothing downloads
    mode: str = "mrl"  # mrl (a head per prefix), mrl-e (one sliced head) or ff (one fixed-size head)
    prefix_calibration: str = "none"  # mrl-e: learned per-prefix logit scale and/or bias on the shared head (none, scale, bias, scale_bias), or owner / owner_bias: each column block of the shared weight trained only by its smallest head
    epochs: int = 3  # passes over the training set
    batch_size: int = 256  # global batch (split across processes under DDP)
    optimizer: str = "sgd"  # sgd (Nesterov) or adamw
    lr: float = 0.1  # peak learning rate (after warm-up; cosine decay to 0)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # decoupled (adamw) or L2 (sgd) weight decay, >= 0
    label_smoothing: float = 0.1  # cross-entropy label smoothing in [0, 1)
    warmup_steps: int = 100  # linear warm-up steps
    augment: bool = True  # training augmentation: fashion_mnist random flips; imagefolder random resized crop + flip
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16

    @property
    def embedding_width(self) -> int:
        """``D``: ``embed_dim``, or the backbone's native width when it is null."""
        return self.embed_dim if self.embed_dim is not None else get_backbone_spec(self.backbone).native_width

    def validate(self) -> None:
        super().validate()
        check_dataset_options(self.to_dict())
        spec = get_backbone_spec(self.backbone)
        if self.mode not in MODES:
            raise MRLError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.prefix_calibration not in PREFIX_CALIBRATIONS:
            raise MRLError(f"prefix_calibration must be one of {PREFIX_CALIBRATIONS}, got {self.prefix_calibration!r}.")
        if self.prefix_calibration != "none" and self.mode != "mrl-e":
            raise MRLError(f"prefix_calibration={self.prefix_calibration!r} applies to mode mrl-e only (mode is {self.mode!r}); set prefix_calibration=none.")
        for name in ("epochs", "batch_size", "width", "val_size"):
            if getattr(self, name) <= 0:
                raise MRLError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.embed_dim is not None and self.embed_dim <= 0:
            raise MRLError(f"embed_dim must be a positive integer or null (the backbone's native width), got {self.embed_dim}.")
        validate_dims(self.matryoshka_dims, self.embedding_width, require_full=self.mode != "ff")
        if self.mode == "ff" and len(self.matryoshka_dims) != 1:
            raise MRLError(f"mode 'ff' takes a single dim in matryoshka_dims (the fixed feature size), got {self.matryoshka_dims}.")
        size = dataset_image_size(self.to_dict())
        if size < spec.min_image_size:
            raise MRLError(f"image_size {size} is too small for backbone {self.backbone} (it needs at least {spec.min_image_size} px); use dataset imagefolder with image_size >= {spec.min_image_size}, or a backbone for small images such as small_resnet.")
        if self.precision not in PRECISIONS:
            raise MRLError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise MRLError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if not self.lr > 0:
            raise MRLError(f"lr must be > 0, got {self.lr}.")
        if self.weight_decay < 0 or self.momentum < 0 or self.warmup_steps < 0:
            raise MRLError(f"weight_decay, momentum and warmup_steps must be >= 0, got {self.weight_decay}, {self.momentum}, {self.warmup_steps}.")
        if not 0 <= self.label_smoothing < 1:
            raise MRLError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.train_subset is not None and self.train_subset <= 0:
            raise MRLError(f"train_subset must be a positive integer or null, got {self.train_subset}.")
        if self.weights is not None and not Path(self.weights).is_file():
            raise MRLError(f"weights file {self.weights} does not exist; give a local .safetensors or .pth file (nothing is downloaded).")

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields (other than runtime ones) whose values differ: ``{name: (self, other)}``."""
        a, b = self.to_dict(), other.to_dict()
        a["embed_dim"], b["embed_dim"] = self.embedding_width, other.embedding_width  # null means the native width
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
