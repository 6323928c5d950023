import json

import pytest

from mrl.corpora.ood import OODItem, build_ood_set
from mrl.corpora.passages import dedupe_key, first_words, looks_like_prose, normalize, sentences, split_passages, word_count
from mrl.data.beir import load_beir, load_unlabeled
from mrl.errors import DataError


def sentence(i: int, n: int = 12) -> str:
    return "Sentence " + " ".join(f"w{i}x{k}" for k in range(n - 2)) + " end."


def test_normalize_and_dedupe_key():
    assert normalize("  a\tb\n\nc\x00 d\u200b ") == "a b c d"
    assert dedupe_key("Hello   World") == dedupe_key("hello world") != dedupe_key("hello worlds")


def test_sentences_keep_abbreviations_and_quotes():
    assert sentences('See e.g. the manual. It works, i.e. fine! "Quoted." Then 3 more.') == ["See e.g. the manual.", "It works, i.e. fine!", '"Quoted."', "Then 3 more."]


@pytest.mark.parametrize("n_sent", [1, 5, 7, 20])
def test_split_passages_respects_bounds(n_sent):
    text = " ".join(sentence(i) for i in range(n_sent))
    out = split_passages(text)
    assert all(8 <= word_count(p) <= 80 for p in out)
    assert " ".join(out) == normalize(text)  # nothing lost, order kept
    if word_count(text) > 80:
        assert len(out) >= 2 and all(word_count(p) <= 60 for p in out)  # near-equal cuts around 50 words


def test_split_passages_short_long_sentence_and_tail():
    assert split_passages("too short to keep") == []
    giant = " ".join(f"w{k}" for k in range(170)) + "."  # one sentence of 170 words: cut on words
    out = split_passages(giant)
    assert len(out) == 3 and all(word_count(p) <= 80 for p in out)
    tail = sentence(0, 75) + " Tiny tail."  # a < 8-word remainder joins the previous passage when it fits
    out = split_passages(tail)
    assert all(word_count(p) >= 8 for p in out) and " ".join(out) == normalize(tail)


def test_first_words_and_prose_filter():
    text = " ".join(sentence(i) for i in range(5))  # 60 words
    assert first_words(text, 30) == " ".join(sentence(i) for i in range(2))
    assert word_count(first_words(" ".join(f"w{k}" for k in range(50)), 20)) == 20
    assert looks_like_prose("Return the base name of pathname path, as a string.")
    assert not looks_like_prose("int main(void) { return x[0] >> 2; }")
    assert not looks_like_prose("0x00 0x1f 0x2e 0x3d 0x4c 0x5b 0x6a 0x79")


def items(n: int = 40) -> list[OODItem]:
    out = [OODItem(id=f"d{i}", text=f"document {i} describes topic {i} in words", query=f"topic {i} question", group=f"g{i // 2}", kind="a" if i % 2 else "b") for i in range(n)]
    out.append(OODItem(id="dup", text="Document 0 describes topic 0 in words", query="dup question", group="gdup"))  # duplicate text
    out.append(OODItem(id="leak", text="what is leaky query here indeed", query="leaky query", group="gleak"))  # query inside doc
    out.append(OODItem(id="same1", text="first text with a shared query", query="shared", group="gs1"))
    out.append(OODItem(id="same2", text="second text with a shared query", query="shared", group="gs2"))
    out.append(OODItem(id="noq", text="a document without any query", group="gnoq"))
    return out


def test_ood_split_rules(tmp_path):
    extra = [OODItem(id=f"e{i}", text=f"extra section {i} of group", group=f"g{i}", kind="section") for i in range(20)]
    m = build_ood_set(tmp_path / "s", items(), extra, n_queries=8, n_corpus=20, n_unlabeled=15, seed=1, sources=["fixture"])
    st = m["stats"]
    assert st["documents_after_dedupe"] == 44 and st["query_eligible"] == 40  # dup, leak and the shared pair drop out
    ir = load_beir(tmp_path / "s")
    assert len(ir.queries) == 8 and len(ir.corpus) == 20
    qids = {q.removeprefix("q:") for q in ir.query_ids}
    assert not qids & {"dup", "leak", "same1", "same2", "noq"}
    for qid, rel in zip(ir.query_ids, ir.qrels):
        assert ir.corpus_ids[rel[0]] == qid.removeprefix("q:")
    unl = load_unlabeled(tmp_path / "s")
    assert len(unl) == 15
    groups = set(m["evaluated_groups"])
    rows = [json.loads(x) for x in (tmp_path / "s" / "unlabeled.jsonl").read_text().splitlines()]
    origin = {it.id: it.group for it in items() + extra}
    assert all(origin[r["_id"].removeprefix("u:")] not in groups for r in rows)  # nothing from an evaluated group
    again = build_ood_set(tmp_path / "t", items(), extra, n_queries=8, n_corpus=20, n_unlabeled=15, seed=1)
    assert again["files"]["corpus.jsonl"] == m["files"]["corpus.jsonl"] and again["files"]["unlabeled.jsonl"] == m["files"]["unlabeled.jsonl"]
    with pytest.raises(DataError, match="only 40 usable queries"):
        build_ood_set(tmp_path / "u", items(), n_queries=41, n_corpus=44)
