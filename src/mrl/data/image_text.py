"""Paired image-text data sets: load and validate one (built by :mod:`mrl.corpora.image_text`).

A data set folder holds::

    images.npy      uint8 [N, S, S, 3], every picture composited on white and resized to S x S
    items.jsonl     one JSON object per picture: id, name, source, concept, group, split, captions, phash
    manifest.json   schema, size, seed, split fractions, counts per split and source, skipped inputs,
                    the sources (font, themes, Debian package versions) and each file's size and SHA-256

Building (:func:`mrl.corpora.image_text.build_image_text`) deduplicates in three steps so that
test pictures are not copies of training ones:

1. **variants**: within an icon theme, pictures with the same concept key and style (e.g. the
   Papirus ``folder-blue-music`` and ``folder-red-music``) keep one picture, the shortest name;
2. **duplicates**: pictures whose stored pixels differ by at most ``dup_rms`` (RMS, 0-255) become
   one picture with the captions of all;
3. **groups**: pictures that share a concept key (the same icon in two themes), whose perceptual
   hashes differ in at most ``group_radius`` bits (recoloured or redrawn variants), or whose pixels
   differ by at most ``group_rms`` are connected; each connected group goes to one split, so no
   test picture is within ``group_rms`` of a training picture (the manifest's ``nearest_train_rms``).

Groups are shuffled with ``seed`` and filled into test, then validation, then training.

Example:
    >>> from mrl.corpora.emoji import emoji_items
    >>> from mrl.corpora.image_text import build_image_text
    >>> build_image_text("data/emoji", [emoji_items()], size=32)
    >>> data = load_image_text("data/emoji")
    >>> data.split("test").images.shape
    (290, 32, 32, 3)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mrl.data.image_items import on_white
from mrl.errors import DataError, MRLError
from mrl.io import read_json

SCHEMA = "mrl.image_text/1"
SPLITS = ("train", "val", "test")
FILES = ("images.npy", "items.jsonl")


@dataclass
class ImageTextSplit:
    """The pictures of one split with their captions.

    ``images`` uint8 ``[N, S, S, 3]``; ``captions`` N lists of strings (at least one each);
    ``names``/``sources`` N strings; ``groups`` int64 ``[N]`` (the dedupe group of each picture).
    """

    images: np.ndarray
    captions: list[list[str]]
    names: list[str]
    sources: list[str]
    groups: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def caption_index(self) -> tuple[list[str], list[list[int]]]:
        """The split's distinct captions and, per picture, the positions of its captions in that list.

        A caption shared by several pictures appears once and is relevant to each of them.
        """
        texts: dict[str, int] = {}
        per_image = [[texts.setdefault(c, len(texts)) for c in caps] for caps in self.captions]
        return list(texts), per_image


@dataclass
class ImageTextData:
    """A loaded data set: its manifest and the item records, split on demand."""

    folder: Path
    manifest: dict[str, Any]
    items: list[dict[str, Any]]
    images: np.ndarray

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def split(self, name: str) -> ImageTextSplit:
        """The pictures of split ``name`` (``train``, ``val`` or ``test``), in id order."""
        if name not in SPLITS:
            raise MRLError(f"split must be one of {SPLITS}, got {name!r}.")
        idx = [i for i, it in enumerate(self.items) if it["split"] == name]
        if not idx:
            raise DataError(f"{self.folder} has no {name} pictures; rebuild it with a larger data set or other split fractions.")
        pick = [self.items[i] for i in idx]
        return ImageTextSplit(self.images[idx], [it["captions"] for it in pick], [it["name"] for it in pick], [it["source"] for it in pick], np.array([it["group"] for it in pick], dtype=np.int64))

    def all_captions(self) -> list[str]:
        """Every distinct caption of the data set, in first-seen order."""
        return list(dict.fromkeys(c for it in self.items for c in it["captions"]))


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 pictures to the float tensor the image tower reads (scaled to [-1, 1]).

    Shape: ``[N, S, S, 3]`` uint8 -> ``[N, 3, S, S]`` float32.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(f"pictures must be uint8 [N, S, S, 3], got {images.dtype} {images.shape}.")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """Composite on white, pad to a square (centred) and resize to ``size`` (Lanczos).

    Shape: returns uint8 ``[size, size, 3]``.
    """
    rgb = on_white(image)
    w, h = rgb.size
    if w != h:
        side = max(w, h)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(rgb, ((side - w) // 2, (side - h) // 2))
        rgb = square
    return np.asarray(rgb.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_image_text(folder: str | os.PathLike[str], *, verify: bool = True) -> ImageTextData:
    """Load a data set folder written by :func:`mrl.corpora.image_text.build_image_text`, checking sizes and checksums.

    Raises:
        DataError: the folder is missing, not a data set, or a file does not match the manifest.
    """
    root = Path(folder)
    if not (root / "manifest.json").is_file():
        raise DataError(f"{root} is not an image-text data set (no manifest.json); build one with benchmarks/build_image_text.py.")
    manifest = read_json(root / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise DataError(f"{root}/manifest.json is not an image-text manifest ({SCHEMA}); rebuild the data set.")
    blobs = {}
    for name in FILES:
        path = root / name
        if not path.is_file():
            raise DataError(f"{path} is missing; rebuild the data set.")
        data = path.read_bytes()
        want = manifest.get("files", {}).get(name, {})
        if verify and (len(data) != want.get("bytes") or sha256_bytes(data) != want.get("sha256")):
            raise DataError(f"{path} does not match its manifest (size or SHA-256); the file is corrupted or was edited: rebuild the data set.")
        blobs[name] = data
    try:
        images = np.load(io.BytesIO(blobs["images.npy"]), allow_pickle=False)
        items = [json.loads(line) for line in blobs["items.jsonl"].decode().splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{root} holds unreadable data ({exc}); rebuild the data set.") from exc
    if images.ndim != 4 or images.shape[1:] != (manifest["size"], manifest["size"], 3) or images.dtype != np.uint8 or len(items) != images.shape[0]:
        raise DataError(f"{root}: images.npy is {images.dtype} {images.shape} for {len(items)} items of size {manifest['size']}; rebuild the data set.")
    for it in items:
        if it.get("split") not in SPLITS or not it.get("captions"):
            raise DataError(f"{root}/items.jsonl: item {it.get('id')} has no captions or an unknown split; rebuild the data set.")
    return ImageTextData(root, manifest, items, images)
