"""The image-text item format and the picture/caption readers that loaders and builders share.

A source (colour emoji, an icon theme, a user's pair file) produces :class:`RawItem` objects, one per
distinct picture, and a list of :class:`Skipped` inputs with the reason, as a :class:`SourceResult`.
The builder in :mod:`mrl.corpora.image_text` then deduplicates, groups, splits and writes them.
These pieces sit in ``data`` (not ``corpora``) because the loaders need them: a user's pair file
(:mod:`mrl.data.image_pairs`) yields them and ``mrl embed --tower image`` reads pictures with
:func:`load_raster`; ``data`` never imports ``corpora``.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from mrl.errors import DataError


@dataclass
class RawItem:
    """One picture with its captions.

    ``image``: RGBA picture at any size (the builder composites it on white and resizes it);
    ``captions``: cleaned captions, best first (at least one); ``concept``: the key that groups
    variants of the same thing; ``source``: e.g. ``emoji`` or ``icons:Papirus``; ``name``: a
    readable identifier (the emoji, the icon name, the image path); ``info``: extra fields kept in
    the item record (e.g. the file the picture came from); ``variant``: True when other pictures of
    the same source, concept and style are colour variants of this one, of which the builder keeps
    one (icon themes); False keeps every picture (emoji, a user's pairs).
    """

    image: Image.Image
    captions: list[str]
    concept: str
    source: str
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    variant: bool = False


@dataclass(frozen=True)
class Skipped:
    """An input a source could not use, and why (recorded in the data set's manifest)."""

    source: str
    name: str
    reason: str


@dataclass
class SourceResult:
    """What a source produced: items, skipped inputs and a description for the manifest."""

    items: list[RawItem]
    skipped: list[Skipped]
    info: dict[str, Any]


_SPLIT = re.compile(r"[\s_\-.+:/\\,;|()\[\]{}]+")
_KEEP = re.compile(r"[^0-9a-z' &]+")


def clean_caption(text: str) -> str:
    """Lower-case, split on separators (``- _ . + :`` ...), drop other symbols, collapse spaces.

    Returns ``""`` when no letter or digit is left (the caller decides whether that is an error).
    """
    words = [_KEEP.sub("", w) for w in _SPLIT.split(str(text).lower())]
    words = [w.strip("'& ") for w in words]
    caption = " ".join(w for w in words if w)
    return caption if re.search(r"[0-9a-z]", caption) else ""


def on_white(image: Image.Image) -> Image.Image:
    """Composite an RGBA picture on a white background; returns RGB."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def load_raster(source: str | os.PathLike[str] | io.BytesIO, name: str | None = None) -> Image.Image:
    """Open a raster image (PNG, JPEG, ...) fully and return it as RGBA.

    Raises:
        DataError: the file is missing, truncated or not an image.
    """
    label = name or str(source)
    try:
        with Image.open(source) as im:
            im.load()
            return im.convert("RGBA")
    except FileNotFoundError as exc:
        raise DataError(f"image {label} does not exist; check the path.") from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {label} ({exc}); the file is truncated or not an image: replace or remove it.") from exc
