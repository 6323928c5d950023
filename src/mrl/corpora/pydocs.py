"""Python's documentation as text: API entries (signature + description) and the other prose.

Source: the reST sources that Sphinx ships next to the HTML, ``_sources/**/*.rst.txt`` (Debian
package ``python3.11-doc``: ``/usr/share/doc/python3.11/html/_sources``). They are the authored
text, so they parse more reliably than the generated HTML: an API entry is a directive
(``.. function:: join(path, *paths)``) whose indented body is its description.

Names are qualified the way Sphinx does: by the current module (``.. module::`` /
``.. currentmodule::``) and by the enclosing ``class`` / ``exception`` directive, so a nested
``.. method:: elements()`` under ``.. class:: Counter`` in ``collections`` is ``collections.Counter.elements``.

Example:
    >>> docs = load_python_docs()
    >>> e = docs.entries[0]; e.signature, e.description()[:60]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mrl.corpora.passages import first_words
from mrl.corpora.rst import rst_paragraphs

if TYPE_CHECKING:
    from mrl.corpora.ood import OODItem

DEFAULT_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
HOW_TO_GET = "install Python's documentation with `sudo apt-get install python3.11-doc` (sources land in /usr/share/doc/python3.11/html/_sources), or pass root="
API_KINDS = frozenset(
    ["function", "method", "class", "exception", "attribute", "data", "decorator", "decoratormethod", "classmethod", "staticmethod", "abstractmethod", "coroutinefunction", "coroutinemethod", "awaitablefunction", "awaitablemethod", "property", "module-attribute", "c:function", "c:macro", "c:type", "c:member", "c:var", "c:struct"]
)
_CLASS_KINDS = ("class", "exception")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(?:py:)?([\w:-]+)::\s*(.*)$")
_MODULE = re.compile(r"^\s*\.\.\s+(?:py:)?(?:module|currentmodule)::\s*(\S+)")
_C_NAME = re.compile(r"([A-Za-z_]\w*)\s*(?:\(|$|\[)")


@dataclass(frozen=True)
class PyEntry:
    """One documented API object: qualified ``id`` (``os.path.join``), directive ``kind``, the
    first ``signature`` with the qualified name, the source ``file`` and its prose ``paragraphs``
    (nested entries excluded)."""

    id: str
    kind: str
    signature: str
    file: str
    paragraphs: tuple[str, ...]

    def description(self, max_words: int = 200) -> str:
        """The leading whole sentences of the description, up to ``max_words`` words."""
        return first_words(" ".join(self.paragraphs), max_words)


@dataclass(frozen=True)
class PythonDocs:
    """All entries, and the prose outside any entry as ``(file, paragraph)`` pairs."""

    entries: tuple[PyEntry, ...]
    prose: tuple[tuple[str, str], ...]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], i: int, ind: int) -> int:
    n = len(lines)
    while i < n and (not lines[i].strip() or _indent(lines[i]) > ind):
        i += 1
    return i


def _qualify(kind: str, name: str, module: str, cls: str) -> str:
    if kind.startswith("c:"):
        return name
    if cls and "." not in name:
        return f"{cls}.{name}"
    if module and not name.startswith(module + "."):
        return f"{module}.{name}"
    return name


def _name_of(kind: str, sig: str) -> str:
    if kind.startswith("c:"):
        m = _C_NAME.search(sig)
        return m.group(1) if m else sig.split()[-1]
    return re.split(r"[\s(\[]", sig.strip(), maxsplit=1)[0]


def parse_rst_file(text: str, file: str) -> tuple[list[PyEntry], list[str]]:
    """API entries of one ``.rst.txt`` file, and the paragraphs outside any entry."""
    lines = text.expandtabs(8).splitlines()
    n = len(lines)
    entries: list[PyEntry] = []
    outside = list(lines)
    module = ""
    classes: list[tuple[int, str]] = []  # (indent, qualified class name) of enclosing classes
    spans: list[tuple[int, int, int, str, str, str]] = []  # (start, body_start, end, kind, id, signature)
    for i, line in enumerate(lines):
        m = _MODULE.match(line)
        if m:
            module = "" if m.group(1) == "None" else m.group(1)
            continue
        d = _DIRECTIVE.match(line)
        if not d or d.group(2) not in API_KINDS or not d.group(3).strip():
            continue
        ind, kind, sig = len(d.group(1)), d.group(2), d.group(3).strip()
        while classes and classes[-1][0] >= ind:
            classes.pop()
        j = i + 1
        while sig.endswith("\\") and j < n:  # a signature continued on the next line
            sig = sig[:-1].rstrip() + " " + lines[j].strip()
            j += 1
        while j < n and lines[j].strip() and _indent(lines[j]) > ind:
            j += 1  # more signatures and :option: lines
        end = _block_end(lines, j, ind)
        name = _name_of(kind, sig)
        qid = _qualify(kind, name, module, classes[-1][1] if classes else "")
        signature = qid + sig[len(name) :] if sig.startswith(name) else sig
        spans.append((i, j, end, kind, qid, signature))
        if kind in _CLASS_KINDS:
            classes.append((ind, qid))
        if not any(s[0] < i < s[2] for s in spans[:-1]):
            for k in range(i, end):
                outside[k] = ""
    for start, body, end, kind, qid, signature in spans:
        own = list(lines[body:end])
        for s2, _, e2, *_ in spans:
            if start < s2 < end:
                for k in range(s2, min(e2, end)):
                    own[k - body] = ""
        ind = min((_indent(x) for x in own if x.strip()), default=0)
        paragraphs = rst_paragraphs("\n".join(x[ind:] for x in own))
        entries.append(PyEntry(id=qid, kind=kind, signature=signature, file=file, paragraphs=tuple(paragraphs)))
    return entries, rst_paragraphs("\n".join(outside))


def list_rst_files(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every ``*.rst.txt`` (or ``*.rst``) under ``root``, sorted."""
    from mrl.errors import DataError

    base = Path(root or os.environ.get("MRL_PYDOCS") or DEFAULT_ROOT)
    if not base.is_dir():
        raise DataError(f"{base} not found: {HOW_TO_GET}.")
    files = sorted(p for p in base.rglob("*") if p.name.endswith((".rst.txt", ".rst")) and p.is_file())
    if not files:
        raise DataError(f"{base} holds no .rst.txt sources: {HOW_TO_GET}.")
    return files


