"""The >= 1M-passage text corpus for retrieval benchmarks: build (resumable) and load.

Build, in two resumable stages (``build_corpus``):

1. **extract**: every work unit of every :class:`~mrl.corpora.corpus_sources.Source` (a chunk of its
   files) is read, cut into passages (:func:`mrl.corpora.passages.split_passages`: 8..80 words,
   sentence boundaries; WordNet definitions whole) and filtered (:func:`looks_like_prose`), in a
   process pool. Each unit's passages land in ``parts/<unit>.jsonl`` (temp file + rename);
   ``parts/progress.json`` lists finished units with their sha256, so a killed build redoes only
   unlisted units.
2. **finalise**: the parts are read in source priority order, exact duplicates dropped (hash of the
   lower-cased normalised text, first kept), ``n_test`` + ``n_tune`` passages held out as queries
   (seeded; never a WordNet test definition), the rest shuffled (seeded) and written as shards of
   ``shard_size`` passages (``passages-00000.jsonl``: ``_id``, ``text``, ``source``, ``doc``). Each
   shard is written to a temp file and renamed, then listed in ``manifest.json``; a restart keeps
   the listed shards whose sha256 still matches and writes the rest.

Outputs next to the shards: ``queries/test.jsonl`` and ``queries/tune.jsonl`` (held-out passages;
ground truth is exact search), the WordNet noun task over the whole corpus (``wordnet/queries.jsonl``
+ ``wordnet/qrels/test.tsv``: the test split of :func:`mrl.data.wordnet.load_wordnet`, each query's
relevant passage is its synset's definition), and ``exclude/*.txt``: passage ids a model fitted on
the corpus must leave out of its fitting sample (WordNet test-split definitions; passages of the
out-of-domain sets' evaluated documents). ``manifest.json`` records sources, per-source counts, seed,
length statistics, timings and the sha256 of every file; ``complete: true`` once all is written.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrl.corpora.corpus_sources import READER_VERSIONS, Source, read_unit
from mrl.corpora.passages import dedupe_key, looks_like_prose, normalize, split_passages
from mrl.data.beir import QRELS_HEADER, file_digest
from mrl.data.irset import IRSet
from mrl.errors import DataError, OutputExistsError
from mrl.io import atomic_temp_target, atomic_write, read_json, write_json

FORMAT = "mrl-text-corpus/1"


@dataclass(frozen=True)
class CorpusConfig:
    """Build parameters (all recorded in the manifest)."""

    seed: int = 0
    n_test: int = 10_000
    n_tune: int = 1_000
    shard_size: int = 100_000
    min_words: int = 8
    max_words: int = 80
    target_words: int = 50
    processes: int = 2


def _unit_key(src: Source, i: int, files: tuple[str, ...], cfg: CorpusConfig) -> str:
    """Names a unit's part by everything its content depends on: files, reader version, passage rules."""
    what = [src.kind, READER_VERSIONS[src.kind], cfg.min_words, cfg.max_words, cfg.target_words, *files]
    return f"{src.name}-{i:05d}-{hashlib.sha1(chr(0).join(map(str, what)).encode()).hexdigest()[:10]}"


def extract_unit(src: Source, files: tuple[str, ...], cfg: CorpusConfig) -> tuple[list[dict[str, str]], int]:
    """Passages of one unit as ``{"doc", "text"}`` rows, and the number of paragraphs read."""
    rows: list[dict[str, str]] = []
    triples = read_unit(src, files)
    for doc, text, whole in triples:
        if whole:
            t = normalize(text)
            if t:
                rows.append({"doc": doc, "text": t})
            continue
        rows.extend({"doc": doc, "text": p} for p in split_passages(text, min_words=cfg.min_words, max_words=cfg.max_words, target_words=cfg.target_words) if looks_like_prose(p))
    return rows, len(triples)


def _extract_job(job: tuple[Source, tuple[str, ...], str, str, CorpusConfig]) -> tuple[str, dict[str, Any]]:
    src, files, key, parts_dir, cfg = job
    t0 = time.perf_counter()
    rows, n_par = extract_unit(src, files, cfg)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    atomic_write(Path(parts_dir) / f"{key}.jsonl", data)
    return key, {"sha256": hashlib.sha256(data).hexdigest(), "passages": len(rows), "paragraphs": n_par, "seconds": round(time.perf_counter() - t0, 2)}


