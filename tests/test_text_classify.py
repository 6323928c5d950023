"""``loss: classify``: Matryoshka class heads trained with a text encoder, saved, resumed and cascaded."""

import json

import numpy as np
import pytest
import torch
from text_fixtures import toy_model  # noqa: F401
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import DataError, MRLError

pytest.importorskip("sentence_transformers")
DIMS = [8, 16, 32]
WORDS = {"fruit": ["apple", "pear", "plum", "grape", "melon", "cherry", "lemon", "peach"], "tool": ["hammer", "saw", "drill", "wrench", "chisel", "pliers", "rake", "spade"], "animal": ["horse", "tiger", "otter", "eagle", "whale", "mouse", "camel", "zebra"]}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _labelled(path, variant):
    """Two texts per word and class (``variant`` picks disjoint sentence templates per split)."""
    templates = [["a {w} here", "the {w} there"], ["one {w} now", "my {w} again"], ["see the {w}", "your {w} too"]][variant]
    return _write(path, [{"text": t.format(w=w), "label": c} for c, words in WORDS.items() for w in words for t in templates])


def _cfg(toy, data, **kw):
    from mrl.train.text import load_text_config

    base = {"model": str(toy), "loss": "classify", "dataset": str(data), "matryoshka_dims": DIMS, "batch_size": 8, "max_steps": 6, "max_seq_length": 16,
            "log_every": 1, "save_steps": 2, "progress": False, "device": "cpu", "lr": 1e-3, "head_lr": 1e-2}
    return load_text_config(None, {**base, **kw})


@pytest.fixture(scope="module")
def classified(tmp_path_factory, toy_model):
    from mrl.train.text import train_text

    root = tmp_path_factory.mktemp("classify")
    data = {name: _labelled(root / f"{name}.jsonl", i) for i, name in enumerate(("train", "cal", "test"))}
    out = root / "model"
    result = train_text(_cfg(toy_model, data["train"], max_steps=30, lr=3e-3, head_lr=5e-2, save_steps=100), out)
    return out, data, result


def test_classify_run_saves_heads_the_card_and_the_manifest(classified):
    from sentence_transformers import SentenceTransformer

    from mrl.models.text_heads import HEADS_FILE, load_text_heads

    out, data, result = classified
    assert result.steps == 30
    heads = load_text_heads(out)
    assert heads.dims == tuple(DIMS) and heads.class_names == ("animal", "fruit", "tool") and heads.scale == 10.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert HEADS_FILE in manifest["files"]
    record = json.loads((out / "matryoshka.json").read_text())
    assert record["loss"]["loss"] == "PrefixClassifierLoss" and record["classes"] == 3 and HEADS_FILE in record["files"]
    assert "class head per prefix over 3 classes" in (out / "README.md").read_text()
    model = SentenceTransformer(str(out), truncate_dim=8, device="cpu")  # the heads file does not disturb sentence-transformers
    emb = model.encode(["a pear here"], normalize_embeddings=True)
    assert emb.shape == (1, 8) and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)
    full = SentenceTransformer(str(out), device="cpu").encode(["a pear here", "the saw there"])
    logits = heads.logits(full)
    assert logits.shape == (3, 2, 3) and np.isfinite(logits).all()
    with pytest.raises(MRLError, match="full-width embeddings"):
        heads.logits(full[:, :8])


def test_heads_learn_the_classes(classified):
    """After 30 steps the widest head fits its training rows better than chance (1/3)."""
    from sentence_transformers import SentenceTransformer

    from mrl.data.labelled_texts import load_labelled_texts
    from mrl.models.text_heads import load_text_heads

    out, data, _ = classified
    heads = load_text_heads(out)
    train = load_labelled_texts(data["train"], class_names=heads.class_names)
    logits = heads.logits(SentenceTransformer(str(out), device="cpu").encode(list(train.texts)))
    assert (logits[-1].argmax(-1) == train.labels).mean() > 0.6


