"""Text fine-tuning end to end on a tiny synthetic WordNet (a few MiniLM steps on a tiny slice)."""

import json

import numpy as np
import pytest
from text_fixtures import minilm_path, wordnet_dir  # noqa: F401
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import MRLError, OutputExistsError

pytest.importorskip("sentence_transformers")
DIMS = [8, 16, 32, 64, 128, 256, 384]


@pytest.fixture(scope="session")
def tuned(tmp_path_factory, wordnet_dir):  # noqa: F811
    """`mrl train --config <task: text>` for 3 steps of batch 4 on the synthetic WordNet."""
    root = tmp_path_factory.mktemp("text-run")
    cfg = root / "text.yaml"
    cfg.write_text(f"task: text\nmodel: all-MiniLM-L6-v2\ndataset: wordnet\ndata_root: {wordnet_dir}\nmatryoshka_dims: 8,16,...,384\nbatch_size: 4\nmax_steps: 3\nmax_seq_length: 16\nlog_every: 1\nprogress: false\ndevice: cpu\n")
    out = root / "model"
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(out), "--set", "weighting=fixed", "--set", "weighting_kwargs={weights: [2, 1, 1, 1, 1, 1, 1]}"])
    assert res.exit_code == 0, res.output
    return out, cfg


def test_saved_model_loads_with_truncate_dim(tuned):
    from sentence_transformers import SentenceTransformer

    out, _ = tuned
    info = json.loads((out / "matryoshka.json").read_text())
    assert info["matryoshka_dims"] == DIMS and info["steps"] == 3 and info["loss"]["weighting"] == "fixed"
    assert info["steps_per_s"] > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and "loss@8" in rows[0]
    model = SentenceTransformer(str(out), truncate_dim=16, device="cpu")
    emb = model.encode(["a red boat"])
    assert emb.shape == (1, 16) and np.isfinite(emb).all()


def test_existing_output_and_bad_models(tuned, tmp_path):
    from mrl.models.text import load_sentence_transformer
    from mrl.train.text import load_text_config, train_text

    out, cfg = tuned
    with pytest.raises(OutputExistsError):
        train_text(load_text_config(cfg), out)
    with pytest.raises(MRLError, match="truncate_dim must be an integer in \\[1, 384\\]"):
        load_sentence_transformer(out, truncate_dim=512)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(MRLError, match="not a sentence-transformers model"):
        load_sentence_transformer(tmp_path / "hf")
    with pytest.raises(MRLError, match="does not exist"):
        load_sentence_transformer(tmp_path / "nope")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "x"), "--set", "model=" + str(tmp_path / "hf")])
    assert res.exit_code == 2 and "not a sentence-transformers model" in res.output


def test_config_validation(tmp_path):
    from mrl.train.text import load_text_config

    with pytest.raises(MRLError, match="unknown text recipe keys"):
        load_text_config(None, ["epoch=3"])
    with pytest.raises(MRLError, match="batch_size must be >= 2"):
        load_text_config(None, ["batch_size=1"])
    with pytest.raises(MRLError, match="strictly increasing"):
        load_text_config(None, ["matryoshka_dims=[16, 8]"])
    cfg = load_text_config("configs/wordnet_minilm.yaml")
    assert cfg.matryoshka_dims == DIMS and cfg.task == "text"


def test_dims_above_model_width_are_refused(tmp_path, wordnet_dir):  # noqa: F811
    from mrl.train.text import load_text_config, train_text

    cfg = load_text_config(None, {"data_root": str(wordnet_dir), "matryoshka_dims": [8, 512], "max_steps": 1, "batch_size": 2, "progress": False, "device": "cpu"})
    with pytest.raises(MRLError, match="larger than the embedding dim 384"):
        train_text(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_encode_cache_and_ir_eval(tuned, tmp_path, wordnet_dir, monkeypatch):  # noqa: F811
    import mrl.evaluate.ir as ir
    from mrl.data.wordnet import load_wordnet

    out, _ = tuned
    test = load_wordnet(wordnet_dir, test_fraction=0.25, max_queries=10).test
    q = ir.cached_encode(out, test.queries, tmp_path / "cache", max_seq_length=32, progress=False)
    c = ir.cached_encode(out, test.corpus, tmp_path / "cache", max_seq_length=32, progress=False)
    assert q.shape == (10, 384) and c.shape == (20, 384) and len(list((tmp_path / "cache").glob("*.npy"))) == 2

    def boom(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(ir, "encode_texts", boom)
    np.testing.assert_array_equal(ir.cached_encode(out, test.queries, tmp_path / "cache", max_seq_length=32), q)
    rec = ir.ir_record("MRL fine-tuned", "mrl-ft", q, c, test.qrels, DIMS, model=str(out))
    assert set(rec["per_dim"]["384"]) == {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
    # synthetic glosses are easy: the full model finds most definitions
    assert rec["per_dim"]["384"]["recall@10"] > 0.5


def test_embed_text_cli(tuned, tmp_path):
    out, _ = tuned
    src = tmp_path / "t.txt"
    src.write_text("a red boat\n\na blue lamp\n")
    res = CliRunner().invoke(app, ["embed-text", str(out), "--input", str(src), "--out", str(tmp_path / "e.npy"), "--truncate-dim", "32"])
    assert res.exit_code == 0, res.output
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (2, 32) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    res = CliRunner().invoke(app, ["embed-text", str(out), "--input", str(src), "--out", str(tmp_path / "f.npy"), "--truncate-dim", "1000"])
    assert res.exit_code == 2 and "truncate_dim" in res.output


def test_eval_text_cli_and_report(tuned, tmp_path, wordnet_dir):  # noqa: F811
    out, _ = tuned
    runner = CliRunner()
    res = runner.invoke(app, ["eval-text", str(out), "all-MiniLM-L6-v2", "--out", str(tmp_path / "r.json"), "--dims", "8,64,384", "--data-root", str(wordnet_dir), "--max-queries", "4", "--cache-dir", str(tmp_path / "c"), "--pca-fit-pairs", "30", "--max-seq-length", "32"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["method"] for r in doc["runs"]] == ["MRL fine-tuned", "Base (truncated)", "MRL fine-tuned + PCA"]
    assert doc["runs"][0]["dims"] == [8, 64, 384]
    res = runner.invoke(app, ["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.index("## nDCG@10") < md.index("## MRR@10")  # canonical order although JSON sorts keys
    assert "MRL fine-tuned + PCA" in md


def test_pair_file_with_negatives_trains_and_resume_is_refused(tmp_path):
    from mrl.models.text import read_matryoshka_dims
    from mrl.train.text import load_text_config, train_text

    rows = [("red boat", "a boat painted red", "a green lamp"), ("blue cup", "a cup painted blue", "a black drum"), ("white coat", "a coat painted white", "a purple fish")]
    (tmp_path / "p.tsv").write_text("anchor\tpositive\tnegative\n" + "".join("\t".join(r) + "\n" for r in rows))
    cfg = load_text_config(None, {"dataset": str(tmp_path / "p.tsv"), "matryoshka_dims": "32,64,...,384", "batch_size": 2, "max_steps": 1, "max_seq_length": 16, "progress": False, "device": "cpu"})
    res = train_text(cfg, tmp_path / "m")
    assert res.steps == 1 and read_matryoshka_dims(tmp_path / "m") == (32, 64, 128, 256, 384)
    out = CliRunner().invoke(app, ["train", "--config", "configs/wordnet_minilm.yaml", "--out", str(tmp_path / "r"), "--resume"])
    assert out.exit_code == 2 and "--resume is not supported" in out.output
