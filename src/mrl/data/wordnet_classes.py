"""A many-class text classification task: WordNet noun synsets labelled by their ancestor category.

Every noun synset has a hypernym path to the root ``entity`` (following ``@`` and ``@i`` pointers;
where a synset has several hypernyms, the first one listed in ``data.noun``). Its **label** is the
synset on that path at a fixed ``depth`` (``entity`` is depth 0), e.g. at depth 4 ``dog`` ->
``living thing``. Only synsets strictly below depth ``depth`` are members; categories with fewer
than ``min_members`` members are dropped. With ``depth=None`` the smallest depth that leaves at
least ``min_classes`` categories is chosen (on WordNet 3.0: depth 4, 103 categories) and recorded
in ``info``, with the whole per-depth table.

The largest categories would dominate (at depth 4 ``living thing`` holds 26% of the members), so
each category keeps a seeded sample of at most ``max_per_class`` members (None keeps all), like
ImageNet's near-balanced classes. **Text** = ``"lemma: definition"`` (first lemma). **Splits** are
by synset, stratified per category with a fixed seed: train / validation / calibration / test
(the cascade fits thresholds on calibration and reports on test, which are disjoint).

Example:
    >>> task = load_wordnet_classes()
    >>> len(task.class_names), len(task.train.texts), task.depth
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrl.data.wordnet import Synset, load_synsets
from mrl.errors import DataError

SPLITS = ("train", "val", "calibration", "test")


@dataclass(frozen=True)
class ClassSplit:
    """One split: ``texts`` and integer ``labels`` (row i is synset ``synsets[i]``).

    Shape: labels ``[N]`` int64 in ``[0, n_classes)``.
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    synsets: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class ClassTask:
    """The four splits, the category names (label ``i`` is ``class_names[i]``, synset ``class_ids[i]``)."""

    train: ClassSplit
    val: ClassSplit
    calibration: ClassSplit
    test: ClassSplit
    class_names: tuple[str, ...]
    class_ids: tuple[str, ...]
    depth: int
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> ClassSplit:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {SPLITS}.")
        return getattr(self, name)


def hypernym_paths(synsets: list[Synset]) -> dict[str, tuple[str, ...]]:
    """Root-first path of offsets for every synset (first hypernym at each step; cycles cut)."""
    by_offset = {s.offset: s for s in synsets}
    paths: dict[str, tuple[str, ...]] = {}
    for s in synsets:
        path, seen = [s.offset], {s.offset}
        while True:
            ups = [h for h in by_offset[path[-1]].hypernyms if h in by_offset]
            if not ups or ups[0] in seen:
                break
            path.append(ups[0])
            seen.add(ups[0])
        paths[s.offset] = tuple(reversed(path))
    return paths


def depth_table(paths: dict[str, tuple[str, ...]], min_members: int, max_depth: int = 12) -> list[dict[str, int]]:
    """Per depth: categories (all / with ``>= min_members`` members) and the members they cover."""
    rows = []
    for k in range(1, max_depth + 1):
        counts = Counter(p[k] for p in paths.values() if len(p) > k + 1)
        big = [n for n in counts.values() if n >= min_members]
        rows.append({"depth": k, "categories": len(counts), "kept_categories": len(big), "members": sum(big)})
    return rows


def load_wordnet_classes(
    root: str | os.PathLike[str] | None = None,
    *,
    depth: int | None = None,
    min_members: int = 50,
    min_classes: int = 100,
    max_per_class: int | None = 1000,
    fractions: tuple[float, float, float, float] = (0.7, 0.1, 0.1, 0.1),
    seed: int = 0,
) -> ClassTask:
    """Build the task (see the module docstring).

    Args:
        root: folder with ``data.noun`` (default ``$MRL_WORDNET`` or /usr/share/wordnet).
        depth: category depth (None: the smallest depth with ``>= min_classes`` kept categories).
        min_members: drop categories with fewer members (counted before the cap).
        min_classes: required number of kept categories.
        max_per_class: keep a seeded sample of at most this many members per category (None: all).
        fractions: train / val / calibration / test shares, per category (each split gets >= 1).
        seed: seed of the cap sample and of the splits.
    """
    if len(fractions) != 4 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"fractions {fractions} must be four positive shares (train, val, calibration, test) summing to 1.")
    if max_per_class is not None and max_per_class < min_members:
        raise DataError(f"max_per_class ({max_per_class}) must be >= min_members ({min_members}).")
    synsets = sorted(load_synsets(root), key=lambda s: s.offset)
    by_offset = {s.offset: s for s in synsets}
    paths = hypernym_paths(synsets)
    table = depth_table(paths, min_members)
    if depth is None:
        ok = [r for r in table if r["kept_categories"] >= min_classes]
        if not ok:
            best = max(table, key=lambda r: r["kept_categories"])
            raise DataError(f"no depth gives {min_classes} categories of >= {min_members} members (best: depth {best['depth']} with {best['kept_categories']}); lower min_classes or min_members.")
        depth = ok[0]["depth"]
    if depth < 1:
        raise DataError(f"depth must be >= 1 (entity is depth 0), got {depth}.")
    members: dict[str, list[str]] = {}
    for off in sorted(paths):
        p = paths[off]
        if len(p) > depth + 1:
            members.setdefault(p[depth], []).append(off)
    kept = sorted(c for c, m in members.items() if len(m) >= min_members)
    if len(kept) < min_classes:
        raise DataError(f"depth {depth} leaves {len(kept)} categories of >= {min_members} members, fewer than min_classes={min_classes}; pick another depth or lower the bounds.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    sizes_before = []
    for label, cat in enumerate(kept):
        offs = np.array(members[cat])
        sizes_before.append(len(offs))
        if max_per_class is not None and len(offs) > max_per_class:
            offs = np.sort(rng.choice(offs, size=max_per_class, replace=False))
        offs = offs[rng.permutation(len(offs))]
        n = len(offs)
        counts = [max(1, round(f * n)) for f in fractions[1:]]
        bounds = np.cumsum([n - sum(counts), *counts])
        for name, lo, hi in zip(SPLITS, [0, *bounds[:-1]], bounds):
            parts[name].extend((str(o), label) for o in offs[lo:hi])
    names = [by_offset[c].lemmas[0] for c in kept]
    dup = {n for n, k in Counter(names).items() if k > 1}
    class_names = tuple(f"{n} ({c})" if n in dup else n for n, c in zip(names, kept))
    splits = {}
    for name, rows in parts.items():
        rows.sort()
        splits[name] = ClassSplit(
            texts=tuple(f"{by_offset[o].lemmas[0]}: {by_offset[o].definition}" for o, _ in rows),
            labels=np.array([lab for _, lab in rows], dtype=np.int64),
            synsets=tuple(o for o, _ in rows),
        )
    sizes_after = np.bincount(np.concatenate([s.labels for s in splits.values()]), minlength=len(kept))
    info = {
        "depth": depth,
        "classes": len(kept),
        "min_members": min_members,
        "max_per_class": max_per_class,
        "members_before_cap": int(sum(sizes_before)),
        "members": int(sizes_after.sum()),
        "class_size_min": int(sizes_after.min()),
        "class_size_max": int(sizes_after.max()),
        "class_size_median": float(np.median(sizes_after)),
        "splits": {k: len(v) for k, v in splits.items()},
        "fractions": list(fractions),
        "seed": seed,
        "synsets": len(synsets),
        "depth_table": table,
        "path_rule": "first hypernym (@ or @i) at each step, entity = depth 0; members strictly below the category",
    }
    return ClassTask(**splits, class_names=class_names, class_ids=tuple(kept), depth=depth, info=info)
