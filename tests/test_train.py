import csv

import pytest
import torch

from mrl.errors import CheckpointError, MRLError, OutputExistsError
from mrl.io import load_safetensors
from mrl.train import TrainConfig, load_config, train
from mrl.train.checkpoint import load_model


def test_train_writes_metrics_checkpoint_and_model(tiny_config, tmp_path):
    result = train(tiny_config, tmp_path / "run")
    assert len(result.history) == 2
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {f"val_top1@{d}" for d in (2, 4, 8, 16, 32)} <= set(rows[0])
    assert result.final["val_top1@32"] > 0.3  # the synthetic classes are easy; chance is 0.1
    model, cfg = load_model(tmp_path / "run")
    assert model.matryoshka_dims == (2, 4, 8, 16, 32) and cfg["mode"] == "mrl"


def test_resume_after_stop_matches_uninterrupted_run(tiny_config, tmp_path):
    straight = train(tiny_config, tmp_path / "a")
    train(tiny_config, tmp_path / "b", stop_after_epoch=1)
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed = train(tiny_config, tmp_path / "b", resume=True)
    assert resumed.history[0] == straight.history[0] | {"seconds": resumed.history[0]["seconds"]}
    for key, value in straight.final.items():
        if key != "seconds":
            assert resumed.final[key] == pytest.approx(value, abs=1e-6), key
    wa, _ = load_safetensors(tmp_path / "a" / "model.safetensors")
    wb, _ = load_safetensors(tmp_path / "b" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_refuses_existing_output_and_contradicting_resume(tiny_config, tmp_path):
    train(tiny_config.replace(epochs=1), tmp_path / "run")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(tiny_config.replace(epochs=1), tmp_path / "run")
    with pytest.raises(CheckpointError, match="contradicts the checkpoint"):
        train(tiny_config.replace(epochs=1, lr=0.5), tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_config, tmp_path / "empty", resume=True)


def test_corrupted_checkpoint_is_reported(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "run", stop_after_epoch=1)
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        train(tiny_config, tmp_path / "run", resume=True)
    (tmp_path / "m.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "m.safetensors")


def test_mrl_e_and_ff_modes(tiny_config, tmp_path):
    e = train(tiny_config.replace(epochs=1, mode="mrl-e"), tmp_path / "e")
    assert "val_top1@2" in e.final
    ff = train(tiny_config.replace(epochs=1, mode="ff", matryoshka_dims=[8]), tmp_path / "ff")
    assert "val_top1@8" in ff.final and "val_top1@2" not in ff.final


def test_config_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 4\nmode: mrl-e\nmatryoshka_dims: '8,16,...,512'\n")
    cfg = load_config(p, ["epochs=2", "lr=0.01"])
    assert cfg.epochs == 2 and cfg.mode == "mrl-e" and cfg.lr == 0.01 and cfg.matryoshka_dims[0] == 8
    with pytest.raises(MRLError, match="unknown image recipe keys"):
        load_config(None, ["epoch=2"])
    with pytest.raises(MRLError, match="key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(MRLError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(MRLError, match="larger than the embedding dim"):
        TrainConfig(matryoshka_dims=[8, 1024])
    with pytest.raises(MRLError, match="single dim"):
        TrainConfig(mode="ff", matryoshka_dims=[8, 512])
    with pytest.raises(MRLError, match="task: text"):
        TrainConfig(dataset="imagenet")
