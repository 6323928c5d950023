"""Sample of a corpus encoding for fitting the label-free adaptor on the corpus itself.

Takes the first ``--sample`` rows of the encoding's finished shards (the corpus shards are already
shuffled with a fixed seed) whose passage id is not listed in the corpus' ``exclude/*.txt`` (the
WordNet task's relevant definitions and the out-of-domain sets' evaluated documents); the held-out
query passages are not in the corpus. Writes ``OUT`` (``[n, D]`` float32) and ``OUT.json`` (the ids'
SHA-256 and the exclusion counts). Then, e.g.:

    .venv/bin/python benchmarks/corpus_adaptor_sample.py --encoding ENC/corpus --corpus CORPUS --sample 50000 --out ADAPT/sample.npy
    .venv/bin/mrl adapt ADAPT/sample.npy --out ADAPT/adaptor --steps 1000
    .venv/bin/mrl apply-adaptor ADAPT/adaptor --input ENC/corpus --out ENC-ADAPTED/corpus   # and test, tune, wordnet
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from mrl.encode.shards import finished_rows
from mrl.io import save_npy, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoding", type=Path, required=True, help="Shard folder of the corpus (finished shards are enough).")
    ap.add_argument("--corpus", type=Path, required=True, help="Text corpus folder (its exclude/*.txt lists ids never used for fitting).")
    ap.add_argument("--sample", type=int, default=50_000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    lent = finished_rows(a.encoding)
    if lent is None:
        raise SystemExit(f"{a.encoding} holds no finished shards with text hashes")
    _, _, shards = lent
    ids = (a.encoding / "ids.txt").read_text().split("\n")[:-1]
    excluded: set[str] = set()
    for f in sorted((a.corpus / "exclude").glob("*.txt")):
        excluded |= {ln.strip() for ln in f.read_text().splitlines() if ln.strip()}
    rows, vecs = [], []
    for start, arr in sorted(shards, key=lambda s: s[0]):
        keep = np.array([ids[start + i] not in excluded for i in range(arr.shape[0])])
        take = np.flatnonzero(keep)[: a.sample - len(rows)]
        rows.extend(int(start + i) for i in take)
        vecs.append(np.asarray(arr[take], dtype=np.float32))
        if len(rows) >= a.sample:
            break
    x = np.concatenate(vecs)
    save_npy(a.out, x)
    picked = "\n".join(ids[r] for r in rows)
    write_json(a.out.with_suffix(".json"), {"rows": len(rows), "dim": int(x.shape[1]), "excluded_ids": len(excluded), "ids_sha256": hashlib.sha256(picked.encode()).hexdigest(),
                                            "encoding": str(a.encoding), "corpus": str(a.corpus), "rule": "first non-excluded rows of the shuffled corpus shards"})
    print(f"wrote {a.out}: {x.shape[0]} x {x.shape[1]} ({len(excluded)} ids excluded from fitting)")


if __name__ == "__main__":
    main()
