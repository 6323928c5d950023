"""Label-free adaptor fits on the out-of-domain sets, scored per prefix, on cached encodings.

The OOD protocol of ``benchmarks/text_ood.py`` (1000 queries, 3000 documents and 5000 unlabeled
fitting texts per set: man pages, Python docs, WordNet) with the base model encoded once, so that
each fit (``fit_adaptor`` with any ``AdaptorConfig`` settings) costs seconds, not an encoding:

    python benchmarks/adaptor_fit_ood.py encode --ood-root benchmarks/out/ood --out enc/     # once (the base model, fp32, 128 tokens)
    python benchmarks/adaptor_fit_ood.py fit cayley300 steps=300,lr=5e-3 --enc enc/ --seeds 0,1 --log fits.jsonl
    python benchmarks/adaptor_fit_ood.py fit polar3000 orthogonal=polar,steps=3000 --enc enc/ --log fits.jsonl
    python benchmarks/adaptor_fit_ood.py fit residual kind=residual,orthogonal=polar,steps=1000 --enc enc/ --log fits.jsonl

``fit`` prints and appends one JSON record per set and seed: nDCG@10 (%) at d = 8 ... 384 (truncate,
L2-normalise, exact cosine search; ir-measures), fit seconds and the orthogonality error of ``W``.
Defaults: ``kind=rotation``, one thread. The queries and evaluated documents never enter a fit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DIMS = (8, 16, 32, 64, 128, 256, 384)
SETS = ("manpages", "pydocs", "wordnet")


def encode(ood_root: Path, out: Path, sets: list[str], cache: Path) -> None:
    """``out/SET.npz``: ``q`` [1000, D], ``c`` [3000, D], ``x`` [5000, D] (base model) and the qrels (``qlen``, ``qflat``, ``grades``)."""
    from mrl.evaluate.text_eval import load_eval_set
    from mrl.models.text_encode import cached_encode

    out.mkdir(parents=True, exist_ok=True)
    for name in sets:
        d = load_eval_set(None if name == "wordnet" else ood_root / name, max_queries=1000, max_corpus=3000, fit_texts=5000, seed=0)
        q, c, x = (cached_encode("all-MiniLM-L6-v2", list(s), cache_dir=cache, max_seq_length=128, bf16=False, progress=False) for s in (d.queries, d.corpus, d.fit_texts))
        extra = {"grades": np.concatenate([np.asarray(g, dtype=np.int64) for g in d.grades])} if d.grades is not None else {}
        np.savez(out / f"{name}.npz", q=q, c=c, x=x, qlen=np.array([len(r) for r in d.qrels]), qflat=np.concatenate([np.asarray(r, dtype=np.int64) for r in d.qrels]), **extra)
        print(name, q.shape, c.shape, x.shape, flush=True)


def _split(flat: np.ndarray, lens: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in part) for part in np.split(flat, np.cumsum(lens)[:-1])]


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, ...]], list[tuple[int, ...]] | None]:
    """(queries, documents, fitting texts, qrels, grades or None) of one set's ``.npz``."""
    z = np.load(path)
    grades = _split(z["grades"], z["qlen"]) if "grades" in z else None
    return z["q"], z["c"], z["x"], _split(z["qflat"], z["qlen"]), grades


def parse_settings(text: str) -> dict[str, object]:
    """``"steps=300,lr=5e-3,orthogonal=polar"`` -> AdaptorConfig keyword arguments (ints, floats, else strings)."""
    out: dict[str, object] = {}
    for part in filter(None, text.split(",")):
        key, _, val = part.partition("=")
        for cast in (int, float, str):
            try:
                out[key] = cast(val)
                break
            except ValueError:
                continue
    return out


def fit(name: str, settings: dict[str, object], enc: Path, sets: list[str], seeds: list[int], log: Path | None) -> None:
    from mrl.evaluate.ir import per_dim_ir
    from mrl.train.adaptor import AdaptorConfig, fit_adaptor

    for s in sets:
        q, c, x, qrels, grades = load(enc / f"{s}.npz")
        for seed in seeds:
            cfg = AdaptorConfig(list(DIMS), **{"kind": "rotation", "threads": 1, **settings, "seed": seed, "progress": False})
            t = time.perf_counter()
            model = fit_adaptor(x, cfg).model
            seconds = time.perf_counter() - t
            w = model.linear.weight.detach().numpy()
            res = per_dim_ir(model.transform(q), model.transform(c), qrels, DIMS, (10,), grades=grades)
            rec = {"name": name, "set": s, "seed": seed, "settings": settings, "seconds": round(seconds, 2), "orth_err": float(np.abs(w @ w.T - np.eye(w.shape[0])).max()),
                   "ndcg@10": {d: round(100 * v["ndcg@10"], 2) for d, v in res.items()}, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
            print(json.dumps(rec), flush=True)
            if log is not None:
                with log.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="encode the three sets once with the base model")
    e.add_argument("--ood-root", type=Path, default=Path("benchmarks/out/ood"), help="folder holding manpages/ and pydocs/ (benchmarks/build_ood_sets.py)")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--cache", type=Path, default=Path("benchmarks/out/cache"))
    e.add_argument("--sets", default=",".join(SETS))
    f = sub.add_parser("fit", help="fit an adaptor on each set's fitting texts and score every prefix")
    f.add_argument("name")
    f.add_argument("settings", nargs="?", default="", help="AdaptorConfig overrides, e.g. steps=300,lr=5e-3 or kind=residual,orthogonal=polar")
    f.add_argument("--enc", type=Path, required=True)
    f.add_argument("--sets", default=",".join(SETS))
    f.add_argument("--seeds", default="0")
    f.add_argument("--log", type=Path, default=None, help="append the JSON records here")
    a = ap.parse_args()
    if a.cmd == "encode":
        encode(a.ood_root, a.out, a.sets.split(","), a.cache)
    else:
        fit(a.name, parse_settings(a.settings), a.enc, a.sets.split(","), [int(v) for v in a.seeds.split(",")], a.log)


if __name__ == "__main__":
    main()
