"""Unlabeled text sources for label-free adaptation: formats, de-duplication and one-line errors."""

import pytest
from text_fixtures import wordnet_dir  # noqa: F401

from mrl.data.texts import load_texts
from mrl.errors import DataError


def test_text_and_jsonl_sources(tmp_path, wordnet_dir):
    (tmp_path / "a.txt").write_text("first text\n\n second text \nfirst text\n")
    assert load_texts(tmp_path / "a.txt") == ("first text", "second text")
    (tmp_path / "b.jsonl").write_text('{"_id": "1", "title": "ls", "text": "list files"}\n"a bare string"\n\n{"text": "more"}\n')
    assert load_texts(tmp_path / "b.jsonl") == ("ls list files", "a bare string", "more")
    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "unlabeled.jsonl").write_text("".join(f'{{"_id": "u{i}", "text": "doc {i}"}}\n' for i in range(10)))
    assert len(load_texts(tmp_path / "beir", max_texts=4)) == 4
    wn = load_texts("wordnet", data_root=wordnet_dir)
    assert len(wn) > 50 and any(t.startswith("a boat") for t in wn)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("x.jsonl", b'{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', "duplicate _id '1'"),
        ("x.jsonl", b'{"text": "ok"}\n{"text": "  "}\n', "line 2 has empty text"),
        ("x.jsonl", b'{"text": "ok"}\n{"text": \n', "line 2 is not valid JSON"),
        ("x.txt", b"fine\ncaf\xe9\n", "line 2 is not UTF-8"),
        ("x.txt", b"only one\n", "at least 2"),
        ("x.csv", b"a\nb\n", "cannot tell the format"),
    ],
)
def test_bad_sources_fail_with_one_line(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        load_texts(tmp_path / name)
    assert "\n" not in str(info.value)


def test_missing_sources(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_texts(tmp_path / "nope.txt")
    (tmp_path / "beir").mkdir()
    with pytest.raises(DataError, match="no unlabeled.jsonl"):
        load_texts(tmp_path / "beir")
