"""Text training on the sentence-transformers Trainer, end to end on tiny data (a 2-layer toy model)."""

import json

import numpy as np
import pytest
import torch
from text_fixtures import minilm_path, toy_model, wordnet_dir  # noqa: F401
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import MRLError, OutputExistsError

pytest.importorskip("sentence_transformers")
DIMS = [8, 16, 32]


def _cfg(toy, wordnet, **kw):
    from mrl.train.text import load_text_config

    base = {"model": str(toy), "dataset": "wordnet", "data_root": str(wordnet), "matryoshka_dims": DIMS, "batch_size": 8, "max_steps": 4, "max_seq_length": 16,
            "log_every": 1, "save_steps": 2, "progress": False, "device": "cpu", "neighbours": 3, "init_steps": 20, "cache_dir": None}
    return load_text_config(None, {**base, **kw})


@pytest.fixture(scope="session")
def tuned(tmp_path_factory, toy_model, wordnet_dir):
    """`mrl train` of the default (distill) recipe for 4 steps on the synthetic WordNet."""
    root = tmp_path_factory.mktemp("text-run")
    cfg = root / "text.yaml"
    cfg.write_text(f"task: text\nmodel: {toy_model}\ndataset: wordnet\ndata_root: {wordnet_dir}\nmatryoshka_dims: 8,16,32\nbatch_size: 8\nmax_steps: 4\nmax_seq_length: 16\nlog_every: 1\nprogress: false\ndevice: cpu\ncache_dir: {root / 'cache'}\n")
    out = root / "model"
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(out), "--set", "weighting=fixed", "--set", "weighting_kwargs={weights: [2, 1, 1]}"])
    assert res.exit_code == 0, res.output
    return out, cfg


