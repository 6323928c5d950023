"""Build the out-of-domain BEIR sets (queries, evaluated corpus, unlabeled fitting documents).

* ``manpages``: the installed English man pages (``/usr/share/man/man[1-8]``, rendered by mandoc);
  query = the NAME line's summary, document = the DESCRIPTION's first ~200 words.
* ``pydocs``: Python 3.11's documentation sources (``python3.11-doc``); query = an API entry's
  qualified signature, document = its description's first ~200 words.

Each lands in ``--out/<name>/`` (BEIR files + ``unlabeled.jsonl`` + ``manifest.json``); see
``mrl.data.ood`` for the split rules. Needs ``make bench-data`` (mandoc, python3.11-doc). Rendering
the man pages is CPU work (~1.5 min on 2 cores): run under the shared lock,

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/build_ood_sets.py --overwrite
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from mrl.data.manpages import list_man_pages, load_man_pages, man_ood_items
from mrl.data.ood import build_ood_set
from mrl.data.pydocs import DEFAULT_ROOT as PYDOCS_ROOT
from mrl.data.pydocs import load_python_docs, pydoc_ood_items

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def package_version(name: str) -> str:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=False)
    return res.stdout.strip() or "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ood")
    ap.add_argument("--sets", default="manpages,pydocs", help="comma-separated: manpages, pydocs")
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
    split = {"n_queries": args.queries, "n_corpus": args.corpus, "n_unlabeled": args.unlabeled, "seed": args.seed, "overwrite": args.overwrite}
    if "manpages" in sets:
        t0 = time.perf_counter()
        files = list_man_pages(args.man_root)
        log(f"man pages: {len(files)} files (symlinks and .so stubs folded); rendering with {args.processes} processes")
        pages = load_man_pages(args.man_root, paths=files, processes=args.processes)
        items, extra = man_ood_items(pages)
        log(f"man pages: {len(pages)} parsed, {len(items)} documents, {len(extra)} other sections ({time.perf_counter() - t0:.0f}s)")
        sources = [f"English man pages under {args.man_root}/man[1-8] ({len(files)} page files after folding symlinks and .so stubs; mandoc {package_version('mandoc')})"]
        info = {"name": "manpages", "query": "NAME line summary (command names removed)", "document": "DESCRIPTION, first whole sentences up to 200 words", "build_seconds": round(time.perf_counter() - t0, 1)}
        m = build_ood_set(args.out / "manpages", items, extra, sources=sources, info=info, **split)
        log(f"manpages -> {args.out / 'manpages'}: {m['counts']}")
    if "pydocs" in sets:
        t0 = time.perf_counter()
        docs = load_python_docs(args.pydocs_root)
        items, extra = pydoc_ood_items(docs)
        log(f"pydocs: {len(docs.entries)} entries, {len(items)} documents, {len(extra)} prose chunks ({time.perf_counter() - t0:.0f}s)")
        sources = [f"Python 3.11 documentation sources {args.pydocs_root} (python3.11-doc {package_version('python3.11-doc')})"]
        info = {"name": "pydocs", "query": "qualified signature of an API entry", "document": "the entry's description, first whole sentences up to 200 words", "build_seconds": round(time.perf_counter() - t0, 1)}
        m = build_ood_set(args.out / "pydocs", items, extra, sources=sources, info=info, **split)
        log(f"pydocs -> {args.out / 'pydocs'}: {m['counts']}")


if __name__ == "__main__":
    main()
