"""BEIR-format retrieval folders: a validated, bounded loader and an atomic writer.

Layout (the format of the BEIR benchmark, https://github.com/beir-cellar/beir)::

    folder/
      corpus.jsonl       {"_id": "d1", "title": "...", "text": "..."}   one document a line
      queries.jsonl      {"_id": "q1", "text": "..."}                   one query a line
      qrels/<split>.tsv  query-id<TAB>corpus-id<TAB>score               a header line, then judgements
      unlabeled.jsonl    optional (written by mrl): documents of the same domain that are neither in
                         the corpus nor relevant to any query, for fitting without labels
      manifest.json      optional (written by mrl): sources, counts, seed, sha256 of every file

A document's text is ``title + " " + text`` (the title is optional). ``score`` is a non-negative
integer grade; 0 means judged not relevant. Only queries with at least one positive judgement in
the split are evaluated.

``max_queries`` / ``max_corpus`` bound the work: queries are sampled first (seeded), every document
relevant to a kept query is kept, and the rest of the corpus is a seeded sample of the other
documents up to ``max_corpus``. The files are scanned once to validate them and record line
offsets; only the kept lines are read again.

Example:
    >>> ir = load_beir("benchmarks/out/ood/manpages", max_queries=500, max_corpus=2000)
    >>> fit_texts = load_unlabeled("benchmarks/out/ood/manpages")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl.data.irset import IRSet
from mrl.errors import DataError, OutputExistsError
from mrl.io import atomic_folder, read_json, write_json

CORPUS, QUERIES, UNLABELED, MANIFEST = "corpus.jsonl", "queries.jsonl", "unlabeled.jsonl", "manifest.json"
QRELS_HEADER = ("query-id", "corpus-id", "score")
UTF8_FIX = "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"


def _lines(path: Path) -> Iterator[tuple[int, int, str]]:
    """``(line number, byte offset, text)`` of every line, decoded strictly as UTF-8."""
    offset = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path} line {lineno} is not UTF-8 (bad byte at column {exc.start + 1}); {UTF8_FIX}.") from exc
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            yield lineno, offset, text
            offset += len(raw)


def _record(path: Path, lineno: int, line: str, with_title: bool) -> tuple[str, str]:
    """Validate one JSON line and return ``(id, text)``; the text joins title and text."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {lineno} is not valid JSON ({exc.msg}); each line must be one object like {{\"_id\": ..., \"text\": ...}}.") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} line {lineno} is a JSON {type(obj).__name__}, not an object with '_id' and 'text' keys.")
    rid = obj.get("_id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid.strip() or any(c in rid for c in "\t\n\r"):
        raise DataError(f"{path} line {lineno}: '_id' must be a non-empty string without tabs or newlines, got {rid!r}.")
    text, title = obj.get("text"), obj.get("title", "") if with_title else ""
    if not isinstance(text, str) or (title is not None and not isinstance(title, str)):
        raise DataError(f"{path} line {lineno} (id {rid!r}): 'text'{' and title' if with_title else ''} must be strings.")
    joined = f"{title.strip()} {text.strip()}".strip() if title else text.strip()
    if not joined:
        raise DataError(f"{path} line {lineno}: {rid!r} has empty text; drop the line or fill it in.")
    return rid, joined


def _index_jsonl(path: Path, with_title: bool) -> tuple[list[str], np.ndarray]:
    """Validate every line of a JSONL file; return the ids and byte offsets of its records.

    Shape: -> (``N`` ids, offsets ``[N]`` int64).
    """
    ids: list[str] = []
    offsets: list[int] = []
    first_line: dict[str, int] = {}
    for lineno, offset, line in _lines(path):
        if not line.strip():
            continue
        rid, _ = _record(path, lineno, line, with_title)
        if rid in first_line:
            raise DataError(f"{path} line {lineno}: duplicate _id {rid!r} (first on line {first_line[rid]}); ids must be unique.")
        first_line[rid] = lineno
        ids.append(rid)
        offsets.append(offset)
    if not ids:
        raise DataError(f"{path} holds no records; it needs one JSON object per line.")
    return ids, np.asarray(offsets, dtype=np.int64)


def _read_at(path: Path, offsets: np.ndarray, with_title: bool) -> list[tuple[str, str]]:
    """Re-read the records starting at ``offsets`` (already validated by :func:`_index_jsonl`)."""
    out = []
    with path.open("rb") as fh:
        for off in offsets:
            fh.seek(int(off))
            out.append(_record(path, -1, fh.readline().decode("utf-8").removeprefix("\ufeff"), with_title))
    return out


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Judgements of one ``qrels/<split>.tsv``: ``{query_id: {corpus_id: score}}`` (scores >= 0)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} not found; a BEIR folder needs qrels/<split>.tsv with the header 'query-id<TAB>corpus-id<TAB>score'.")
    qrels: dict[str, dict[str, int]] = {}
    header_seen = False
    for lineno, _, line in _lines(p):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        cols = line.split("\t")
        if not header_seen:
            if tuple(c.strip() for c in cols) != QRELS_HEADER:
                raise DataError(f"{p} line {lineno} is {line[:60]!r}, not the header 'query-id<TAB>corpus-id<TAB>score'; add that header as the first line.")
            header_seen = True
            continue
        if len(cols) != 3:
            raise DataError(f"{p} line {lineno} has {len(cols)} tab-separated fields, expected 3 (query-id, corpus-id, score).")
        qid, did, raw = (c.strip() for c in cols)
        try:
            score = int(raw)
        except ValueError:
            raise DataError(f"{p} line {lineno}: score {raw!r} is not an integer; grades are integers >= 0 (0 = not relevant).") from None
        if score < 0:
            raise DataError(f"{p} line {lineno}: score {score} is negative; grades are integers >= 0 (0 = not relevant).")
        if not qid or not did:
            raise DataError(f"{p} line {lineno} has an empty query-id or corpus-id.")
        if did in qrels.setdefault(qid, {}):
            raise DataError(f"{p} line {lineno}: ({qid!r}, {did!r}) is judged twice; keep one line per pair.")
        qrels[qid][did] = score
    if not header_seen:
        raise DataError(f"{p} is empty; it needs the header 'query-id<TAB>corpus-id<TAB>score' and judgements.")
    return qrels


