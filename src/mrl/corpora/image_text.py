"""Build a paired image-text data set from sources: deduplicate, group, split, write (atomically).

The folder format and the loader are :mod:`mrl.data.image_text`; the dedupe rules are in its
module docstring.

Example:
    >>> from mrl.corpora.emoji import emoji_items
    >>> build_image_text("data/emoji", [emoji_items()], size=32)
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl.corpora.dedupe import components, key_pairs, near_pairs, phash_bits, pixel_pairs
from mrl.data.image_items import RawItem, SourceResult
from mrl.data.image_text import FILES, SCHEMA, SPLITS, sha256_bytes, to_square_rgb
from mrl.errors import DataError, MRLError, OutputExistsError
from mrl.io import atomic_folder, atomic_write


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
        sources: what :func:`mrl.corpora.emoji.emoji_items`, :func:`mrl.corpora.icons.icon_items` or
            :func:`mrl.data.image_pairs.pair_items` returned.
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
        "files": {name: {"bytes": len(b), "sha256": sha256_bytes(b)} for name, b in blobs.items()},
    }
    with atomic_folder(out, owned={"manifest.json", *FILES}.__contains__) as tmp:  # the names _check_output allowed
        for name, b in blobs.items():
            atomic_write(tmp / name, b)
        atomic_write(tmp / "manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode())
    return manifest
