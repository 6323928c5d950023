"""The text store beside an index (mrl.index.texts), `mrl index attach-texts` and `mrl serve --texts`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_fixtures import DIM, tiny_model  # noqa: F401
from typer.testing import CliRunner

from mrl.cli.app import app
from mrl.errors import DataError
from mrl.index import MatryoshkaIndex
from mrl.index.texts import TextStore, read_texts, write_text_store


def small_index(folder: Path, ids: np.ndarray) -> Path:
    idx = MatryoshkaIndex(8)
    idx.add(np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32), ids)
    idx.save(folder)
    return folder


def test_roundtrip_by_id_with_unicode_and_missing_ids(tmp_path: Path) -> None:
    folder = small_index(tmp_path / "idx", np.array([30, 10, 20]))
    write_text_store(folder, np.array([30, 10, 20]), ["thirty «30»", "ten\nlines", "twenty"])
    store = TextStore.open(folder)
    assert store is not None and store.count == 3
    assert store.get(np.array([20, 30, 10, -1, 99])) == ["twenty", "thirty «30»", "ten\nlines", None, None]
    assert TextStore.open(tmp_path) is None  # a folder without a store
    # the index's own saves leave the store alone
    idx = MatryoshkaIndex.load(folder)
    idx.save(folder)
    assert TextStore.open(folder).get(np.array([10])) == ["ten\nlines"]


def test_corrupted_store_is_refused(tmp_path: Path) -> None:
    folder = small_index(tmp_path / "idx", np.arange(3))
    write_text_store(folder, np.arange(3), ["a", "b", "c"])
    (folder / "texts.jsonl").write_bytes((folder / "texts.jsonl").read_bytes().replace(b'"a"', b'"z"'))
    with pytest.raises(DataError, match="checksum"):
        TextStore.open(folder)
    with pytest.raises(DataError, match="repeat"):
        write_text_store(folder, np.array([1, 1]), ["a", "b"])


def test_read_texts_sources(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first\n\nsecond\n")
    ids, texts = read_texts(tmp_path / "a.txt")
    assert ids.tolist() == [0, 1] and texts == ["first", "second"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"_id": "7", "title": "T", "text": "body"}) + "\n" + json.dumps({"id": 9, "text": "x"}) + "\n")
    ids, texts = read_texts(tmp_path / "b.jsonl")
    assert ids.tolist() == [7, 9] and texts == ["T: body", "x"]
    (tmp_path / "c.jsonl").write_text('{"id": "doc-a", "text": "x"}\n')
    with pytest.raises(DataError, match="integers"):
        read_texts(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"id": 1, "text": "x"}\n{"id": 1, "text": "y"}\n')
    with pytest.raises(DataError, match="repeats"):
        read_texts(tmp_path / "d.jsonl")
    (tmp_path / "e.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="e.jsonl:1"):
        read_texts(tmp_path / "e.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        read_texts(tmp_path / "missing.txt")


def test_attach_texts_cli_checks_every_id_has_a_passage(tmp_path: Path) -> None:
    folder = small_index(tmp_path / "idx", np.arange(3))
    (tmp_path / "two.txt").write_text("a\nb\n")
    res = CliRunner().invoke(app, ["index", "attach-texts", str(folder), "--texts", str(tmp_path / "two.txt")])
    assert res.exit_code == 2 and "1 of the index's 3 live ids have no passage" in res.output
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    res = CliRunner().invoke(app, ["index", "attach-texts", str(folder), "--texts", str(tmp_path / "three.txt")])
    assert res.exit_code == 0, res.output
    assert TextStore.open(folder).get(np.array([2])) == ["c"]


def test_serve_texts_builds_the_index_once(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[Any] = []
    monkeypatch.setattr("mrl.serve.server.run", lambda app_, **kw: runs.append(kw))
    (tmp_path / "p.txt").write_text("\n".join(f"passage number {i} about boats" for i in range(40)))
    args = ["serve", "--model", str(tiny_model), "--texts", str(tmp_path / "p.txt"), "--index", str(tmp_path / "idx"), "--threads", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    idx = MatryoshkaIndex.load(tmp_path / "idx")
    assert idx.count == 40 and idx.dim == DIM and TextStore.open(tmp_path / "idx").get(np.array([3])) == ["passage number 3 about boats"]
    res = CliRunner().invoke(app, args)  # a second start reuses the folder
    assert res.exit_code == 0 and "serving it as is" in res.output
    assert len(runs) == 2
    res = CliRunner().invoke(app, ["serve", "--texts", str(tmp_path / "p.txt"), "--index", str(tmp_path / "idx2")])
    assert res.exit_code == 2 and "--texts needs --model" in res.output
