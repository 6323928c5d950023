"""Man pages as text: render with ``mandoc``, split into sections and paragraphs.

Rendering: ``mandoc -T html -O fragment`` (Debian package ``mandoc``) formats both man(7) and mdoc(7)
sources, follows ``.so`` includes, expands strings and escapes, and marks the structure we need
(sections ``<h1 class="Sh">``, paragraphs ``<p>``, tagged lists ``<dt>/<dd>``, literal blocks
``<pre>``) for ~1 ms a page; groff's text output would need re-parsing indentation to tell prose
from examples. The HTML is read with the standard library's ``html.parser``.

Pages: ``<root>/man[1-8]/*`` (the English pages; translations live in ``<root>/<lang>/``). A symlink
counts once (its target), and a ``.so`` stub (a page that only includes another) is skipped.

Example:
    >>> pages = load_man_pages("/usr/share/man", processes=2)
    >>> pages[0].summary, pages[0].description()[:60]
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from mrl.corpora.passages import first_words, normalize
from mrl.errors import DataError

if TYPE_CHECKING:
    from mrl.corpora.ood import OODItem

DEFAULT_ROOT = Path("/usr/share/man")
HOW_TO_GET = "install mandoc with `sudo apt-get install mandoc` (it renders the pages)"
_BLOCKS = {"p", "dt", "dd", "li", "pre", "div", "h1", "h2", "dl", "ul", "ol", "blockquote", "section", "table"}
_NAME_SPLIT = re.compile(r"^(?P<names>.{1,200}?)\s+(?:\\-|-{1,2}|–|—)\s+(?P<summary>\S.*)$")
_SO_STUB = re.compile(rb"^(?:\.\\\".*\n|'\\\".*\n|\s*\n)*\.so\s", re.MULTILINE)

Block = tuple[str, str]  # (kind: "p" | "dt" | "pre", text)


@dataclass(frozen=True)
class ManPage:
    """One rendered page: ``page`` (``ls.1``), ``path`` (relative to the root), the NAME line split
    into ``names`` and ``summary`` (empty when the page has no ``name - summary`` line), and its
    ``sections`` as ``(heading, blocks)`` in page order."""

    page: str
    path: str
    names: str
    summary: str
    sections: tuple[tuple[str, tuple[Block, ...]], ...]

    def paragraphs(self, heading: str | None = None) -> list[str]:
        """Prose paragraphs (a tag joined to its item text as ``"tag: text"``), literal blocks
        dropped; of one section (``heading``, upper case) or of the whole page except NAME and SYNOPSIS."""
        out: list[str] = []
        for name, blocks in self.sections:
            if (heading is not None and name != heading) or (heading is None and name in ("NAME", "SYNOPSIS")):
                continue
            tag = ""
            for kind, text in blocks:
                if kind == "dt":
                    tag = text if any(c.isalnum() for c in text) else ""  # a bullet is not a tag
                    continue
                if kind == "p":
                    out.append(f"{tag}: {text}" if tag else text)
                tag = ""
        return out

    def description(self, max_words: int = 200) -> str:
        """The DESCRIPTION section's leading prose, whole sentences up to ``max_words`` words."""
        return first_words(" ".join(self.paragraphs("DESCRIPTION")), max_words)


class _PageHTML(HTMLParser):
    """Collect ``(heading, blocks)`` from mandoc's HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str, list[Block]]] = []
        self.buf: list[str] = []
        self.heading: list[str] | None = None
        self.stack: list[str] = []  # open block kinds: "p", "dt", "pre"
        self.skip = 0  # depth inside tables (page header/footer and tbl(1) tables)

    def _flush(self) -> None:
        text = "".join(self.buf)
        self.buf = []
        kind = next((k for k in reversed(self.stack) if k in ("pre", "dt")), "p")
        text = text.strip("\n") if kind == "pre" else normalize(text)
        if text and self.sections:
            self.sections[-1][1].append((kind, text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.skip += 1
        if self.skip:
            return
        if tag == "br":
            self.buf.append("\n")
        if tag not in _BLOCKS:
            return
        self._flush()
        if tag == "h1":
            self.heading = []
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.skip = max(0, self.skip - 1)
            return
        if self.skip or tag not in _BLOCKS:
            return
        if tag == "h1" and self.heading is not None:
            self.sections.append((normalize("".join(self.heading)).upper(), []))
            self.heading = None
            self.buf = []
        else:
            self._flush()
        if tag in self.stack:
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        (self.heading if self.heading is not None else self.buf).append(data)


def parse_man_html(html: str, page: str, path: str = "") -> ManPage:
    """A :class:`ManPage` from mandoc's ``-T html -O fragment`` output."""
    parser = _PageHTML()
    parser.feed(html)
    parser.close()
    parser._flush()
    sections = tuple((h, tuple(b)) for h, b in parser.sections)
    name_line = " ".join(t for h, blocks in sections if h == "NAME" for _, t in blocks)
    m = _NAME_SPLIT.match(name_line)
    names, summary = (m.group("names").strip(), m.group("summary").strip()) if m else (name_line, "")
    return ManPage(page=page, path=path, names=names, summary=summary, sections=sections)


