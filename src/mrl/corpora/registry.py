"""The offline benchmark sets mrl can build, by name: the only list of their names.

Each buildable set registers its builder with :func:`register_set` (timm's ``@register_model``
pattern); the ``benchmarks/build_*.py`` scripts only parse arguments and call :func:`build_set`.
A builder takes the output folder, a ``log`` callable and keyword options, writes the set
atomically (or resumably) and returns its manifest.

Sets (see each builder's module for the rules):

* ``manpages``, ``pydocs``: out-of-domain BEIR folders (:mod:`mrl.corpora.ood`) from the installed
  man pages and Python 3.11's documentation sources;
* ``text-corpus``: the >= 1M-passage retrieval corpus from every documentation source installed
  (:mod:`mrl.corpora.corpus`); ``wordnet-corpus``: the same builder on WordNet alone;
* ``image-text``: paired pictures and captions (colour emoji, icon themes, a user's pair files;
  :mod:`mrl.corpora.image_text`).

Example:
    >>> sorted(SETS)
    ['image-text', 'manpages', 'pydocs', 'text-corpus', 'wordnet-corpus']
    >>> build_set("wordnet-corpus", "out/wn", n_test=5000)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrl.errors import MRLError

Log = Callable[[str], None]
Builder = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class SetSpec:
    """``build(out, log=..., **options) -> manifest``; ``kind`` groups sets a script builds together
    (``ood``, ``corpus``, ``image-text``)."""

    name: str
    kind: str
    description: str
    build: Builder


SETS: dict[str, SetSpec] = {}


def register_set(name: str, *, kind: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``name`` buildable through the decorated builder."""

    def wrap(build: Builder) -> Builder:
        if name in SETS:
            raise ValueError(f"set {name!r} is registered twice")
        SETS[name] = SetSpec(name, kind, description, build)
        return build

    return wrap


def set_names(kind: str | None = None) -> list[str]:
    """Names of the buildable sets (of one ``kind``), in registration order."""
    return [s.name for s in SETS.values() if kind is None or s.kind == kind]


def get_set(name: str) -> SetSpec:
    if name not in SETS:
        raise MRLError(f"{name!r} is not a set mrl builds; choose one of {', '.join(SETS)}.")
    return SETS[name]


def build_set(name: str, out: str | os.PathLike[str], *, log: Log = print, **options: Any) -> dict[str, Any]:
    """Build set ``name`` into ``out`` with its builder's keyword ``options``; returns the manifest."""
    return get_set(name).build(Path(out), log=log, **options)


def package_version(name: str) -> str:
    """The installed version of Debian package ``name`` (for a manifest), or ``not installed``."""
    res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=False)
    return res.stdout.strip() or "not installed"


_OOD_SPLIT = ("n_queries", "n_corpus", "n_unlabeled", "seed", "overwrite")


@register_set("manpages", kind="ood", description="man pages: query = the NAME line's summary, document = the DESCRIPTION's first ~200 words")
def _manpages(out: Path, *, log: Log, man_root: str = "/usr/share/man", processes: int = 2, **split: Any) -> dict[str, Any]:
    from mrl.corpora.manpages import list_man_pages, load_man_pages, man_ood_items
    from mrl.corpora.ood import build_ood_set

    t0 = time.perf_counter()
    files = list_man_pages(man_root)
    log(f"man pages: {len(files)} files (symlinks and .so stubs folded); rendering with {processes} processes")
    pages = load_man_pages(man_root, paths=files, processes=processes)
    items, extra = man_ood_items(pages)
    log(f"man pages: {len(pages)} parsed, {len(items)} documents, {len(extra)} other sections ({time.perf_counter() - t0:.0f}s)")
    sources = [f"English man pages under {man_root}/man[1-8] ({len(files)} page files after folding symlinks and .so stubs; mandoc {package_version('mandoc')})"]
    info = {"name": "manpages", "query": "NAME line summary (command names removed)", "document": "DESCRIPTION, first whole sentences up to 200 words", "build_seconds": round(time.perf_counter() - t0, 1)}
    return build_ood_set(out, items, extra, sources=sources, info=info, **{k: v for k, v in split.items() if k in _OOD_SPLIT})


