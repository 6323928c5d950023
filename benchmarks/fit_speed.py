"""Wall-clock of a label-free adaptor fit (by default the rotation: the default text recipe's fit) on cached embeddings.

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/fit_speed.py --vectors manpages.npz pydocs.npz \\
        --steps 300 --threads 1 2 --repeats 3
    .venv/bin/python benchmarks/fit_speed.py --vectors manpages.npz pydocs.npz --threads 2 \\
        --variant cayley:steps=300,lr=5e-3 --variant polar:orthogonal=polar,steps=3000

``--vectors``: ``[n, D]`` float arrays (``.npy``, or ``.npz`` with the array under ``x``), concatenated: the
fitting texts' cached base-model embeddings. Each run calls ``fit_adaptor(x, AdaptorConfig(dims, kind="rotation",
steps=STEPS, threads=T))`` (``--kind`` picks another adaptor kind) and reports ``AdaptorResult.seconds`` (the optimisation loop; the neighbour table
and the PCA start are outside it) next to the whole call's wall and CPU seconds. ``--variant NAME:key=val,...``
(repeatable) times other ``AdaptorConfig`` settings side by side (e.g. ``orthogonal=polar,steps=3000``); thread counts
and variants alternate within each repeat so load drifts hit them alike; the table quotes medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from mrl.train.adaptor import AdaptorConfig, fit_adaptor


def load_vectors(paths: list[Path]) -> np.ndarray:
    """Concatenate ``[n_i, D]`` arrays from ``.npy`` files or ``.npz`` files (key ``x``) into ``[sum n_i, D]`` float32."""
    parts = [np.load(p)["x"] if p.suffix == ".npz" else np.load(p) for p in paths]
    return np.concatenate(parts).astype(np.float32, copy=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=Path, nargs="+", required=True)
    ap.add_argument("--dims", default="8,16,32,64,128,256,384")
    ap.add_argument("--kind", default="rotation", help="AdaptorConfig.kind: rotation (the text recipe's fit), linear, mlp, ...")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", action="append", default=[], help="NAME:key=val,... AdaptorConfig overrides (repeatable); default: one variant with --steps")
    a = ap.parse_args()
    x = load_vectors(a.vectors)
    dims = [int(d) for d in a.dims.split(",")]
    variants = dict(parse_variant(v) for v in a.variant) or {"default": {"steps": a.steps}}
    runs: dict[tuple[str, int], list[dict]] = {(v, t): [] for v in variants for t in a.threads}
    for _ in range(a.repeats):
        for (v, t), recs in runs.items():
            cfg = AdaptorConfig(dims, **{"kind": a.kind, **variants[v], "threads": t, "progress": False})
            wall0, cpu0 = time.perf_counter(), time.process_time()
            result = fit_adaptor(x, cfg)
            rec = {"variant": v, "kind": cfg.kind, "n": int(x.shape[0]), "steps": cfg.steps, "threads": t, "fit_s": round(result.seconds, 2), "wall_s": round(time.perf_counter() - wall0, 2), "cpu_s": round(time.process_time() - cpu0, 2)}
            recs.append(rec)
            print(json.dumps(rec), flush=True)
    print(f"\n| variant | threads | fit seconds ({a.repeats} runs) | median | per step (ms) | whole call, wall (median) | CPU seconds (median) |\n|---|---|---|---:|---:|---:|---:|")
    for (v, t), recs in runs.items():
        fits = [r["fit_s"] for r in recs]
        med = statistics.median(fits)
        print(f"| {v} | {t} | {', '.join(f'{f:.1f}' for f in fits)} | {med:.1f} | {1000 * med / recs[0]['steps']:.0f} | {statistics.median(r['wall_s'] for r in recs):.1f} | {statistics.median(r['cpu_s'] for r in recs):.1f} |")


def parse_variant(text: str) -> tuple[str, dict]:
    """``"name:steps=300,lr=5e-3"`` -> ``("name", {"steps": 300, "lr": 0.005})`` (ints, floats, else strings)."""
    from adaptor_fit_ood import parse_settings  # the sibling script's parser of AdaptorConfig overrides

    name, _, body = text.partition(":")
    return name, parse_settings(body)


if __name__ == "__main__":
    main()
