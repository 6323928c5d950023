import pytest
from text_fixtures import wordnet_dir  # noqa: F401

from mrl.data.wordnet import load_synsets, load_wordnet, parse_data_line
from mrl.errors import DataError

REAL = '00002684 03 n 02 object 0 physical_object 0 039 @ 00001930 n 0000 ~ 00003553 n 0000 | a tangible and visible entity; an entity that can cast a shadow; "it was full of rackets, balls and other objects"  '


def test_parse_real_line():
    s = parse_data_line(REAL)
    assert s.offset == "00002684" and s.lemmas == ("object", "physical object")
    assert s.definition == "a tangible and visible entity; an entity that can cast a shadow"
    assert s.examples == ("it was full of rackets, balls and other objects",)
    assert s.query() == "object: it was full of rackets, balls and other objects"


def test_synthetic_folder_splits_by_synset(wordnet_dir):
    assert len(load_synsets(wordnet_dir)) == 80
    data = load_wordnet(wordnet_dir, test_fraction=0.25, val_fraction=0.1, max_queries=10)
    assert data.info["test_synsets"] == 20 and data.info["val_synsets"] == 8 and len(data.train) == 52
    test = data.test
    assert len(test.queries) == 10 and len(test.corpus) == 20
    # qrels point at the query's own definition, and no test definition is a training positive
    for qid, rel in zip(test.query_ids, test.qrels):
        assert test.corpus_ids[rel[0]] == qid
    assert not set(test.corpus) & set(data.train.positive)
    assert not set(data.validation.corpus) & set(test.corpus)
    again = load_wordnet(wordnet_dir, test_fraction=0.25, val_fraction=0.1, max_queries=10)
    assert again.test.fingerprint() == test.fingerprint()
    other = load_wordnet(wordnet_dir, test_fraction=0.25, val_fraction=0.1, max_queries=10, seed=1)
    assert other.test.fingerprint() != test.fingerprint()
    assert len(load_wordnet(wordnet_dir, max_train=7).train) == 7


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="apt-get install wordnet-base"):
        load_synsets(tmp_path)
    (tmp_path / "data.noun").write_text("00001740 03 n 01 entity 0 000 no gloss here\n")
    with pytest.raises(DataError, match="not a WordNet data line"):
        load_synsets(tmp_path)
    with pytest.raises(DataError, match="test_fraction"):
        load_wordnet(tmp_path, test_fraction=0.9, val_fraction=0.2)


def test_max_texts_samples_synsets_over_the_whole_file(wordnet_dir, monkeypatch):
    """`mrl serve --texts wordnet --max-texts N` indexed the file's first N synsets (one lexicographer
    area only); it now takes a seeded, deterministic sample spread over the file, in file order."""
    from mrl.index.texts import read_texts

    every = load_synsets(wordnet_dir)
    some = load_synsets(wordnet_dir, max_synsets=10)
    assert len(some) == 10 and some == load_synsets(wordnet_dir, max_synsets=10)  # deterministic
    pos = [every.index(s) for s in some]
    assert pos == sorted(pos) and pos != list(range(10)) and max(pos) >= 40  # spread over the file, kept in file order
    assert load_synsets(wordnet_dir, max_synsets=10, seed=1) != some and load_synsets(wordnet_dir, max_synsets=500) == every
    with pytest.raises(DataError, match="max_synsets"):
        load_synsets(wordnet_dir, max_synsets=0)
    monkeypatch.setenv("MRL_WORDNET", str(wordnet_dir))
    ids, texts = read_texts("wordnet", limit=10)
    assert ids.tolist() == [int(s.offset) for s in some] and len(texts) == 10
