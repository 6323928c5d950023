"""Image datasets by name: one place that turns a run's config into its train/val/test splits.

Training, ``mrl eval``, ``embed``, ``cascade`` and the benchmarks all call :func:`load_image_data`
with the run's config (a mapping: ``TrainConfig.to_dict()`` or the ``config.json`` of a run), so a
run trained on an image folder is evaluated on exactly the splits it was trained with.

A dataset registers with :func:`register_dataset`, naming the config fields that define its splits
(:func:`split_fields`; runs compared in one evaluation must agree on them).

Example:
    >>> data = load_image_data({"dataset": "imagefolder", "data_root": "photos", "image_size": 64})
    >>> data.num_classes, len(data.train), next(data.test.eval_batches(8)).shape
    (3, 270, torch.Size([8, 3, 64, 64]))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mrl.data.fashion_mnist import FashionMNIST, load_fashion_mnist, to_tensor
from mrl.data.splits import ImageData, TensorSplit
from mrl.errors import MRLError

Log = Callable[[str], None]


@dataclass(frozen=True)
class DatasetSpec:
    """``loader(config, log)`` builds the splits; ``split_fields`` define them; ``image_size(config)``
    is the side of the images the model sees; ``check(config)`` validates the options at load time."""

    name: str
    loader: Callable[[Mapping[str, Any], Log | None], ImageData]
    split_fields: tuple[str, ...]
    image_size: Callable[[Mapping[str, Any]], int]
    check: Callable[[Mapping[str, Any]], None]


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, split_fields: tuple[str, ...], image_size: Callable[[Mapping[str, Any]], int], check: Callable[[Mapping[str, Any]], None] = lambda cfg: None) -> Callable[..., Any]:
    """Decorator: make ``dataset: name`` in an image recipe load through the decorated function."""

    def wrap(loader: Callable[[Mapping[str, Any], Log | None], ImageData]) -> Callable[[Mapping[str, Any], Log | None], ImageData]:
        DATASETS[name] = DatasetSpec(name, loader, split_fields, image_size, check)
        return loader

    return wrap


def get_dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise MRLError(f"dataset {name!r} is not an image dataset mrl trains on; use one of {sorted(DATASETS)}, or `task: text` (see configs/wordnet_minilm.yaml) for sentence encoders.")
    return DATASETS[name]


def check_dataset_options(config: Mapping[str, Any]) -> None:
    """Validate the dataset name and its options (no file is read)."""
    get_dataset_spec(config.get("dataset", "fashion_mnist")).check(config)


def dataset_image_size(config: Mapping[str, Any]) -> int:
    """Side in pixels of the images this config feeds the model."""
    return get_dataset_spec(config.get("dataset", "fashion_mnist")).image_size(config)


def split_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config values that define the splits (dataset name included)."""
    spec = get_dataset_spec(config.get("dataset", "fashion_mnist"))
    return {"dataset": spec.name, **{k: config.get(k) for k in spec.split_fields}}


def load_image_data(config: Mapping[str, Any], *, data_root: str | None = None, log: Log | None = None) -> ImageData:
    """The splits of the dataset ``config`` names (``data_root`` overrides the config's folder)."""
    cfg = dict(config)
    if data_root is not None:
        cfg["data_root"] = str(data_root)
    return get_dataset_spec(cfg.get("dataset", "fashion_mnist")).loader(cfg, log)


def from_fashion_mnist(data: FashionMNIST) -> ImageData:
    """Wrap an already loaded :class:`FashionMNIST` as :class:`ImageData`."""
    return ImageData(*(TensorSplit(s.images, s.labels, to_tensor) for s in (data.train, data.val, data.test)), classes=data.classes, in_channels=1)


def _fashion_mnist_check(cfg: Mapping[str, Any]) -> None:
    if cfg.get("image_size") not in (None, 28):
        raise MRLError(f"Fashion-MNIST images are 28 px; image_size={cfg.get('image_size')} applies to dataset imagefolder (write the images out with benchmarks/fashion_mnist_png.py to train at another size).")


@register_dataset("fashion_mnist", split_fields=("data_root", "val_size"), image_size=lambda cfg: 28, check=_fashion_mnist_check)
def _fashion_mnist(cfg: Mapping[str, Any], log: Log | None) -> ImageData:
    return from_fashion_mnist(load_fashion_mnist(cfg.get("data_root"), val_size=int(cfg.get("val_size", 5000))))


def _imagefolder_check(cfg: Mapping[str, Any]) -> None:
    from mrl.data.imagefolder import FolderOptions

    FolderOptions.from_config(cfg)


@register_dataset(
    "imagefolder",
    split_fields=("data_root", "val_fraction", "image_size", "image_mode", "mean", "std", "crop_pct", "bad_images"),
    image_size=lambda cfg: int(cfg.get("image_size") or 224),
    check=_imagefolder_check,
)
def _imagefolder(cfg: Mapping[str, Any], log: Log | None) -> ImageData:
    from mrl.data.imagefolder import FolderOptions, load_imagefolder

    return load_imagefolder(FolderOptions.from_config(cfg), log=log)
