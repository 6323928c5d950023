"""Text-encoding progress: the bar moves with every batch at any input size, prints its final count
once, and every tqdm bar is throttled when stderr is not a terminal."""

import re

import numpy as np
import pytest
from text_fixtures import toy_model  # noqa: F401

pytest.importorskip("sentence_transformers")
TEXTS = [f"text number {i} " + "word " * (i % 7) for i in range(300)]


def test_encode_bar_moves_per_batch_and_ends_once(toy_model, capsys, monkeypatch):
    """Before: one model.encode call per 2,048 texts, so 300 texts showed 0/300 then 300/300, and the
    closing line repeated the last one."""
    from mrl.models.text import load_sentence_transformer
    from mrl.models.text_encode import encode_texts

    monkeypatch.setenv("MRL_PROGRESS_INTERVAL", "0")  # print every refresh (capsys: stderr is not a terminal)
    model = load_sentence_transformer(toy_model)
    emb = encode_texts(model, TEXTS, batch_size=64)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "encoding texts" in ln]
    counts = [int(m.group(1)) for ln in lines if (m := re.search(r"\| *(\d+)/300", ln))]
    assert counts == [0, 64, 128, 192, 256, 300], lines  # every batch, and the final count once
    ref = model.encode(TEXTS, batch_size=64, convert_to_numpy=True, normalize_embeddings=False)
    assert emb.shape == (300, 32) and np.allclose(emb, ref, atol=1e-5)  # rows back in input order


def test_shard_encoder_reports_every_batch(toy_model):
    from mrl.encode.text import encode_texts_sorted
    from mrl.models.text import load_sentence_transformer

    seen: list[int] = []
    emb = encode_texts_sorted(load_sentence_transformer(toy_model), TEXTS[:150], batch_size=64, on_progress=seen.append)
    assert seen == [64, 64, 22] and emb.shape == (150, 32)


def test_tqdm_is_throttled_in_this_process_when_stderr_is_a_log(monkeypatch):
    """Third-party bars in our process (datasets, Ray's driver) get a large mininterval as well, the
    way TQDM_MININTERVAL would give it (tqdm reads that variable at import, before our code runs)."""
    import io

    import tqdm.std

    from mrl.progress import log_interval, throttle_progress

    monkeypatch.setattr(tqdm.std.tqdm, "__init__", tqdm.std.tqdm.__init__)  # restored after the test
    monkeypatch.setattr(tqdm.std.tqdm, "_mrl_throttled", False, raising=False)
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.setenv("MRL_PROGRESS_INTERVAL", "30")
    throttle_progress()
    assert log_interval() == 30.0
    assert tqdm.std.tqdm(total=1, file=io.StringIO()).mininterval == 30.0
    from tqdm.auto import tqdm as auto_tqdm

    assert auto_tqdm(total=1, file=io.StringIO()).mininterval == 30.0
    assert tqdm.std.tqdm(total=1, file=io.StringIO(), mininterval=1.0).mininterval == 1.0  # an explicit value wins
