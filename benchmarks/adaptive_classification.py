"""Adaptive classification on Fashion-MNIST: cascade thresholds fit on val, reported on test.

    flock /tmp/mrl-cpu.lock .venv/bin/python benchmarks/adaptive_classification.py --model benchmarks/out/mrl-bench

For each confidence score (max softmax, top-2 margin), cost objective (cumulative = sum of the dims
of every head evaluated; final = the exit head's dim) and allowed loss (0.1, 0.5, 1.0 points vs the
full-D head), reports test accuracy, expected final dim, expected cumulative cost, the smallest
single fixed prefix whose test accuracy reaches the cascade's, the ratios, and the oracle bound.
Writes benchmarks/out/adaptive/classification.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mrl.adaptive.cascade import evaluate_cascade, fit_cascade, oracle
from mrl.data.fashion_mnist import load_fashion_mnist
from mrl.evaluate.perdim import encode_split
from mrl.io import atomic_write, write_json
from mrl.train.checkpoint import load_model

OUT = Path("benchmarks/out/adaptive")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--drops", default="0.1,0.5,1.0", help="Allowed accuracy loss in points.")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net, cfg = load_model(a.model)
    data = load_fashion_mnist(cfg.get("data_root"), val_size=cfg["val_size"])
    dims = tuple(net.matryoshka_dims)
    t0 = time.perf_counter()
    val = encode_split(net, data.val.images, data.val.labels)
    test = encode_split(net, data.test.images, data.test.labels)
    print(f"encoded val {len(data.val)} and test {len(data.test)} in {time.perf_counter() - t0:.0f}s")
    rows = []
    for drop in [float(d) for d in a.drops.split(",")]:
        for score in ("maxprob", "margin"):
            for objective, level in (("cumulative", None), ("final", None), ("cumulative", 0.95)):
                t1 = time.perf_counter()
                casc = fit_cascade(val.logits, val.labels, dims, max_drop=drop / 100, score=score, objective=objective, confidence_level=level)
                fit_s = time.perf_counter() - t1
                rep = evaluate_cascade(casc, test.logits, test.labels)
                rep.update({"max_drop_points": drop, "fit_seconds": fit_s, "calibration": casc.calibration, "confidence_level": level})
                rows.append(rep)
                print(f"drop<={drop} {score:7s} {objective:10s} conf={level}: acc {100 * rep['accuracy']:.2f} (full {100 * rep['full_accuracy']:.2f}) exp.dim {rep['expected_dim']:.2f} cum {rep['expected_cost']:.2f} fixed {rep['fixed_dim']} ratio {rep['ratio_final']}")
    orc = oracle(test.logits, test.labels, dims)
    per_dim = rows[0]["per_dim_accuracy"]
    doc = {"model": str(a.model), "dims": list(dims), "val_n": len(data.val), "test_n": len(data.test), "per_dim_test_accuracy": per_dim, "oracle": orc, "rows": rows, "threads": a.threads}
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "classification.json", doc)
    lines = [
        "| allowed loss (on val) | score | objective | bound held at | test acc. | full-D acc. | expected dim | cumulative cost | smallest fixed prefix as accurate | fixed / expected dim | fixed / cumulative | D / expected dim |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fr = f"{r['ratio_final']:.2f}x" if r["ratio_final"] else "n/a"
        fc = f"{r['ratio_cumulative']:.2f}x" if r["ratio_cumulative"] else "n/a"
        bound = "95% confidence" if r["confidence_level"] else "point estimate"
        lines.append(f"| {r['max_drop_points']} pt | {r['score']} | {r['objective']} | {bound} | {100 * r['accuracy']:.2f} | {100 * r['full_accuracy']:.2f} | {r['expected_dim']:.2f} | {r['expected_cost']:.2f} | {r['fixed_dim']} | {fr} | {fc} | {r['ratio_to_full']:.1f}x |")
    lines += ["", "Per-prefix test accuracy (single fixed head): " + ", ".join(f"{d}: {100 * v:.2f}" for d, v in per_dim.items()),
              f"Oracle (smallest right prefix): accuracy {100 * orc['accuracy']:.2f}, expected dim {orc['expected_dim_when_right']:.2f} over the samples some head gets right ({orc['expected_dim']:.2f} counting the rest at D)."]
    atomic_write(OUT / "classification.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    print(json.dumps({"oracle": orc}))


if __name__ == "__main__":
    main()
