import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from text_fixtures import write_wordnet

import mrl.corpora.corpus as corpus_mod
from mrl.corpora.corpus import CorpusConfig, build_corpus, fit_exclusions, load_corpus, load_queries, load_wordnet_task
from mrl.corpora.corpus_sources import Source
from mrl.corpora.passages import normalize, word_count
from mrl.data.wordnet import load_synsets, load_wordnet
from mrl.errors import DataError, OutputExistsError

SHARED = "This paragraph appears in two sources and must be kept only once in the final corpus."


def sentence(topic: str, i: int) -> str:
    return f"The {topic} paragraph number {i} explains how the {topic} tool handles case {i} in detail."


def make_sources(tmp: Path) -> list[Source]:
    wn = write_wordnet(tmp / "wn")
    rst = tmp / "rst"
    rst.mkdir()
    for f in range(3):
        body = "\n\n".join(sentence(f"rst{f}", i) for i in range(6))
        (rst / f"doc{f}.rst").write_text(f"Title {f}\n=======\n\n{body}\n\n.. code-block:: c\n\n   int main(void) {{ return 0; }}\n\n{SHARED}\n")
    with gzip.open(rst / "long.rst.gz", "wt") as fh:  # one paragraph of 150 words: cut into passages
        fh.write(" ".join(sentence("long", i) for i in range(10)) + "\n")
    pod = tmp / "perl.pod"
    pod.write_text("=head1 NAME\n\nperlx - a test\n\n=head1 DESCRIPTION\n\n" + "\n\n".join(sentence("pod", i) for i in range(4)) + f"\n\n    my $code = 1;\n\n{SHARED}\n\n=cut\n")
    html = tmp / "page.html"
    html.write_text("<html><head><title>x</title></head><body><div class='navheader'>Prev Next Home Up navigation links here now</div>" + "".join(f"<p>{sentence('html', i)}</p>" for i in range(5)) + "<pre>not prose at all here { }</pre></body></html>")
    return [
        Source("wordnet", "wordnet", (str(wn / "data.noun"),), str(wn), 1, "fixture WordNet"),
        Source("rst", "rst", tuple(sorted(str(p) for p in rst.iterdir())), str(rst), 2, "fixture rst"),
        Source("pod", "pod", (str(pod),), str(tmp), 1, "fixture pod"),
        Source("html", "html", (str(html),), str(tmp), 1, "fixture html"),
    ]


CFG = CorpusConfig(seed=3, n_test=5, n_tune=2, shard_size=25, processes=1)


def shard_hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("passages-*.jsonl"))}


def test_build_rules_outputs_and_loaders(tmp_path):
    sources = make_sources(tmp_path)
    out = tmp_path / "corpus"
    m = build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    assert m["complete"] and m["total"] == sum(s["count"] for s in m["shards"])
    c = load_corpus(out)
    assert c.ids == tuple(f"p{i:07d}" for i in range(m["total"]))
    assert len(set(map(str.lower, c.texts))) == len(c.texts)
    assert sum(t == SHARED for t in c.texts) + sum(t == SHARED for t in load_queries(out)[1] + load_queries(out, "tune")[1]) == 1
    assert m["duplicates_removed"] >= 2
    assert not any("int main" in t or "my $code" in t or "navigation" in t or "not prose" in t for t in c.texts)
    non_wn = [t for t, s in zip(c.texts, c.sources) if s != "wordnet"]
    assert all(8 <= word_count(t) <= 80 for t in non_wn)
    assert sum("long paragraph" in t for t in c.texts) >= 2  # the 150-word paragraph was cut
    # every WordNet definition is a passage, whatever its length; the test split's examples are not
    synsets = load_synsets(tmp_path / "wn")
    everything = set(c.texts) | set(load_queries(out)[1]) | set(load_queries(out, "tune")[1])
    assert {s.definition for s in synsets} <= everything
    test_ids = set(load_wordnet(tmp_path / "wn").test.corpus_ids)
    assert not any(normalize(e) in everything for s in synsets if s.offset in test_ids for e in s.examples)
    # queries are held out of the corpus and disjoint
    t_ids, t_texts = load_queries(out)
    assert len(t_ids) == 5 and len(load_queries(out, "tune")[0]) == 2 and not set(t_texts) & set(c.texts)
    # the WordNet task points at its definitions, which are never held out, and are excluded from fitting
    task = load_wordnet_task(out, c)
    by_off = {s.offset: s for s in synsets}
    assert len(task.queries) == len(load_wordnet(tmp_path / "wn").test.queries) > 0
    for qid, rel in zip(task.query_ids, task.qrels):
        assert task.corpus[rel[0]] == by_off[qid].definition
    assert {task.corpus_ids[r[0]] for r in task.qrels} <= fit_exclusions(out)
    counts = m["counts"]
    assert set(counts) == {"wordnet", "rst", "pod", "html"} and sum(v["in_corpus"] for v in counts.values()) == m["total"]
    assert m["lengths_words"]["passages"] == m["total"] and set(m["files"]) >= {"queries/test.jsonl", "wordnet/qrels/test.tsv"}
    with pytest.raises(DataError, match="unknown query split"):
        load_queries(out, "dev")


