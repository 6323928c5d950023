"""reStructuredText to prose paragraphs (for Python's and the Linux kernel's documentation sources).

Not a full reST parser: it keeps the paragraphs a reader sees as prose and drops the rest. Kept:
ordinary paragraphs, list items, the bodies of admonitions and of API directives (``function``,
``class``, ``note``, ``versionchanged`` ...). Dropped: section titles, literal blocks (after ``::``),
doctest blocks, tables, comments, substitution definitions and every directive whose body is code
or markup (``code-block``, ``toctree``, ``kernel-doc``, ``productionlist`` ...). Inline markup is
reduced to its text (``:func:`~os.path.join``` -> ``join``, ```text <url>`_`` -> ``text``).

docutils would parse reST exactly but needs every Sphinx/kernel role and directive registered (the
sources use hundreds); unknown ones abort or litter the output with error nodes. Prose extraction
only needs block boundaries, which indentation gives reliably.
"""

from __future__ import annotations

import re

from mrl.corpora.passages import normalize

PROSE_DIRECTIVES = frozenset(
    ["note", "warning", "seealso", "versionadded", "versionchanged", "deprecated", "deprecated-removed", "admonition", "attention", "caution", "danger", "error", "hint", "important", "tip", "topic", "sidebar", "impl-detail", "only", "container", "glossary", "hlist", "function", "method", "class", "exception", "attribute", "data", "decorator", "decoratormethod", "classmethod", "staticmethod", "abstractmethod", "coroutinefunction", "coroutinemethod", "awaitablefunction", "awaitablemethod", "module-attribute", "property", "describe", "object", "opcode", "cmdoption", "option", "envvar", "pdbcommand", "c:function", "c:macro", "c:type", "c:member", "c:var", "c:struct", "c:union", "c:enum", "c:enumerator", "c:data", "cpp:function", "cpp:class"]
)
_VERSION_DIRECTIVES = ("versionadded", "versionchanged", "deprecated", "deprecated-removed")
_ADMONITIONS = frozenset(["note", "warning", "seealso", "important", "tip", "hint", "caution", "attention", "danger", "error", "impl-detail"])
_SIGNATURE_DIRECTIVES = PROSE_DIRECTIVES - _ADMONITIONS - frozenset(_VERSION_DIRECTIVES) - frozenset(["only", "container", "glossary", "hlist"])
_DIRECTIVE = re.compile(r"^\.\.\s+(?:(?:py|rst|std):)?([A-Za-z][\w:-]*)::(?:\s+(.*))?$")
_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_SIMPLE_TABLE = re.compile(r"^=+(\s+=+)+\s*$")
_BULLET = re.compile(r"^(?:[-*+•]|#\.|\d+[.)]|\(?[a-zA-Z0-9]\)|[a-z]\.)\s+")
_FIELD = re.compile(r"^:[^:`]+:\s")

_ROLE = re.compile(r":(?:[\w-]+:)*([\w-]+):`([^`]*)`")
_LITERAL = re.compile(r"``(.+?)``")
_LINK = re.compile(r"`([^`<]*?)\s*(?:<[^>]*>)?`__?")
_INTERPRETED = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPH = re.compile(r"(?<![\w*\\])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")
_SUBST = re.compile(r"\|([\w .-]+)\|")
_FOOTNOTE = re.compile(r"\s*\[(?:#[\w-]*|\d+|\*)\]_")
_REFNAME = re.compile(r"(?<=[A-Za-z0-9])_(?![\w])")


def _role_text(m: re.Match[str]) -> str:
    role, body = m.group(1), m.group(2)
    target = re.search(r"^(.*?)\s*<[^>]*>$", body, re.DOTALL)
    if target and target.group(1):
        return target.group(1)
    body = body.lstrip("!")
    if role in ("pep", "rfc"):
        return f"{role.upper()} {body}"
    if body.startswith("~"):
        return body[1:].rsplit(".", 1)[-1]
    return body


def clean_inline(text: str) -> str:
    """Inline reST markup reduced to its text, whitespace normalised."""
    text = _FOOTNOTE.sub("", text)
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPH.sub(r"\1", text)
    text = _SUBST.sub(r"\1", text)
    text = _REFNAME.sub("", text)
    text = text.replace("\\ ", "").replace("\\", "")
    return normalize(text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _skip_block(lines: list[str], i: int, ind: int) -> int:
    """Index of the first line after ``i`` that is non-blank and indented at most ``ind``."""
    n = len(lines)
    while i < n and (not lines[i].strip() or _indent(lines[i]) > ind):
        i += 1
    return i


def _is_heading(lines: list[str], i: int) -> bool:
    s = lines[i].strip()
    return i + 1 < len(lines) and bool(_ADORNMENT.match(lines[i + 1].strip())) and len(lines[i + 1].strip()) >= min(len(s), 3) and not _ADORNMENT.match(s)


def rst_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a reST document (or of a directive body), markup removed."""
    lines = text.expandtabs(8).splitlines()
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        s = line.strip()
        ind = _indent(line)
        if not s:
            i += 1
            continue
        if s.startswith(".."):
            m = _DIRECTIVE.match(s)
            if m and m.group(1) in PROSE_DIRECTIVES:
                name, arg = m.group(1), (m.group(2) or "").strip()
                if name in _VERSION_DIRECTIVES:
                    arg = arg.split(None, 1)[1] if " " in arg else ""
                elif name not in _ADMONITIONS:
                    arg = ""  # a signature or a title, not prose
                if arg:
                    lines[i] = " " * (ind + 3) + arg  # the argument starts the body's first paragraph
                    continue
                i += 1
                while i < n and lines[i].strip() and _indent(lines[i]) > ind and (name in _SIGNATURE_DIRECTIVES or _FIELD.match(lines[i].strip())):
                    i += 1  # more signatures and :option: lines, up to the first blank line
                continue
            i = _skip_block(lines, i + 1, ind)
            continue
        if _ADORNMENT.match(s):
            i += 1
            continue
        if _is_heading(lines, i):
            i += 2
            continue
        if s.startswith(("+-", "+=")) or _SIMPLE_TABLE.match(s) or s.startswith(">>>"):
            while i < n and lines[i].strip():
                i += 1
            continue
        if s == "::":
            i = _skip_block(lines, i + 1, ind)
            continue
        para = [s]
        j = i + 1
        while j < n and lines[j].strip() and _indent(lines[j]) >= ind and not lines[j].strip().startswith(".. "):
            nxt = lines[j].strip()
            if _indent(lines[j]) == ind and (_BULLET.match(nxt) or _FIELD.match(nxt)):
                break
            if _ADORNMENT.match(nxt) or nxt.startswith(">>>"):
                break
            para.append(nxt)
            j += 1
        body = " ".join(para)
        body = _BULLET.sub("", body, count=1) if _BULLET.match(body) else body
        if body.endswith("::"):
            body = body[:-2].rstrip() + (":" if not body[:-2].endswith(" ") else "")
            j = _skip_block(lines, j, ind)
        cleaned = clean_inline(body)
        if cleaned:
            out.append(cleaned)
        i = j
    return out
