"""DDP on CPU with gloo: a 2-process torchrun run against a 1-process run with the same global batch.

Tolerance (stated in the issue's terms): the two runs see the same global batches in the same
order; they differ only in batch-norm statistics (per rank: 2 x 25 images instead of 50) and float
summation order. After 4 epochs on the synthetic data we require the final training loss within
5% (relative) and validation top-1 within 0.05 (absolute) at every prefix d >= 8; the 2- and
4-dim heads are still far from converged there and are only required to beat chance.
"""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import CheckpointError, MRLError
from mrl.train import train
from mrl.train.checkpoint import load_checkpoint, load_model
from mrl.train.distributed import DistContext, available_cpus, check_global_batch, check_nproc, shard_batch, torchrun_command

EPOCHS = 4


def _sets(cfg):
    keys = ("data_root", "val_size", "embed_dim", "epochs", "batch_size", "warmup_steps", "width", "weighting")
    out = [f"{k}={getattr(cfg, k)}" for k in keys] + ["matryoshka_dims=2,4,...,32", "progress=false"]
    return [a for s in out for a in ("--set", s)]


def _torchrun(args, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(torchrun_command(nproc, args), env=env, capture_output=True, text=True, timeout=120)


def test_two_process_gloo_run_matches_single_process_and_resumes(tiny_config, tmp_path):
    cfg = tiny_config.replace(epochs=EPOCHS, weighting="focal", threads=1)
    single = train(cfg, tmp_path / "single")

    # 2 ranks, stopped after epoch 2 (as if killed), then resumed with `mrl train --nproc 2 --resume`.
    proc = _torchrun(["--out", str(tmp_path / "ddp"), *_sets(cfg), "--stop-after-epoch", "2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    tensors, state = load_checkpoint(tmp_path / "ddp" / "checkpoint.safetensors")
    assert state["epoch"] == 2 and state["extra"]["world_size"] == 2
    assert "weighting.ema" in tensors and not (tmp_path / "ddp" / "model.safetensors").exists()
    shutil.copytree(tmp_path / "ddp", tmp_path / "ddp-to-1")
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "ddp"), "--nproc", "2", "--resume", *_sets(cfg)])
    assert res.exit_code == 0, res.output
    _, ddp_state = load_checkpoint(tmp_path / "ddp" / "checkpoint.safetensors")
    ddp_final = ddp_state["history"][-1]
    assert ddp_state["epoch"] == EPOCHS and len(ddp_state["history"]) == EPOCHS
    model, _ = load_model(tmp_path / "ddp")
    assert model.matryoshka_dims == (2, 4, 8, 16, 32)

    for final in (ddp_final, train(cfg, tmp_path / "ddp-to-1", resume=True).final):  # also: DDP checkpoint resumed by 1 process
        assert final["train_loss"] == pytest.approx(single.final["train_loss"], rel=0.05)
        for d in (8, 16, 32):
            assert abs(final[f"val_top1@{d}"] - single.final[f"val_top1@{d}"]) <= 0.05, d
        for d in (2, 4):
            assert final[f"val_top1@{d}"] > 0.2
        for d in cfg.matryoshka_dims:  # focal weights were synced over ranks and stayed comparable
            assert final[f"weight@{d}"] == pytest.approx(single.final[f"weight@{d}"], rel=0.1)


def test_nproc_above_cores_is_refused_without_force(tiny_config, tmp_path):
    cores = available_cpus()
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r"), "--nproc", str(cores + 1), *_sets(tiny_config)])
    assert res.exit_code == 2 and "--force" in res.output and not (tmp_path / "r").exists()
    with pytest.raises(MRLError, match="--force"):
        check_nproc(cores + 1)
    check_nproc(cores + 1, force=True)
    with pytest.raises(MRLError, match="positive integer"):
        check_nproc(0, force=True)
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r"), "--nproc", "2", *_sets(tiny_config.replace(batch_size=51))])
    assert res.exit_code == 2 and "divisible by --nproc 2" in res.output


def test_cli_checks_the_run_folder_before_launching(tiny_config, tmp_path):
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "none"), "--nproc", "2", "--resume", *_sets(tiny_config)])
    assert res.exit_code == 2 and "nothing to resume" in res.output
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_config, tmp_path / "none", resume=True)


def test_shard_batch_splits_each_global_batch_without_overlap():
    idx = torch.arange(100, 112)
    parts = [shard_batch(idx, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert [p.tolist() for p in parts] == [list(range(100, 104)), list(range(104, 108)), list(range(108, 112))]
    assert torch.equal(shard_batch(idx, DistContext()), idx)
    with pytest.raises(MRLError, match="divisible"):
        check_global_batch(50, DistContext(rank=0, world_size=3))


def test_module_entry_point_reports_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mrl.train", "--out", str(tmp_path / "r"), "--set", "weighting=nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown weighting 'nope'" in proc.stderr
