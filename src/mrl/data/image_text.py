"""Paired image-text data sets: build one from sources, write it, load and validate it.

A data set folder holds::

    images.npy      uint8 [N, S, S, 3], every picture composited on white and resized to S x S
    items.jsonl     one JSON object per picture: id, name, source, concept, group, split, captions, phash
    manifest.json   schema, size, seed, split fractions, counts per split and source, skipped inputs,
                    the sources (font, themes, Debian package versions) and each file's size and SHA-256

Building (:func:`build_image_text`) deduplicates in three steps so that test pictures are not
copies of training ones:

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
    >>> from mrl.data.emoji import emoji_items
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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mrl.data.dedupe import components, key_pairs, near_pairs, on_white, phash_bits, pixel_pairs
from mrl.data.sources import RawItem, SourceResult
from mrl.errors import DataError, MRLError, OutputExistsError
from mrl.io import atomic_folder, atomic_write, read_json

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


def _style(item: RawItem) -> str:
    return "symbolic" if "symbolic" in item.name.lower() else ""


def collapse_variants(items: Sequence[RawItem]) -> tuple[list[RawItem], int]:
    """Keep one picture per (source, concept, style) among items marked ``variant`` (icon colour
    variants): the one with the shortest name. Other items are all kept.

    Returns the kept items (in input order) and how many were dropped.
    """
    best: dict[tuple[Any, ...], int] = {}
    for i, it in enumerate(items):
        key = (it.source, it.concept, _style(it)) if it.variant else (i,)
        j = best.get(key)
        if j is None or (len(it.name), it.name) < (len(items[j].name), items[j].name):
            best[key] = i
    keep = sorted(best.values())
    return [items[i] for i in keep], len(items) - len(keep)


def merge_duplicates(items: Sequence[RawItem], codes: np.ndarray, images: np.ndarray, max_rms: float, max_captions: int) -> tuple[list[RawItem], np.ndarray, np.ndarray]:
    """Merge pictures whose stored pixels differ by at most ``max_rms`` (RMS, 0-255) into the first
    of them, which gets the captions of all (first-seen order, at most ``max_captions``).

    Pixels, not the perceptual hash, decide here: the grey hash cannot tell a red heart from a
    blue one, the pixels can.

    Shape: ``codes`` ``[N, 8]``, ``images`` uint8 ``[N, S, S, 3]`` -> the merged items, codes
    ``[M, 8]`` and images ``[M, S, S, 3]``.
    """
    comp = components(len(items), [pixel_pairs(images, max_rms)])
    keep: dict[int, int] = {}
    captions: dict[int, list[str]] = {}
    for n, c in enumerate(comp.tolist()):
        keep.setdefault(c, n)
        captions.setdefault(c, [])
        captions[c] += [t for t in items[n].captions if t not in captions[c]]
    out = []
    for c, n in keep.items():
        it = items[n]
        merged = [items[m].name for m in np.flatnonzero(comp == c).tolist() if m != n]
        info = {**it.info, **({"merged": merged} if merged else {})}
        out.append(RawItem(it.image, captions[c][:max_captions], it.concept, it.source, it.name, info, it.variant))
    rows = list(keep.values())
    return out, codes[rows], images[rows]


def assign_splits(groups: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Shuffle the groups with ``seed``; each goes to test while test has room for (half of) it,
    else to val likewise, else to train. Whole groups move, so the shares are close, not exact.

    Shape: ``groups`` int ``[N]`` (ids 0..G-1) -> ``[N]`` array of split names.
    """
    n = len(groups)
    order = np.random.default_rng(seed).permutation(int(groups.max()) + 1 if n else 0)
    sizes = np.bincount(groups, minlength=len(order))
    target = {"test": fractions["test"] * n, "val": fractions["val"] * n}
    filled = {"test": 0, "val": 0}
    split_of_group = np.empty(len(order), dtype=object)
    for g in order.tolist():
        size = int(sizes[g])
        name = next((s for s in ("test", "val") if filled[s] + size / 2 <= target[s]), "train")
        split_of_group[g] = name
        if name != "train":
            filled[name] += size
    return split_of_group[groups]


