"""README "Tour", "Train and evaluate", "Adaptive inference" and "Your own images", run as a user would.

Small scale: a synthetic Fashion-MNIST folder (700 train / 150 test images in the real IDX format),
1 epoch, a width-8 small ResNet with D = 32 (the README's is 512).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, python_process, readme_python_block, run_commands

SMALL = "--set data_root={fm} --set epochs=1 --set width=8 --set val_size=200 --set batch_size=100 --set warmup_steps=2 --set embed_dim=32"
MRL_SMALL = SMALL + " --set matryoshka_dims=2,4,...,32"
FF_SMALL = SMALL + " --set matryoshka_dims=[32]"

TRAIN = [
    "mrl train --config configs/fashion_mnist_mrl.yaml --out runs/mrl " + MRL_SMALL,
    "mrl train --config configs/fashion_mnist_ff.yaml --out runs/ff512 " + FF_SMALL,
    "mrl train --config configs/fashion_mnist_mrl_e.yaml --out runs/mrl-e " + MRL_SMALL + " --set matryoshka_weights= --set train_subset=200",  # its 9 weights are for 9 dims
    "mrl train --out runs/mrl-e2 --set mode=mrl-e --set epochs=5 " + MRL_SMALL.replace("--set epochs=1 ", "") + " --set train_subset=100",
    "mrl train --out runs/mrl --config configs/fashion_mnist_mrl.yaml --resume " + MRL_SMALL,
    "mrl eval runs/mrl runs/ff512 --baselines pca,random --out results.json",
    "mrl report results.json --out report/",
    "mrl embed runs/mrl --split test --out test.npy",
]
ADAPTIVE = [
    "mrl cascade fit runs/mrl --max-drop 0.1",
    "mrl cascade eval runs/mrl",
    "mrl embed runs/mrl --split train --out db.npy && mrl embed runs/mrl --split val --out val.npy",
    "mrl index build idx/ --vectors db.npy --recall-target 0.99 --queries val.npy",
    "mrl index search idx/ --queries test.npy --k 10",
    "mrl index info idx/",
]
IMAGE_SMALL = "--set image_size=32 --set epochs=1 --set batch_size=16 --set warmup_steps=1 --set num_workers=0"
OWN_IMAGES = [
    "mrl train --set dataset=imagefolder --set data_root=DIR --out runs/mine --set width=8 --set embed_dim=32 --set matryoshka_dims=2,4,...,32 " + IMAGE_SMALL,
    "mrl train --set dataset=imagefolder --set data_root=DIR --set backbone=torchvision:resnet50 --set matryoshka_dims=8,16,...,2048 --set weights=resnet50.pth --out runs/r50 " + IMAGE_SMALL,
    "mrl eval runs/mine --out mine.json",
]

README_COMMANDS = {
    "test_train_and_evaluate": TRAIN,
    "test_adaptive_inference": ADAPTIVE,
    "test_your_own_images": OWN_IMAGES,
}
README_BLOCKS = {"test_tour_python_block": ["import torch"]}


def test_tour_python_block(tmp_path: Path):
    """The Tour's python block, verbatim, in a fresh interpreter."""
    block = readme_python_block("import torch")
    proc = python_process(block + "\nassert out.per_dim.shape == (len(dims),) and small.shape == (32, 64)\nprint('tour ok', dims)\n", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tour ok (8, 16, 32, 64, 128, 256, 512)" in proc.stdout


@pytest.fixture(scope="module")
def image_workspace(tmp_path_factory: pytest.TempPathFactory, fmnist_small: Path) -> tuple[Path, list]:
    cwd = tmp_path_factory.mktemp("image-journey")
    (cwd / "configs").symlink_to(REPO / "configs")  # the README runs from the repository root
    results = run_commands([c.format(fm=fmnist_small) for c in TRAIN], cwd, check=False)
    return cwd, results


def test_train_and_evaluate(image_workspace):
    cwd, results = image_workspace
    assert [r.rc for r in results] == [0] * len(TRAIN), "\n".join(f"$ {r.command} -> {r.rc}\n{r.stderr[-2500:]}" for r in results)
    for run in ("mrl", "ff512", "mrl-e", "mrl-e2"):
        assert (cwd / "runs" / run / "manifest.json").is_file(), run
    assert json.loads((cwd / "runs" / "mrl-e2" / "config.json").read_text())["epochs"] == 5
    res = json.loads((cwd / "results.json").read_text())
    methods = {r["method"] for r in res["runs"]} if isinstance(res, dict) and "runs" in res else {r.get("method") for r in res}
    assert len(methods) >= 4, methods  # MRL, FF, PCA, random
    assert {"report.md", "report.html"} <= {p.name for p in (cwd / "report").iterdir()}
    assert np.load(cwd / "test.npy").shape == (150, 32)
    assert json.loads((cwd / "test.json").read_text())  # the sidecar
    evaluated = results[5]
    assert "d=32" in evaluated.stdout and "MRL" in evaluated.stdout, "mrl eval prints its per-dim table"


def test_adaptive_inference(image_workspace):
    cwd, train = image_workspace
    if any(r.rc for r in train):
        pytest.skip("the training journey failed (reported by test_train_and_evaluate)")
    results = run_commands(ADAPTIVE, cwd)
    assert (cwd / "runs" / "mrl" / "cascade.json").is_file()
    assert "expected" in results[1].stdout + results[1].stderr  # expected dims
    assert np.load(cwd / "db.npy").shape == (500, 32) and np.load(cwd / "val.npy").shape == (200, 32)
    assert (cwd / "idx" / "manifest.json").is_file() and (cwd / "idx" / "tuning.md").is_file()
    searched = results[-2]
    assert "->" in searched.stdout + searched.stderr or ":10" in searched.stdout + searched.stderr, "the search names the funnel it used"
    info = results[-1]
    assert len((info.stdout + info.stderr).splitlines()) < 60, "index info promises a summary"


def write_image_folder(root: Path, classes: int = 3, per_class: int = 10) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 60, size=(40, 40, 3)).astype(np.uint8)
            arr[:, :, c] += 180
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")
    return root


def test_your_own_images(tmp_path: Path):
    import torch
    import torchvision

    write_image_folder(tmp_path / "DIR")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")  # a local weights file, as a user has
    run_commands(OWN_IMAGES, tmp_path)
    assert (tmp_path / "runs" / "r50" / "manifest.json").is_file()
    cfg = json.loads((tmp_path / "runs" / "r50" / "config.json").read_text())
    assert cfg["backbone"] == "torchvision:resnet50" and cfg["matryoshka_dims"][-1] == 2048
    assert json.loads((tmp_path / "mine.json").read_text())
