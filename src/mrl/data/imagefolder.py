"""A folder of images, one sub-folder per class (torchvision's ``ImageFolder`` convention).

Layouts of ``data_root`` (class names are the sorted sub-folder names of the training folder):

* ``train/<class>/*``, ``val/<class>/*`` and ``test/<class>/*``: used as they are;
* ``train/<class>/*`` and ``val/<class>/*`` (ImageNet's layout): ``val/`` is the reported test split,
  and ``val_fraction`` of each training class is held out for validation (cascade calibration);
* ``<class>/*`` (or ``train/`` alone): ``val_fraction`` of each class is held out for validation and
  the same share again for test.
Hold-outs are drawn per class with a fixed seed, so every run on the folder sees the same splits.

Images are decoded by Pillow and converted to ``image_mode`` (a grayscale image in an RGB set is
converted, and the reverse). Training transform: random resized crop to ``image_size`` (area range
``crop_scale``) + horizontal flip; evaluation: resize to ``image_size / crop_pct``, centre crop.
Unreadable files (corrupt, truncated, not an image despite the extension) are found by decoding every
file once when the dataset opens (``scan_images``), then skipped and reported by path
(``bad_images: skip``) or refused before training starts (``bad_images: fail``). Files without an
image extension are ignored and counted.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mrl.data.splits import ImageData, ImageSplit
from mrl.errors import DataError, MRLError
from mrl.torchvision_compat import import_torchvision

IMAGE_MODES = ("RGB", "L")
BAD_IMAGES = ("skip", "fail")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LAYOUT_HINT = "put images in data_root/train/<class>/ and data_root/val/<class>/ (or data_root/<class>/ with val_fraction)"


@dataclass(frozen=True)
class FolderOptions:
    """The recipe fields of ``dataset: imagefolder`` (see :class:`mrl.train.config.TrainConfig`)."""

    root: Path
    val_fraction: float = 0.1
    image_size: int = 224
    image_mode: str = "RGB"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_pct: float = 0.875
    num_workers: int | None = None
    bad_images: str = "skip"
    scan_images: bool = True
    split_seed: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> FolderOptions:
        """Read and validate the options from a recipe mapping."""
        if not cfg.get("data_root"):
            raise MRLError(f"dataset imagefolder needs data_root: {LAYOUT_HINT}.")
        get = lambda key, default: default if cfg.get(key) is None else cfg[key]  # noqa: E731
        opts = cls(
            root=Path(cfg["data_root"]),
            val_fraction=float(get("val_fraction", 0.1)),
            image_size=int(get("image_size", 224)),
            image_mode=str(get("image_mode", "RGB")),
            mean=None if cfg.get("mean") is None else tuple(float(v) for v in cfg["mean"]),
            std=None if cfg.get("std") is None else tuple(float(v) for v in cfg["std"]),
            crop_scale=tuple(float(v) for v in get("crop_scale", (0.08, 1.0))),  # type: ignore[arg-type]
            crop_pct=float(get("crop_pct", 0.875)),
            num_workers=cfg.get("num_workers"),
            bad_images=str(get("bad_images", "skip")),
            scan_images=bool(get("scan_images", True)),
        )
        opts.validate()
        return opts

    def validate(self) -> None:
        if not 0 < self.val_fraction < 0.5:
            raise MRLError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}.")
        if self.image_size <= 0:
            raise MRLError(f"image_size must be a positive integer, got {self.image_size}.")
        if self.image_mode not in IMAGE_MODES:
            raise MRLError(f"image_mode must be one of {IMAGE_MODES} (Pillow's names), got {self.image_mode!r}.")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) != self.channels:
                raise MRLError(f"{name} needs {self.channels} value(s) for image_mode {self.image_mode}, got {list(v)}.")
        if self.std is not None and min(self.std) <= 0:
            raise MRLError(f"std values must be > 0, got {list(self.std)}.")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise MRLError(f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {list(self.crop_scale)}.")
        if not 0 < self.crop_pct <= 1:
            raise MRLError(f"crop_pct must be in (0, 1], got {self.crop_pct}.")
        if self.num_workers is not None and self.num_workers < 0:
            raise MRLError(f"num_workers must be >= 0 or null, got {self.num_workers}.")
        if self.bad_images not in BAD_IMAGES:
            raise MRLError(f"bad_images must be one of {BAD_IMAGES}, got {self.bad_images!r}.")

    @property
    def channels(self) -> int:
        return 3 if self.image_mode == "RGB" else 1

    @property
    def workers(self) -> int:
        return self.num_workers if self.num_workers is not None else min(4, os.cpu_count() or 1)

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        rgb = self.image_mode == "RGB"
        return self.mean or (IMAGENET_MEAN if rgb else (0.5,)), self.std or (IMAGENET_STD if rgb else (0.5,))


def open_image(path: str, mode: str, draft_size: int | None = None) -> Any:
    """Decode ``path`` with Pillow into ``mode`` (``RGB`` or ``L``); raises whatever Pillow raises.

    ``draft_size`` lets JPEG decoding run at a reduced scale (enough to find a broken file).
    """
    from PIL import Image

    with Image.open(path) as im:
        if draft_size:
            im.draft(mode, (draft_size, draft_size))
        return im.convert(mode)  # convert() decodes every pixel: a truncated file fails here


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip().rstrip(":")


class _Files(Dataset):
    """``paths[i]`` decoded and transformed; an unreadable file yields ``(i, reason)`` instead of a crash.

    A key ``(i, seed)`` runs the transform under ``torch.manual_seed(seed)`` in a forked RNG, so the
    augmentation of a sample depends on its seed only (not on worker count or order)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, mode: str, transform: Callable[[Any], torch.Tensor] | None, draft_size: int | None = None) -> None:
        self.paths, self.labels, self.mode, self.transform, self.draft_size = paths, labels, mode, transform, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, Any]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        try:
            img = open_image(self.paths[i], self.mode, self.draft_size)
        except Exception as exc:  # any failure to decode a file makes it an unreadable image
            return i, _reason(exc)
        if self.transform is None:
            return i, None
        if seed is None:
            return self.transform(img), int(self.labels[i])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(img), int(self.labels[i])


