"""Build a funnel index and tune it over a chosen set of first-stage structures (the tuner of
``mrl index build --recall-target``, with its search space narrowed to ``--first``).

For a corpus where the default space (23 structures) does not fit the session: the narrowed space
is stated with the result. ``--first default`` explores the default space; ``--no-prune`` turns off
the tuner's pruning (every structure built, every shortlist tried) to compare its choice and time. Writes an ordinary index folder (``build.json`` and ``tuning.md``
attached, as the CLI does), so ``retrieval_bench.py table --funnel-index`` measures it::

    .venv/bin/python benchmarks/funnel_tune_space.py OUT/funnel --vectors ENC/corpus --queries ENC/tune \\
        --first 128/int8/hnsw 128/int8/hnsw/m16 64/int8/hnsw --recall-target 0.99 --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss

from mrl.encode import is_shard_folder, open_shards
from mrl.index import MatryoshkaIndex
from mrl.index.tune import apply, tune
from mrl.io import dumps, load_npy


def load(path: Path):
    return open_shards(path).array() if is_shard_folder(path) else load_npy(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--vectors", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--first", nargs="+", required=True, help="First-stage structures to explore, e.g. 128/int8/hnsw 64/int8/hnsw/m16.")
    ap.add_argument("--recall-target", type=float, default=0.99)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-prune", action="store_true", help="Exhaustive scan: build every structure (the tuner's prune=False).")
    a = ap.parse_args()
    if a.folder.exists():
        raise SystemExit(f"{a.folder} exists; choose a new folder.")
    faiss.omp_set_num_threads(a.threads)
    t0 = time.perf_counter()
    x = load(a.vectors)
    index = MatryoshkaIndex(x.shape[1])
    index.add(x)
    store_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    space = None if a.first == ["default"] else {"first": a.first}
    result = tune(index, queries=load(a.queries), k=10, target_recall=a.recall_target, space=space, threads=a.threads, prune=not a.no_prune,
                  log=lambda m: print(f"[{time.perf_counter() - t1:7.1f}s] {m}", flush=True))
    apply(index, result)
    tune_s = time.perf_counter() - t1
    build = {"store_s": store_s, "tune_s": tune_s, "seconds": store_s + tune_s, "space_first": a.first, "threads": a.threads, "prune": not a.no_prune,
             "structures_built": result.built, "structures_skipped": [s.structure for s in result.skipped]}
    index.save(a.folder, attach={"build.json": dumps(build).encode(), "tuning.md": result.markdown().encode()})
    print(result.headline(), flush=True)
    print(f"store {store_s:.1f}s, tuning {tune_s:.1f}s ({len(result.built)} structures built, {len(result.skipped)} skipped); saved {a.folder}", flush=True)


if __name__ == "__main__":
    main()