def load_python_docs(root: str | os.PathLike[str] | None = None) -> PythonDocs:
    """Parse every source file; entries keep the first of repeated ids (file order)."""
    base = Path(root or os.environ.get("MRL_PYDOCS") or DEFAULT_ROOT)
    entries: list[PyEntry] = []
    prose: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in list_rst_files(base):
        rel = str(path.relative_to(base))
        found, outside = parse_rst_file(path.read_text(encoding="utf-8", errors="replace"), rel)
        for e in found:
            if e.id not in seen:
                seen.add(e.id)
                entries.append(e)
        prose.extend((rel, p) for p in outside)
    return PythonDocs(entries=tuple(entries), prose=tuple(prose))


QUERY_KINDS = API_KINDS - {"c:member", "c:var"}  # struct fields' "int dump_refs" says too little to search with


def pydoc_ood_items(docs: PythonDocs, *, max_words: int = 200, min_words: int = 10) -> tuple[list[OODItem], list[OODItem]]:
    """OOD items: query = the entry's qualified signature (``os.path.join(path, *paths)``; a
    summary sentence would be copied from the document itself), document = its description's
    leading ``max_words`` words; and extra same-domain texts (the prose outside entries, consecutive
    paragraphs of a file packed up to ``max_words``) for the unlabeled fitting set."""
    from mrl.corpora.ood import OODItem

    items = []
    for e in docs.entries:
        text = e.description(max_words)
        if len(text.split()) >= min_words:
            items.append(OODItem(id=e.id, text=text, query=e.signature if e.kind in QUERY_KINDS else "", group=f"py:{e.id}", kind=e.kind))
    extra: list[OODItem] = []
    chunk: list[str] = []
    for k, (file, para) in enumerate(docs.prose):
        chunk.append(para)
        last = k + 1 == len(docs.prose) or docs.prose[k + 1][0] != file
        if last or sum(len(p.split()) for p in chunk) + len(docs.prose[k + 1][1].split()) > max_words:
            text = first_words(" ".join(chunk), max_words)
            if len(text.split()) >= min_words:
                extra.append(OODItem(id=f"{file}#{k}", text=text, group=f"pyfile:{file}#{k}", kind="prose"))
            chunk = []
    return items, extra
