"""Text normalisation and passage rules shared by every text source.

* :func:`normalize`: Unicode NFC, control characters dropped, runs of whitespace collapsed.
* :func:`split_passages`: a paragraph of ``min_words..max_words`` words is one passage; a longer one
  is cut on sentence boundaries into near-equal runs of about ``target_words`` words (a sentence
  longer than ``max_words`` is cut on word boundaries); shorter ones are dropped.
* :func:`dedupe_key`: the hash that exact-duplicate removal compares (lower-cased normalised text).
* :func:`looks_like_prose`: a cheap filter that drops code, tables and option lists rendered as text.

The sentence splitter is a regex (end punctuation, optional closing quote/bracket, whitespace, then
an upper-case letter, digit or opening quote). A trained splitter (e.g. ``pysbd``) is ~100x slower
per sentence, and passages only need a boundary near a target size, not linguistically perfect ones.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata

_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SENT = re.compile(r"(?<=[.!?])([\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|Mr|Mrs|Dr|St|No|Fig|Sec|approx|resp)\.|\b[A-Z]\.)$")
_WORDLIKE = re.compile(r"^[\"'(\[]*[A-Za-z][A-Za-z'’-]*[.,;:!?\"')\]]*$")
_CODE_CHARS = re.compile(r"[{}\[\]<>=;$\\|#@^~`*_/]")


def normalize(text: str) -> str:
    """NFC, control characters removed, whitespace runs collapsed to one space, stripped."""
    return _WS.sub(" ", _CONTROL.sub("", unicodedata.normalize("NFC", text))).strip()


def word_count(text: str) -> int:
    return len(text.split())


def sentences(text: str) -> list[str]:
    """Split normalised text into sentences (regex boundaries; common abbreviations are kept whole)."""
    out: list[str] = []
    start = 0
    for m in _SENT.finditer(text):
        if _ABBREV.search(text[start : m.start()]):
            continue
        out.append(text[start : m.start() + len(m.group(1))].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _cut_words(sentence: str, max_words: int) -> list[str]:
    words = sentence.split()
    k = math.ceil(len(words) / max_words)
    size = math.ceil(len(words) / k)
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def split_passages(text: str, *, min_words: int = 8, max_words: int = 80, target_words: int = 50) -> list[str]:
    """Passages of ``min_words..max_words`` words from one paragraph (see the module docstring)."""
    text = normalize(text)
    n = word_count(text)
    if n < min_words:
        return []
    if n <= max_words:
        return [text]
    pieces = [p for s in sentences(text) for p in (_cut_words(s, max_words) if word_count(s) > max_words else [s])]
    k = max(1, round(n / target_words))
    goal = n / k
    chunks: list[list[str]] = [[]]
    size = 0
    for piece in pieces:
        w = word_count(piece)
        # close the chunk when adding would pass the goal by more than it falls short, or pass max_words
        if chunks[-1] and (size + w > max_words or (size + w - goal > goal - size)):
            chunks.append([])
            size = 0
        chunks[-1].append(piece)
        size += w
    out = [" ".join(c) for c in chunks]
    if len(out) > 1 and word_count(out[-1]) < min_words and word_count(out[-2]) + word_count(out[-1]) <= max_words:
        out[-2:] = [out[-2] + " " + out[-1]]
    return [p for p in out if min_words <= word_count(p) <= max_words]


def first_words(text: str, max_words: int) -> str:
    """The leading whole sentences of ``text`` up to ``max_words`` words (at least the first
    sentence, cut to ``max_words`` words when it alone is longer)."""
    text = normalize(text)
    if word_count(text) <= max_words:
        return text
    kept: list[str] = []
    size = 0
    for s in sentences(text):
        w = word_count(s)
        if size + w > max_words:
            break
        kept.append(s)
        size += w
    return " ".join(kept) if kept else " ".join(text.split()[:max_words])


def dedupe_key(text: str) -> bytes:
    """16-byte hash of the lower-cased normalised text (exact-duplicate removal)."""
    return hashlib.blake2b(normalize(text).lower().encode(), digest_size=16).digest()


def looks_like_prose(text: str, *, min_word_share: float = 0.6, max_code_share: float = 0.06) -> bool:
    """True when most tokens are words and few characters are code punctuation.

    Drops rendered code, option tables, hex dumps and URLs lists; keeps sentences that mention an
    identifier or two.
    """
    tokens = text.split()
    if not tokens:
        return False
    wordlike = sum(1 for t in tokens if _WORDLIKE.match(t))
    if wordlike / len(tokens) < min_word_share:
        return False
    return len(_CODE_CHARS.findall(text)) / max(1, len(text)) <= max_code_share