def leak_check(images: np.ndarray, split: np.ndarray, other: str = "test", threshold: float = 8.0) -> dict[str, float]:
    """How close each ``other``-split picture comes to its nearest training picture.

    The distance is the RMS pixel difference (0-255) to the nearest training picture (exact search
    with FAISS). A value near 0 would mean a test picture is a copy of a training one;
    ``below_threshold`` counts the pictures closer than ``threshold``.

    Shape: ``images`` uint8 ``[N, S, S, 3]``, ``split`` ``[N]`` split names.
    """
    from mrl.knn import knn_search

    train, query = images[split == "train"], images[split == other]
    if not len(train) or not len(query):
        return {}
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32)  # noqa: E731
    d2, _ = knn_search(flat(train), flat(query), 1, metric="l2")
    rms = np.sqrt(np.maximum(d2[:, 0], 0) / train[0].size)
    return {"min": round(float(rms.min()), 2), "p1": round(float(np.percentile(rms, 1)), 2), "median": round(float(np.median(rms)), 2), "below_threshold": int((rms < threshold).sum())}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse a folder that holds anything but a previous data set of ours (whose files it lists)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"{out} is a file; choose a folder for the data set.")
    present = {p.name for p in out.iterdir()}
    if not present:
        return
    manifest = out / "manifest.json"
    ours = manifest.is_file() and _is_ours(manifest)
    if not ours:
        raise OutputExistsError(f"{out} holds files that are not an image-text data set; choose an empty or new folder.")
    if not overwrite:
        raise OutputExistsError(f"{out} already holds an image-text data set; pass --overwrite to rebuild it, or choose another folder.")
    extra = present - {"manifest.json", *FILES}
    if extra:
        raise OutputExistsError(f"{out} holds files the data set did not write ({', '.join(sorted(extra)[:3])}); move them away or choose another folder.")


