"""Replace one marked section of benchmarks/RESULTS.md (atomically), leaving the others alone."""

from __future__ import annotations

from pathlib import Path

from mrl.io import atomic_write

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Swap the text between ``<!-- section:name -->`` and ``<!-- /section:name -->`` for ``body``.

    A section that does not exist yet is appended. Only that section's text changes.
    """
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    text = path.read_text()
    if text.count(start) != text.count(end) or text.count(start) > 1:
        raise ValueError(f"{path} has unbalanced or repeated markers for section {name!r}; fix them by hand.")
    if start not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    i, j = text.index(start) + len(start), text.index(end)
    if j < i:
        raise ValueError(f"{path}: the end marker of section {name!r} precedes its start.")
    atomic_write(path, (text[:i] + "\n" + body.strip("\n") + "\n" + text[j:]).encode())
