"""dataset: imagefolder on tiny generated folders (seconds): layouts, transforms, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mrl.cli import app
from mrl.data.registry import load_image_data
from mrl.errors import DataError, MRLError
from mrl.train import load_config

CLASSES = ("ant", "bee", "cow")


def make_folder(root: Path, *, splits=(("train", 8), ("val", 3)), size=(20, 24), mode="RGB", ext="png") -> Path:
    """Class-dependent images: class k is bright in column band k (so a model can learn it)."""
    rng = np.random.default_rng(0)
    for split, n in splits:
        for k, c in enumerate(CLASSES):
            folder = root / split / c if split else root / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
                arr[:, 8 * k : 8 * k + 8] = 220
                img = Image.fromarray(arr)
                (img if mode == "RGB" else img.convert(mode)).save(folder / f"{i}.{ext}")
    return root


def data(root: Path, **options):
    return load_image_data({"dataset": "imagefolder", "data_root": str(root), "image_size": 16, "num_workers": 0, **options})


def test_train_val_layout_transforms_and_determinism(tmp_path):
    d = data(make_folder(tmp_path))
    assert d.classes == CLASSES and d.in_channels == 3
    assert (len(d.train), len(d.val), len(d.test)) == (21, 3, 9)  # val_fraction 0.1 of each train class held out; val/ is test
    assert set(d.train.paths).isdisjoint(d.val.paths)
    x = next(d.test.eval_batches(4))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32

    def epoch(split, workers):
        object.__setattr__(split.opts, "num_workers", workers)
        gen = torch.Generator().manual_seed(7)
        return [x for x, _ in split.train_batches([torch.tensor([0, 5, 9]), torch.tensor([1, 2])], gen, augment=True)]

    a, b = epoch(d.train, 0), epoch(d.train, 1)  # augmentation depends on the epoch seed only
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and a[0].shape == (3, 3, 16, 16)


def test_single_folder_and_train_val_test_layouts(tmp_path):
    d = data(make_folder(tmp_path / "one", splits=(("", 10),)), val_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test)) == (18, 6, 6)
    assert "single folder" in d.report["layout"]
    d = data(make_folder(tmp_path / "three", splits=(("train", 4), ("val", 2), ("test", 1))))
    assert (len(d.train), len(d.val), len(d.test)) == (12, 6, 3)


def test_grayscale_image_in_rgb_set_is_converted(tmp_path):
    root = make_folder(tmp_path)
    Image.fromarray(np.full((20, 24), 200, dtype=np.uint8)).save(root / "train" / "ant" / "gray.png")  # mode L
    d = data(root)
    assert d.report["skipped"] == []
    x = next(d.train.eval_batches(64))
    assert x.shape[1] == 3
    assert data(root, image_mode="L").in_channels == 1 and next(data(root, image_mode="L").test.eval_batches(2)).shape == (2, 1, 16, 16)


def test_empty_class_folder_is_refused_with_its_path(tmp_path):
    root = make_folder(tmp_path)
    (root / "train" / "dog").mkdir()
    with pytest.raises(DataError, match=r"train/dog holds no images.*add images or remove the folder"):
        data(root)


def test_class_in_val_but_not_in_train(tmp_path):
    root = make_folder(tmp_path)
    (root / "val" / "elk").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "val" / "elk" / "0.png")
    with pytest.raises(DataError, match=r"class folder\(s\) \['elk'\] that .*train lacks"):
        data(root)


def _corrupt(root: Path) -> dict[str, Path]:
    good_png = (root / "train" / "ant" / "0.png").read_bytes()
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    img.save(root / "train" / "bee" / "whole.jpg", quality=90)
    jpg = (root / "train" / "bee" / "whole.jpg").read_bytes()
    bad = {"png": root / "train" / "ant" / "cut.png", "jpg": root / "train" / "bee" / "cut.jpg", "fake": root / "train" / "cow" / "fake.jpg"}
    bad["png"].write_bytes(good_png[: len(good_png) // 2])
    bad["jpg"].write_bytes(jpg[: len(jpg) // 2])
    bad["fake"].write_text("this is not an image")
    (root / "train" / "cow" / "README.txt").write_text("notes")  # not an image extension: ignored
    return bad


def test_truncated_and_non_image_files_are_skipped_and_reported(tmp_path):
    root = make_folder(tmp_path)
    bad = _corrupt(root)
    logs: list[str] = []
    d = load_image_data({"dataset": "imagefolder", "data_root": str(root), "image_size": 16, "num_workers": 0}, log=logs.append)
    assert sorted(d.report["skipped"]) == sorted(str(p) for p in bad.values())
    assert d.report["ignored_files"] == 1
    assert any("skipped 3 unreadable" in m and "cut.png" in m for m in logs) and any("README.txt" in m for m in logs)
    assert not {str(p) for p in bad.values()} & set(d.train.paths + d.val.paths)
    with pytest.raises(DataError, match=r"3 unreadable image\(s\):.*(cut\.jpg|cut\.png|fake\.jpg).*bad_images=skip"):
        data(root, bad_images="fail")


def test_unscanned_bad_file_met_mid_epoch_is_skipped_or_fails_cleanly(tmp_path):
    root = make_folder(tmp_path)
    bad = _corrupt(root)
    d = data(root, scan_images=False, val_fraction=0.01)
    i = d.train.paths.index(str(bad["png"]))
    gen = torch.Generator().manual_seed(0)
    batches = list(d.train.train_batches([torch.tensor([i, (i + 1) % len(d.train)])], gen, augment=True))
    assert batches[0][0].shape[0] == 1 and d.train.skipped() == [str(bad["png"])]
    strict = data(root, scan_images=False, val_fraction=0.01, bad_images="fail")
    with pytest.raises(DataError, match="cut.png"):
        list(strict.train.train_batches([torch.tensor([i])], gen, augment=True))


def test_config_refuses_too_small_images_and_missing_root(tmp_path):
    with pytest.raises(MRLError, match=r"image_size 16 is too small for backbone torchvision:resnet18 \(it needs at least 32 px\)"):
        load_config(None, {"dataset": "imagefolder", "data_root": str(tmp_path), "image_size": 16, "backbone": "torchvision:resnet18", "matryoshka_dims": "8,16,...,512"})
    with pytest.raises(MRLError, match="needs data_root"):
        load_config(None, {"dataset": "imagefolder"})
    with pytest.raises(MRLError, match="Fashion-MNIST images are 28 px"):
        load_config(None, {"image_size": 64})


def test_train_eval_embed_cascade_on_a_folder_end_to_end(tmp_path):
    root = make_folder(tmp_path / "imgs", splits=(("train", 12), ("val", 4)))
    runner = CliRunner()
    sets = [f"data_root={root}", "dataset=imagefolder", "image_size=16", "num_workers=0", "embed_dim=16", "width=4", "matryoshka_dims=[4,8,16]", "epochs=2", "batch_size=8", "warmup_steps=1", "progress=false", "crop_scale=[0.5,1]"]
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "dataset.json").read_text())["sizes"] == {"train": 33, "val": 3, "test": 12}
    r = runner.invoke(app, ["eval", str(tmp_path / "run"), "--out", str(tmp_path / "res.json")])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "res.json").read_text())["runs"][0]
    assert set(rec["per_dim"]) == {"4", "8", "16"} and {"top1", "1nn", "map@10", "recall@10"} <= set(rec["per_dim"]["16"])
    r = runner.invoke(app, ["embed", str(tmp_path / "run"), "--split", "train", "--out", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "e.npy").shape == (33, 16)
    r = runner.invoke(app, ["cascade", "fit", str(tmp_path / "run"), "--max-drop", "5"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["cascade", "eval", str(tmp_path / "run")])
    assert r.exit_code == 0 and "test: accuracy" in r.output, r.output