def _is_ours(manifest: Path) -> bool:
    try:
        return json.loads(manifest.read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def build_image_text(out: str | os.PathLike[str], sources: Sequence[SourceResult], *, size: int = 32, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.15, dup_rms: float = 2.0, group_radius: int = 4, group_rms: float = 8.0, max_captions: int = 5, overwrite: bool = False, log: Any = None) -> dict[str, Any]:
    """Deduplicate, group, split and write ``sources`` as a data set folder (atomically).

    Args:
        out: the data set folder (created; replaced only when it holds a data set and ``overwrite``).
        sources: what :func:`mrl.data.emoji.emoji_items`, :func:`mrl.data.icons.icon_items` or
            :func:`mrl.data.user_pairs.pair_items` returned.
        size: side of the stored pictures in pixels.
        seed: seeds the split of the groups.
        val_fraction, test_fraction: shares of pictures (by whole groups) in val and test.
        dup_rms: pictures whose stored pixels differ by at most this RMS (0-255) become one.
        group_radius, group_rms: pictures whose hashes differ in at most ``group_radius`` bits, or
            whose pixels differ by at most ``group_rms``, go to the same split.
        max_captions: captions kept per picture.
        log: optional ``print``-like callable for progress lines.

    Returns:
        The manifest (also written to ``out/manifest.json``).
    """
    out = Path(out)
    if size < 8:
        raise MRLError(f"size must be at least 8 pixels, got {size}.")
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and val_fraction + test_fraction < 1):
        raise MRLError(f"need 0 < test_fraction, 0 <= val_fraction and val_fraction + test_fraction < 1; got {val_fraction}, {test_fraction}.")
    if not 0 <= group_radius <= 32:
        raise MRLError(f"group_radius must be in [0, 32] bits, got {group_radius}.")
    if not 0 <= dup_rms <= group_rms:
        raise MRLError(f"need 0 <= dup_rms <= group_rms, got {dup_rms} and {group_rms}.")
    if max_captions < 1:
        raise MRLError(f"max_captions must be >= 1, got {max_captions}.")
    _check_output(out, overwrite)
    say = log or (lambda *_: None)
    raw = [it for src in sources for it in src.items]
    if not raw:
        raise DataError("the sources produced no pictures; check the font, the themes or the pair file.")
    items, n_variants = collapse_variants(raw)
    say(f"{len(raw)} pictures from {len(sources)} source(s); {n_variants} colour/style variants dropped")
    codes = phash_bits([it.image for it in items])
    images = np.stack([to_square_rgb(it.image, size) for it in items])
    items, codes, images = merge_duplicates(items, codes, images, dup_rms, max_captions)
    n_dups = len(raw) - n_variants - len(items)
    groups = components(len(items), [key_pairs([it.concept for it in items]), near_pairs(codes, group_radius), pixel_pairs(images, group_rms)])
    split = assign_splits(groups, {"val": val_fraction, "test": test_fraction}, seed)
    say(f"{n_dups} near-duplicates merged; {len(items)} pictures in {int(groups.max()) + 1} groups")

    records = []
    for i, (it, g, s, code) in enumerate(zip(items, groups.tolist(), split.tolist(), codes)):
        records.append({"id": i, "name": it.name, "source": it.source, "concept": it.concept, "group": g, "split": s, "captions": it.captions, "phash": code.tobytes().hex(), **it.info})
    buf = io.BytesIO()
    np.save(buf, images, allow_pickle=False)
    blobs = {"images.npy": buf.getvalue(), "items.jsonl": "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()}

    group_sizes = np.bincount(groups)
    counts: dict[str, Any] = {}
    for s in SPLITS:
        mask = split == s
        counts[s] = {
            "pictures": int(mask.sum()), "groups": len(set(groups[mask].tolist())),
            "captions": int(sum(len(records[i]["captions"]) for i in np.flatnonzero(mask))),
            "distinct_captions": len({c for i in np.flatnonzero(mask) for c in records[i]["captions"]}),
            "by_source": dict(Counter(records[i]["source"] for i in np.flatnonzero(mask))),
        }
    skipped = [sk for src in sources for sk in src.skipped]
    manifest = {
        "schema": SCHEMA, "size": size, "seed": seed, "fractions": {"val": val_fraction, "test": test_fraction},
        "dup_rms": dup_rms, "group_radius": group_radius, "group_rms": group_rms, "max_captions": max_captions, "hash": "imagehash.phash 64-bit",
        "pictures": len(items), "groups": int(group_sizes.size), "largest_group": int(group_sizes.max()),
        "dedupe": {"input_pictures": len(raw), "variants_dropped": n_variants, "duplicates_merged": n_dups},
        "splits": counts,
        "nearest_train_rms": {s: leak_check(images, split, s, group_rms) for s in ("val", "test")},
        "sources": [{**src.info, "pictures_in": len(src.items), "skipped": len(src.skipped)} for src in sources],
        "skipped": {"count": len(skipped), "by_reason": dict(Counter(sk.reason.split(" (")[0][:80] for sk in skipped)), "examples": [vars(sk) for sk in skipped[:20]]},
        "files": {name: {"bytes": len(b), "sha256": _sha256(b)} for name, b in blobs.items()},
    }
    with atomic_folder(out, owned={"manifest.json", *FILES}.__contains__) as tmp:  # the names _check_output allowed
        for name, b in blobs.items():
            atomic_write(tmp / name, b)
        atomic_write(tmp / "manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode())
    return manifest


def load_image_text(folder: str | os.PathLike[str], *, verify: bool = True) -> ImageTextData:
    """Load a data set folder written by :func:`build_image_text`, checking sizes and checksums.

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
        if verify and (len(data) != want.get("bytes") or _sha256(data) != want.get("sha256")):
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
