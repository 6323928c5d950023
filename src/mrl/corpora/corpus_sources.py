"""The text sources of the retrieval corpus: what files each one reads and how.

A :class:`Source` is a name, a reader ``kind`` (a key of :data:`READERS`) and the files it reads.
:func:`default_sources` finds them on this machine (Debian packages listed in ``make bench-data``);
tests build small ones from fixture files. :func:`read_unit` turns a chunk of a source's files
into ``(doc, text, whole)`` triples: ``doc`` names where the text came from (a man page, an API
entry, a file), ``whole`` marks a text kept as one passage whatever its length (WordNet
definitions, which the WordNet task retrieves) instead of being cut by the passage rules.

Doc names match the ``group`` names of the out-of-domain sets (``man:<page>``, ``py:<entry>``),
so the corpus can mark the passages of their evaluated documents.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mrl.corpora.passages import normalize

Triple = tuple[str, str, bool]  # (doc, text, whole)


@dataclass(frozen=True)
class Source:
    """``name`` (recorded per passage), reader ``kind``, ``files`` (sorted), their common ``root``
    (for relative doc names), ``chunk`` files per work unit and a ``description`` for the manifest."""

    name: str
    kind: str
    files: tuple[str, ...]
    root: str = ""
    chunk: int = 100
    description: str = ""

    def units(self) -> list[tuple[str, ...]]:
        return [self.files[i : i + self.chunk] for i in range(0, len(self.files), self.chunk)]


def read_text(path: str) -> str:
    """A text file, gunzipped when it ends in ``.gz``/``.dz``, undecodable bytes replaced."""
    opener = gzip.open if path.endswith((".gz", ".dz")) else open
    with opener(path, "rb") as fh:
        return fh.read().decode("utf-8", errors="replace")


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root) if root else os.path.basename(path)


def _wordnet(src: Source, files: tuple[str, ...]) -> list[Triple]:
    """Definitions (whole) and usage examples of every synset; the noun test split's examples are
    left out, because the WordNet task's queries are made of them."""
    from mrl.data.wordnet import load_synsets, load_wordnet

    out: list[Triple] = []
    for path in files:
        folder, pos = os.path.dirname(path), os.path.basename(path).split(".", 1)[1]
        held: set[str] = set()
        if pos == "noun":
            test = set(load_wordnet(folder).test.corpus_ids)
            held = {normalize(e).lower() for s in load_synsets(folder) if s.offset in test for e in s.examples}
        for s in load_synsets(folder, pos=pos):
            out.append((f"wn:{pos}:{s.offset}", s.definition, True))
            out.extend((f"wn:{pos}:{s.offset}", e, False) for e in s.examples if normalize(e).lower() not in held)
    return out


def _man(src: Source, files: tuple[str, ...]) -> list[Triple]:
    from mrl.corpora.manpages import canonical_page, page_name, parse_man_html, render_html

    out: list[Triple] = []
    for path in files:
        page = parse_man_html(render_html(path), page_name(Path(path)), _rel(path, src.root))
        out.extend((f"man:{canonical_page(page.page)}", p, False) for p in page.paragraphs())
    return out


def _pydocs(src: Source, files: tuple[str, ...]) -> list[Triple]:
    from mrl.corpora.pydocs import parse_rst_file

    out: list[Triple] = []
    for path in files:
        rel = _rel(path, src.root)
        entries, outside = parse_rst_file(read_text(path), rel)
        for e in entries:
            out.extend((f"py:{e.id}", p, False) for p in e.paragraphs)
        out.extend((f"pyfile:{rel}", p, False) for p in outside)
    return out


def _per_file(reader: Callable[[str], list[str]]) -> Callable[[Source, tuple[str, ...]], list[Triple]]:
    def read(src: Source, files: tuple[str, ...]) -> list[Triple]:
        return [(f"{src.name}:{_rel(p, src.root)}", para, False) for p in files for para in reader(read_text(p))]

    return read


def _gcide(src: Source, files: tuple[str, ...]) -> list[Triple]:
    """``files`` is ``(path, "part/parts")``: every parts-th entry, so one big file splits into units."""
    from mrl.corpora.textsources import gcide_paragraphs

    path, spec = files[0], files[1] if len(files) > 1 else "0/1"
    part, parts = (int(x) for x in spec.split("/"))
    return [(f"{src.name}:{head}", text, False) for head, text in gcide_paragraphs(read_text(path), part=part, parts=parts)]


def _readers() -> dict[str, Callable[[Source, tuple[str, ...]], list[Triple]]]:
    from mrl.corpora.rst import rst_paragraphs
    from mrl.corpora.textsources import html_paragraphs, info_paragraphs, pod_paragraphs

    return {
        "wordnet": _wordnet,
        "man": _man,
        "pydocs": _pydocs,
        "rst": _per_file(rst_paragraphs),
        "pod": _per_file(pod_paragraphs),
        "info": _per_file(info_paragraphs),
        "html": _per_file(html_paragraphs),
        "gcide": _gcide,
    }


# Bump a reader's version when its output changes: finished units of that kind are then redone.
READER_VERSIONS = {"wordnet": 1, "man": 1, "pydocs": 1, "rst": 1, "pod": 1, "info": 1, "html": 2, "gcide": 1}


def read_unit(src: Source, files: tuple[str, ...]) -> list[Triple]:
    """Read one work unit of ``src`` with its kind's reader."""
    return _readers()[src.kind](src, files)


