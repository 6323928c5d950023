"""Prose paragraphs from the documentation formats Debian ships: Perl POD, GNU Info, the GCIDE
dictionary (dictd format) and HTML manuals.

Each reader takes the text of one file and returns its paragraphs (markup reduced to text,
whitespace normalised); :mod:`mrl.corpora.passages` then cuts them into passages. They are small
hand-written readers because the real tools render to terminal layouts (``pod2text``, ``info``,
``dict``) that would have to be parsed again, and keep only what prose extraction needs:

* POD: ordinary paragraphs and ``=item`` text; verbatim (indented) paragraphs and ``=begin``/``=for``
  blocks dropped; formatting codes ``B<>``, ``C<<< >>>``, ``L<text|link>``, ``E<gt>`` ... reduced.
* Info: blank-line separated blocks; node headers, menus, section titles, index entries and the
  tag table dropped; ``*Note x::`` cross-references kept as their name.
* GCIDE: one passage per sense, ``"Headword: sense text"``; the pronunciation/etymology block,
  source tags (``[1913 Webster]``) and senses copied from WordNet (``[WordNet 1.5]``, which the
  corpus already holds from WordNet 3.0) dropped; ``{cross refs}`` kept as words.
* HTML: text of ``<p>``, ``<li>``, ``<dd>``, ``<dt>`` blocks; ``<pre>``, tables, scripts, headings
  and navigation bars dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mrl.corpora.passages import normalize

_POD_MULTI = tuple(re.compile(rf"([A-Z])<{{{n}}}\s+(.*?)\s+>{{{n}}}", re.DOTALL) for n in (4, 3, 2))
_POD_CODE = re.compile(r"([A-Z])<([^<>]*)>", re.DOTALL)
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}


def _pod_code(m: re.Match[str]) -> str:
    code, body = m.group(1), m.group(2)
    if code == "E":
        if body in _POD_ENTITIES:
            return _POD_ENTITIES[body]
        try:  # E<0x263A> hex, E<075> octal, E<61> decimal
            return chr(int(body, 16 if body.lower().startswith("0x") else 8 if body.startswith("0") and len(body) > 1 else 10))
        except ValueError:
            return ""
    if code in ("X", "Z"):
        return ""
    if code == "L":
        text, sep, _ = body.partition("|")
        if sep:
            return text
        name, _, section = body.partition("/")
        return section.strip('"') or name
    return body


def pod_inline(text: str) -> str:
    """POD formatting codes reduced to their text (innermost first, so nesting works)."""
    for pattern in _POD_MULTI:  # C<< $a <=> $b >>: the body may hold < and >
        text = pattern.sub(_pod_code, text)
    for _ in range(6):
        new = _POD_CODE.sub(_pod_code, text)
        if new == text:
            break
        text = new
    return normalize(text)


def pod_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a POD document (or a Perl file with embedded POD)."""
    out: list[str] = []
    in_pod, skip_until = not text.lstrip().startswith(("#!", "package ", "use ")), ""
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not block.strip():
            continue
        first = block.lstrip("\n")
        if first.startswith("="):
            cmd, _, rest = first[1:].partition(" ")
            cmd = cmd.split("\n")[0]
            if cmd == "cut":
                in_pod = False
            else:
                in_pod = True
            if skip_until:
                if cmd == "end" and rest.strip().split()[:1] == [skip_until]:
                    skip_until = ""
                continue
            if cmd == "begin":
                skip_until = rest.strip().split()[0] if rest.strip() else ""
            elif cmd == "item":
                item = pod_inline(rest)
                if item and item not in ("*", "-") and not item.rstrip(".").isdigit():
                    out.append(item)
            continue
        if not in_pod or skip_until or block[:1] in (" ", "\t"):
            continue  # code outside POD, a =begin block, or a verbatim paragraph
        para = pod_inline(block)
        if para:
            out.append(para)
    return out


_INFO_TITLE = re.compile(r"^[=\-*.]{3,}\s*$")
_INFO_NOTE = re.compile(r"\*[Nn]ote\s+([^:]+?)::", re.DOTALL)
_INFO_NOTE_LABEL = re.compile(r"\*[Nn]ote\s+([^:]+?):\s+[^.,;:]+([.,;])", re.DOTALL)