# The names the builder writes: at the top of its folder, under parts/, and in its sub-folders.
_OUR_TOP = re.compile(r"passages-\d{5}\.jsonl|manifest\.json")
_OUR_PART = re.compile(r"progress\.json|[a-z0-9-]+-\d{5}-[0-9a-f]{10}\.jsonl")
_OUR_FILES = frozenset({"queries/test.jsonl", "queries/tune.jsonl", "wordnet/queries.jsonl", "wordnet/qrels/test.tsv", "exclude/wordnet_test_definitions.txt", "exclude/ood_evaluated.txt"})


def _ours(name: str, pattern: re.Pattern[str]) -> bool:
    """``name`` is a file the builder writes, or the temp file of a killed atomic write of one."""
    target = atomic_temp_target(name)
    return bool(pattern.fullmatch(name) or (target is not None and pattern.fullmatch(target)))


def _check_folder(root: Path) -> None:
    """Refuse, changing nothing, a folder holding anything the builder does not write (a user's
    folder given as ``out`` by mistake); an empty folder or an earlier build of ours is fine."""
    if not root.exists():
        return
    if not root.is_dir():
        raise OutputExistsError(f"{root} is a file; choose a folder for the corpus.")
    foreign = [p for p in root.iterdir() if not (p.is_file() and _ours(p.name, _OUR_TOP)) and not (p.is_dir() and p.name in ("parts", "queries", "wordnet", "exclude"))]
    if (root / "parts").is_dir():
        foreign += [p for p in (root / "parts").iterdir() if not (p.is_file() and _ours(p.name, _OUR_PART))]
    for sub in ("queries", "wordnet", "exclude"):
        for p in (root / sub).rglob("*") if (root / sub).is_dir() else ():
            rel = p.relative_to(root)
            if not p.is_dir() and str(rel) not in _OUR_FILES and str(rel.parent / (atomic_temp_target(p.name) or "")) not in _OUR_FILES:
                foreign.append(p)
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            ours = read_json(manifest).get("format") == FORMAT
        except (ValueError, OSError, AttributeError):
            ours = False
        if not ours:
            foreign.append(manifest)
    if foreign:
        raise OutputExistsError(f"{foreign[0]} was not written by the corpus builder; choose an empty or new folder for the corpus (nothing was changed).")


def _clean_temps(folder: Path, pattern: re.Pattern[str]) -> None:
    """Remove the temp files our atomic writes of the builder's files (``pattern``) left when a
    build was killed: only names of exactly that form (see :func:`mrl.io.atomic_temp_target`)."""
    if folder.is_dir():
        for p in folder.iterdir():
            target = atomic_temp_target(p.name)
            if p.is_file() and target is not None and pattern.fullmatch(target):
                p.unlink(missing_ok=True)