def _collate(items: list[tuple[Any, Any]]) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    """Stack the decoded samples; return the failed ones as ``(index, reason)``."""
    good = [(x, y) for x, y in items if isinstance(x, torch.Tensor)]
    bad = [(i, r) for i, r in items if not isinstance(i, torch.Tensor) and r is not None]
    x = torch.stack([g[0] for g in good]) if good else None
    return x, torch.tensor([g[1] for g in good], dtype=torch.int64), bad


class FolderSplit(ImageSplit):
    """Image files with labels; batches are decoded by DataLoader workers."""

    def __init__(self, paths: list[str], labels: np.ndarray, opts: FolderOptions, train_transform: Callable[[Any], torch.Tensor], eval_transform: Callable[[Any], torch.Tensor]) -> None:
        self.paths, self.labels, self.opts = paths, labels, opts
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self._skipped: list[str] = []

    def _loader(self, dataset: Dataset, *, batch_size: int | None = None, batch_sampler: Any = None, pin_memory: bool = False) -> DataLoader:
        workers = self.opts.workers
        batching = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size, "shuffle": False}
        return DataLoader(dataset, **batching, num_workers=workers, pin_memory=pin_memory, collate_fn=_collate, prefetch_factor=4 if workers else None)

    def eval_batches(self, batch_size: int = 256) -> Iterator[torch.Tensor]:
        for x, _, bad in self._loader(_Files(self.paths, self.labels, self.opts.image_mode, self.eval_transform), batch_size=batch_size):
            if bad:  # skipping here would misalign embeddings and labels
                i, why = bad[0]
                raise DataError(f"{self.paths[i]} is unreadable ({why}) but was readable when the dataset was opened; fix or remove it and rerun.")
            assert x is not None
            yield x

    def train_batches(self, index_batches: Sequence[torch.Tensor], generator: torch.Generator, *, augment: bool, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        seeds = torch.randint(0, 2**62, (len(self),), generator=generator)
        transform = self.train_transform if augment else self.eval_transform
        batches = [[(int(i), int(seeds[i])) for i in idx] for idx in index_batches]
        for x, y, bad in self._loader(_Files(self.paths, self.labels, self.opts.image_mode, transform), batch_sampler=batches, pin_memory=pin_memory):
            if bad:
                found = [f"{self.paths[i]} ({why})" for i, why in bad]
                if self.opts.bad_images == "fail":
                    raise DataError(f"unreadable image(s) during training: {', '.join(found[:5])}; fix or remove them (bad_images: skip skips them).")
                self._skipped.extend(self.paths[i] for i, _ in bad)
            if x is not None:
                yield x, y

    def subset(self, n: int | None) -> FolderSplit:
        if n is None or n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(self.opts.split_seed).permutation(len(self))[:n])
        return FolderSplit([self.paths[i] for i in keep], self.labels[keep], self.opts, self.train_transform, self.eval_transform)

    def slice(self, start: int, stop: int) -> FolderSplit:
        return FolderSplit(self.paths[start:stop], self.labels[start:stop], self.opts, self.train_transform, self.eval_transform)

    def skipped(self) -> list[str]:
        out, self._skipped = self._skipped, []
        return out