def info_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a GNU Info file."""
    text = text.split("\x1f\nTag Table:")[0]
    out: list[str] = []
    for node in text.split("\x1f")[1:]:  # before the first node: the "produced by makeinfo" preamble
        lines = node.strip("\n").split("\n")
        if lines and lines[0].startswith(("File:", "Indirect:", "Local Variables:")):
            lines = lines[1:]
        for block in "\n".join(lines).split("\n\n"):
            rows = [r for r in block.split("\n") if r.strip()]
            if not rows or rows[0].startswith(("* Menu:", "* ")) or any(_INFO_TITLE.match(r) for r in rows):
                continue
            if block.startswith("\0") or rows[0].startswith("START-INFO-DIR-ENTRY"):
                continue
            para = " ".join(r.strip() for r in rows)
            para = normalize(_INFO_NOTE_LABEL.sub(r"\1\2", _INFO_NOTE.sub(r"\1", para)))
            para = para.replace("‘", "'").replace("’", "'")
            if para:
                out.append(para)
    return out


_GCIDE_TAG = re.compile(r"\[(?:\d{4} Webster|Webster \d{4}|Century Dict\.|PJC|RDH|Chambers \d{4}|Rees' Cyc\.|De Colange|Prof\. [^\]]*|[^\]]*Webster[^\]]*|[^\]]*Dict\.[^\]]*)\]")
_GCIDE_WORDNET = re.compile(r"\[WordNet[^\]]*\]")
_GCIDE_SENSE = re.compile(r"^\s*(?:\d+\.|\([a-z]\))\s+")
_GCIDE_HEAD = re.compile(r"^(\S[^\\\n]*?)\s+\\")


def gcide_entries(text: str) -> list[tuple[str, list[str]]]:
    """``(headword, senses)`` of a dictd-format GCIDE text (``gcide.dict`` decompressed)."""
    entries: list[tuple[str, list[str]]] = []
    head, head_line, body = "", "", []
    for line in text.split("\n"):
        m = _GCIDE_HEAD.match(line) if line and not line[0].isspace() else None
        if m:
            if head:
                entries.append((head, _gcide_senses(head_line, body)))
            head, head_line, body = m.group(1).replace('"', "").replace("*", "").replace("`", ""), line, []
        elif head:
            body.append(line)
    if head:
        entries.append((head, _gcide_senses(head_line, body)))
    return entries


def _gcide_senses(head_line: str, lines: list[str]) -> list[str]:
    """Senses of one entry: blank-line separated blocks, one sense each. The header (pronunciation,
    forms, etymology) runs on to the first numbered sense of the first block or, without one, while
    its square brackets are open."""
    first = [j for j, ln in enumerate(lines) if not ln.strip()]
    end = first[0] if first else len(lines)
    numbered = [j for j in range(end) if _GCIDE_SENSE.match(lines[j])]
    if numbered:
        i = numbered[0]
    else:
        depth, i = head_line.count("[") - head_line.count("]"), 0
        while depth > 0 and i < end:
            depth += lines[i].count("[") - lines[i].count("]")
            i += 1
    out, block = [], []
    for line in [*lines[i:], ""]:
        if line.strip():
            block.append(line)
            continue
        raw = "\n".join(block)
        block = []
        if not raw or _GCIDE_WORDNET.search(raw) or raw.lstrip().startswith("Syn:"):
            continue
        text = _GCIDE_TAG.sub("", raw)
        text = re.sub(r"\{([^{}]*)\}", r"\1", text)
        text = normalize(_GCIDE_SENSE.sub("", re.sub(r"^\s*(?:Note|Usage):\s*", "", text)))
        if text:
            out.append(text)
    return out


def gcide_paragraphs(text: str, *, part: int = 0, parts: int = 1) -> list[tuple[str, str]]:
    """``(headword, "Headword: sense")`` for every ``parts``-th entry starting at ``part``."""
    out = []
    for k, (head, senses) in enumerate(gcide_entries(text)):
        if k % parts != part or head.startswith("00-database"):
            continue
        out.extend((head, f"{head}: {s}") for s in senses)
    return out


_HTML_BLOCKS = {"p", "li", "dd", "dt", "div", "section", "article", "blockquote", "ul", "ol", "dl", "br", "tr", "td", "th", "figcaption", "caption"}
_HTML_SKIP = {"pre", "table", "script", "style", "head", "nav", "aside", "h1", "h2", "h3", "h4", "h5", "h6", "title", "header", "footer", "code-block"}
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HEADING_ENDS = (*_HEADINGS, "div", "section", "body")
_NAV_CLASSES = ("navheader", "navfooter", "navigation", "sphinxsidebar", "related", "footer", "toc", "breadcrumb", "member-signature")


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.buf: list[str] = []
        self.skip: list[str] = []  # stack of tags we are skipping inside

    def _flush(self) -> None:
        text = normalize("".join(self.buf))
        self.buf = []
        if text:
            self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = " ".join(v or "" for k, v in attrs if k == "class")
        if self.skip:
            if tag == self.skip[-1]:
                self.skip.append(tag)
            return
        if tag in _HTML_SKIP or (tag == "div" and any(c in cls for c in _NAV_CLASSES)):
            self._flush()
            self.skip.append(tag)
        elif tag in _HTML_BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag == self.skip[-1] or (self.skip[-1] in _HEADINGS and tag in _HEADING_ENDS):
                self.skip.pop()  # mismatched heading tags (<h5>...</h4>) occur in real themes
            return
        if tag in _HTML_BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.buf.append(data)


def html_paragraphs(html: str) -> list[str]:
    """Text blocks of an HTML page (see the module docstring)."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    parser._flush()
    return parser.out
