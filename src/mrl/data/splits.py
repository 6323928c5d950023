"""What training and evaluation read from an image dataset, whatever its storage.

An :class:`ImageData` holds three :class:`ImageSplit` objects (train, val, test) and the class
names. A split knows its labels and hands out preprocessed batches two ways:

* :meth:`ImageSplit.eval_batches` in order, with the evaluation transform (for encoding, metrics);
* :meth:`ImageSplit.train_batches` for given index batches, with training augmentation whose
  randomness comes only from the epoch's generator, so a resumed run sees the same images.

:class:`TensorSplit` keeps decoded images in memory (Fashion-MNIST); the image-folder dataset
(:mod:`mrl.data.imagefolder`) decodes files in DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mrl.errors import MRLError


class ImageSplit:
    """Base class of a split: ``labels`` ``[N]`` int64 plus two batch iterators."""

    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def eval_batches(self, batch_size: int = 256) -> Iterator[torch.Tensor]:
        """Preprocessed images in order. Shape: batches ``[B, C, H, W]`` float32."""
        raise NotImplementedError

    def train_batches(self, index_batches: Sequence[torch.Tensor], generator: torch.Generator, *, augment: bool, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One batch per entry of ``index_batches`` (sample indices), augmented if ``augment``.

        Random choices are drawn from ``generator`` only. Shape: ``(x [B, C, H, W], y [B])``.
        """
        raise NotImplementedError

    def subset(self, n: int | None) -> ImageSplit:
        """The split restricted to ``n`` samples (``None``: unchanged)."""
        raise NotImplementedError

    def slice(self, start: int, stop: int) -> ImageSplit:
        """Samples ``start:stop`` (a contiguous shard, e.g. one rank's share of an evaluation)."""
        raise NotImplementedError

    def skipped(self) -> list[str]:
        """Files found unreadable while iterating (none for in-memory splits)."""
        return []


class TensorSplit(ImageSplit):
    """Images held in memory as uint8 ``[N, H, W]``, normalised by ``to_tensor`` on the way out.

    Training augmentation: a random horizontal flip per sample, drawn for the whole split at the
    start of each epoch (after the permutation, from the same generator).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, to_tensor: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.images = images
        self.labels = labels
        self._to_tensor = to_tensor
        self._cache: torch.Tensor | None = None

    def tensor(self) -> torch.Tensor:
        """The whole split preprocessed (computed once). Shape: ``[N, 1, H, W]``."""
        if self._cache is None:
            self._cache = self._to_tensor(self.images)
        return self._cache

    def eval_batches(self, batch_size: int = 1024) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), batch_size):
            yield self._to_tensor(self.images[start : start + batch_size])

    def train_batches(self, index_batches: Sequence[torch.Tensor], generator: torch.Generator, *, augment: bool, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x_all, y_all = self.tensor(), torch.from_numpy(self.labels)
        flips = torch.rand(len(self), generator=generator) < 0.5 if augment else None
        for idx in index_batches:
            x, y = x_all[idx], y_all[idx]
            if flips is not None:
                x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
            yield (x.pin_memory(), y.pin_memory()) if pin_memory else (x, y)

    def subset(self, n: int | None) -> TensorSplit:
        return self if n is None else self.slice(0, n)

    def slice(self, start: int, stop: int) -> TensorSplit:
        return TensorSplit(self.images[start:stop], self.labels[start:stop], self._to_tensor)


@dataclass
class ImageData:
    """The three splits of a dataset, its class names and the channels of its images."""

    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    classes: tuple[str, ...]
    in_channels: int
    report: dict[str, Any] = field(default_factory=dict)  # what loading found (skipped files, layout), JSON-ready

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> ImageSplit:
        if name not in ("train", "val", "test"):
            raise MRLError(f"split must be train, val or test, got {name!r}.")
        return getattr(self, name)