def extract(sources: Sequence[Source], out: Path, cfg: CorpusConfig, *, log: Callable[[str], None] = print) -> list[tuple[Source, str]]:
    """Stage 1: write every unlisted unit's part; returns ``(source, unit key)`` in priority order."""
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    _clean_temps(parts, _OUR_PART)
    progress_path = parts / "progress.json"
    progress: dict[str, Any] = read_json(progress_path) if progress_path.is_file() else {"units": {}}
    order = [(src, _unit_key(src, i, files, cfg), files) for src in sources for i, files in enumerate(src.units())]
    done = progress["units"]
    current = {key for _, key, _ in order}
    for key in [k for k in done if k not in current]:  # parts of an older plan, listed as ours: remove
        stale = parts / f"{key}.jsonl"
        if stale.is_file() and file_digest(stale)["sha256"] == done[key]["sha256"]:  # the bytes we wrote, nothing else
            stale.unlink()
        del done[key]
    for _, key, _ in order:  # a listed part must still be on disk, byte for byte
        if key in done and not ((parts / f"{key}.jsonl").is_file() and file_digest(parts / f"{key}.jsonl")["sha256"] == done[key]["sha256"]):
            del done[key]
    jobs = [(src, files, key, str(parts), cfg) for src, key, files in order if key not in done]
    log(f"extract: {len(order)} units, {len(order) - len(jobs)} already done, {len(jobs)} to do")
    t0 = time.perf_counter()
    if jobs:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(cfg.processes) if cfg.processes > 1 else _Serial() as pool:
            for n, (key, info) in enumerate(pool.imap_unordered(_extract_job, jobs), 1):
                done[key] = info
                write_json(progress_path, progress)
                if n % max(1, len(jobs) // 20) == 0 or n == len(jobs):
                    log(f"extract: {n}/{len(jobs)} units ({time.perf_counter() - t0:.0f}s)")
    return [(src, key) for src, key, _ in order]


class _Serial:
    """The Pool interface, in process (for processes=1 and tests)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Any]:
        return map(fn, jobs)


def _read_parts(out: Path, units: list[tuple[Source, str]]) -> Iterator[tuple[str, str, str]]:
    for src, key in units:
        with (out / "parts" / f"{key}.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                yield src.name, row["doc"], row["text"]


def _shard_rows(ids: Sequence[str], texts: Sequence[str], sources: Sequence[str], docs: Sequence[str]) -> bytes:
    return "".join(json.dumps({"_id": i, "text": t, "source": s, "doc": d}, ensure_ascii=False) + "\n" for i, t, s, d in zip(ids, texts, sources, docs)).encode()


def length_stats(texts: Sequence[str]) -> dict[str, Any]:
    """Word-count distribution: mean, percentiles, share under 30/60 words, a 10-word histogram."""
    w = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    hist = np.bincount(np.minimum(w // 10, 9), minlength=10)
    return {
        "passages": int(w.size),
        "mean": round(float(w.mean()), 2),
        "percentiles": {str(p): int(np.percentile(w, p)) for p in (5, 25, 50, 75, 90, 95, 99)},
        "max": int(w.max()),
        "share_le_30": round(float((w <= 30).mean()), 4),
        "share_le_60": round(float((w <= 60).mean()), 4),
        "histogram_by_10_words": {f"{10 * i}-{10 * i + 9}" if i < 9 else "90+": int(c) for i, c in enumerate(hist)},
    }


def build_corpus(
    out: str | os.PathLike[str],
    sources: Sequence[Source],
    cfg: CorpusConfig = CorpusConfig(),
    *,
    wordnet_root: str | os.PathLike[str] | None = None,
    ood_sets: Sequence[str | os.PathLike[str]] = (),
    log: Callable[[str], None] = print,
    _stop_after_shards: int | None = None,
) -> dict[str, Any]:
    """Build (or resume) the corpus in ``out`` from ``sources``; returns the manifest.

    Args:
        wordnet_root: folder of WordNet's ``data.noun`` (for the WordNet task; default as
            :func:`mrl.data.wordnet.load_wordnet`). Needs a ``wordnet`` source.
        ood_sets: out-of-domain BEIR folders written by :func:`mrl.corpora.ood.build_ood_set`; the
            passages of their evaluated documents are listed in ``exclude/ood_evaluated.txt``.
        _stop_after_shards: for tests: raise after writing that many shards (a simulated kill).
    """
    from mrl.data.wordnet import load_synsets, load_wordnet

    root = Path(out)
    _check_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    _clean_temps(root, _OUR_TOP)
    t0 = time.perf_counter()
    units = extract(sources, root, cfg, log=log)
    t_extract = time.perf_counter() - t0
    progress = read_json(root / "parts" / "progress.json")["units"]
    plan = hashlib.sha256(json.dumps([asdict(cfg) | {"processes": 0}, [(k, progress[k]["sha256"]) for _, k in units]]).encode()).hexdigest()

    # de-duplicate in priority order
    seen: set[bytes] = set()
    texts: list[str] = []
    srcs: list[str] = []
    docs: list[str] = []
    raw: Counter[str] = Counter()
    key_of_group: dict[str, list[bytes]] = {}
    for name, doc, text in _read_parts(root, units):
        raw[name] += 1
        key = dedupe_key(text)
        if doc.startswith(("man:", "py:")):
            key_of_group.setdefault(doc, []).append(key)
        if key in seen:
            continue
        seen.add(key)
        texts.append(text)
        srcs.append(name)
        docs.append(doc)
    del seen
    n = len(texts)
    row_of_key = {dedupe_key(t): i for i, t in enumerate(texts)}
    log(f"finalise: {sum(raw.values())} passages read, {n} after de-duplication")

    # the WordNet task and the rows that must stay in the corpus
    wn = load_wordnet(wordnet_root)
    synsets = {s.offset: s for s in load_synsets(wordnet_root)} if wn.test.corpus_ids else {}
    test_def_rows = sorted({row_of_key[dedupe_key(synsets[o].definition)] for o in wn.test.corpus_ids if dedupe_key(synsets[o].definition) in row_of_key})
    if wn.test.corpus_ids and not test_def_rows:
        raise DataError("no WordNet test definition is in the corpus; the sources need a wordnet source.")
    protected = np.zeros(n, dtype=bool)
    protected[test_def_rows] = True

    rng = np.random.default_rng(cfg.seed)
    candidates = np.flatnonzero(~protected)
    if candidates.size < cfg.n_test + cfg.n_tune + 1:
        raise DataError(f"only {candidates.size} passages can be held out, fewer than n_test + n_tune = {cfg.n_test + cfg.n_tune}.")
    held = rng.choice(candidates, size=cfg.n_test + cfg.n_tune, replace=False)
    test_rows, tune_rows = np.sort(held[: cfg.n_test]), np.sort(held[cfg.n_test :])
    keep = np.ones(n, dtype=bool)
    keep[held] = False
    order = rng.permutation(np.flatnonzero(keep))
    corpus_id = np.full(n, -1, dtype=np.int64)
    corpus_id[order] = np.arange(order.size)
    pid = lambda row: f"p{int(corpus_id[row]):07d}"  # noqa: E731

    # shards (resumable)
    manifest_path = root / "manifest.json"
    old = read_json(manifest_path) if manifest_path.is_file() else {}
    finished = {s["path"]: s for s in old.get("shards", [])} if old.get("plan") == plan else {}
    manifest: dict[str, Any] = {"format": FORMAT, "plan": plan, "complete": False, "config": asdict(cfg), "shards": []}
    for k, start in enumerate(range(0, order.size, cfg.shard_size)):
        rows = order[start : start + cfg.shard_size]
        name = f"passages-{k:05d}.jsonl"
        entry = finished.get(name)
        if entry is None or not (root / name).is_file() or file_digest(root / name) != {"sha256": entry["sha256"], "bytes": entry["bytes"]}:
            data = _shard_rows([pid(r) for r in rows], [texts[r] for r in rows], [srcs[r] for r in rows], [docs[r] for r in rows])
            atomic_write(root / name, data)
            entry = {"path": name, "count": int(rows.size), "first_id": pid(rows[0]), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        manifest["shards"].append(entry)
        write_json(manifest_path, manifest)
        if _stop_after_shards is not None and len(manifest["shards"]) >= _stop_after_shards:
            raise KeyboardInterrupt(f"stopped after {_stop_after_shards} shards (simulated kill)")
    log(f"finalise: {len(manifest['shards'])} shards, {order.size} passages")

    files: dict[str, bytes] = {}
    for split, rows, prefix in (("test", test_rows, "t"), ("tune", tune_rows, "u")):
        files[f"queries/{split}.jsonl"] = "".join(json.dumps({"_id": f"{prefix}{j:05d}", "text": texts[r], "source": srcs[r], "doc": docs[r]}, ensure_ascii=False) + "\n" for j, r in enumerate(rows)).encode()
    q_lines, qrels = [], ["\t".join(QRELS_HEADER)]
    for qid, query in zip(wn.test.query_ids, wn.test.queries):
        key = dedupe_key(synsets[qid].definition)
        if key in row_of_key and keep[row_of_key[key]]:
            q_lines.append(json.dumps({"_id": qid, "text": query}, ensure_ascii=False) + "\n")
            qrels.append(f"{qid}\t{pid(row_of_key[key])}\t1")
    files["wordnet/queries.jsonl"] = "".join(q_lines).encode()
    files["wordnet/qrels/test.tsv"] = ("\n".join(qrels) + "\n").encode()
    files["exclude/wordnet_test_definitions.txt"] = "".join(pid(r) + "\n" for r in test_def_rows).encode()
    groups = set()
    for folder in ood_sets:
        groups |= set(read_json(Path(folder) / "manifest.json").get("evaluated_groups", []))
    ood_rows = sorted({row_of_key[k] for g in groups for k in key_of_group.get(g, ()) if keep[row_of_key[k]]})
    files["exclude/ood_evaluated.txt"] = "".join(pid(r) + "\n" for r in ood_rows).encode()
    for rel, data in files.items():
        atomic_write(root / rel, data)

    kept_src, all_src, held_src = Counter(srcs[r] for r in order), Counter(srcs), Counter(srcs[r] for r in held)
    manifest.update(
        {
            "seed": cfg.seed,
            "total": int(order.size),
            "sources": [{"name": s.name, "kind": s.kind, "description": s.description, "files": len(s.files), "units": len(s.units())} for s in sources],
            "counts": {
                s.name: {"passages_extracted": raw[s.name], "after_dedupe": all_src[s.name], "in_corpus": kept_src[s.name], "held_out": held_src[s.name]}
                for s in sources
            },
            "paragraphs_read": int(sum(v["paragraphs"] for v in progress.values())),
            "duplicates_removed": int(sum(raw.values()) - n),
            "queries": {"test": int(test_rows.size), "tune": int(tune_rows.size), "wordnet_test": len(q_lines)},
            "exclusions": {"wordnet_test_definitions": len(test_def_rows), "ood_evaluated": len(ood_rows), "ood_sets": [str(Path(f)) for f in ood_sets]},
            "lengths_words": length_stats([texts[r] for r in order]),
            "seconds": {"extract": round(t_extract, 1), "extract_unit_sum": round(sum(v["seconds"] for v in progress.values()), 1), "finalise": round(time.perf_counter() - t0 - t_extract, 1)},
            "files": {rel: file_digest(root / rel) for rel in files},
            "complete": True,
        }
    )
    write_json(manifest_path, manifest)
    return manifest


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path} not found; build the corpus with `python benchmarks/build_text_corpus.py` first.")
    manifest = read_json(path)
    if manifest.get("format") != FORMAT or not manifest.get("complete"):
        raise DataError(f"{folder} holds an unfinished or foreign corpus build; rerun benchmarks/build_text_corpus.py (it resumes).")
    return manifest


def _check(path: Path, want: dict[str, Any]) -> None:
    if not path.is_file() or file_digest(path) != {"sha256": want["sha256"], "bytes": want["bytes"]}:
        raise DataError(f"{path} does not match its sha256/size in manifest.json; it was modified or truncated: rerun benchmarks/build_text_corpus.py.")


def iter_shards(folder: str | os.PathLike[str], *, verify: bool = True) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """``(shard name, rows)`` of every shard in id order; rows hold ``_id``, ``text``, ``source``, ``doc``."""
    root = Path(folder)
    for entry in _manifest(root)["shards"]:
        path = root / entry["path"]
        if verify:
            _check(path, entry)
        with path.open(encoding="utf-8") as fh:
            yield entry["path"], [json.loads(line) for line in fh]


@dataclass(frozen=True)
class Corpus:
    """Passages in id order (``ids[i] == f"p{i:07d}"``) with their source names."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    sources: tuple[str, ...]