def _class_names(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _walk(folder: Path, classes: Sequence[str], class_to_idx: Mapping[str, int]) -> tuple[list[tuple[str, int]], dict[str, int], list[str]]:
    """Image files under ``folder/<class>/`` (recursively, sorted), images per class, and non-image files.

    Our own walk rather than torchvision's ``make_dataset`` so that the files it would skip silently
    (no image extension) can be counted and reported."""
    import_torchvision()
    extensions = importlib.import_module("torchvision.datasets.folder").IMG_EXTENSIONS
    samples: list[tuple[str, int]] = []
    counts: dict[str, int] = {}
    ignored: list[str] = []
    for c in classes:
        n = 0
        for dirpath, dirnames, files in sorted(os.walk(folder / c, followlinks=True)):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                if name.lower().endswith(extensions):
                    samples.append((path, class_to_idx[c]))
                    n += 1
                elif not name.startswith("."):
                    ignored.append(path)
        counts[c] = n
    return samples, counts, ignored


def _scan(paths: list[str], opts: FolderOptions) -> dict[str, str]:
    """Decode every file once (in DataLoader workers); ``{path: reason}`` of the unreadable ones."""
    files = _Files(paths, np.zeros(len(paths), dtype=np.int64), opts.image_mode, None, draft_size=opts.image_size)
    loader = DataLoader(files, batch_size=256, num_workers=opts.workers, collate_fn=list)
    return {paths[i]: why for batch in loader for i, why in batch if why is not None}


def _transforms(opts: FolderOptions) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]:
    import_torchvision()
    T = importlib.import_module("torchvision.transforms.v2")
    mean, std = opts.normalisation()
    tail = [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]
    train = T.Compose([T.RandomResizedCrop(opts.image_size, scale=opts.crop_scale, antialias=True), T.RandomHorizontalFlip(), *tail])
    resize = max(opts.image_size, math.floor(opts.image_size / opts.crop_pct + 0.5))
    evaluate = T.Compose([T.Resize(resize, antialias=True), T.CenterCrop(opts.image_size), *tail])
    return train, evaluate


