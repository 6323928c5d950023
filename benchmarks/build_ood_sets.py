"""Build the out-of-domain BEIR sets (queries, evaluated corpus, unlabeled fitting documents).

* ``manpages``: the installed English man pages (``/usr/share/man/man[1-8]``, rendered by mandoc);
  query = the NAME line's summary, document = the DESCRIPTION's first ~200 words.
* ``pydocs``: Python 3.11's documentation sources (``python3.11-doc``); query = an API entry's
  qualified signature, document = its description's first ~200 words.

Each lands in ``--out/<name>/`` (BEIR files + ``unlabeled.jsonl`` + ``manifest.json``); see
``mrl.corpora.ood`` for the split rules. Needs ``make bench-data`` (mandoc, python3.11-doc). Rendering
the man pages is CPU work (~1.5 min on 2 cores): run under the shared lock,

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/build_ood_sets.py --overwrite
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mrl.corpora.pydocs import DEFAULT_ROOT as PYDOCS_ROOT
from mrl.corpora.registry import build_set, set_names

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ood")
    ap.add_argument("--sets", default=",".join(set_names("ood")), help=f"comma-separated: {', '.join(set_names('ood'))}")
    ap.add_argument("--man-root", default="/usr/share/man")
    ap.add_argument("--pydocs-root", default=str(PYDOCS_ROOT))
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--corpus", type=int, default=5000)
    ap.add_argument("--unlabeled", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(sets) - set(set_names("ood")))
    if unknown:
        ap.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(set_names('ood'))}")
    split = {"n_queries": args.queries, "n_corpus": args.corpus, "n_unlabeled": args.unlabeled, "seed": args.seed, "overwrite": args.overwrite}
    sources = {"manpages": {"man_root": args.man_root, "processes": args.processes}, "pydocs": {"pydocs_root": args.pydocs_root}}
    for name in sets:
        m = build_set(name, args.out / name, log=log, **sources.get(name, {}), **split)
        log(f"{name} -> {args.out / name}: {m['counts']}")


if __name__ == "__main__":
    main()
