"""README "Text and any embedding", its sentence-transformers block, "Adaptive classification over frozen
or API embeddings", the text encoder "with one class head per prefix", and "Text retrieval at scale".

Small scale: the packaged all-MiniLM-L6-v2, a few hundred short passages, a handful of steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import REPO, python_process, readme_python_block, run_commands

COLOURS = ("red", "green", "blue", "yellow", "black", "white", "purple", "orange")
THINGS = ("boat", "house", "bird", "stone", "coat", "lamp", "drum", "fish", "cart", "cup")
PLACES = ("near the sea", "in the city", "on a hill", "under the bridge")


def passages(n: int) -> list[str]:
    out = [f"a {c} {t} {p}" for p in PLACES for c in COLOURS for t in THINGS]
    return out[:n]


TEXT = [
    "mrl train --config configs/text_distill.yaml --set dataset=my_texts.jsonl --out runs/my-minilm --set init_steps=20 --set max_texts=120",
    "mrl eval-text runs/my-minilm all-MiniLM-L6-v2 --beir my_beir_set/ --out text.json --dims 8,64,384",
    "mrl train --config configs/wordnet_minilm.yaml --out runs/minilm-mrl --set data_root=wordnet --set max_steps=2 --set batch_size=8",
    "mrl adapt api_vectors.npy --out adaptor/ --steps 30",
    "mrl apply-adaptor adaptor/ --input api_vectors.npy --out nested.npy",
]
FROZEN_CLASSIFY = [
    "mrl adapt train.npy --labels train_y.npy --kind mlp --out clf/ --steps 60",
    "mrl cascade fit clf/ --features cal.npy --labels cal_y.npy --confidence 0.95",
    "mrl cascade eval clf/ --features test.npy --labels test_y.npy",
]
TEXT_HEADS = [
    "mrl train --config configs/text_classify_wordnet.yaml --set dataset=train.jsonl --out runs/clf-minilm --set max_steps=2 --set batch_size=16",
    "mrl cascade refit-heads runs/clf-minilm --texts train.jsonl --val val.jsonl --weight-decay 1e-4",
    "mrl cascade fit runs/clf-minilm --texts cal.jsonl --confidence 0.95",
    "mrl cascade eval runs/clf-minilm --texts test.jsonl",
]
RETRIEVAL = [
    "mrl encode all-MiniLM-L6-v2 passages.jsonl --out enc/corpus --rows-per-shard 100",
    "mrl encode all-MiniLM-L6-v2 queries.jsonl --out enc/queries",
    "mrl encode all-MiniLM-L6-v2 sample.jsonl --out sample.npy",  # a sample of the corpus, as one [n, 384] .npy
    "mrl adapt sample.npy --out adaptor/ --steps 30",
    "mrl apply-adaptor adaptor/ --input enc/corpus --out enc-ad/corpus",
    "mrl apply-adaptor adaptor/ --input enc/queries --out enc-ad/queries",
    "mrl index build idx/ --vectors enc-ad/corpus --recall-target 0.99 --queries enc-ad/queries",
    "mrl index search idx/ --queries enc-ad/queries --k 10 --single 1000",
]
README_COMMANDS = {
    "test_text_and_any_embedding": TEXT,
    "test_adaptive_classification_over_frozen_embeddings": FROZEN_CLASSIFY,
    "test_text_encoder_with_class_heads": TEXT_HEADS,
    "test_text_retrieval_at_scale": RETRIEVAL,
}
README_BLOCKS = {"test_text_and_any_embedding": ['model = SentenceTransformer("runs/my-minilm", truncate_dim=64)']}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_beir(folder: Path) -> None:
    """A standard BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv (no unlabeled.jsonl)."""
    docs = passages(120)
    write_jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(docs)])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": docs[i * 7].replace(" a ", " the ")} for i in range(15)])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i * 7}\t1\n" for i in range(15)))


def test_text_and_any_embedding(tmp_path: Path, minilm_path: str):
    from text_fixtures import write_wordnet

    (tmp_path / "configs").symlink_to(REPO / "configs")
    write_jsonl(tmp_path / "my_texts.jsonl", [{"text": t} for t in passages(150)])
    write_beir(tmp_path / "my_beir_set")
    write_wordnet(tmp_path / "wordnet")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "api_vectors.npy", (rng.standard_normal((300, 48)) * np.geomspace(1, 3, 48)).astype(np.float32))  # frozen API vectors, no nesting
    run_commands(TEXT, tmp_path)
    cfg = json.loads((tmp_path / "runs" / "my-minilm" / "config_sentence_transformers.json").read_text())
    assert cfg.get("model_type", "SentenceTransformer") and (tmp_path / "runs" / "my-minilm" / "modules.json").is_file()
    runs = json.loads((tmp_path / "text.json").read_text())["runs"]
    assert {"8", "64", "384"} <= set(runs[0]["per_dim"]), runs[0]
    assert np.load(tmp_path / "nested.npy").shape == (300, 48)
    # the README's python block: plain sentence-transformers loads the trained folder
    block = readme_python_block('model = SentenceTransformer("runs/my-minilm", truncate_dim=64)')
    code = "from sentence_transformers import SentenceTransformer\nimport numpy as np\ntexts = ['a red boat', 'a blue house']\n" + block + "\nassert emb.shape == (2, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)\nprint('st ok')\n"
    proc = python_process(code, tmp_path)
    assert proc.returncode == 0 and "st ok" in proc.stdout, proc.stderr[-3000:]


def blobs(n: int, seed: int, d: int = 64, classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((classes, d)) * 1.5
    y = rng.integers(0, classes, size=n)
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y.astype(np.int64)


def test_adaptive_classification_over_frozen_embeddings(tmp_path: Path):
    for name, n, seed in (("train", 600, 0), ("cal", 300, 1), ("test", 300, 2)):
        x, y = blobs(n, seed)
        np.save(tmp_path / f"{name}.npy", x)
        np.save(tmp_path / f"{name}_y.npy", y)
    results = run_commands(FROZEN_CLASSIFY, tmp_path)
    assert (tmp_path / "clf" / "cascade.json").is_file()
    report = results[-1].stdout + results[-1].stderr
    assert "expected" in report.lower(), report
    refused = run_commands(["mrl cascade eval clf/ --features cal.npy --labels cal_y.npy"], tmp_path, check=False)[0]
    assert refused.rc == 2 and "calibrated on cal.npy" in refused.stderr, refused.stderr  # "refuses the calibration rows"


def test_text_encoder_with_class_heads(tmp_path: Path, minilm_path: str):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    texts = passages(320)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    rows = [{"text": texts[i], "label": next(c for c in COLOURS if f" {c} " in texts[i])} for i in order]
    for name, part in (("train", rows[:48]), ("val", rows[48:80]), ("cal", rows[80:144]), ("test", rows[144:208])):
        write_jsonl(tmp_path / f"{name}.jsonl", part)
    results = run_commands(TEXT_HEADS, tmp_path)
    model = tmp_path / "runs" / "clf-minilm"
    assert (model / "matryoshka_heads_joint.safetensors").is_file() and (model / "cascade.json").is_file()
    assert "expected" in (results[-1].stdout + results[-1].stderr).lower()


def test_text_retrieval_at_scale(tmp_path: Path, minilm_path: str):
    docs = passages(240)
    write_jsonl(tmp_path / "passages.jsonl", [{"_id": i, "text": t} for i, t in enumerate(docs)])
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": i, "text": t.replace(" a ", " the ")} for i, t in enumerate(docs[::8])])
    write_jsonl(tmp_path / "sample.jsonl", [{"_id": i, "text": t} for i, t in enumerate(docs[::2])])
    results = run_commands(RETRIEVAL, tmp_path)
    assert len(list((tmp_path / "enc" / "corpus").glob("*.npy"))) >= 3  # 240 rows in shards of 100
    assert (tmp_path / "idx" / "tuning.md").is_file()
    out = results[-1].stdout + results[-1].stderr
    assert "p99" in out and "QPS" in out.upper(), out
