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