def load_corpus(folder: str | os.PathLike[str], *, verify: bool = True) -> Corpus:
    """All passages (checksums verified unless ``verify=False``)."""
    ids: list[str] = []
    texts: list[str] = []
    sources: list[str] = []
    for _, rows in iter_shards(folder, verify=verify):
        ids.extend(r["_id"] for r in rows)
        texts.extend(r["text"] for r in rows)
        sources.extend(r["source"] for r in rows)
    return Corpus(tuple(ids), tuple(texts), tuple(sources))


def _verified_lines(root: Path, rel: str) -> list[str]:
    manifest = _manifest(root)
    _check(root / rel, manifest["files"][rel])
    return (root / rel).read_text(encoding="utf-8").splitlines()


def load_queries(folder: str | os.PathLike[str], split: str = "test") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Held-out passage queries ``(ids, texts)`` of ``split`` (``test``: 10,000; ``tune``: 1,000)."""
    if split not in ("test", "tune"):
        raise DataError(f"unknown query split {split!r}; choose 'test' or 'tune'.")
    rows = [json.loads(x) for x in _verified_lines(Path(folder), f"queries/{split}.jsonl")]
    return tuple(r["_id"] for r in rows), tuple(r["text"] for r in rows)


def load_wordnet_task(folder: str | os.PathLike[str], corpus: Corpus | None = None) -> IRSet:
    """The WordNet noun test task over the whole corpus (pass ``corpus`` to avoid reloading it)."""
    root = Path(folder)
    corpus = corpus or load_corpus(root)
    queries = [json.loads(x) for x in _verified_lines(root, "wordnet/queries.jsonl")]
    rel = dict(line.split("\t")[:2] for line in _verified_lines(root, "wordnet/qrels/test.tsv")[1:])
    return IRSet(
        query_ids=tuple(q["_id"] for q in queries),
        queries=tuple(q["text"] for q in queries),
        corpus_ids=corpus.ids,
        corpus=corpus.texts,
        qrels=tuple((int(rel[q["_id"]][1:]),) for q in queries),
    )


def fit_exclusions(folder: str | os.PathLike[str]) -> frozenset[str]:
    """Passage ids to leave out of any fitting sample taken from the corpus: WordNet test-split
    definitions and the passages of the out-of-domain sets' evaluated documents."""
    root = Path(folder)
    return frozenset(x for rel in ("exclude/wordnet_test_definitions.txt", "exclude/ood_evaluated.txt") for x in _verified_lines(root, rel) if x)
