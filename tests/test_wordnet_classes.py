from pathlib import Path

import numpy as np
import pytest

from mrl.data.wordnet import load_synsets
from mrl.data.wordnet_classes import SPLITS, hypernym_paths, load_wordnet_classes
from mrl.errors import DataError


def write_tree(folder: Path) -> Path:
    """entity -> 2 groups (depth 1) -> 3 categories each (depth 2) -> members (depth 3, 4).

    Category (g, c) has 6 + 4 * (g * 3 + c) members at depth 3; the first member of each category
    has two children at depth 4 (members too). Category sizes: 8, 12, ..., 28. One member is linked
    by an instance pointer (@i) and one by two hypernyms (the first listed counts).
    """
    lines: list[tuple[str, str, list[tuple[str, str]], str]] = []  # offset, word, [(symbol, target)], gloss
    counter = iter(range(10_000_000, 99_999_999, 97))

    def add(word: str, parents: list[tuple[str, str]], gloss: str) -> str:
        off = f"{next(counter):08d}"
        lines.append((off, word, parents, gloss))
        return off

    root = add("entity", [], "that which is perceived to exist")
    cats = []
    for g in range(2):
        grp = add(f"group{g}", [("@", root)], f"group number {g}")
        for c in range(3):
            cats.append(add(f"cat{g}{c}", [("@", grp)], f"category {g}{c}"))
    for k, cat in enumerate(cats):
        for m in range(6 + 4 * k):
            ptr = [("@i" if m == 1 else "@", cat)]
            if m == 2:
                ptr.append(("@", cats[(k + 1) % len(cats)]))  # a second hypernym: ignored
            off = add(f"member{k}-{m}", ptr, f"a member {m} of category {k}")
            if m == 0:
                for ch in range(2):
                    add(f"child{k}-{ch}", [("@", off)], f"a child {ch} of member 0 of category {k}")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "data.noun").open("w") as fh:
        fh.write("  1 license header line\n")
        for off, word, ptrs, gloss in lines:
            p = " ".join(f"{s} {t} n 0000" for s, t in ptrs)
            fh.write(f"{off} 03 n 01 {word} 0 {len(ptrs):03d}{' ' + p if p else ''} | {gloss}  \n")
    return folder


def test_paths_follow_first_hypernym(tmp_path):
    synsets = load_synsets(write_tree(tmp_path / "wn"))
    paths = hypernym_paths(synsets)
    by_word = {s.lemmas[0]: s.offset for s in synsets}
    assert [next(s.lemmas[0] for s in synsets if s.offset == o) for o in paths[by_word["child0-1"]]] == ["entity", "group0", "cat00", "member0-0", "child0-1"]
    assert paths[by_word["member0-2"]][2] == by_word["cat00"]  # the first of two hypernyms
    assert paths[by_word["member0-1"]][2] == by_word["cat00"]  # an instance hypernym counts


def test_task_picks_depth_filters_and_splits(tmp_path):
    root = write_tree(tmp_path / "wn")
    # category sizes at depth 2: 6+4k members + 2 children = 8, 12, 16, 20, 24, 28
    task = load_wordnet_classes(root, min_members=12, min_classes=4, max_per_class=None, fractions=(0.5, 0.2, 0.15, 0.15), seed=0)
    assert task.depth == 2 and task.class_names == ("cat01", "cat02", "cat10", "cat11", "cat12")
    assert task.info["members"] == 12 + 16 + 20 + 24 + 28 and task.info["depth_table"][1]["kept_categories"] == 5
    all_syn = [o for s in SPLITS for o in task.split(s).synsets]
    assert len(all_syn) == len(set(all_syn)) == task.info["members"]  # disjoint, complete
    for s in SPLITS:
        split = task.split(s)
        assert np.bincount(split.labels, minlength=5).min() >= 1  # stratified: every class everywhere
        for text, label in zip(split.texts, split.labels):
            word, definition = text.split(": ", 1)
            assert definition.endswith(f"of category {int(task.class_names[label][-2]) * 3 + int(task.class_names[label][-1])}") or "child" in word
    again = load_wordnet_classes(root, min_members=12, min_classes=4, max_per_class=None, fractions=(0.5, 0.2, 0.15, 0.15), seed=0)
    assert again.test.synsets == task.test.synsets
    other = load_wordnet_classes(root, min_members=12, min_classes=4, max_per_class=None, fractions=(0.5, 0.2, 0.15, 0.15), seed=1)
    assert other.test.synsets != task.test.synsets
    capped = load_wordnet_classes(root, min_members=12, min_classes=4, max_per_class=14, fractions=(0.5, 0.2, 0.15, 0.15))
    assert capped.info["members"] == 12 + 14 * 4 and capped.info["members_before_cap"] == task.info["members"]
    shallow = load_wordnet_classes(root, depth=1, min_members=12, min_classes=2)
    assert shallow.class_names == ("group0", "group1")


def test_bad_settings(tmp_path):
    root = write_tree(tmp_path / "wn")
    with pytest.raises(DataError, match="no depth gives 50 categories"):
        load_wordnet_classes(root, min_members=12, min_classes=50)
    with pytest.raises(DataError, match="fewer than min_classes"):
        load_wordnet_classes(root, depth=1, min_members=12, min_classes=3)
    with pytest.raises(DataError, match="four positive shares"):
        load_wordnet_classes(root, fractions=(0.5, 0.5, 0.0, 0.0))
    with pytest.raises(DataError, match="unknown split"):
        load_wordnet_classes(root, min_members=12, min_classes=4).split("dev")
