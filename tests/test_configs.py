from pathlib import Path

import pytest

from mrl.train import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("fashion_mnist_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_vision_configs_load(path):
    cfg = load_config(path)
    assert cfg.embed_dim == 512 and cfg.matryoshka_dims[-1] in (512,) and cfg.epochs == 3


def test_there_is_a_config_per_mode():
    assert {load_config(p).mode for p in CONFIGS} == {"mrl", "mrl-e", "ff"}


def test_imagenet_resnet50_recipe_is_the_papers_setting():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "imagenet_resnet50_mrl.yaml")
    assert cfg.dataset == "imagefolder" and cfg.backbone == "torchvision:resnet50" and cfg.embedding_width == 2048
    assert cfg.matryoshka_dims == [8, 16, 32, 64, 128, 256, 512, 1024, 2048] and cfg.epochs == 40 and cfg.image_size == 224
