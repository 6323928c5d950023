import json
from pathlib import Path

import numpy as np
import pytest

from mrl.data.beir import load_beir, load_unlabeled, read_qrels, verify_manifest, write_beir
from mrl.data.irset import IRSet
from mrl.errors import DataError, OutputExistsError


def make_folder(root: Path, n_docs: int = 30, n_queries: int = 10, *, graded: bool = False) -> Path:
    """Query i is relevant to documents 2i (grade 2 when graded) and 2i+1; query 0 also judges doc 29 as 0."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for i in range(n_docs):
            fh.write(json.dumps({"_id": f"d{i}", "title": f"T{i}" if i % 2 else "", "text": f"document number {i}"}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for i in range(n_queries + 2):  # two queries without judgements (another split's)
            fh.write(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"]
    for i in range(n_queries):
        lines += [f"q{i}\td{2 * i}\t{2 if graded else 1}", f"q{i}\td{2 * i + 1}\t1"]
    lines.append(f"q0\td{n_docs - 1}\t0")
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_loads_titles_text_and_binary_qrels(tmp_path):
    ir = load_beir(make_folder(tmp_path / "b"))
    assert isinstance(ir, IRSet) and ir.grades is None
    assert len(ir.corpus) == 30 and len(ir.queries) == 10  # q10, q11 have no judgements
    assert ir.corpus[1] == "T1 document number 1" and ir.corpus[0] == "document number 0"
    for qid, rel in zip(ir.query_ids, ir.qrels):
        i = int(qid[1:])
        assert [ir.corpus_ids[r] for r in rel] == [f"d{2 * i}", f"d{2 * i + 1}"]  # the score-0 doc is not relevant
    assert ir.qrels_dict()["q0"] == {"d0": 1, "d1": 1}


def test_graded_relevance_is_kept(tmp_path):
    ir = load_beir(make_folder(tmp_path / "g", graded=True))
    assert ir.grades is not None
    assert ir.qrels_dict()["q3"] == {"d6": 2, "d7": 1}
    assert ir.fingerprint() != load_beir(make_folder(tmp_path / "b")).fingerprint()


def test_bounds_keep_relevant_docs_and_sample_the_rest(tmp_path):
    folder = make_folder(tmp_path / "b", n_docs=200, n_queries=50)
    ir = load_beir(folder, max_queries=5, max_corpus=25, seed=3)
    assert len(ir.queries) == 5 and len(ir.corpus) == 25
    needed = {f"d{2 * int(q[1:]) + k}" for q in ir.query_ids for k in (0, 1)}
    assert needed <= set(ir.corpus_ids)
    for qid, rel in zip(ir.query_ids, ir.qrels):
        assert len(rel) == 2 and {ir.corpus_ids[r] for r in rel} == {f"d{2 * int(qid[1:])}", f"d{2 * int(qid[1:]) + 1}"}
    assert list(ir.corpus_ids) == sorted(ir.corpus_ids, key=lambda d: int(d[1:]))  # file order
    again = load_beir(folder, max_queries=5, max_corpus=25, seed=3)
    assert again.fingerprint() == ir.fingerprint()
    other = load_beir(folder, max_queries=5, max_corpus=25, seed=4)
    assert other.query_ids != ir.query_ids
    # only the corpus is bounded: every judged query, relevant docs plus a sample of distractors
    only_c = load_beir(folder, max_corpus=120)
    assert len(only_c.queries) == 50 and len(only_c.corpus) == 120
    with pytest.raises(DataError, match="need 100 relevant documents, more than max_corpus=60"):
        load_beir(folder, max_corpus=60)
    with pytest.raises(DataError, match="max_queries must be a positive"):
        load_beir(folder, max_queries=0)


def _write(folder: Path, name: str, content: str | bytes) -> None:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)


DOC = '{"_id": "d0", "text": "a"}\n'
BAD = [
    ("corpus.jsonl", None, "corpus.jsonl not found"),
    ("queries.jsonl", None, "queries.jsonl not found"),
    ("qrels/test.tsv", None, r"test.tsv not found"),
    ("corpus.jsonl", DOC + '{"_id": "d0", "text": "b"}\n', "line 2: duplicate _id 'd0' \\(first on line 1\\)"),
    ("queries.jsonl", '{"_id": "q0", "text": "x"}\n{"_id": "q0", "text": "y"}\n', "queries.jsonl line 2: duplicate _id"),
    ("corpus.jsonl", DOC + '{"_id": "d1", "title": " ", "text": "  "}\n', "line 2: 'd1' has empty text"),
    ("queries.jsonl", '{"_id": "q0", "text": ""}\n', "line 1: 'q0' has empty text"),
    ("corpus.jsonl", DOC + b'{"_id": "d1", "text": "caf\xe9"}\n'.decode("latin-1"), None),  # valid UTF-8 after latin-1 round trip
    ("corpus.jsonl", (DOC + DOC.replace("d0", "d1")).encode() + b'{"_id": "d2", "text": "caf\xe9"}\n', "line 3 is not UTF-8"),
    ("queries.jsonl", b'{"_id": "q0", "text": "ok"}\n\xff\xfe\n', "queries.jsonl line 2 is not UTF-8"),
    ("corpus.jsonl", DOC + '{"_id": "d1", "text": "a"\n', "line 2 is not valid JSON"),
    ("corpus.jsonl", '["d0", "a"]\n', "line 1 is a JSON list"),
    ("corpus.jsonl", '{"text": "a"}\n', "'_id' must be a non-empty string"),
    ("corpus.jsonl", '{"_id": "d0", "text": 5}\n', "must be strings"),
    ("corpus.jsonl", "\n\n", "holds no records"),
    ("qrels/test.tsv", "q0\td0\t1\n", "line 1 is 'q0\\\\td0\\\\t1', not the header"),
    ("qrels/test.tsv", "", "is empty"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td0\t-1\n", "line 2: score -1 is negative"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td0\t0.5\n", "line 2: score '0.5' is not an integer"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td0\n", "line 2 has 2 tab-separated fields"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td0\t1\nq0\td0\t2\n", "judged twice"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq9\td0\t1\n", "names query 'q9', which is not in"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td9\t1\n", "names document 'd9' \\(for query 'q0'\\), which is not in"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td0\t0\n", "no positive judgement"),
]


@pytest.mark.parametrize(("name", "content", "match"), BAD)
def test_bad_input_one_clear_error_each(tmp_path, name, content, match):
    folder = tmp_path / "b"
    _write(folder, "corpus.jsonl", DOC)
    _write(folder, "queries.jsonl", '{"_id": "q0", "text": "x"}\n')
    _write(folder, "qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    if content is None:
        (folder / name).unlink()
    else:
        _write(folder, name, content)
    if match is None:
        assert len(load_beir(folder).corpus) == 2
        return
    with pytest.raises(DataError, match=match) as err:
        load_beir(folder)
    assert "\n" not in str(err.value)


def test_read_qrels_accepts_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "q.tsv"
    p.write_bytes(b"query-id\tcorpus-id\tscore\r\nq0\td0\t1\r\n\r\nq0\td1\t0\r\n")
    assert read_qrels(p) == {"q0": {"d0": 1, "d1": 0}}


def _ood(n: int = 20):
    corpus = {f"d{i}": f"text of document {i}" for i in range(n)}
    queries = {f"q{i}": f"question {i}" for i in range(n // 2)}
    qrels = {"test": {f"q{i}": {f"d{i}": 1} for i in range(n // 2)}}
    unlabeled = {f"u{i}": f"another document {i}" for i in range(7)}
    return corpus, queries, qrels, unlabeled


def test_writer_round_trip_manifest_and_unlabeled(tmp_path):
    corpus, queries, qrels, unlabeled = _ood()
    out = tmp_path / "set"
    manifest = write_beir(out, corpus, queries, qrels, unlabeled=unlabeled, sources=["fixture"], seed=7, extra={"note": "x"})
    assert manifest["counts"] == {"corpus": 20, "queries": 10, "qrels/test": 10, "unlabeled": 7}
    assert set(manifest["files"]) == {"corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "unlabeled.jsonl"}
    assert verify_manifest(out)["seed"] == 7
    ir = load_beir(out)
    assert ir.corpus == tuple(corpus.values()) and ir.queries == tuple(queries.values())
    assert load_unlabeled(out) == tuple(unlabeled.values())
    assert len(load_unlabeled(out, max_docs=3)) == 3
    # no stray temp folders next to the output
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
    # a corrupted file is caught by its checksum
    with (out / "corpus.jsonl").open("a") as fh:
        fh.write('{"_id": "extra", "text": "added later"}\n')
    with pytest.raises(DataError, match="does not match the sha256"):
        load_beir(out)


def test_writer_refuses_leaks_bad_input_and_foreign_folders(tmp_path):
    corpus, queries, qrels, unlabeled = _ood()
    with pytest.raises(DataError, match="share no id and no text"):
        write_beir(tmp_path / "a", corpus, queries, qrels, unlabeled={"u": corpus["d3"]})
    with pytest.raises(DataError, match="names document 'zz'"):
        write_beir(tmp_path / "a", corpus, queries, {"test": {"q0": {"zz": 1}}})
    with pytest.raises(DataError, match="must be an integer >= 0"):
        write_beir(tmp_path / "a", corpus, queries, {"test": {"q0": {"d0": -2}}})
    with pytest.raises(DataError, match="has empty text"):
        write_beir(tmp_path / "a", {"d0": " "}, queries, qrels)
    out = tmp_path / "set"
    write_beir(out, corpus, queries, qrels)
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_beir(out, corpus, queries, qrels)
    write_beir(out, corpus, queries, qrels, unlabeled=unlabeled, overwrite=True)
    assert len(load_unlabeled(out)) == 7
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="did not write"):
        write_beir(out, corpus, queries, qrels, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_unlabeled_loader_checks_disjointness(tmp_path):
    corpus, queries, qrels, _ = _ood()
    out = tmp_path / "set"
    write_beir(out, corpus, queries, qrels)
    with pytest.raises(DataError, match="unlabeled.jsonl not found"):
        load_unlabeled(out)
    (out / "manifest.json").unlink()
    (out / "unlabeled.jsonl").write_text(json.dumps({"_id": "d1", "text": "x"}) + "\n")
    with pytest.raises(DataError, match="shares 1 ids with corpus"):
        load_unlabeled(out)
    (out / "unlabeled.jsonl").write_text(json.dumps({"_id": "u1", "text": corpus["d4"]}) + "\n")
    with pytest.raises(DataError, match="repeats a text"):
        load_unlabeled(out)


def test_irset_grades_are_validated():
    with pytest.raises(DataError, match="one grade per relevant"):
        IRSet(("q",), ("x",), ("d", "e"), ("a", "b"), ((0, 1),), grades=((1,),))
    with pytest.raises(DataError, match="positive integers"):
        IRSet(("q",), ("x",), ("d",), ("a",), ((0,),), grades=((0,),))
    assert np.array_equal(IRSet(("q",), ("x",), ("d",), ("a",), ((0,),)).grade_lists(), ((1,),))