def test_resume_after_kill_keeps_finished_work_and_rewrites_the_rest(tmp_path, monkeypatch):
    sources = make_sources(tmp_path)
    ref = tmp_path / "ref"
    build_corpus(ref, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    out = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None, _stop_after_shards=2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and [s["path"] for s in manifest["shards"]] == ["passages-00000.jsonl", "passages-00001.jsonl"]
    with pytest.raises(DataError, match="unfinished"):
        load_corpus(out)
    # a half-written shard at the final name (as a non-atomic writer would leave) and a stray temp file
    (out / "passages-00002.jsonl").write_text('{"_id": "p0000050", "te')
    (out / ".passages-00003.jsonl.x1y2z3w4.tmp").write_text("partial")  # atomic_open's temp-name form
    calls = []
    real = corpus_mod.read_unit
    monkeypatch.setattr(corpus_mod, "read_unit", lambda src, files: calls.append(files) or real(src, files))
    shard0 = (out / "passages-00000.jsonl").stat().st_mtime_ns
    m = build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    assert calls == []  # every unit's part was finished: nothing re-extracted
    assert (out / "passages-00000.jsonl").stat().st_mtime_ns == shard0  # a listed shard is kept
    assert m["complete"] and shard_hashes(out) == shard_hashes(ref)  # same corpus as an uninterrupted build
    assert not list(out.glob(".*.tmp"))
    # a lost part is redone alone; a corrupted part is caught by its checksum
    parts = sorted((out / "parts").glob("*.jsonl"))
    parts[0].unlink()
    parts[1].write_text("{}\n")
    build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    assert len(calls) == 2 and shard_hashes(out) == shard_hashes(ref)
    # a corrupted shard is refused by the loader
    with (out / "passages-00001.jsonl").open("a") as fh:
        fh.write("\n")
    with pytest.raises(DataError, match="does not match its sha256"):
        load_corpus(out)


def test_process_pool_gives_the_same_corpus(tmp_path):
    sources = make_sources(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    build_corpus(a, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    build_corpus(b, sources, CorpusConfig(**{**CFG.__dict__, "processes": 2}), wordnet_root=tmp_path / "wn", log=lambda s: None)
    assert shard_hashes(a) == shard_hashes(b)
    other = tmp_path / "c"
    build_corpus(other, sources, CorpusConfig(**{**CFG.__dict__, "seed": 4}), wordnet_root=tmp_path / "wn", log=lambda s: None)
    assert shard_hashes(other) != shard_hashes(a)


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc not installed")
def test_man_source_marks_ood_evaluated_passages(tmp_path):
    from mrl.corpora.ood import OODItem, build_ood_set

    sources = make_sources(tmp_path)
    man = tmp_path / "man" / "man1"
    man.mkdir(parents=True)
    for k in range(2):
        paras = "\n.PP\n".join(sentence(f"page{k}", i) for i in range(3))
        (man / f"tool{k}.1").write_text(f".TH TOOL{k} 1\n.SH NAME\ntool{k} \\- do thing {k}\n.SH DESCRIPTION\n{paras}\n")
    sources.append(Source("man", "man", tuple(sorted(str(p) for p in man.iterdir())), str(man.parent), 1, "fixture man"))
    items = [OODItem(id=f"tool{k}.1", text=f"description {k} words words words", query=f"do thing {k}", group=f"man:tool{k}.1") for k in range(2)]
    build_ood_set(tmp_path / "ood", items, n_queries=1, n_corpus=1, n_unlabeled=1, seed=0)
    evaluated = json.loads((tmp_path / "ood" / "manifest.json").read_text())["evaluated_groups"]
    out = tmp_path / "corpus"
    build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", ood_sets=[tmp_path / "ood"], log=lambda s: None)
    c = load_corpus(out)
    page = "page" + evaluated[0].split(":")[1].split(".")[0].removeprefix("tool")
    marked = {c.ids.index(i) for i in fit_exclusions(out) if i in c.ids}
    ood_texts = {c.texts[r] for r in marked if c.sources[r] == "man"}
    assert ood_texts and all(page in t for t in ood_texts)
    assert all(page not in t for t, s in zip(c.texts, c.sources) if s == "man" and t not in ood_texts)


def test_changed_rules_redo_units_and_drop_stale_parts(tmp_path, monkeypatch):
    sources = make_sources(tmp_path)
    out = tmp_path / "corpus"
    build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    before = {p.name for p in (out / "parts").glob("*.jsonl")}
    calls = []
    real = corpus_mod.read_unit
    monkeypatch.setattr(corpus_mod, "read_unit", lambda src, files: calls.append(files) or real(src, files))
    build_corpus(out, sources, CorpusConfig(**{**CFG.__dict__, "target_words": 20}), wordnet_root=tmp_path / "wn", log=lambda s: None)
    after = {p.name for p in (out / "parts").glob("*.jsonl")}
    assert len(calls) == len(before) and not before & after  # every unit redone; the old parts removed
    assert set(json.loads((out / "parts" / "progress.json").read_text())["units"]) == {n.removesuffix(".jsonl") for n in after}


def test_killed_build_temps_are_removed_but_no_other_file(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    ours = [parts / ".man-00003-0123456789.jsonl.ab12cd34.tmp", parts / ".progress.json.x9y8z7w6.tmp", tmp_path / ".passages-00002.jsonl.k2j3h4g5.tmp"]
    users = [parts / ".notes.tmp", parts / "draft.tmp", tmp_path / ".my-list.jsonl.ab12cd34.tmp"]
    for p in ours + users:
        p.write_text("x")
    corpus_mod._clean_temps(parts, corpus_mod._OUR_PART)
    corpus_mod._clean_temps(tmp_path, corpus_mod._OUR_TOP)
    assert not any(p.exists() for p in ours) and all(p.exists() for p in users)


@pytest.mark.parametrize("foreign", ["notes.txt", "parts/draft.jsonl", "queries/mine.jsonl", "manifest.json"])
def test_a_folder_with_anything_the_builder_does_not_write_is_refused_unchanged(tmp_path, foreign):
    sources = make_sources(tmp_path)
    out = tmp_path / "corpus"
    (out / Path(foreign).parent).mkdir(parents=True, exist_ok=True)
    (out / foreign).write_text('{"mine": true}')
    (out / ".passages-00000.jsonl.ab12cd34.tmp").write_text("a killed write of ours")
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(OutputExistsError, match="not written by the corpus builder"):
        build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_stale_part_whose_bytes_changed_is_left_on_disk(tmp_path):
    sources = make_sources(tmp_path)
    out = tmp_path / "corpus"
    build_corpus(out, sources, CFG, wordnet_root=tmp_path / "wn", log=lambda s: None)
    edited = sorted((out / "parts").glob("*.jsonl"))[0]
    edited.write_text("edited since\n")
    build_corpus(out, sources, CorpusConfig(**{**CFG.__dict__, "target_words": 20}), wordnet_root=tmp_path / "wn", log=lambda s: None)
    assert edited.read_text() == "edited since\n"