def test_saved_model_is_a_matryoshka_sentence_transformer(tuned):
    from sentence_transformers import SentenceTransformer

    out, _ = tuned
    info = json.loads((out / "matryoshka.json").read_text())
    assert info["matryoshka_dims"] == DIMS and info["steps"] == 4 and info["loss"]["weighting"] == "fixed" and info["loss"]["loss"] == "PrefixDistillLoss"
    assert set(info["files"]) >= {"model.safetensors", "modules.json", "README.md", "matryoshka.json"} and not (out / "checkpoints").exists()
    for name in ("config_sentence_transformers.json", "config.json"):
        cfg = json.loads((out / name).read_text())
        assert cfg["is_matryoshka"] is True and cfg["matryoshka_dimensions"] == DIMS
    card = (out / "README.md").read_text()
    assert card.startswith("---") and "**Matryoshka dimensions:** 8, 16, 32" in card and "`wordnet`" in card and "normalize_embeddings=True" in card
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5 and "loss@8" in rows[0]
    model = SentenceTransformer(str(out), truncate_dim=16, device="cpu")
    assert [type(m).__name__ for m in model][-2:] == ["Dense", "Normalize"]
    emb = model.encode(["a red boat"], normalize_embeddings=True)
    assert emb.shape == (1, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_projection_starts_at_pca_of_the_base_embeddings(toy_model, wordnet_dir, tmp_path):
    """Before any step the student equals PCA of the teacher's vectors: W (x - mu), nested by variance."""
    from mrl.models.text import load_sentence_transformer
    from mrl.train.text import _projection_init

    cfg = _cfg(toy_model, wordnet_dir, projection="pca")
    st = load_sentence_transformer(toy_model)
    x = st.encode(["a red boat", "a blue cup", "a green lamp", "a white coat", "a black drum"] * 4, convert_to_numpy=True)
    x = x + np.random.default_rng(0).normal(scale=0.01, size=x.shape).astype(np.float32)
    w, b, _ = _projection_init(cfg, x, (8, 16, 32))
    y = (torch.as_tensor(x) @ w.T + b).numpy()
    var = y.var(axis=0)
    assert np.all(np.diff(var) <= 1e-6) and np.allclose(y.mean(axis=0), 0, atol=1e-5)


def test_rotation_projection_keeps_every_full_width_cosine(toy_model, wordnet_dir):
    """``projection: rotation`` is orthogonal with no bias, so the full-width student starts with the
    base model's cosines (and rankings) exactly; its prefixes are centred PCA projections: the mean
    direction is the last row alone, so no prefix carries the offset every text shares."""
    from mrl.train.text import _projection_init

    x = np.random.default_rng(1).normal(size=(200, 32)).astype(np.float32) * np.linspace(3, 0.5, 32, dtype=np.float32) + 2.0  # off-centre, like real embeddings
    fitted, b, _ = _projection_init(_cfg(toy_model, wordnet_dir, projection="rotation"), x, (8, 16, 32))  # init_steps: 20 of the rotation adaptor
    assert b is None and torch.allclose(fitted @ fitted.T, torch.eye(32), atol=1e-5)
    w, b, _ = _projection_init(_cfg(toy_model, wordnet_dir, projection="rotation", init_steps=0), x, (8, 16, 32))  # the mean-last PCA rotation itself
    assert b is None and not torch.allclose(w, fitted, atol=1e-3)
    assert torch.allclose(w @ w.T, torch.eye(32), atol=1e-5)
    xt = torch.as_tensor(x)
    y = xt @ w.T
    cos = lambda a: torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(a, dim=1).T  # noqa: E731
    assert torch.allclose(cos(y), cos(xt), atol=1e-5) and torch.allclose(cos(xt @ fitted.T), cos(xt), atol=1e-5)
    mean = xt.mean(0)
    assert torch.allclose(w[-1], mean / mean.norm(), atol=1e-5)  # the mean direction, last
    assert torch.allclose(w[:-1] @ mean, torch.zeros(31), atol=1e-4)  # no prefix carries the offset
    var = y[:, :-1].var(0)
    assert torch.all(var[1:] <= var[:-1] + 1e-4)  # principal axes by decreasing variance
    from mrl.models.rotation import mean_last_rotation

    with pytest.raises(MRLError, match="finite embeddings"):
        mean_last_rotation(torch.full((3, 4), float("nan")))


def test_rotation_stays_orthogonal_while_training(toy_model, wordnet_dir, tmp_path):
    """A trained rotation is still a rotation: with the encoder frozen (train_layers: 0) the saved
    model's full-width cosines are the base model's exactly, while its small prefixes have moved."""
    from mrl.models.text import load_sentence_transformer
    from mrl.train.text import train_text

    cfg = _cfg(toy_model, wordnet_dir, projection="rotation", train_layers=0, max_steps=6, projection_lr=0.05, pseudo_queries=True, cache_dir=str(tmp_path / "cache"))
    train_text(cfg, tmp_path / "m")
    trained = load_sentence_transformer(tmp_path / "m")
    dense = trained[-2].linear
    assert dense.bias is None and torch.allclose(dense.weight @ dense.weight.T, torch.eye(32), atol=1e-5)
    texts = ["a red boat", "a blue cup", "a green lamp", "a white coat", "a black drum", "the sea"]
    cos = lambda e: e @ e.T  # noqa: E731 - both outputs are L2-normalised
    base = load_sentence_transformer(toy_model).encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    full = trained.encode(texts, convert_to_tensor=True)
    assert torch.allclose(cos(full), cos(base), atol=1e-5)
    init = train_text(_cfg(toy_model, wordnet_dir, projection="rotation", train_layers=0, max_steps=1, lr=1e-12, projection_lr=1e-12, warmup_ratio=0.0, cache_dir=str(tmp_path / "cache")), tmp_path / "init")
    start = load_sentence_transformer(init.out_dir).encode(texts, convert_to_tensor=True)
    assert not torch.allclose(cos(torch.nn.functional.normalize(full[:, :8], dim=1)), cos(torch.nn.functional.normalize(start[:, :8], dim=1)), atol=1e-3)


def test_projection_only_run_keeps_the_base_model_at_full_width(toy_model, wordnet_dir, tmp_path):
    """``max_steps: 0`` with a frozen encoder: no Trainer step, the model is the base plus its fitted
    rotation (full-width cosines exactly the base's), saved like any trained model."""
    from mrl.models.text import load_sentence_transformer
    from mrl.train.text import train_text

    res = train_text(_cfg(toy_model, wordnet_dir, projection="rotation", train_layers=0, max_steps=0, init_steps=30, cache_dir=str(tmp_path / "cache")), tmp_path / "m")
    info = json.loads((tmp_path / "m" / "matryoshka.json").read_text())
    assert res.steps == 0 and info["steps"] == 0 and info["wall_seconds"] > 0 and not (tmp_path / "m" / "checkpoints").exists()
    assert info["fit_threads"] == 1 and info["fit_orthogonal"] == "cayley"  # threads: null fits on one thread (busy machines: 8.5x faster than two)
    texts = ["a red boat", "a blue cup", "a green lamp", "the sea"]
    base = load_sentence_transformer(toy_model).encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    full = load_sentence_transformer(tmp_path / "m").encode(texts, convert_to_tensor=True)
    assert torch.allclose(full @ full.T, base @ base.T, atol=1e-5)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "fitted for 30 steps" in card and "no encoder layer (the encoder is frozen) trained" in card and "Full Model Architecture" in card  # a card generated for this model, not the base model's
    with pytest.raises(MRLError, match="max_steps"):
        _cfg(toy_model, wordnet_dir, loss="mnrl", projection="none", max_steps=0)



def test_rotation_fit_resumes_after_a_kill_and_the_summary_says_what_ran(toy_model, wordnet_dir, tmp_path, monkeypatch):
    """The default recipe's long phase (the rotation fit, no encoder step) checkpoints every N steps:
    a run killed mid-fit resumes (`mrl train --resume`) to the same model as an uninterrupted run, and
    the summary reports the fit (steps, time, final loss per dim), not "0 steps in 0s"."""
    from safetensors.torch import load_file

    from mrl.train import adaptor
    from mrl.train.text import FIT_CHECKPOINT, load_text_config, train_text

    cfg = tmp_path / "rot.yaml"
    cfg.write_text(f"task: text\nmodel: {toy_model}\ndataset: wordnet\ndata_root: {wordnet_dir}\nmatryoshka_dims: 8,16,32\nprojection: rotation\ntrain_layers: 0\nmax_steps: 0\ninit_steps: 30\nbatch_size: 8\nneighbours: 3\nmax_seq_length: 16\nsave_steps: 5\nprogress: false\ndevice: cpu\ncache_dir: {tmp_path / 'cache'}\n")
    full = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output
    assert "fitted the projection for 30 steps in" in full.output and "final loss per dim: 8: " in full.output and "no encoder steps" in full.output and "nan" not in full.output
    calls = {"n": 0}
    original = adaptor.check_finite_loss  # called once per fit step

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 23:
            raise KeyboardInterrupt  # the process dies in step 23; the step-20 checkpoint is on disk
        return original(*args, **kwargs)

    monkeypatch.setattr(adaptor, "check_finite_loss", killed)
    with pytest.raises(KeyboardInterrupt):
        train_text(load_text_config(cfg), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / FIT_CHECKPOINT
    from mrl.train.checkpoint import load_checkpoint

    assert ckpt.is_file() and load_checkpoint(ckpt)[1]["epoch"] == 20 and not (tmp_path / "run" / "matryoshka.json").exists()
    monkeypatch.setattr(adaptor, "check_finite_loss", original)
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--resume"])
    assert res.exit_code == 0, res.output
    assert "fitted the projection for 30 steps" in res.output
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    da, db = (load_file(next((tmp_path / n).glob("*Dense*/model.safetensors"))) for n in ("full", "run"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) and all(torch.equal(da[k], db[k]) for k in da)
    info = json.loads((tmp_path / "run" / "matryoshka.json").read_text())
    assert info["fit_steps"] == 30 and not (tmp_path / "run" / "checkpoints").exists()

def test_pseudo_queries_are_first_sentences():
    from mrl.train.text_data import pseudo_query, with_pseudo_queries

    assert pseudo_query("Lists the files. Sorted by name.") == "Lists the files."
    assert pseudo_query("only one sentence here") is None  # the whole text: nothing new
    assert pseudo_query(" ".join(["w"] * 40) + ". tail", max_words=24) == " ".join(["w"] * 24)
    pool = with_pseudo_queries(("Lists the files. Sorted.", "Lists the files.", "Copies a file: fast."))
    assert pool == ("Lists the files. Sorted.", "Lists the files.", "Copies a file: fast.", "Copies a file:")


def test_resume_after_a_kill_matches_an_uninterrupted_run(toy_model, wordnet_dir, tmp_path, monkeypatch):
    from mrl.train import text_trainer
    from mrl.train.text import train_text

    cfg = _cfg(toy_model, wordnet_dir, max_steps=6, save_steps=2, cache_dir=str(tmp_path / "cache"), weighting="focal")
    full = train_text(cfg, tmp_path / "full")
    original = text_trainer._MetricsCallback.on_step_end

    def killed(self, args, state, control, **kw):
        original(self, args, state, control, **kw)
        if state.global_step == 5:
            raise KeyboardInterrupt  # the process dies after step 5; checkpoint-4 is on disk

    monkeypatch.setattr(text_trainer._MetricsCallback, "on_step_end", killed)
    with pytest.raises(KeyboardInterrupt):
        train_text(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-4").is_dir() and not (tmp_path / "run" / "matryoshka.json").exists()
    monkeypatch.setattr(text_trainer._MetricsCallback, "on_step_end", original)
    with pytest.raises(OutputExistsError):
        train_text(cfg, tmp_path / "run")
    resumed = train_text(cfg, tmp_path / "run", resume=True)
    assert resumed.steps == 2
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    with pytest.raises(MRLError, match="already holds a finished model"):
        train_text(cfg, tmp_path / "run", resume=True)
    with pytest.raises(MRLError, match="no checkpoint to resume"):
        train_text(cfg, tmp_path / "empty", resume=True)
    assert full.steps == 6


def test_a_save_killed_mid_way_is_cleared_on_resume(toy_model, wordnet_dir, tmp_path, monkeypatch):
    """The final save stages the model in `.final.tmp/`: a resume clears what a killed save left there
    through the output's proof of ownership (the folder is the unfinished run's own), then finishes."""
    from mrl.train import text as text_mod
    from mrl.train.text import train_text

    cfg = _cfg(toy_model, wordnet_dir, max_steps=2, save_steps=2, cache_dir=str(tmp_path / "cache"))
    original = text_mod.mark_matryoshka

    def killed(*a, **kw):
        raise KeyboardInterrupt  # the process dies after the model files were staged

    monkeypatch.setattr(text_mod, "mark_matryoshka", killed)
    with pytest.raises(KeyboardInterrupt):
        train_text(cfg, tmp_path / "run")
    staged = tmp_path / "run" / ".final.tmp"
    assert (staged / "config.json").is_file() and not (tmp_path / "run" / "matryoshka.json").exists()
    monkeypatch.setattr(text_mod, "mark_matryoshka", original)
    train_text(cfg, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "matryoshka.json").is_file() and not staged.exists()
    from mrl.models.text import load_sentence_transformer

    assert load_sentence_transformer(tmp_path / "run") is not None


def test_overwrite_removes_only_what_the_run_wrote(tuned, toy_model, wordnet_dir, tmp_path):
    from mrl.train.text import train_text

    cfg = _cfg(toy_model, wordnet_dir, max_steps=2, cache_dir=str(tmp_path / "cache"))
    out = tmp_path / "m"
    train_text(cfg, out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        train_text(cfg, out)
    train_text(cfg, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "matryoshka.json").is_file()


def test_pair_losses_and_weightings(toy_model, wordnet_dir, tmp_path):
    from mrl.train.text import train_text

    rows = [("red boat", "a boat painted red", "a green lamp"), ("blue cup", "a cup painted blue", "a black drum"), ("white coat", "a coat painted white", "a purple fish"), ("tall tree", "a big plant", "a small cup")]
    (tmp_path / "p.tsv").write_text("anchor\tpositive\tnegative\n" + "".join("\t".join(r) + "\n" for r in rows))
    res = train_text(_cfg(toy_model, wordnet_dir, loss="mnrl", projection="none", dataset=str(tmp_path / "p.tsv"), batch_size=2, max_steps=2), tmp_path / "mnrl")
    assert res.steps == 2 and json.loads((tmp_path / "mnrl" / "matryoshka.json").read_text())["loss"]["loss"] == "MultipleNegativesRankingLoss"
    res = train_text(_cfg(toy_model, wordnet_dir, loss="mnrl", projection="none", weighting="uncertainty", batch_size=4, max_steps=2), tmp_path / "unc")
    assert "loss@8" in res.history[-1] and np.isfinite(res.history[-1]["loss@8"])
    with pytest.raises(MRLError, match="cached_mnrl"):
        train_text(_cfg(toy_model, wordnet_dir, loss="cached_mnrl", projection="none", weighting="focal", batch_size=4, max_steps=1), tmp_path / "c")
    (tmp_path / "s.csv").write_text("anchor,positive,score\nred boat,a boat painted red,0.9\nblue cup,a green lamp,0.1\nwhite coat,a coat painted white,0.8\ntall tree,a small cup,0.0\n")
    assert train_text(_cfg(toy_model, wordnet_dir, loss="cosent", projection="none", dataset=str(tmp_path / "s.csv"), batch_size=2, max_steps=1), tmp_path / "cos").steps == 1


def test_training_progress_is_throttled_plain_lines_in_logs(toy_model, wordnet_dir, tmp_path, capsys, monkeypatch):
    from mrl.train.text import train_text

    monkeypatch.setenv("MRL_PROGRESS_INTERVAL", "3600")
    res = train_text(_cfg(toy_model, wordnet_dir, max_steps=6, save_steps=6, progress=True), tmp_path / "m")
    err = capsys.readouterr().err
    ours = [seg for seg in err.replace("\r", "\n").splitlines() if "training:" in seg]
    assert res.steps == 6 and 1 <= len(ours) <= 3 and "6/6" in ours[-1], err  # whole lines: start and end only
    assert "{'loss'" not in err, err  # the Trainer's own bar also wrote every logged dict


def test_teacher_of_another_width(toy_model, minilm_path, wordnet_dir, tmp_path):
    """distill compares similarity matrices, so a 384-d teacher trains a 32-d student; mse_distill refuses."""
    from mrl.train.text import train_text

    res = train_text(_cfg(toy_model, wordnet_dir, teacher=minilm_path, max_steps=1, cache_dir=str(tmp_path / "cache")), tmp_path / "d")
    assert res.steps == 1 and json.loads((tmp_path / "d" / "matryoshka.json").read_text())["teacher_dim"] == 384
    with pytest.raises(MRLError, match="teacher is 384-d and the student 32-d"):
        train_text(_cfg(toy_model, wordnet_dir, loss="mse_distill", projection="none", teacher=minilm_path, cache_dir=str(tmp_path / "cache")), tmp_path / "m")


def test_non_finite_loss_stops_training():
    from mrl.train.text_losses import PrefixDistillLoss

    class Broken(torch.nn.Module):
        def forward(self, features):
            return {"sentence_embedding": torch.full((4, 16), float("nan"))}

    loss = PrefixDistillLoss(Broken(), torch.randn(10, 24), [8, 16])
    with pytest.raises(MRLError, match="non-finite"):
        loss([{}], torch.arange(4))
    with pytest.raises(MRLError, match="NaN"):
        PrefixDistillLoss(Broken(), torch.full((10, 24), float("nan")), [8, 16])


def test_config_validation_and_cli_refusals(tmp_path):
    from mrl.train.text import load_text_config

    with pytest.raises(MRLError, match="unknown text recipe keys"):
        load_text_config(None, ["epoch=3"])
    with pytest.raises(MRLError, match="batch_size must be >= 2"):
        load_text_config(None, ["batch_size=1"])
    with pytest.raises(MRLError, match="loss must be one of"):
        load_text_config(None, ["loss=triplet"])
    with pytest.raises(MRLError, match="general_fraction"):
        load_text_config(None, ["general_fraction=0.5"])
    with pytest.raises(MRLError, match="init_orthogonal must be one of"):
        load_text_config(None, ["init_orthogonal=qr"])
    with pytest.raises(MRLError, match="init_lr must be a positive"):
        load_text_config(None, ["init_lr=0"])
    default = load_text_config("configs/text_distill.yaml")
    assert default.loss == "distill" and default.projection == "rotation" and default.train_layers == 0 and default.max_steps == 0 and (default.init_steps, default.init_lr, default.init_orthogonal) == (300, 0.005, "cayley") and default.matryoshka_dims == [8, 16, 32, 64, 128, 256, 384]
    assert load_text_config("configs/wordnet_minilm.yaml").loss == "mnrl"
    res = CliRunner().invoke(app, ["train", "--config", "configs/text_distill.yaml", "--out", str(tmp_path / "x"), "--nproc", "2"])
    assert res.exit_code == 2 and "accelerate launch" in res.output


def test_dims_above_model_width_are_refused(toy_model, wordnet_dir, tmp_path):
    from mrl.train.text import train_text

    with pytest.raises(MRLError, match="cannot add dimensions"):
        train_text(_cfg(toy_model, wordnet_dir, matryoshka_dims=[8, 64], cache_dir=str(tmp_path / "c")), tmp_path / "o")
    assert not (tmp_path / "o" / "matryoshka.json").exists()


def test_encode_cache_and_eval_text_cli(tuned, toy_model, tmp_path, wordnet_dir, monkeypatch):
    import mrl.models.text_encode as enc
    from mrl.data.wordnet import load_wordnet

    out, _ = tuned
    test = load_wordnet(wordnet_dir, test_fraction=0.25, max_queries=10).test
    q = enc.cached_encode(out, test.queries, tmp_path / "cache", max_seq_length=32, progress=False)
    assert q.shape == (10, 32) and len(list((tmp_path / "cache").glob("*.npy"))) == 1

    def boom(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(enc, "encode_texts", boom)
    np.testing.assert_array_equal(enc.cached_encode(out, test.queries, tmp_path / "cache", max_seq_length=32), q)
    monkeypatch.undo()
    res = CliRunner().invoke(app, ["eval-text", str(out), f"toy={toy_model}", "--out", str(tmp_path / "r.json"), "--dims", "8,16,32", "--data-root", str(wordnet_dir), "--max-queries", "4", "--cache-dir", str(tmp_path / "c"), "--fit-texts", "60", "--max-seq-length", "32"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["method"] for r in doc["runs"]] == ["Label-free distilled", "toy", "Label-free distilled + PCA", "Label-free distilled + adaptor (unsupervised)"]
    assert doc["runs"][0]["dims"] == [8, 16, 32] and len(doc["runs"][0]["per_dim"]["8"]) == 4
    res = CliRunner().invoke(app, ["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output


def test_embed_text_cli_normalises_after_truncation(tuned, tmp_path):
    out, _ = tuned
    src = tmp_path / "t.txt"
    src.write_text("a red boat\n\na blue lamp\n")
    res = CliRunner().invoke(app, ["embed-text", str(out), "--input", str(src), "--out", str(tmp_path / "e.npy"), "--truncate-dim", "16"])
    assert res.exit_code == 0, res.output
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (2, 16) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)


def _beir(folder, *, graded=False):
    from mrl.data.beir import write_beir

    things = ["boat", "house", "bird", "stone", "coat", "lamp", "drum", "fish", "cart", "cup", "tree", "road"]
    corpus = {f"d{i}": f"a {t} that is painted {c}" for i, (t, c) in enumerate((t, c) for t in things for c in ("red", "blue"))}
    queries = {f"q{i}": f"{c} {t}" for i, (t, c) in enumerate((t, c) for t in things[:6] for c in ("red",))}
    qrels = {"test": {f"q{i}": {f"d{2 * i}": 2 if graded else 1, f"d{2 * i + 1}": 1} for i in range(6)}}
    unlabeled = {f"u{i}": f"a {t} kept near the {things[(i + 3) % 12]}" for i, t in enumerate(things)}
    write_beir(folder, corpus, queries, qrels, unlabeled=unlabeled)
    return folder


def test_eval_text_on_a_beir_folder_with_bounds(toy_model, tmp_path):
    folder = _beir(tmp_path / "beir", graded=True)
    res = CliRunner().invoke(app, ["eval-text", str(toy_model), "--beir", str(folder), "--out", str(tmp_path / "r.json"), "--dims", "8,32", "--max-queries", "3", "--max-corpus", "10", "--fit-texts", "12", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "3 queries, 10 documents, 12 fitting texts" in res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["mode"] for r in doc["runs"]] == ["truncate", "pca-text", "adaptor-unsup"] and doc["runs"][0]["dataset"] == "beir"
    # only the sampled texts were encoded: 3 queries + 10 documents + 12 fitting texts
    sizes = sorted(np.load(p).shape[0] for p in (tmp_path / "c").glob("*.npy"))
    assert sizes == [3, 10, 12]



def _standard_beir(folder, *, judge_all=False):
    """A standard BEIR folder as BEIR distributes it: corpus, queries, qrels/test.tsv; no unlabeled.jsonl, no manifest."""
    things = ("boat", "house", "bird", "stone", "coat", "lamp", "drum", "fish", "cart", "cup", "bell", "rope")
    (folder / "qrels").mkdir(parents=True)
    docs = [(f"d{i}", f"a {t} that is painted {c}") for i, (t, c) in enumerate((t, c) for t in things for c in ("red", "blue"))]  # 24 documents
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"red {t}"}) + "\n" for i, t in enumerate(things[:6])))
    judged = [(f"q{i}", f"d{2 * i}", 1) for i in range(6)] + [(f"q{i}", f"d{2 * i + 1}", 0) for i in range(6)]  # d0..d11 judged (some 0)
    if judge_all:
        judged += [(f"q{i % 6}", f"d{i}", 0) for i in range(12, 24)]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in judged))
    return folder, dict(docs)


def test_eval_text_readme_form_on_a_standard_beir_folder(toy_model, tmp_path):
    """Before: `mrl eval-text M --beir DIR` failed on any standard BEIR folder ("has no unlabeled.jsonl").
    Now the PCA/adaptor baselines fit on corpus documents that no qrels file names, a seeded sample of
    at most half of them, held out of the evaluated corpus; with none to hold out they are skipped."""
    from mrl.evaluate.text_eval import load_eval_set

    folder, docs = _standard_beir(tmp_path / "std")
    res = CliRunner().invoke(app, ["eval-text", str(toy_model), "--beir", str(folder), "--out", str(tmp_path / "r.json"), "--dims", "4,32", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "6 queries, 18 documents, 6 fitting texts (corpus documents that no qrels file names" in res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["mode"] for r in doc["runs"]] == ["truncate", "pca-text", "adaptor-unsup"]
    data = load_eval_set(folder, fit_texts=5000)
    unjudged = {docs[f"d{i}"] for i in range(12, 24)}
    assert len(data.fit_texts) == 6 and set(data.fit_texts) <= unjudged and not set(data.fit_texts) & set(data.corpus)  # never an evaluated document
    assert data.fit_texts == load_eval_set(folder, fit_texts=5000).fit_texts and len(load_eval_set(folder, fit_texts=2).fit_texts) == 2  # seeded, capped
    assert len(data.corpus) == 18 and len(load_eval_set(folder, fit_texts=5000, max_corpus=10).corpus) == 10
    everything, _ = _standard_beir(tmp_path / "all", judge_all=True)
    res = CliRunner().invoke(app, ["eval-text", str(toy_model), "--beir", str(everything), "--out", str(tmp_path / "r2.json"), "--dims", "8,32", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "skipping the pca, adaptor baseline(s): no texts to fit them on" in res.output and "24 documents" in res.output
    assert [r["mode"] for r in json.loads((tmp_path / "r2.json").read_text())["runs"]] == ["truncate"]

@pytest.mark.parametrize(
    ("breakage", "match"),
    [
        (lambda f: (f / "queries.jsonl").unlink(), "queries.jsonl not found"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tnope\t1\n"), "names document 'nope'"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "d0", "text": "a"}\n{"_id": "d0", "text": "b"}\n'), "duplicate _id 'd0'"),
        (lambda f: (f / "queries.jsonl").write_text('{"_id": "q0", "text": ""}\n'), "empty text"),
        (lambda f: (f / "corpus.jsonl").write_bytes(b'{"_id": "d0", "text": "caf\xe9"}\n'), "not UTF-8"),
    ],
)
def test_eval_text_bad_beir_folders_fail_with_one_line(toy_model, tmp_path, breakage, match):
    folder = _beir(tmp_path / "beir")
    (folder / "manifest.json").unlink()  # a hand-edited folder from elsewhere carries no manifest
    breakage(folder)
    res = CliRunner().invoke(app, ["eval-text", str(toy_model), "--beir", str(folder), "--out", str(tmp_path / "r.json"), "--baselines", "", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2 and match in res.output, res.output
    assert len([ln for ln in res.output.strip().splitlines() if ln.strip()]) == 1


def test_trained_model_serves_dimensions(tuned):
    """`mrl serve` reads the saved Matryoshka marker and answers OpenAI-shaped requests with `dimensions`."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mrl.serve import ServeConfig, create_app
    from mrl.serve.encoder import ServedModel

    out, _ = tuned
    served = ServedModel.load(str(out), name="distilled")
    assert served.trained_dims == tuple(DIMS)
    with TestClient(create_app(ServeConfig(model="distilled"), model=served)) as api:
        r = api.post("/v1/embeddings", json={"input": ["a red boat"], "model": "distilled", "dimensions": 16})
    assert r.status_code == 200, r.text
    emb = np.array(r.json()["data"][0]["embedding"])
    assert emb.shape == (16,) and abs(np.linalg.norm(emb) - 1) < 1e-5


def test_model_card_snippet_loads_with_plain_sentence_transformers(minilm_path, wordnet_dir, tmp_path):
    """Before: the card's snippet was `SentenceTransformer("Matryoshka all-MiniLM-L6-v2 (distill)")` (not
    loadable), the base model "Unknown", no MRL citation, and encoder hyper-parameters for a run with no
    encoder step. Every python block of the card now runs in a fresh interpreter without mrl."""
    import os
    import re
    import subprocess
    import sys

    from mrl.train.text import load_text_config, train_text

    cfg = load_text_config(None, {"model": "all-MiniLM-L6-v2", "dataset": "wordnet", "data_root": str(wordnet_dir), "matryoshka_dims": [32, 128, 384], "projection": "rotation", "train_layers": 0,
                                  "max_steps": 0, "init_steps": 5, "max_seq_length": 16, "progress": False, "device": "cpu", "cache_dir": str(tmp_path / "cache")})
    train_text(cfg, tmp_path / "my model")
    card = (tmp_path / "my model" / "README.md").read_text()
    assert "Matryoshka all-MiniLM-L6-v2 (distill)" not in card and "[Unknown]" not in card
    assert "**Base model:** `all-MiniLM-L6-v2` ([sentence-transformers/all-MiniLM-L6-v2]" in card and "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "arXiv:2205.13147" in card and "Kusupati" in card
    assert "**Encoder training:** none" in card and "lr 2e-05" not in card and "**Projection fit:** 5 steps x batch 512" in card
    blocks = [b for b in re.findall(r"```python\n(.*?)```", card, re.DOTALL) if "SentenceTransformer(" in b]
    assert len(blocks) == 2  # ours (truncate_dim) and sentence-transformers' own usage section
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for block in blocks:
        code = block + "\nimport sys\nassert 'mrl' not in sys.modules\nprint('shape', getattr(locals().get('emb', locals().get('embeddings')), 'shape'))\n"
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "shape (1, 128)" in run.stdout or "shape (3, 384)" in run.stdout, run.stdout
