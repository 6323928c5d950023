"""Copy the finished leading shards of an unfinished encoding into a complete shard folder.

For benchmarking on the part of a corpus encoded so far: rows ``0 .. n`` where shards ``0 .. s-1``
are all finished (the corpus shards are shuffled with a fixed seed, so the head is a uniform sample
of the corpus). The copy is an ordinary shard folder (ids, text hashes, manifest with checksums)
that records its source and row count; the source is never modified.

    .venv/bin/python benchmarks/shard_head.py ENC/corpus ENC/corpus-head [--shards S]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mrl.encode.shards import ShardSet, finished_rows, open_shards, write_shard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--shards", type=int, default=None, help="Copy at most this many leading shards.")
    a = ap.parse_args()
    lent = finished_rows(a.source)
    if lent is None:
        raise SystemExit(f"{a.source} holds no shard manifest with text hashes")
    man, hashes, shards = lent
    rps = int(man["rows_per_shard"])
    by_start = {start: arr for start, arr in shards}
    head = []
    while (len(head) * rps) in by_start and (a.shards is None or len(head) < a.shards):
        head.append(by_start[len(head) * rps])
    if not head:
        raise SystemExit(f"{a.source}: shard 0 is not finished yet")
    n = sum(int(x.shape[0]) for x in head)
    ids = (a.source / man["ids"]["file"]).read_text().split("\n")[:-1][:n] if man.get("ids") else None
    header = {**{k: man[k] for k in ("model", "dim", "dtype", "sources", "settings")}, "rows": n, "rows_per_shard": rps,
              "head_of": {"folder": str(a.source.resolve()), "rows": int(man["rows"]), "shards": len(head)}}
    out = ShardSet.create_or_resume(a.out, header, ids=ids, text_hashes=np.asarray(hashes[:n]))
    for i in out.pending():
        out.record(write_shard(a.out, i, i * rps, np.asarray(head[i]), man["dtype"]))
    reader = open_shards(a.out)
    print(f"wrote {a.out}: the first {reader.rows} of {man['rows']} rows ({len(head)} shards)")


if __name__ == "__main__":
    main()