def _require(folder: Path, name: str) -> Path:
    p = folder / name
    if not p.is_file():
        raise DataError(f"{p} not found; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv.")
    return p


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256": hex, "bytes": size}`` of a file (streamed)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def verify_manifest(folder: str | os.PathLike[str], names: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Check the files listed in ``folder/manifest.json`` (or only ``names``) against their sha256.

    Returns the manifest, or ``None`` when the folder has none (a BEIR folder from elsewhere).
    """
    root = Path(folder)
    if not (root / MANIFEST).is_file():
        return None
    manifest = read_json(root / MANIFEST)
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    for name, want in files.items():
        if names is not None and name not in names:
            continue
        p = root / name
        if not p.is_file() or file_digest(p) != want:
            raise DataError(f"{p} does not match the sha256/size in {root / MANIFEST}; the folder was modified or truncated: rebuild it.")
    return manifest


def load_beir(folder: str | os.PathLike[str], split: str = "test", *, max_queries: int | None = None, max_corpus: int | None = None, seed: int = 0) -> IRSet:
    """Load a BEIR folder's ``split`` as an :class:`IRSet` (graded when any score is above 1).

    See :func:`load_beir_with_fit_docs` for the same set with fitting documents held out of it.

    Args:
        folder: the dataset folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
        split: which qrels file to evaluate.
        max_queries: evaluate a seeded sample of at most this many queries (None = all judged ones).
        max_corpus: keep the relevant documents of the kept queries plus a seeded sample of the
            other documents, up to this many in all (None = the whole corpus).
        seed: seed of both samples.

    Raises:
        DataError: missing files, malformed or non-UTF-8 lines, duplicate ids, empty texts, a qrels
            file without header or with bad scores, qrels naming unknown ids, or a ``max_corpus``
            below the number of documents the kept queries need.
    """
    return _load_beir(Path(folder), split, max_queries=max_queries, max_corpus=max_corpus, seed=seed, hold_out=0)[0]


def load_beir_with_fit_docs(folder: str | os.PathLike[str], split: str = "test", *, max_fit: int, max_queries: int | None = None, max_corpus: int | None = None, seed: int = 0) -> tuple[IRSet, tuple[str, ...]]:
    """:func:`load_beir` plus up to ``max_fit`` corpus documents held out of the evaluated set, for
    fitting label-free baselines on a standard BEIR folder (one without ``unlabeled.jsonl``).

    The held-out documents are a seeded sample of the documents that no qrels file of the folder
    names (any split, any score), at most half of them (the other half stays in the corpus as
    distractors); they are removed from the evaluated corpus before its ``max_corpus`` sample, so no
    evaluated document, query or judgement is ever fitted on.

    Returns:
        ``(the IR set, the held-out texts)``; the texts are empty when no document is unjudged.
    """
    if max_fit < 0:
        raise DataError(f"max_fit must be >= 0, got {max_fit}.")
    return _load_beir(Path(folder), split, max_queries=max_queries, max_corpus=max_corpus, seed=seed, hold_out=max_fit)


def _judged_anywhere(root: Path, judged: dict[str, dict[str, int]]) -> set[str]:
    """Document ids named by the evaluated split's judgements or by any other readable qrels file."""
    named = {d for docs in judged.values() for d in docs}
    for other in sorted((root / "qrels").glob("*.tsv")):
        try:
            named |= {d for docs in read_qrels(other).values() for d in docs}
        except DataError:  # another split's malformed file: only its own evaluation refuses it
            continue
    return named