def _hold_out(labels: np.ndarray, fraction: float, parts: int, seed: int) -> list[np.ndarray]:
    """Split indices per class: ``parts`` hold-outs of ``round(fraction * n_class)`` each, then the rest.

    Returns ``parts + 1`` sorted index arrays (hold-outs first, remainder last)."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(parts + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(fraction * len(idx))
        for p in range(parts):
            out[p].extend(idx[p * k : (p + 1) * k])
        out[parts].extend(idx[parts * k :])
    return [np.sort(np.asarray(o, dtype=np.int64)) for o in out]


def load_imagefolder(opts: FolderOptions, *, log: Callable[[str], None] | None = None) -> ImageData:
    """Open an image folder and return its train/val/test splits (see the module docstring).

    Raises:
        DataError: missing folder, no class folders, an empty training class, a ``val``/``test``
            class unknown to ``train``, no image at all, or (``bad_images: fail``) unreadable files.
    """
    root = opts.root
    if not root.is_dir():
        raise DataError(f"data_root {root} is not a folder; {LAYOUT_HINT}.")
    train_dir = root / "train" if (root / "train").is_dir() else root
    folders = {"train": train_dir, **{s: root / s for s in ("val", "test") if train_dir != root and (root / s).is_dir()}}
    classes = _class_names(train_dir)
    if not classes:
        raise DataError(f"{train_dir} has no class sub-folders; {LAYOUT_HINT}.")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    for split, folder in folders.items():
        unknown = sorted(set(_class_names(folder)) - set(classes))
        if unknown:
            raise DataError(f"{folder} has class folder(s) {unknown} that {train_dir} lacks; every {split} class needs training images (add {train_dir / unknown[0]}/ or remove {folder / unknown[0]}/).")

    samples: dict[str, list[tuple[str, int]]] = {}
    ignored: list[str] = []
    for split, folder in folders.items():
        present = [c for c in classes if (folder / c).is_dir()]
        samples[split], counts, skipped_names = _walk(folder, present, class_to_idx)
        ignored += skipped_names
        if split == "train":
            empty = [c for c, n in counts.items() if n == 0]
            if empty:
                raise DataError(f"class folder {folder / empty[0]} holds no images{f' (and {len(empty) - 1} more empty classes)' if len(empty) > 1 else ''}; add images or remove the folder (image extensions: .jpg .jpeg .png .bmp .webp .tif ...).")
    if ignored and log:
        log(f"imagefolder: ignored {len(ignored)} file(s) without an image extension, e.g. {ignored[0]}")

    bad: dict[str, str] = {}
    if opts.scan_images:
        bad = _scan([p for s in samples.values() for p, _ in s], opts)
    if bad:
        listing = ", ".join(f"{p} ({why})" for p, why in list(bad.items())[:5]) + (f", ... {len(bad) - 5} more" if len(bad) > 5 else "")
        if opts.bad_images == "fail":
            raise DataError(f"{len(bad)} unreadable image(s): {listing}; fix or remove them, or set bad_images=skip to train without them.")
        if log:
            log(f"imagefolder: skipped {len(bad)} unreadable image(s) (bad_images: skip): {listing}")
        samples = {s: [(p, y) for p, y in v if p not in bad] for s, v in samples.items()}

    def as_arrays(items: list[tuple[str, int]]) -> tuple[list[str], np.ndarray]:
        return [p for p, _ in items], np.array([y for _, y in items], dtype=np.int64)

    train_paths, train_labels = as_arrays(samples["train"])
    if not train_paths:
        raise DataError(f"no readable training image in {train_dir}; {LAYOUT_HINT}.")
    if "val" in folders and "test" in folders:
        layout = "train/val/test"
        parts = {"train": (train_paths, train_labels), "val": as_arrays(samples["val"]), "test": as_arrays(samples["test"])}
    elif "val" in folders:
        layout = "train/val (val/ is the test split; validation held out from train/)"
        held, rest = _hold_out(train_labels, opts.val_fraction, 1, opts.split_seed)
        parts = {"train": _take(train_paths, train_labels, rest), "val": _take(train_paths, train_labels, held), "test": as_arrays(samples["val"])}
    else:
        layout = "single folder (validation and test held out per class)"
        test, val, rest = _hold_out(train_labels, opts.val_fraction, 2, opts.split_seed)
        parts = {"train": _take(train_paths, train_labels, rest), "val": _take(train_paths, train_labels, val), "test": _take(train_paths, train_labels, test)}
    train_t, eval_t = _transforms(opts)
    splits = {name: FolderSplit(p, y, opts, train_t, eval_t) for name, (p, y) in parts.items()}
    report = {"layout": layout, "root": str(root), "classes": len(classes), "sizes": {k: len(v) for k, v in splits.items()}, "skipped": sorted(bad), "ignored_files": len(ignored)}
    return ImageData(splits["train"], splits["val"], splits["test"], classes=tuple(classes), in_channels=opts.channels, report=report)


def _take(paths: list[str], labels: np.ndarray, idx: np.ndarray) -> tuple[list[str], np.ndarray]:
    return [paths[i] for i in idx], labels[idx]
