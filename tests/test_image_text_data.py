"""The image-text data set builder: captions, emoji rendering, icon themes, dedupe, splits, manifest, bad input."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from mm_fixtures import COLOURS, draw_shape, mm_data, write_shape_pairs  # noqa: F401
from PIL import Image

from mrl.corpora import icons
from mrl.corpora.captions import icon_captions, icon_concept
from mrl.corpora.emoji import emoji_captions, emoji_items
from mrl.corpora.image_text import build_image_text
from mrl.data.image_items import RawItem, SourceResult, clean_caption
from mrl.data.image_pairs import pair_items
from mrl.data.image_text import images_to_tensor, load_image_text
from mrl.errors import DataError, OutputExistsError


def test_captions_are_cleaned_and_concepts_ignore_colour_and_style():
    assert clean_caption("network-wireless-signal-good") == "network wireless signal good"
    assert clean_caption(":red_heart:") == "red heart"
    assert clean_caption("  ---  ") == "" and clean_caption("🙂") == ""
    assert icon_captions(["battery-good-symbolic", "battery_060", "battery-good"]) == ["battery good", "battery 060"]
    assert icon_captions(["application-x-firmware"]) == ["application firmware"]
    assert icon_concept("folder-blue-music-symbolic") == icon_concept("folder-music-red") == "folder music"
    assert emoji_captions("\u2764\ufe0f", {"en": ":red_heart:", "alias": [":heart:"]}) == ["red heart", "heart", "heavy black heart"]


def dejavu() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def test_emoji_render_from_a_font_and_missing_font_names_the_package(tmp_path, monkeypatch):
    # DejaVu Sans (shipped with matplotlib) draws a few emoji code points in black and white; the
    # others are skipped because the font lacks them (it would draw its "missing glyph" box).
    result = emoji_items(dejavu(), font_size=40, limit=5)
    assert len(result.items) == 5 and result.skipped
    for it in result.items:
        assert it.captions and it.source == "emoji" and it.image.mode == "RGBA"
        assert it.image.size[0] == it.image.size[1] and it.image.getbbox() is not None
    assert {s.reason for s in result.skipped} == {"the font has no glyph for it"}
    monkeypatch.delenv("MRL_EMOJI_FONT", raising=False)
    with pytest.raises(DataError, match="apt-get install fonts-noto-color-emoji"):
        emoji_items(tmp_path / "NoSuchEmoji.ttf")


def make_theme(root: Path) -> Path:
    """A tiny icon theme: PNGs at two sizes, an alias link, a broken link and a corrupt file."""
    theme = root / "Tiny"
    for size in (16, 48):
        folder = theme / f"{size}x{size}" / "status"
        folder.mkdir(parents=True)
        draw_shape("circle", (200, 0, 0), size=size, inset=2).save(folder / "dialog-error.png")
        draw_shape("square", (0, 0, 200), size=size, inset=2).save(folder / "battery-full.png")
    status = theme / "48x48" / "status"
    os.symlink("dialog-error.png", status / "error-alert.png")
    os.symlink("gone.png", status / "broken-link.png")
    (status / "corrupt-icon.png").write_bytes(b"\x89PNG not really")
    draw_shape("cross", (0, 0, 0)).save(theme / "48x48" / "status" / "edit-delete.png")
    (theme / "48x48@2x" / "status").mkdir(parents=True)
    draw_shape("ring", (0, 0, 0), size=96).save(theme / "48x48@2x" / "status" / "ring-only-hidpi.png")
    (theme / "48x48" / "apps").mkdir()
    draw_shape("bar", (0, 0, 0)).save(theme / "48x48" / "apps" / "some-brand.png")
    return theme


def test_icon_theme_names_aliases_sizes_and_skipped_files(tmp_path):
    make_theme(tmp_path)
    result = icons.icon_items("Tiny", roots=[tmp_path], render_size=32)
    by_name = {it.name: it for it in result.items}
    assert set(by_name) == {"dialog-error", "battery-full", "edit-delete"}  # no apps, no @2x, no broken files
    assert by_name["dialog-error"].captions == ["dialog error", "error alert"]  # the alias link is a caption
    assert by_name["dialog-error"].image.size == (48, 48)  # the 48 px file, the smallest size >= 32
    assert by_name["dialog-error"].info["file"] == "48x48/status/dialog-error.png"
    reasons = {Path(s.name).name: s.reason for s in result.skipped}
    assert reasons["broken-link.png"] == "broken symbolic link"
    assert "cannot read image" in reasons["corrupt-icon.png"] and "replace or remove it" in reasons["corrupt-icon.png"]
    assert result.info["categories"] and result.info["theme"] == "Tiny"


def test_missing_theme_and_svg_without_rsvg_name_the_debian_package(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="apt-get install papirus-icon-theme"):
        icons.find_theme("Papirus", roots=[tmp_path])
    with pytest.raises(DataError, match="apt-get install adwaita-icon-theme"):
        icons.find_theme("Adwaita", roots=[tmp_path])
    theme = tmp_path / "Vec" / "scalable" / "actions"
    theme.mkdir(parents=True)
    (theme / "go-next.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect x="2" y="2" width="12" height="12" fill="#c00"/></svg>')
    monkeypatch.setattr(icons.shutil, "which", lambda _name: None)
    with pytest.raises(DataError, match="apt-get install librsvg2-bin"):
        icons.icon_items("Vec", roots=[tmp_path])


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="rsvg-convert (librsvg2-bin) is not installed")
def test_svg_icons_are_rasterised(tmp_path):
    theme = tmp_path / "Vec" / "scalable" / "actions"
    theme.mkdir(parents=True)
    (theme / "go-next.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect x="2" y="2" width="12" height="12" fill="#c00"/></svg>')
    (theme / "broken.svg").write_text("<svg")
    result = icons.icon_items("Vec", roots=[tmp_path], render_size=24)
    assert [it.name for it in result.items] == ["go-next"] and result.items[0].image.size == (24, 24)
    assert result.items[0].image.getpixel((12, 12))[:3] == (204, 0, 0)
    assert "rsvg-convert cannot read" in result.skipped[0].reason


def _item(image: Image.Image, caption: str, concept: str, variant: bool = False, name: str | None = None) -> RawItem:
    return RawItem(image, [caption], concept, "test", name or caption, variant=variant)


def test_dedupe_merges_copies_collapses_variants_and_groups_recolours(tmp_path):
    red_circle = draw_shape("circle", (220, 30, 30))
    items = [
        _item(red_circle, "red circle", "circle"),
        _item(red_circle.copy(), "scarlet disc", "disc"),  # the same picture under another name: merged
        _item(draw_shape("circle", (30, 60, 220)), "blue circle", "blue circle"),  # a recolour: same group, kept
        _item(draw_shape("square", (0, 0, 0)), "folder music", "folder music", True, "folder-music"),
        _item(draw_shape("square", (200, 0, 0)), "folder red music", "folder music", True, "folder-red-music"),  # colour variant: dropped
    ]
    items += [_item(draw_shape(s, rgb), f"{c} {s}", f"{c} {s}") for c, rgb in COLOURS.items() for s in ("triangle", "cross", "bar", "ring")]
    manifest = build_image_text(tmp_path / "d", [SourceResult(items, [], {"kind": "test"})], size=16, seed=3, val_fraction=0.2, test_fraction=0.3)
    data = load_image_text(tmp_path / "d")
    names = [it["name"] for it in data.items]
    assert "scarlet disc" not in names and "folder-red-music" not in names and "folder-music" in names
    red = data.items[names.index("red circle")]
    assert red["captions"] == ["red circle", "scarlet disc"] and red["merged"] == ["scarlet disc"]
    assert red["group"] == data.items[names.index("blue circle")]["group"]  # grouped by the perceptual hash
    assert manifest["dedupe"] == {"input_pictures": len(items), "variants_dropped": 1, "duplicates_merged": 1}
    groups_of = {s: {it["group"] for it in data.items if it["split"] == s} for s in ("train", "val", "test")}
    assert not (groups_of["train"] & groups_of["test"]) and not (groups_of["train"] & groups_of["val"])
    assert sum(manifest["splits"][s]["pictures"] for s in groups_of) == manifest["pictures"] == len(data.items)
    assert manifest["nearest_train_rms"]["test"]["below_threshold"] == 0
    # The split is a function of the seed alone.
    build_image_text(tmp_path / "e", [SourceResult(items, [], {"kind": "test"})], size=16, seed=3, val_fraction=0.2, test_fraction=0.3)
    assert (tmp_path / "e" / "items.jsonl").read_bytes() == (tmp_path / "d" / "items.jsonl").read_bytes()


def test_data_set_files_checksums_and_overwrite_rules(mm_data, tmp_path):
    data = load_image_text(mm_data)
    test = data.split("test")
    assert test.images.shape[1:] == (16, 16, 3) and test.images.dtype == np.uint8
    texts, per_image = test.caption_index()
    assert len(per_image) == len(test) and all(texts[i] in caps for i, caps in zip((p[0] for p in per_image), test.captions))
    x = images_to_tensor(test.images)
    assert x.shape == (len(test), 3, 16, 16) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    copy = tmp_path / "copy"
    shutil.copytree(mm_data, copy)
    raw = bytearray((copy / "images.npy").read_bytes())
    raw[-1] ^= 0xFF
    (copy / "images.npy").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="does not match its manifest"):
        load_image_text(copy)
    source = SourceResult([_item(draw_shape("circle", (0, 0, 0)), "circle", "c"), _item(draw_shape("bar", (0, 0, 0)), "bar", "b")], [], {"kind": "test"})
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build_image_text(copy, [source], size=16, test_fraction=0.5, val_fraction=0.0)
    build_image_text(copy, [source], size=16, test_fraction=0.5, val_fraction=0.0, overwrite=True)
    assert load_image_text(copy).manifest["pictures"] == 2
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not an image-text data set"):
        build_image_text(mine, [source], size=16, test_fraction=0.5, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="no manifest.json"):
        load_image_text(tmp_path / "nothing")


def test_pair_file_errors_name_the_line(tmp_path):
    pairs = write_shape_pairs(tmp_path / "p")
    result = pair_items(pairs)
    assert len(result.items) == 72 and result.items[0].captions == ["red square", "a square in red"]
    (tmp_path / "p" / "broken.png").write_bytes(b"GIF89a truncated")
    bad = tmp_path / "p" / "bad.jsonl"
    bad.write_text(json.dumps({"image": "red-square-4.png", "caption": "red square"}) + "\n" + json.dumps({"image": "broken.png", "caption": "a broken picture"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl line 2: cannot read image .*broken.png"):
        pair_items(bad)
    bad.write_text(json.dumps({"image": "red-square-4.png", "caption": " !!! "}) + "\n")
    with pytest.raises(DataError, match="line 1: caption ' !!! ' is empty after cleaning"):
        pair_items(bad)
    bad.write_text(json.dumps({"image": "missing.png", "caption": "ghost"}) + "\n")
    with pytest.raises(DataError, match="line 1: image .*missing.png does not exist"):
        pair_items(bad)
    csv_file = tmp_path / "p" / "pairs.csv"
    csv_file.write_text("image,caption\nred-square-4.png,red square\nred-square-4.png,a red block\n,nothing\n")
    with pytest.raises(DataError, match="line 4 needs 'image' and 'caption'"):
        pair_items(csv_file)
