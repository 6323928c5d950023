import json

import pytest

from mrl.data.pairs import PairSet, load_pairs
from mrl.errors import DataError


def test_jsonl_csv_tsv_load_the_same_pairs(tmp_path):
    rows = [{"anchor": "car", "positive": "a motor vehicle", "extra": 1}, {"anchor": "dog, pet", "positive": "a domestic animal"}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "p.csv").write_text('anchor,positive\ncar,a motor vehicle\n"dog, pet",a domestic animal\n')
    (tmp_path / "p.tsv").write_text("anchor\tpositive\ncar\ta motor vehicle\ndog, pet\ta domestic animal\n")
    for name in ("p.jsonl", "p.csv", "p.tsv"):
        pairs = load_pairs(tmp_path / name)
        assert pairs.anchor == ("car", "dog, pet") and pairs.positive == ("a motor vehicle", "a domestic animal")
        assert pairs.negative is None and len(pairs) == 2
    sub = pairs.subset([1])
    assert sub.anchor == ("dog, pet",)


def test_negatives_are_read_and_must_be_complete(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("anchor,positive,negative\na,b,c\nd,e,f\n")
    assert load_pairs(p).negative == ("c", "f")
    p.write_text("anchor,positive,negative\na,b,c\nd,e,\n")
    with pytest.raises(DataError, match="line 3: 'negative' is empty"):
        load_pairs(p)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("e.jsonl", "", "is empty"),
        ("h.csv", "anchor,positive\n", "no rows"),
        ("m.csv", "query,positive\na,b\n", r"no column\(s\) \['anchor'\]"),
        ("m.jsonl", '{"anchor": "a"}\n', "line 1 has no 'positive'"),
        ("b.jsonl", '{"anchor": "a", "positive": "b"}\n{"anchor": \n', "line 2 is not valid JSON"),
        ("l.jsonl", '["a", "b"]\n', "not an object"),
        ("s.jsonl", '{"anchor": "a", "positive": "   "}\n', "'positive' is empty"),
        ("t.jsonl", '{"anchor": 3, "positive": "b"}\n', "must be a string"),
        ("x.csv", "anchor,positive\na,b,c\n", "quote fields"),
        ("p.parquet", "x", "cannot tell the format"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(DataError, match=match):
        load_pairs(p)


def test_bad_encoding_and_missing_file(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("anchor,positive\ncaf\xe9,coffee house\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8.*line 2"):
        load_pairs(p)
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(tmp_path / "nope.jsonl")


def test_pairset_lengths_must_match():
    with pytest.raises(DataError, match="same length"):
        PairSet(("a",), ("b", "c"))