def package_files(package: str, suffixes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    """Regular files of an installed Debian package whose names end in ``suffixes`` (``dpkg -L``)."""
    res = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    files = [f for f in res.stdout.splitlines() if f.endswith(suffixes) and not any(x in f for x in exclude)]
    return sorted(f for f in files if os.path.isfile(f) and not os.path.islink(f))


HTML_SKIP = ("/_modules/", "/_sources/", "/src/", "/search", "genindex", "/py-modindex", "-index.html", "/index-files/", "/class-use/", "/legal/")

# name, package, kind, suffixes, chunk, description (the order is the de-duplication priority)
PACKAGE_SOURCES = (
    ("linux-doc", "linux-doc-6.1", "rst", (".rst", ".rst.gz"), 150, "Linux kernel documentation (Documentation/**/*.rst)"),
    ("perl-doc", "perl-doc", "pod", (".pod",), 20, "Perl's documentation (perl*.pod)"),
    ("postgresql-doc", "postgresql-doc-15", "html", (".html",), 150, "PostgreSQL 15 manual (HTML)"),
    ("erlang-doc", "erlang-doc", "html", (".html",), 100, "Erlang/OTP documentation (HTML)"),
    ("openjdk-doc", "openjdk-17-doc", "html", (".html",), 300, "Java SE 17 API documentation (HTML)"),
    ("django-doc", "python-django-doc", "html", (".html",), 100, "Django 3.2 documentation (HTML)"),
    ("llvm-doc", "llvm-14-doc", "html", (".html",), 100, "LLVM 14 documentation (HTML)"),
    ("nodejs-doc", "nodejs-doc", "html", (".html",), 20, "Node.js 18 API documentation (HTML)"),
    ("sqlite-doc", "sqlite3-doc", "html", (".html",), 100, "SQLite documentation (HTML)"),
    ("git-doc", "git-doc", "html", (".html",), 100, "Git documentation (HTML)"),
    ("qt-doc", "qtbase5-doc-html", "html", (".html",), 150, "Qt 5.15 base documentation (HTML)"),
    ("scipy-doc", "python-scipy-doc", "html", (".html",), 250, "SciPy 1.10 documentation (HTML)"),
    ("sklearn-doc", "python-sklearn-doc", "html", (".html",), 100, "scikit-learn 1.2 documentation (HTML)"),
    ("sympy-doc", "python-sympy-doc", "html", (".html",), 40, "SymPy 1.11 documentation (HTML)"),
    ("statsmodels-doc", "python-statsmodels-doc", "html", (".html",), 300, "statsmodels 0.13 documentation (HTML)"),
    ("gimp-help", "gimp-help-en", "html", (".html",), 100, "GIMP 2.10 user manual, English (HTML)"),
    ("astropy-doc", "python-astropy-doc", "html", (".html",), 150, "Astropy 5.2 documentation (HTML)"),
    ("rust-doc", "rust-doc", "html", (".html",), 400, "Rust 1.63 documentation: books and the standard library (HTML)"),
)


def default_sources(*, wordnet_root: str | None = None, man_root: str = "/usr/share/man", pydocs_root: str | None = None, gcide_parts: int = 4) -> list[Source]:
    """Every source found on this machine, in de-duplication priority order (WordNet first, so its
    definitions keep their WordNet ids). Missing packages are skipped (the manifest says which)."""
    from mrl.corpora.manpages import list_man_pages
    from mrl.corpora.pydocs import DEFAULT_ROOT as PYDOCS_ROOT
    from mrl.data.wordnet import DEFAULT_ROOT as WORDNET_ROOT

    wn = Path(wordnet_root or os.environ.get("MRL_WORDNET") or WORDNET_ROOT)
    out = [Source("wordnet", "wordnet", tuple(str(wn / f"data.{p}") for p in ("noun", "verb", "adj", "adv")), str(wn), 1, "WordNet 3.0 glosses (definitions whole) and usage examples, all parts of speech")]
    if Path(man_root).is_dir():
        out.append(Source("man", "man", tuple(str(p) for p in list_man_pages(man_root)), man_root, 250, f"man pages under {man_root}/man[1-8], rendered by mandoc"))
    py = Path(pydocs_root or PYDOCS_ROOT)
    if py.is_dir():
        files = sorted(str(p) for p in py.rglob("*.rst.txt"))
        out.append(Source("pydocs", "pydocs", tuple(files), str(py), 40, "Python 3.11 documentation sources (python3.11-doc)"))
    info = sorted(str(p) for p in Path("/usr/share/info").glob("*.info*") if not p.name.startswith("python"))
    if info:
        out.append(Source("info", "info", tuple(info), "/usr/share/info", 4, "GNU Info manuals in /usr/share/info (Python's copy left out: pydocs has it)"))
    for name, package, kind, suffixes, chunk, description in PACKAGE_SOURCES:
        files = package_files(package, suffixes, HTML_SKIP if kind == "html" else ())
        if files:
            out.append(Source(name, kind, tuple(files), os.path.commonpath(files) if len(files) > 1 else os.path.dirname(files[0]), chunk, f"{description}; Debian package {package}"))
    gcide = Path("/usr/share/dictd/gcide.dict.dz")
    if gcide.is_file():
        parts = tuple((str(gcide), f"{k}/{gcide_parts}") for k in range(gcide_parts))
        out.append(Source("gcide", "gcide", tuple(p for pair in parts for p in pair), str(gcide.parent), 2, "GNU Collaborative International Dictionary of English 0.48 (dict-gcide), senses not copied from WordNet"))
    return out