def test_cascade_fit_and_eval_on_a_text_model(classified):
    out, data, _ = classified
    runner = CliRunner()
    res = runner.invoke(app, ["cascade", "fit", str(out), "--texts", str(data["cal"]), "--max-drop", "5"])
    assert res.exit_code == 0, res.output
    casc = json.loads((out / "cascade.json").read_text())
    assert casc["calibration"]["texts_sha256"] and "cascade.json" in json.loads((out / "manifest.json").read_text())["files"]
    res = runner.invoke(app, ["cascade", "eval", str(out), "--texts", str(data["cal"])])
    assert res.exit_code == 2 and "calibrated on" in res.output
    report = out.parent / "report.json"
    res = runner.invoke(app, ["cascade", "eval", str(out), "--texts", str(data["test"]), "--out", str(report)])
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    assert 8 <= rep["expected_dim"] <= 32 and 0 <= rep["accuracy"] <= 1
    res = runner.invoke(app, ["cascade", "fit", str(out), "--texts", str(data["cal"])])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = runner.invoke(app, ["cascade", "fit", str(out), "--features", str(data["cal"]), "--labels", str(data["cal"]), "--overwrite"])
    assert res.exit_code == 2 and "--texts instead" in res.output
    res = runner.invoke(app, ["cascade", "fit", str(out), "--overwrite"])
    assert res.exit_code == 2 and "pass --texts" in res.output
    unknown = _write(out.parent / "unknown.jsonl", [{"text": "a violin", "label": "instrument"}])
    res = runner.invoke(app, ["cascade", "eval", str(out), "--texts", str(unknown)])
    assert res.exit_code == 2 and "not one of the model's 3 classes" in res.output


def test_texts_option_needs_a_text_model_with_heads(tmp_path):
    res = CliRunner().invoke(app, ["cascade", "fit", str(tmp_path), "--texts", "wordnet-classes:calibration"])
    assert res.exit_code == 2 and "loss: classify" in res.output


def test_resume_restores_the_heads(toy_model, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from mrl.models.text_heads import HEADS_FILE
    from mrl.train import text_trainer
    from mrl.train.text import train_text

    data = _labelled(tmp_path / "train.jsonl", 0)
    cfg = _cfg(toy_model, data)
    train_text(cfg, tmp_path / "full")
    original = text_trainer._MetricsCallback.on_step_end

    def killed(self, args, state, control, **kw):
        original(self, args, state, control, **kw)
        if state.global_step == 5:
            raise KeyboardInterrupt  # checkpoint-4 (with its heads) is on disk

    monkeypatch.setattr(text_trainer._MetricsCallback, "on_step_end", killed)
    with pytest.raises(KeyboardInterrupt):
        train_text(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-4" / text_trainer.LOSS_HEADS).is_file()
    monkeypatch.setattr(text_trainer._MetricsCallback, "on_step_end", original)
    assert train_text(cfg, tmp_path / "run", resume=True).steps == 2
    for name in ("model.safetensors", HEADS_FILE):
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "run" / name)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), name