def _load_beir(root: Path, split: str, *, max_queries: int | None, max_corpus: int | None, seed: int, hold_out: int) -> tuple[IRSet, tuple[str, ...]]:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a BEIR folder holding corpus.jsonl, queries.jsonl and qrels/{split}.tsv.")
    for bound, name in ((max_queries, "max_queries"), (max_corpus, "max_corpus")):
        if bound is not None and bound < 1:
            raise DataError(f"{name} must be a positive number or None, got {bound}.")
    corpus_path, queries_path = _require(root, CORPUS), _require(root, QUERIES)
    qrels_path = root / "qrels" / f"{split}.tsv"
    verify_manifest(root, (CORPUS, QUERIES, f"qrels/{split}.tsv"))
    judged = read_qrels(qrels_path)
    q_ids, q_off = _index_jsonl(queries_path, with_title=False)
    c_ids, c_off = _index_jsonl(corpus_path, with_title=True)
    q_row = {q: i for i, q in enumerate(q_ids)}
    c_row = {d: i for i, d in enumerate(c_ids)}
    for qid, docs in judged.items():
        if qid not in q_row:
            raise DataError(f"{qrels_path} names query {qid!r}, which is not in {queries_path}; fix the id or add the query.")
        for did in docs:
            if did not in c_row:
                raise DataError(f"{qrels_path} names document {did!r} (for query {qid!r}), which is not in {corpus_path}; fix the id or add the document.")
    eligible = np.array(sorted(q_row[q] for q, docs in judged.items() if any(s > 0 for s in docs.values())), dtype=np.int64)
    if eligible.size == 0:
        raise DataError(f"{qrels_path} has no positive judgement (score > 0); nothing to evaluate.")
    rng = np.random.default_rng(seed)
    if max_queries is not None and eligible.size > max_queries:
        eligible = np.sort(rng.choice(eligible, size=max_queries, replace=False))
    kept_q = [q_ids[i] for i in eligible]
    relevant = sorted({c_row[d] for q in kept_q for d, s in judged[q].items() if s > 0})
    if max_corpus is not None and len(relevant) > max_corpus:
        raise DataError(f"the {len(kept_q)} kept queries need {len(relevant)} relevant documents, more than max_corpus={max_corpus}; raise max_corpus or lower max_queries.")
    rows = np.asarray(relevant, dtype=np.int64)
    others = np.setdiff1d(np.arange(len(c_ids), dtype=np.int64), rows, assume_unique=True)
    held = np.zeros(0, dtype=np.int64)
    if hold_out:  # fitting documents: unjudged anywhere, at most half of those, out of the evaluated corpus
        named = _judged_anywhere(root, judged)
        unjudged = np.array([i for i, d in enumerate(c_ids) if d not in named], dtype=np.int64)
        take = min(hold_out, unjudged.size // 2)
        if take:
            held = np.sort(np.random.default_rng([seed, 1]).choice(unjudged, size=take, replace=False))
            others = np.setdiff1d(others, held, assume_unique=True)
    if max_corpus is not None and rows.size + others.size > max_corpus:
        others = rng.choice(others, size=max_corpus - rows.size, replace=False)
    rows = np.sort(np.concatenate([rows, others]))
    corpus = _read_at(corpus_path, c_off[rows], with_title=True)
    queries = _read_at(queries_path, q_off[eligible], with_title=False)
    row_of = {did: i for i, (did, _) in enumerate(corpus)}
    qrels, grades = [], []
    for qid in kept_q:
        pos = sorted((row_of[d], s) for d, s in judged[qid].items() if s > 0)
        qrels.append(tuple(r for r, _ in pos))
        grades.append(tuple(s for _, s in pos))
    graded = any(g > 1 for gr in grades for g in gr)
    fit = tuple(t for _, t in _read_at(corpus_path, c_off[held], with_title=True)) if held.size else ()
    return IRSet(
        query_ids=tuple(q for q, _ in queries),
        queries=tuple(t for _, t in queries),
        corpus_ids=tuple(d for d, _ in corpus),
        corpus=tuple(t for _, t in corpus),
        qrels=tuple(qrels),
        grades=tuple(grades) if graded else None,
    ), fit


def load_unlabeled(folder: str | os.PathLike[str], *, max_docs: int | None = None, seed: int = 0) -> tuple[str, ...]:
    """The texts of ``folder/unlabeled.jsonl``: same-domain documents for fitting without labels.

    They are checked to share no id and no text with ``corpus.jsonl`` (so no evaluated document is
    ever fitted on). ``max_docs`` keeps a seeded sample (in file order).
    """
    root = Path(folder)
    path = root / UNLABELED
    if not path.is_file():
        raise DataError(f"{path} not found; this folder has no unlabeled fitting documents (build it with benchmarks/build_ood_sets.py).")
    verify_manifest(root, (UNLABELED, CORPUS))
    ids, offsets = _index_jsonl(path, with_title=True)
    if (root / CORPUS).is_file():
        c_ids, c_off = _index_jsonl(root / CORPUS, with_title=True)
        shared = set(ids) & set(c_ids)
        if shared:
            raise DataError(f"{path} shares {len(shared)} ids with corpus.jsonl (e.g. {sorted(shared)[0]!r}); fitting documents must be disjoint from the evaluated ones: rebuild the folder.")
        corpus_texts = {t for _, t in _read_at(root / CORPUS, c_off, with_title=True)}
    else:
        corpus_texts = set()
    if max_docs is not None and len(ids) > max_docs:
        offsets = np.sort(np.random.default_rng(seed).choice(offsets, size=max_docs, replace=False))
    texts = tuple(t for _, t in _read_at(path, offsets, with_title=True))
    if corpus_texts & set(texts):
        raise DataError(f"{path} repeats a text of corpus.jsonl; fitting documents must be disjoint from the evaluated ones: rebuild the folder.")
    return texts


def _check_texts(kind: str, docs: Mapping[str, str]) -> None:
    for rid, text in docs.items():
        if not isinstance(rid, str) or not rid.strip() or any(c in rid for c in "\t\n\r"):
            raise DataError(f"{kind} id {rid!r} must be a non-empty string without tabs or newlines.")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{kind} {rid!r} has empty text.")


def _listed(root: Path) -> set[str]:
    """Relative names of the files a BEIR folder written here lists in its manifest, and the manifest."""
    return set(read_json(root / MANIFEST).get("files", {}) if (root / MANIFEST).is_file() else {}) | {MANIFEST}


def _replaceable(root: Path, overwrite: bool) -> None:
    """Refuse to replace a folder unless asked to and every file in it is listed in our manifest."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return
    if not overwrite:
        raise OutputExistsError(f"{root} already exists; pass overwrite=True (--overwrite) to replace it, or choose another folder.")
    listed = _listed(root)
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    if not root.is_dir() or present - listed:
        extra = sorted(present - listed)[:3] if root.is_dir() else [str(root)]
        raise OutputExistsError(f"{root} holds files this writer did not write ({extra}); refusing to replace it: choose another folder.")


def write_beir(
    folder: str | os.PathLike[str],
    corpus: Mapping[str, str],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, Mapping[str, int]]],
    *,
    unlabeled: Mapping[str, str] | None = None,
    sources: Sequence[str] = (),
    seed: int | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a BEIR folder atomically (all files appear at once) and return its manifest.

    Args:
        corpus, queries: ``{id: text}`` (documents are written with an empty title).
        qrels: ``{split: {query_id: {corpus_id: score}}}``.
        unlabeled: optional ``{id: text}`` of fitting documents; ids and texts must be disjoint
            from the corpus (and so from every judged document).
        sources, seed, extra: recorded in ``manifest.json`` with the counts and each file's sha256.
        overwrite: replace an existing folder, only if every file in it is listed in its manifest.
    """
    root = Path(folder)
    _check_texts("document", corpus)
    _check_texts("query", queries)
    if not corpus or not qrels:
        raise DataError("a BEIR folder needs at least one document and one qrels split.")
    for split, judged in qrels.items():
        for qid, docs in judged.items():
            if qid not in queries:
                raise DataError(f"qrels/{split} names query {qid!r}, which is not among the queries.")
            for did, score in docs.items():
                if did not in corpus:
                    raise DataError(f"qrels/{split} names document {did!r}, which is not in the corpus.")
                if not isinstance(score, int | np.integer) or isinstance(score, bool) or score < 0:
                    raise DataError(f"qrels/{split} ({qid!r}, {did!r}): score {score!r} must be an integer >= 0.")
    if unlabeled is not None:
        _check_texts("unlabeled document", unlabeled)
        if set(unlabeled) & set(corpus) or set(unlabeled.values()) & set(corpus.values()):
            raise DataError("unlabeled documents must share no id and no text with the corpus.")
    _replaceable(root, overwrite)
    counts: dict[str, int] = {"corpus": len(corpus), "queries": len(queries)}
    old_listed = _listed(root) if root.is_dir() else set()  # read before the swap: the files this writer may delete
    with atomic_folder(root, owned=old_listed.__contains__) as tmp:
        _write_jsonl(tmp / CORPUS, ({"_id": k, "title": "", "text": v} for k, v in corpus.items()))
        _write_jsonl(tmp / QUERIES, ({"_id": k, "text": v} for k, v in queries.items()))
        (tmp / "qrels").mkdir()
        for split, judged in qrels.items():
            lines = ["\t".join(QRELS_HEADER)] + [f"{q}\t{d}\t{int(s)}" for q, docs in judged.items() for d, s in docs.items()]
            _write_lines(tmp / "qrels" / f"{split}.tsv", (ln + "\n" for ln in lines))
            counts[f"qrels/{split}"] = len(lines) - 1
        if unlabeled is not None:
            _write_jsonl(tmp / UNLABELED, ({"_id": k, "title": "", "text": v} for k, v in unlabeled.items()))
            counts["unlabeled"] = len(unlabeled)
        files = {str(p.relative_to(tmp)): file_digest(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"format": "beir", "writer": "mrl.data.beir.write_beir", "sources": list(sources), "seed": seed, "counts": counts, "files": files, **dict(extra or {})}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def _write_jsonl(path: Path, rows: Iterator[dict[str, str]]) -> None:
    _write_lines(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _write_lines(path: Path, lines: Iterator[str]) -> None:
    """Write and fsync; the caller's :func:`mrl.io.atomic_folder` makes the whole folder appear at once."""
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
