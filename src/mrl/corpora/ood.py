"""Out-of-domain retrieval sets: (query, document) items of one domain -> a BEIR folder + fitting texts.

The split, with a fixed seed:

1. duplicate documents (same lower-cased normalised text) keep their first item;
2. an item may be a query when its query text is non-empty, shared by no other item, and does not
   appear verbatim in its own document (no leak);
3. ``n_queries`` of those are sampled; the evaluated corpus is their documents plus a sample of the
   other documents up to ``n_corpus`` (each query has exactly one relevant document, grade 1);
4. ``unlabeled.jsonl`` holds up to ``n_unlabeled`` other documents of the domain (the remaining
   documents first, then ``extra`` texts such as other sections), excluding every item whose
   ``group`` (e.g. its man page) has an evaluated document, and any text equal to an evaluated one.

The manifest records the parameters, the counts per ``kind`` and the ``group`` of every evaluated
document (``evaluated_groups``) so other builders can keep them out of what they fit on.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrl.corpora.passages import dedupe_key, normalize
from mrl.data.beir import write_beir
from mrl.errors import DataError


@dataclass(frozen=True)
class OODItem:
    """A document of the domain, with its query (``""`` when it cannot be one); ``group`` ties
    items from the same origin (a page, an API entry); ``kind`` is a label for the counts."""

    id: str
    text: str
    query: str = ""
    group: str = ""
    kind: str = ""


def _dedupe(items: Sequence[OODItem], seen: set[bytes]) -> list[OODItem]:
    out = []
    for it in items:
        key = dedupe_key(it.text)
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def build_ood_set(
    out: str | os.PathLike[str],
    items: Sequence[OODItem],
    extra: Sequence[OODItem] = (),
    *,
    n_queries: int = 2000,
    n_corpus: int = 5000,
    n_unlabeled: int = 10000,
    seed: int = 0,
    sources: Sequence[str] = (),
    info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Split ``items`` (see the module docstring) and write the BEIR folder ``out``; returns its manifest."""
    if not 0 < n_queries <= n_corpus:
        raise DataError(f"need 0 < n_queries ({n_queries}) <= n_corpus ({n_corpus}).")
    seen: set[bytes] = set()
    docs = _dedupe(items, seen)
    qcount = Counter(normalize(it.query).lower() for it in docs if it.query.strip())
    eligible = [i for i, it in enumerate(docs) if it.query.strip() and qcount[normalize(it.query).lower()] == 1 and normalize(it.query).lower() not in normalize(it.text).lower()]
    if len(eligible) < n_queries or len(docs) < n_corpus:
        raise DataError(f"only {len(eligible)} usable queries and {len(docs)} documents for n_queries={n_queries}, n_corpus={n_corpus}; lower them.")
    rng = np.random.default_rng(seed)
    q_rows = np.sort(rng.choice(np.asarray(eligible), size=n_queries, replace=False))
    rest = np.setdiff1d(np.arange(len(docs)), q_rows)
    d_rows = np.sort(rng.choice(rest, size=n_corpus - n_queries, replace=False))
    c_rows = np.sort(np.concatenate([q_rows, d_rows]))
    evaluated = [docs[i] for i in c_rows]
    groups = {it.group for it in evaluated if it.group}
    in_corpus = set(c_rows.tolist())
    remaining = [it for i, it in enumerate(docs) if i not in in_corpus and it.group not in groups]
    pool_extra = _dedupe([it for it in extra if it.group not in groups], seen)
    unlabeled = remaining if len(remaining) <= n_unlabeled else [remaining[i] for i in np.sort(rng.choice(len(remaining), size=n_unlabeled, replace=False))]
    room = n_unlabeled - len(unlabeled)
    if room > 0 and pool_extra:
        pick = np.sort(rng.choice(len(pool_extra), size=min(room, len(pool_extra)), replace=False))
        unlabeled = unlabeled + [pool_extra[i] for i in pick]
    corpus = {it.id: it.text for it in evaluated}
    queries = {f"q:{docs[i].id}": docs[i].query for i in q_rows}
    qrels = {"test": {f"q:{docs[i].id}": {docs[i].id: 1} for i in q_rows}}
    unl = {f"u:{it.id}": it.text for it in unlabeled}
    counts = {
        "items": len(items),
        "documents_after_dedupe": len(docs),
        "query_eligible": len(eligible),
        "corpus_by_kind": dict(Counter(it.kind for it in evaluated)),
        "queries_by_kind": dict(Counter(docs[i].kind for i in q_rows)),
        "unlabeled_by_kind": dict(Counter(it.kind for it in unlabeled)),
    }
    extra_info = {
        "split": {"n_queries": n_queries, "n_corpus": n_corpus, "n_unlabeled": n_unlabeled, "rule": "see mrl.corpora.ood"},
        "stats": counts,
        "evaluated_groups": sorted(groups),
        **dict(info or {}),
    }
    return write_beir(out, corpus, queries, qrels, unlabeled=unl, sources=sources, seed=seed, extra=extra_info, overwrite=overwrite)