def render_html(path: str | os.PathLike[str], *, timeout: float = 30.0) -> str:
    """mandoc's HTML fragment for one page file (plain or gzipped)."""
    if shutil.which("mandoc") is None:
        raise DataError(f"mandoc not found: {HOW_TO_GET}.")
    try:
        res = subprocess.run(["mandoc", "-T", "html", "-O", "fragment", str(path)], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return res.stdout.decode("utf-8", errors="replace")


def page_name(path: Path) -> str:
    """``ls.1`` for ``man1/ls.1.gz``."""
    return path.name[:-3] if path.name.endswith(".gz") else path.name


def is_so_stub(path: Path) -> bool:
    """True for a page that only includes another (``.so man3/other.3``), after comments."""
    try:
        with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as fh:
            head = fh.read(512)
    except (OSError, EOFError):
        return True
    return bool(_SO_STUB.match(head)) and head.count(b"\n.") <= 1


def list_man_pages(root: str | os.PathLike[str] | None = None, sections: str = "12345678") -> list[Path]:
    """Page files under ``root/man<s>`` for each ``s`` in ``sections``, one per real file (symlinks
    resolved and counted once, ``.so`` stubs skipped), sorted by path."""
    base = Path(root or os.environ.get("MRL_MAN_ROOT") or DEFAULT_ROOT)
    if not base.is_dir():
        raise DataError(f"{base} is not a folder of man pages; pass root= (the folder holding man1 ... man8).")
    seen: set[str] = set()
    out: list[Path] = []
    for s in sections:
        folder = base / f"man{s}"
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            real = Path(os.path.realpath(p))
            if str(real) in seen or not real.is_file():
                continue
            seen.add(str(real))
            if not is_so_stub(real):
                out.append(real)
    return out


def _load_one(args: tuple[str, str]) -> ManPage:
    path, root = args
    p = Path(path)
    rel = os.path.relpath(p, root)
    return parse_man_html(render_html(p), page_name(p), rel)


def load_man_pages(root: str | os.PathLike[str] | None = None, *, sections: str = "12345678", processes: int = 1, paths: Sequence[Path] | None = None) -> list[ManPage]:
    """Render and parse every page of :func:`list_man_pages` (or ``paths``), in that order.

    ``processes`` > 1 renders in a process pool (rendering is CPU-bound).
    """
    base = Path(root or os.environ.get("MRL_MAN_ROOT") or DEFAULT_ROOT)
    files = list(paths) if paths is not None else list_man_pages(base, sections)
    if shutil.which("mandoc") is None:
        raise DataError(f"mandoc not found: {HOW_TO_GET}.")
    jobs = [(str(p), str(base)) for p in files]
    if processes <= 1 or len(jobs) < 64:
        return [_load_one(j) for j in jobs]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return list(pool.imap(_load_one, jobs, chunksize=32))


_TRACK = re.compile(r"_(alpha|beta|preview)(?=[_.])")
_TRACK_MARK = re.compile(r"^\((?:ALPHA|BETA|PREVIEW)\)\s*")


def canonical_page(page: str) -> str:
    """The page name without release-track words (``gcloud_alpha_x.1`` -> ``gcloud_x.1``): pages of
    the same command in several tracks are near-copies and count as one."""
    return _TRACK.sub("", page)


def _track_rank(page: str) -> tuple[int, str]:
    m = _TRACK.search(page)
    return ({"beta": 1, "preview": 2, "alpha": 3}[m.group(1)] if m else 0, page)


def representatives(pages: Sequence[ManPage]) -> list[ManPage]:
    """One page per :func:`canonical_page` (the general-availability track first), sorted by name."""
    best: dict[str, ManPage] = {}
    for p in pages:
        key = canonical_page(p.page)
        if key not in best or _track_rank(p.page) < _track_rank(best[key].page):
            best[key] = p
    return [best[k] for k in sorted(best)]


def page_kind(page: ManPage) -> str:
    """``gcloud`` for the Google Cloud CLI's pages (most of man1 here), else the section folder."""
    section = page.page.rsplit(".", 1)[-1][:1] if "." in page.page else ""
    return "gcloud" if page.page.startswith(("gcloud_", "gcloud.")) else f"man{section}"


def man_ood_items(pages: Sequence[ManPage], *, max_words: int = 200, min_words: int = 10) -> tuple[list[OODItem], list[OODItem]]:
    """OOD items: query = the NAME line's summary (without the command names, which a searching
    user would not know), document = the DESCRIPTION's leading ``max_words`` words; and extra
    same-domain texts (each other section's leading words) for the unlabeled fitting set."""
    from mrl.corpora.ood import OODItem

    items, extra = [], []
    for p in representatives(pages):
        group, kind = f"man:{canonical_page(p.page)}", page_kind(p)
        desc = _TRACK_MARK.sub("", p.description(max_words))
        if len(desc.split()) >= min_words:
            items.append(OODItem(id=p.page, text=desc, query=p.summary, group=group, kind=kind))
        for heading, _ in p.sections:
            if heading in ("NAME", "SYNOPSIS", "DESCRIPTION"):
                continue
            text = first_words(" ".join(p.paragraphs(heading)), max_words)
            if len(text.split()) >= min_words:
                extra.append(OODItem(id=f"{p.page}#{heading}", text=text, group=group, kind="other-section"))
    return items, extra