def test_classifier_loss_shapes_and_refusals():
    from mrl.train.text_classify import PrefixClassifierLoss
    from mrl.weighting import UniformWeighting

    class Encoder(torch.nn.Module):
        def forward(self, features):
            return {"sentence_embedding": features["x"]}

    loss = PrefixClassifierLoss(Encoder(), ["a", "b", "c"], DIMS, self_distill=1.0)
    x = torch.randn(5, 32, requires_grad=True)
    value = loss([{"x": x}], torch.tensor([0, 1, 2, 0, 1]))
    value.backward()
    assert value.ndim == 0 and loss.last_per_dim.shape == (3,) and x.grad is not None and loss.heads.weight.grad is not None
    with pytest.raises(MRLError, match="one text column"):
        loss([{"x": x}, {"x": x}], torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(MRLError, match="at least 2 classes"):
        PrefixClassifierLoss(Encoder(), ["a"], DIMS)
    with pytest.raises(MRLError, match="weighting is built for"):
        PrefixClassifierLoss(Encoder(), ["a", "b"], DIMS, weighting=UniformWeighting(2))
    with pytest.raises(MRLError, match="label_smoothing"):
        PrefixClassifierLoss(Encoder(), ["a", "b"], DIMS, label_smoothing=1.0)


def test_classify_config_refusals(toy_model, tmp_path):
    from mrl.train.text import train_text

    with pytest.raises(MRLError, match="labelled texts"):
        _cfg(toy_model, "wordnet")
    with pytest.raises(MRLError, match="head_lr > 0"):
        _cfg(toy_model, tmp_path / "x.jsonl", head_lr=0)
    with pytest.raises(MRLError, match="self_distill >= 0"):
        _cfg(toy_model, tmp_path / "x.jsonl", self_distill=-1)
    data = _labelled(tmp_path / "train.jsonl", 0)
    with pytest.raises(MRLError, match="n_dims_per_step applies to the pair losses"):
        train_text(_cfg(toy_model, data, n_dims_per_step=2), tmp_path / "out")
    assert not (tmp_path / "out" / "matryoshka.json").exists()


def test_labelled_texts_classes_follow_the_file_or_the_model(tmp_path):
    from mrl.data.labelled_texts import load_labelled_texts

    data = load_labelled_texts(_write(tmp_path / "a.jsonl", [{"text": "x", "label": 10}, {"text": "y", "label": 2}, {"text": "z", "label": 10}]))
    assert data.class_names == ("2", "10") and data.labels.tolist() == [1, 0, 1]
    data = load_labelled_texts(tmp_path / "a.jsonl", class_names=["10", "2", "7"])
    assert data.labels.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"text": "a", "label": "x"}\n{"text": "b", "label": 1.5}\n', "line 2: 'label' must be a string or an integer"),
        (b'{"text": "a", "label": true}\n', "must be a string or an integer"),
        (b'{"text": "a"}\n', "line 1 must be an object with 'text' and 'label'"),
        (b'{"text": "  ", "label": "x"}\n', "line 1 has an empty or non-string 'text'"),
        (b'{"text": "a", "label": ""}\n', "'label' is empty"),
        (b'{"text": "a", "label": "x"}\n{"text": "a", "label": "y"}\n', "line 2: the same text is labelled 'x' on line 1"),
        (b'{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', "single class"),
        (b'{"text": "a", "label": "x"}\n{"text": "b\xff", "label": "y"}\n', "line 2 is not UTF-8"),
        (b'{"text": "a", "label": "x"\n', "line 1 is not valid JSON"),
        (b"\n\n", "holds no labelled text"),
    ],
)
def test_bad_labelled_texts_fail_with_one_line(tmp_path, content, match):
    from mrl.data.labelled_texts import load_labelled_texts

    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_labelled_texts(path)


