"""Training configuration: a dataclass loaded from YAML, with CLI-style ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


from mrl.config_io import from_mapping, read_config
from mrl.errors import MRLError
from mrl.models.classifier import MODES
from mrl.nesting import parse_dims, validate_dims
from mrl.weighting import Weighting, weighting_from_config

# Fields that may differ between a checkpoint and the config that resumes it.
RUNTIME_FIELDS = frozenset({"device", "threads", "progress", "epochs", "precision"})
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the Fashion-MNIST recipe.

    ``matryoshka_dims`` may be given as ``"2,4,...,512"``; for ``mode: ff`` it is the single
    fixed-feature size (e.g. ``[8]``) and the model still has an ``embed_dim``-wide backbone.
    ``weighting`` names a strategy of :mod:`mrl.weighting` (options in ``weighting_kwargs``);
    ``precision`` ``auto`` means bf16 autocast on CUDA and fp32 on CPU.
    """

    dataset: str = "fashion_mnist"
    data_root: str | None = None
    val_size: int = 5000
    train_subset: int | None = None
    backbone: str = "small_resnet"
    width: int = 16
    embed_dim: int = 512
    mode: str = "mrl"
    matryoshka_dims: Any = "2,4,...,512"
    matryoshka_weights: list[float] | None = None
    weighting: str = "uniform"
    weighting_kwargs: dict[str, Any] = field(default_factory=dict)
    n_dims_per_step: int | None = None
    epochs: int = 3
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_steps: int = 100
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.dataset != "fashion_mnist":
            raise MRLError(f"dataset {self.dataset!r} is not an image dataset mrl trains on; use 'fashion_mnist', or `task: text` (see configs/wordnet_minilm.yaml) for sentence encoders.")
        if self.mode not in MODES:
            raise MRLError(f"mode must be one of {MODES}, got {self.mode!r}.")
        self.matryoshka_dims = list(parse_dims(self.matryoshka_dims) if isinstance(self.matryoshka_dims, str) else validate_dims(self.matryoshka_dims))
        validate_dims(self.matryoshka_dims, self.embed_dim, require_full=self.mode != "ff")
        if self.mode == "ff" and len(self.matryoshka_dims) != 1:
            raise MRLError(f"mode 'ff' takes a single dim in matryoshka_dims (the fixed feature size), got {self.matryoshka_dims}.")
        if self.precision not in PRECISIONS:
            raise MRLError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        if not isinstance(self.weighting, str):
            raise MRLError(f"weighting must be a strategy name such as 'uniform', got {self.weighting!r}.")
        if not isinstance(self.weighting_kwargs, dict):
            raise MRLError(f"weighting_kwargs must be a mapping of option to value, got {self.weighting_kwargs!r}.")
        if self.optimizer not in ("sgd", "adamw"):
            raise MRLError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}.")
        for name in ("epochs", "batch_size", "width", "embed_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise MRLError(f"{name} must be a positive integer, got {v!r}.")
        if not (self.lr > 0):
            raise MRLError(f"lr must be > 0, got {self.lr}.")
        if not 0 <= self.label_smoothing < 1:
            raise MRLError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.train_subset is not None and self.train_subset <= 0:
            raise MRLError(f"train_subset must be a positive integer or null, got {self.train_subset}.")
        self.build_weighting()  # fail at load time on an unknown strategy or bad weights

    def build_weighting(self) -> Weighting:
        """The loss weighting this config asks for (``matryoshka_weights`` implies ``fixed``)."""
        return weighting_from_config(len(self.matryoshka_dims), self.weighting, self.weighting_kwargs, self.matryoshka_weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_mapping(cls, data)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields (other than runtime ones) whose values differ: ``{name: (self, other)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]}


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML config (or the defaults) and apply overrides.

    Overrides are ``["epochs=5", "mode=mrl-e"]`` (values parsed as YAML) or a dict.
    """
    return TrainConfig.from_dict(read_config(path, overrides))
