"""The in-memory shape of an IR evaluation set: queries, a corpus and (graded) relevance judgements.

Every text-retrieval loader returns an :class:`IRSet`: the WordNet task (:mod:`mrl.data.wordnet`,
one relevant document per query), any BEIR-format folder (:mod:`mrl.data.beir`, graded relevance)
and the WordNet task over the 1M-passage corpus (:mod:`mrl.corpora.corpus`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mrl.errors import DataError


@dataclass(frozen=True)
class IRSet:
    """An IR evaluation set: query texts, corpus texts and relevance judgements.

    ``qrels[i]`` holds the corpus row indices relevant to query ``i``. ``grades`` is ``None`` for
    binary relevance (every listed document has grade 1) or, parallel to ``qrels``, the positive
    integer grade of each listed document (BEIR's ``score``; judged-irrelevant documents, score 0,
    are not listed). Metrics that ignore grades (recall, MRR) read ``qrels`` only.
    """

    query_ids: tuple[str, ...]
    queries: tuple[str, ...]
    corpus_ids: tuple[str, ...]
    corpus: tuple[str, ...]
    qrels: tuple[tuple[int, ...], ...]
    grades: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        if len(self.query_ids) != len(self.queries) or len(self.qrels) != len(self.queries):
            raise DataError("query_ids, queries and qrels must have one entry per query.")
        if len(self.corpus_ids) != len(self.corpus):
            raise DataError("corpus_ids and corpus must have one entry per document.")
        n = len(self.corpus)
        for i, rel in enumerate(self.qrels):
            if not rel:
                raise DataError(f"query {self.query_ids[i]} has no relevant document; drop it or add a judgement.")
            if min(rel) < 0 or max(rel) >= n:
                raise DataError(f"query {self.query_ids[i]} points at corpus rows {rel}, outside [0, {n}).")
        if self.grades is not None:
            if len(self.grades) != len(self.qrels) or any(len(g) != len(r) for g, r in zip(self.grades, self.qrels)):
                raise DataError("grades must hold one grade per relevant document of every query (parallel to qrels).")
            if any(x < 1 for g in self.grades for x in g):
                raise DataError("grades of listed relevant documents must be positive integers (score 0 means not relevant: leave it out).")

    def grade_lists(self) -> tuple[tuple[int, ...], ...]:
        """The grade of every relevant document, parallel to ``qrels`` (all 1 for binary sets)."""
        return self.grades if self.grades is not None else tuple((1,) * len(r) for r in self.qrels)

    def qrels_dict(self) -> dict[str, dict[str, int]]:
        """Judgements keyed by ids, ``{query_id: {corpus_id: grade}}``: the input shape of ranx,
        ir-measures and pytrec_eval."""
        return {qid: {self.corpus_ids[d]: int(g) for d, g in zip(rel, gr)} for qid, rel, gr in zip(self.query_ids, self.qrels, self.grade_lists())}

    def fingerprint(self) -> str:
        """sha256 over queries, corpus, qrels and grades (a cache key for encoded embeddings)."""
        h = hashlib.sha256()
        for part in (self.queries, self.corpus):
            for t in part:
                h.update(t.encode())
                h.update(b"\0")
            h.update(b"\1")
        h.update(repr(self.qrels).encode())
        if self.grades is not None:  # binary sets keep the fingerprint they always had
            h.update(repr(self.grades).encode())
        return h.hexdigest()
