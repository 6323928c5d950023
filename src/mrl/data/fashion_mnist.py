"""Fashion-MNIST from the four standard IDX files (gzipped or not).

Default folder: ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``);
any folder holding the four files works. The 60k training set is split into train / validation
(validation for calibration and early decisions); the 10k test set is only for reporting.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrl.errors import DataError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_MAGIC_IMAGES = 0x00000803  # unsigned byte, 3 dims
_MAGIC_LABELS = 0x00000801  # unsigned byte, 1 dim
HOW_TO_GET = (
    "install them with `sudo apt-get install dataset-fashion-mnist` (files land in "
    "/usr/share/datasets/fashion-mnist), or pass --data-root to a folder holding "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
)


@dataclass(frozen=True)
class Split:
    """Images ``[N, 28, 28]`` uint8 and labels ``[N]`` int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class FashionMNIST:
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...] = CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` or the environment variable ``MRL_FASHION_MNIST`` or the Debian default."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("MRL_FASHION_MNIST", DEFAULT_ROOT))


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        p = root / name
        if p.is_file():
            return p
    raise DataError(f"Fashion-MNIST file {stem}(.gz) not found in {root}; {HOW_TO_GET}.")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file, checking its magic number and that its size matches its header."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} ({exc}); the file is truncated or corrupted: re-download it ({HOW_TO_GET}).") from exc
    if len(raw) < 8:
        raise DataError(f"{path} is too short to be an IDX file; {HOW_TO_GET}.")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise DataError(f"{path} has magic number {found:#010x}, expected {magic:#010x}; it is not the right IDX file ({HOW_TO_GET}).")
    ndim = magic & 0xFF
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise DataError(f"{path} holds {len(raw) - offset} data bytes but its header says {expected}; the file is truncated or corrupted ({HOW_TO_GET}).")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def load_fashion_mnist(root: str | os.PathLike[str] | None = None, *, val_size: int = 5000, split_seed: int = 0) -> FashionMNIST:
    """Load and validate Fashion-MNIST, carving a stratified-by-chance validation split.

    Args:
        root: folder with the four IDX files; default ``$MRL_FASHION_MNIST`` or
            ``/usr/share/datasets/fashion-mnist``.
        val_size: images taken from the 60k training set for validation/calibration.
        split_seed: seed of the train/validation permutation (fixed so all runs share it).

    Returns:
        :class:`FashionMNIST` with ``train`` (60k - val_size), ``val`` and ``test`` (10k) splits.
    """
    base = resolve_root(root)
    if not base.is_dir():
        raise DataError(f"Fashion-MNIST folder {base} does not exist; {HOW_TO_GET}.")
    arrays = {}
    for key, stem in FILES.items():
        arrays[key] = read_idx(_find(base, stem), _MAGIC_IMAGES if key.endswith("images") else _MAGIC_LABELS)
    for split in ("train", "test"):
        imgs, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if imgs.shape[1:] != (28, 28) or imgs.shape[0] != labels.shape[0]:
            raise DataError(f"Fashion-MNIST {split} images {imgs.shape} and labels {labels.shape} do not match [N, 28, 28] / [N]; {HOW_TO_GET}.")
        if labels.max() >= len(CLASSES):
            raise DataError(f"Fashion-MNIST {split} labels go up to {labels.max()}, expected < 10; {HOW_TO_GET}.")
    n = arrays["train_labels"].shape[0]
    if not 0 <= val_size < n:
        raise DataError(f"val_size must be in [0, {n}), got {val_size}.")
    perm = np.random.default_rng(split_seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    ti, tl = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    return FashionMNIST(
        train=Split(ti[train_idx], tl[train_idx]),
        val=Split(ti[val_idx], tl[val_idx]),
        test=Split(arrays["test_images"], arrays["test_labels"].astype(np.int64)),
    )


MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images ``[N, 28, 28]`` -> normalised float32 tensor ``[N, 1, 28, 28]``."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"expected uint8 images [N, H, W], got {images.dtype} {images.shape}.")
    x = torch.from_numpy(np.array(images, copy=True)).unsqueeze(1).float().div_(255.0)
    return x.sub_(MEAN).div_(STD)