def test_labelled_text_sources_that_do_not_exist(tmp_path):
    from mrl.data.labelled_texts import load_labelled_texts

    with pytest.raises(DataError, match="does not exist"):
        load_labelled_texts(tmp_path / "missing.jsonl")
    (tmp_path / "a.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="write them as .jsonl"):
        load_labelled_texts(tmp_path / "a.csv")


def test_shipped_classify_recipe_validates():
    from pathlib import Path

    from mrl.train.text import load_text_config

    cfg = load_text_config(Path(__file__).resolve().parent.parent / "configs" / "text_classify_wordnet.yaml")
    assert cfg.loss == "classify" and cfg.dataset == "wordnet-classes" and cfg.head_lr > cfg.lr


def test_refit_heads_keeps_the_joint_heads_and_drops_the_stale_cascade(classified, tmp_path):
    import shutil

    from mrl.io import load_safetensors, sha256_file
    from mrl.models.text_heads import HEADS_FILE, load_text_heads

    src, data, _ = classified
    out = tmp_path / "model"
    shutil.copytree(src, out)
    before = load_text_heads(out)
    runner = CliRunner()
    if not (out / "cascade.json").exists():  # the cascade test may have fitted one already
        assert runner.invoke(app, ["cascade", "fit", str(out), "--texts", str(data["cal"]), "--max-drop", "5"]).exit_code == 0
    args = ["cascade", "refit-heads", str(out), "--texts", str(data["train"]), "--val", str(data["test"]), "--weight-decay", "1e-4", "--weight-decay", "1e-2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output and (out / "cascade.json").is_file()
    stale = tmp_path / "stale-cascade.json"
    stale.write_bytes((out / "cascade.json").read_bytes())
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert not (out / "cascade.json").exists()
    res = runner.invoke(app, ["cascade", "eval", str(out), "--cascade", str(stale), "--texts", str(data["test"])])
    assert res.exit_code == 2 and "other class heads" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert "cascade.json" not in manifest["files"] and manifest["files"][HEADS_FILE]["sha256"] == sha256_file(out / HEADS_FILE)
    joint_tensors, _ = load_safetensors(out / "matryoshka_heads_joint.safetensors")
    assert torch.equal(joint_tensors["weight"], before.heads.weight) and "matryoshka_heads_joint.safetensors" in manifest["files"]
    after = load_text_heads(out)
    assert after.dims == before.dims and after.class_names == before.class_names and not torch.equal(after.heads.weight, before.heads.weight)
    _, meta = load_safetensors(out / HEADS_FILE)
    refit = json.loads(meta["refit"])
    assert [r["dim"] for r in refit] == DIMS and all(r["weight_decay"] in (1e-4, 1e-2) and r["val"] == str(data["test"]) for r in refit)
    res = runner.invoke(app, args)  # a second refit keeps the first joint heads
    assert res.exit_code == 0, res.output
    assert torch.equal(load_safetensors(out / "matryoshka_heads_joint.safetensors")[0]["weight"], before.heads.weight)
    assert runner.invoke(app, ["cascade", "fit", str(out), "--texts", str(data["cal"]), "--max-drop", "5"]).exit_code == 0


def test_refit_heads_refusals(classified, tmp_path):
    src, data, _ = classified
    runner = CliRunner()
    heads_before = (src / "matryoshka_heads.safetensors").read_bytes()
    res = runner.invoke(app, ["cascade", "refit-heads", str(src), "--texts", str(data["train"]), "--val", str(data["train"]), "--overwrite"])
    assert res.exit_code == 2 and "validation texts are the training texts" in res.output
    overlap = _write(tmp_path / "overlap.jsonl", [{"text": "a apple here", "label": "fruit"}, {"text": "one saw now", "label": "tool"}])
    res = runner.invoke(app, ["cascade", "refit-heads", str(src), "--texts", str(data["train"]), "--val", str(overlap), "--overwrite"])
    assert res.exit_code == 2 and "also training texts" in res.output
    assert (src / "matryoshka_heads.safetensors").read_bytes() == heads_before and not (src / "matryoshka_heads_joint.safetensors").exists()
    res = runner.invoke(app, ["cascade", "refit-heads", str(tmp_path), "--texts", str(data["train"]), "--val", str(data["test"])])
    assert res.exit_code == 2 and "not a text model with class heads" in res.output


def test_refit_heads_never_touches_a_file_it_did_not_write(classified, tmp_path):
    import shutil

    src, data, _ = classified
    out = tmp_path / "model"
    shutil.copytree(src, out)
    (out / "cascade.json").unlink(missing_ok=True)  # drop it from the copy's manifest too: the name is then foreign
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"].pop("cascade.json", None)
    from mrl.io import write_manifest

    write_manifest(out / "manifest.json", {k: v for k, v in manifest.items() if k != "checksum"})
    heads_before = (out / "matryoshka_heads.safetensors").read_bytes()
    for name in ("matryoshka_heads_joint.safetensors", "cascade.json"):
        (out / name).write_text("mine")
        res = CliRunner().invoke(app, ["cascade", "refit-heads", str(out), "--texts", str(data["train"]), "--val", str(data["test"]), "--overwrite"])
        assert res.exit_code == 2 and "mrl did not write it" in res.output, res.output
        assert (out / name).read_text() == "mine" and (out / "matryoshka_heads.safetensors").read_bytes() == heads_before
        (out / name).unlink()
