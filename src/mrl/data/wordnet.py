"""WordNet 3.0 noun synsets as a text-retrieval dataset (built in, no download).

Source: the ``data.noun`` file of Princeton WordNet 3.0 (Debian package ``wordnet-base``, installed
at ``/usr/share/wordnet``; or any folder holding ``data.noun``, via ``root=`` or ``MRL_WORDNET``).
The file is the documented ``wndb(5)`` plain-text format, parsed here directly (no extra dependency):
``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr ...] | gloss``.

Task: **query** = the synset's first lemma, followed by its first usage example when the gloss
has one (``"bank: he sat on the bank of the river"``); **document** = the synset's definition (the
gloss without the quoted examples, so the query text never appears in its document). Relevance:
the query's own synset's definition (one relevant document per query).

Splits are by synset (a seeded permutation of the sorted synset offsets): no test synset's lemma or
definition is used for training. Defaults (on the full 82,115 noun synsets): test = 5% of synsets
(~4,100; the corpus is all their definitions, queries are a seeded sample of ``max_queries`` = 2,000
of them), validation = 2% (corpus = all, 1,000 queries), train = the rest (~76,000 pairs, of which
``max_train`` may keep a prefix).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrl.data.irset import IRSet
from mrl.data.pairs import PairSet
from mrl.errors import DataError

DEFAULT_ROOT = Path("/usr/share/wordnet")
HOW_TO_GET = "install WordNet 3.0 with `sudo apt-get install wordnet-base` (files land in /usr/share/wordnet), or pass root= / set MRL_WORDNET to a folder holding data.noun"
_EXAMPLE = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class Synset:
    """One synset: ``offset`` (8-digit id), ``lemmas`` (spaces, not underscores), ``definition``,
    the usage ``examples`` of its gloss and the offsets of its ``hypernyms`` (``@`` and ``@i``
    pointers to synsets of the same part of speech, in file order)."""

    offset: str
    lemmas: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]
    hypernyms: tuple[str, ...] = ()

    def query(self) -> str:
        """The first lemma, plus ``": " + first example`` when the gloss has one."""
        return f"{self.lemmas[0]}: {self.examples[0]}" if self.examples else self.lemmas[0]


@dataclass(frozen=True)
class WordNetData:
    """Training pairs (query, definition) and the validation / test IR sets."""

    train: PairSet
    validation: IRSet
    test: IRSet
    info: dict[str, int] = field(default_factory=dict)


def parse_data_line(line: str) -> Synset:
    """Parse one synset line of a ``data.*`` file (wndb(5) format)."""
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 6:
        raise DataError(f"not a WordNet data line (expected 'offset lex ss_type w_cnt word lex_id ... | gloss'): {line[:80]!r}")
    offset, w_cnt_hex = fields[0], fields[3]
    try:
        w_cnt = int(w_cnt_hex, 16)
    except ValueError as exc:
        raise DataError(f"bad word count {w_cnt_hex!r} in WordNet line {offset}.") from exc
    words = fields[4 : 4 + 2 * w_cnt : 2]
    if len(words) != w_cnt or w_cnt == 0:
        raise DataError(f"WordNet line {offset} announces {w_cnt} words but holds {len(words)}.")
    hypernyms = _hypernyms(fields, 4 + 2 * w_cnt, offset)
    gloss = gloss.strip()
    definition, _, rest = gloss.partition('; "')
    examples = tuple(e.strip() for e in _EXAMPLE.findall('"' + rest)) if rest else ()
    lemmas = tuple(re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in words)
    definition = definition.strip().rstrip(";").strip()
    if not definition:
        raise DataError(f"WordNet synset {offset} has an empty definition.")
    return Synset(offset=offset, lemmas=lemmas, definition=definition, examples=tuple(e for e in examples if e), hypernyms=hypernyms)


def _hypernyms(fields: list[str], at: int, offset: str) -> tuple[str, ...]:
    """Targets of the ``@`` / ``@i`` pointers (``p_cnt`` then ``symbol offset pos source/target``)."""
    try:
        p_cnt = int(fields[at])
    except (IndexError, ValueError) as exc:
        raise DataError(f"WordNet line {offset} has no pointer count after its words.") from exc
    ptrs = fields[at + 1 : at + 1 + 4 * p_cnt]
    return tuple(ptrs[i + 1] for i in range(0, len(ptrs) - 3, 4) if ptrs[i] in ("@", "@i"))


def load_synsets(root: str | os.PathLike[str] | None = None, pos: str = "noun", *, max_synsets: int | None = None, seed: int = 0) -> list[Synset]:
    """The synsets of ``data.<pos>`` under ``root`` (default ``$MRL_WORDNET`` or /usr/share/wordnet).

    License header lines (starting with two spaces) are skipped. ``max_synsets`` keeps a seeded,
    deterministic sample of that many (in file order): the file is ordered by byte offset, i.e. by
    lexicographer file (noun.Tops, noun.act, noun.animal, ...), so its first N synsets would miss
    whole areas of the vocabulary.

    Raises:
        DataError: the file is missing or holds no synsets; ``max_synsets`` below 1.
    """
    if max_synsets is not None and max_synsets < 1:
        raise DataError(f"max_synsets must be a positive number or None, got {max_synsets}.")
    folder = Path(root or os.environ.get("MRL_WORDNET") or DEFAULT_ROOT)
    path = folder / f"data.{pos}"
    if not path.is_file():
        raise DataError(f"{path} not found: {HOW_TO_GET}.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        lines = path.read_text(encoding="latin-1").splitlines()
    synsets = [parse_data_line(ln) for ln in lines if ln.strip() and not ln.startswith("  ")]
    if not synsets:
        raise DataError(f"{path} holds no synsets; the file is truncated: reinstall wordnet-base.")
    if max_synsets is not None and len(synsets) > max_synsets:
        keep = np.sort(np.random.default_rng(seed).choice(len(synsets), size=max_synsets, replace=False))
        synsets = [synsets[i] for i in keep]
    return synsets


def _ir_set(synsets: list[Synset], max_queries: int | None, max_corpus: int | None, rng: np.random.Generator) -> IRSet:
    """Corpus = definitions of ``synsets`` (a seeded sample of ``max_corpus`` when set);
    queries = a seeded sample of ``max_queries`` of the synsets in the corpus."""
    docs = synsets
    if max_corpus is not None and len(docs) > max_corpus:
        docs = [docs[i] for i in np.sort(rng.choice(len(docs), size=max_corpus, replace=False))]
    qidx = np.arange(len(docs))
    if max_queries is not None and len(docs) > max_queries:
        qidx = np.sort(rng.choice(len(docs), size=max_queries, replace=False))
    return IRSet(
        query_ids=tuple(docs[i].offset for i in qidx),
        queries=tuple(docs[i].query() for i in qidx),
        corpus_ids=tuple(s.offset for s in docs),
        corpus=tuple(s.definition for s in docs),
        qrels=tuple((int(i),) for i in qidx),
    )


def load_wordnet(root: str | os.PathLike[str] | None = None, *, seed: int = 0, test_fraction: float = 0.05, val_fraction: float = 0.02, max_train: int | None = None, max_queries: int | None = 2000, max_val_queries: int | None = 1000, max_corpus: int | None = None) -> WordNetData:
    """Build the WordNet noun task: train pairs + validation/test IR sets, split by synset.

    Args:
        root: folder with ``data.noun`` (default ``$MRL_WORDNET`` or /usr/share/wordnet).
        seed: seed of the synset permutation and of the query samples.
        test_fraction, val_fraction: share of synsets held out for test / validation.
        max_train: keep at most this many training pairs (the permutation's first ones).
        max_queries, max_val_queries: queries sampled from the test / validation synsets.
        max_corpus: cap the test / validation corpus (a seeded sample; None = all definitions).
    """
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise DataError(f"test_fraction ({test_fraction}) and val_fraction ({val_fraction}) must be in (0, 1) and sum below 1.")
    synsets = sorted(load_synsets(root), key=lambda s: s.offset)
    n = len(synsets)
    n_test, n_val = max(1, round(n * test_fraction)), round(n * val_fraction)
    if n - n_test - n_val < 1:
        raise DataError(f"only {n} synsets: too few for the requested test/validation fractions.")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    test = [synsets[i] for i in np.sort(perm[:n_test])]
    val = [synsets[i] for i in np.sort(perm[n_test : n_test + n_val])]
    train_idx = perm[n_test + n_val :]
    if max_train is not None:
        train_idx = train_idx[:max_train]
    train = PairSet(tuple(synsets[i].query() for i in train_idx), tuple(synsets[i].definition for i in train_idx))
    test_set = _ir_set(test, max_queries, max_corpus, np.random.default_rng(seed + 1))
    val_set = _ir_set(val, max_val_queries, max_corpus, np.random.default_rng(seed + 2)) if val else IRSet((), (), (), (), ())
    info = {"synsets": n, "train_pairs": len(train), "val_synsets": len(val), "test_synsets": len(test), "test_queries": len(test_set.queries), "test_corpus": len(test_set.corpus)}
    return WordNetData(train=train, validation=val_set, test=test_set, info=info)