@register_set("pydocs", kind="ood", description="Python 3.11 docs: query = an API entry's qualified signature, document = its description's first ~200 words")
def _pydocs(out: Path, *, log: Log, pydocs_root: str | None = None, **split: Any) -> dict[str, Any]:
    from mrl.corpora.ood import build_ood_set
    from mrl.corpora.pydocs import DEFAULT_ROOT, load_python_docs, pydoc_ood_items

    root = pydocs_root or str(DEFAULT_ROOT)
    t0 = time.perf_counter()
    docs = load_python_docs(root)
    items, extra = pydoc_ood_items(docs)
    log(f"pydocs: {len(docs.entries)} entries, {len(items)} documents, {len(extra)} prose chunks ({time.perf_counter() - t0:.0f}s)")
    sources = [f"Python 3.11 documentation sources {root} (python3.11-doc {package_version('python3.11-doc')})"]
    info = {"name": "pydocs", "query": "qualified signature of an API entry", "document": "the entry's description, first whole sentences up to 200 words", "build_seconds": round(time.perf_counter() - t0, 1)}
    return build_ood_set(out, items, extra, sources=sources, info=info, **{k: v for k, v in split.items() if k in _OOD_SPLIT})


def _corpus(out: Path, log: Log, only: str | None, ood_sets: Sequence[str], options: dict[str, Any]) -> dict[str, Any]:
    from mrl.corpora.corpus import CorpusConfig, build_corpus
    from mrl.corpora.corpus_sources import default_sources

    sources = [s for s in default_sources() if only is None or s.name == only]
    if not sources:
        raise MRLError(f"no {only or 'text'} source is installed; run `make bench-data` (WordNet: `make setup`).")
    for s in sources:
        log(f"source {s.name}: {len(s.files)} files, {len(s.units())} units ({s.description})")
    return build_corpus(out, sources, CorpusConfig(**options), ood_sets=[str(p) for p in ood_sets], log=log)


@register_set("text-corpus", kind="corpus", description=">= 1M de-duplicated passages from every documentation source installed, held-out queries, the WordNet task")
def _text_corpus(out: Path, *, log: Log, ood_sets: Sequence[str] = (), **options: Any) -> dict[str, Any]:
    return _corpus(out, log, None, ood_sets, options)


@register_set("wordnet-corpus", kind="corpus", description="the text-corpus builder on WordNet 3.0 alone (definitions whole, usage examples)")
def _wordnet_corpus(out: Path, *, log: Log, **options: Any) -> dict[str, Any]:
    return _corpus(out, log, "wordnet", (), options)


@register_set("image-text", kind="image-text", description="pictures with captions: colour emoji, icon themes and a user's pair files, deduplicated and split by group")
def _image_text(out: Path, *, log: Log, emoji: bool = True, emoji_font: str | None = None, themes: Sequence[str] = ("Papirus", "Adwaita"), categories: Sequence[str] | None = None, pairs: Sequence[str] = (), workers: int = 2, **options: Any) -> dict[str, Any]:
    from mrl.corpora.emoji import emoji_items
    from mrl.corpora.icons import CATEGORIES, icon_items
    from mrl.corpora.image_text import build_image_text
    from mrl.data.image_pairs import pair_items

    sources = [emoji_items(emoji_font)] if emoji else []
    sources += [icon_items(theme, categories=categories or CATEGORIES, workers=workers) for theme in themes]
    sources += [pair_items(path) for path in pairs]
    if not sources:
        raise MRLError("no source selected; keep the emoji, name --themes or give --pairs.")
    for src in sources:
        log(f"{src.info['kind']} {src.info.get('theme', src.info.get('file', ''))}: {len(src.items)} pictures, {len(src.skipped)} skipped")
    return build_image_text(out, sources, log=log, **options)
