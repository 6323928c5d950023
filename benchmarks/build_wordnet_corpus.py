"""Build the WordNet-only text corpus for the fair-peer retrieval benchmark (RESULTS.md, issue 24).

The same builder as ``benchmarks/build_text_corpus.py`` (set ``wordnet-corpus`` of :mod:`mrl.corpora.registry`, :func:`mrl.corpora.corpus.build_corpus`:
de-duplicated passages, held-out queries that never enter the corpus, the WordNet task), with one
source: WordNet 3.0 definitions (whole) and usage examples of every part of speech, from
``/usr/share/wordnet`` (``make setup``). Held out: ``--test`` (default 5,000) and ``--tune``
(default 1,000) passages, disjoint. About 10 s of CPU::

    nice -n 19 .venv/bin/python benchmarks/build_wordnet_corpus.py --out /work/bench/wn-corpus
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mrl.corpora.registry import build_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test", type=int, default=5_000)
    ap.add_argument("--tune", type=int, default=1_000)
    ap.add_argument("--processes", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    m = build_set("wordnet-corpus", a.out, log=lambda s: print(s, flush=True), seed=a.seed, n_test=a.test, n_tune=a.tune, processes=a.processes)
    print(f"{m['total']} passages, queries {m['queries']}, {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
