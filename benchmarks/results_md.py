"""Replace one marked section of benchmarks/RESULTS.md (atomically), leaving the others alone."""

from __future__ import annotations

import re
from pathlib import Path

from mrl.io import atomic_write

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Swap the text between ``<!-- section:name -->`` and ``<!-- /section:name -->`` for ``body``."""
    text = path.read_text()
    pattern = re.compile(rf"(<!-- section:{re.escape(name)} -->\n).*?(\n<!-- /section:{re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        text = text.rstrip("\n") + f"\n\n<!-- section:{name} -->\n<!-- /section:{name} -->\n"
    atomic_write(path, pattern.sub(lambda m: m.group(1) + body.strip("\n") + m.group(2), text).encode())
