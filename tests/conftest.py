"""Shared fixtures: a tiny synthetic Fashion-MNIST folder in the real IDX format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from browser_fixtures import browser  # noqa: F401 - the headless chromium fixture, shared by every test folder

torch.set_num_threads(2)


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> None:
    magic = 0x00000800 | array.ndim
    raw = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class-dependent images: a bright bar whose position encodes the label, plus noise."""
    imgs = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        imgs[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 230
    return imgs


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the four standard gzipped IDX files: 1200 train and 300 test images."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 1200), ("t10k", 300)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", make_images(labels, rng))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_config(fmnist_dir: Path):
    from mrl.train import TrainConfig

    return TrainConfig(data_root=str(fmnist_dir), val_size=200, embed_dim=32, matryoshka_dims="2,4,...,32", epochs=2, batch_size=50, warmup_steps=2, progress=False, lr=0.1, width=8)
