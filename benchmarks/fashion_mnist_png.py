"""Write Fashion-MNIST out as a folder of PNG files in torchvision's ImageFolder layout.

    python benchmarks/fashion_mnist_png.py --out benchmarks/out/fmnist-png            # 60k train + 10k test
    python benchmarks/fashion_mnist_png.py --out benchmarks/out/fmnist-png-small --per-class 1000 --test-per-class 200

Layout: ``OUT/train/<k>_<class>/<index>.png`` (the 60k training images, or the first ``--per-class``
of each class) and ``OUT/val/<k>_<class>/<index>.png`` (the 10k test images, or the first
``--test-per-class`` of each class). With ``dataset: imagefolder`` the ``val/`` folder is the reported
test split and ``val_fraction`` of each training class is held out for validation, so
``val_fraction: 0.0833`` reproduces the IDX path's 55k / 5k / 10k sizes. Class folders are prefixed
with the label so their sorted order is the IDX label order. Files are 8-bit grayscale PNGs. The
folder is filled under a temporary name and renamed when complete; an existing ``OUT`` is replaced
only with ``--overwrite`` and only if its ``manifest.json`` shows this script wrote it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from PIL import Image

from mrl.data.fashion_mnist import CLASSES, load_fashion_mnist
from mrl.io import atomic_folder, read_json, write_json

SOURCE = "benchmarks/fashion_mnist_png.py (Fashion-MNIST IDX)"


def class_folder(k: int) -> str:
    return f"{k}_" + re.sub(r"[^a-z0-9]+", "_", CLASSES[k].lower()).strip("_")


def written_by_this_script(name: str) -> bool:
    """Whether ``name`` (relative to the output folder) has the form of a file this script writes."""
    return name == "manifest.json" or re.fullmatch(r"(train|val)/\d_[a-z0-9_]+/\d{5}\.png", name) is not None


def first_per_class(labels: np.ndarray, n: int | None) -> np.ndarray:
    if n is None:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == k)[:n] for k in range(len(CLASSES))]))


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> int:
    """Plain writes: the whole folder is published atomically by ``atomic_folder``."""
    for k in range(len(CLASSES)):
        (folder / class_folder(k)).mkdir(parents=True, exist_ok=True)
    for i in keep:
        Image.fromarray(images[i], mode="L").save(folder / class_folder(int(labels[i])) / f"{i:05d}.png", format="PNG")
    return len(keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--data-root", default=None, help="Fashion-MNIST IDX folder (default: the Debian install)")
    p.add_argument("--per-class", type=int, default=None, help="training images per class (default: all 6000)")
    p.add_argument("--test-per-class", type=int, default=None, help="test images per class (default: all 1000)")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    if out.exists():
        ours = (out / "manifest.json").is_file() and read_json(out / "manifest.json").get("source") == SOURCE
        if not (args.overwrite and ours):
            raise SystemExit(f"{out} exists; " + ("pass --overwrite to rewrite it." if ours else "it was not written by this script, so it is left alone: choose another --out."))
    data = load_fashion_mnist(args.data_root, val_size=0)
    with atomic_folder(out, owned=written_by_this_script) as tmp:
        n_train = write_split(tmp / "train", data.train.images, data.train.labels, first_per_class(data.train.labels, args.per_class))
        n_test = write_split(tmp / "val", data.test.images, data.test.labels, first_per_class(data.test.labels, args.test_per_class))
        write_json(tmp / "manifest.json", {"source": SOURCE, "train": n_train, "val (test images)": n_test, "classes": [class_folder(k) for k in range(len(CLASSES))]})
    print(f"wrote {n_train} training and {n_test} test PNGs under {out}")


if __name__ == "__main__":
    main()
