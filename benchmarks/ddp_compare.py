"""DDP vs single process: the same config trained by ``mrl train`` and ``mrl train --nproc N``.

Both runs use the same global batch (256) and data order; the single process gets all CPU
threads, each of the ``N`` ranks ``threads / N`` (gloo on CPU). Reports wall-clock (the whole
command, start-up included, and the training loop alone), validation top-1 from the runs' own
metrics, and test head top-1 / 1-NN (database = train split, queries = test split) per prefix.
Writes ``OUT/ddp.json`` and ``OUT/ddp.md``; reruns nothing whose result exists (``--rerun``).

    python benchmarks/ddp_compare.py --epochs 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mrl.data.fashion_mnist import load_fashion_mnist
from mrl.evaluate.perdim import evaluate_model
from mrl.io import atomic_write, read_json, write_json
from mrl.report.render import markdown_table
from mrl.train.distributed import available_cpus

SHOW = (2, 4, 8, 16, 64, 512)


def run(name: str, nproc: int, threads: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train ``name`` with ``nproc`` processes of ``threads`` threads each, evaluate it, cache the result."""
    result_path = out / f"{name}.json"
    if result_path.exists() and not args.rerun:
        return read_json(result_path)
    run_dir = out / name
    sets = [f"epochs={args.epochs}", "progress=false"] + ([f"train_subset={args.train_subset}"] if args.train_subset else [])
    if nproc == 1:
        sets.append(f"threads={threads}")
    cmd = [sys.executable, "-m", "mrl", "train", "--out", str(run_dir), "--overwrite", *[a for s in sets for a in ("--set", s)]]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    print(f"[run] {name}: {' '.join(cmd)}", flush=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    rec = evaluate_model(run_dir, load_fashion_mnist(), device="cpu")
    res = {
        "name": name, "nproc": nproc, "threads": threads, "wall_s": wall, "loadavg_1min": [load_before, load_after], "loop_s": sum(float(r["seconds"]) for r in rows),
        "train_loss": float(rows[-1]["train_loss"]),
        "val_top1": {d: float(rows[-1][f"val_top1@{d}"]) for d in rec["dims"]},
        "test_top1": {d: rec["per_dim"][str(d)]["top1"] for d in rec["dims"]},
        "test_1nn": {d: rec["per_dim"][str(d)]["1nn"] for d in rec["dims"]},
    }
    write_json(result_path, res)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/out/ddp")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=available_cpus(), help="CPU threads in all (split across ranks)")
    p.add_argument("--rerun", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    per_rank = max(1, args.threads // args.nproc)
    results = [run("single", 1, args.threads, args, out), run(f"ddp{args.nproc}", args.nproc, per_rank, args, out)]
    if args.threads > 1:  # also one process with one rank's share of the threads, to separate DDP from threading effects
        results.append(run(f"single-{per_rank}thread", 1, per_rank, args, out))
    results = [json.loads(json.dumps(r)) for r in results]  # dim keys as strings, as read back from disk
    header = ["metric"] + [f"{r['name']} ({r['nproc']} proc x {r.get('threads', '?')} thread)" for r in results] + [f"{results[1]['name']} - {results[0]['name']}"]

    def row(label: str, cells: list[str], diff: str) -> list[str]:
        return [label, *cells, diff]

    rows = [
        row("wall-clock, whole command (s)", [f"{r['wall_s']:.1f}" for r in results], f"{results[1]['wall_s'] / results[0]['wall_s']:.2f}x"),
        row("training loop (s)", [f"{r['loop_s']:.1f}" for r in results], f"{results[1]['loop_s'] / results[0]['loop_s']:.2f}x"),
        row("machine load (1-min load average before / after)", [" / ".join(f"{v:.1f}" for v in r.get("loadavg_1min", [float("nan")] * 2)) for r in results], ""),
        row("final train loss (sum over dims)", [f"{r['train_loss']:.3f}" for r in results], f"{results[1]['train_loss'] - results[0]['train_loss']:+.3f}"),
    ]
    for key, label in (("val_top1", "val top-1"), ("test_top1", "test head top-1"), ("test_1nn", "test 1-NN")):
        for d in SHOW:
            vals = [100 * r[key][str(d)] for r in results]
            rows.append(row(f"{label} @ d={d} (%)", [f"{v:.2f}" for v in vals], f"{vals[1] - vals[0]:+.2f}"))
    cmd = "python benchmarks/ddp_compare.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "### DDP (gloo, CPU) vs one process",
        "",
        f"Command: `{cmd.strip()}`. Machine: {platform.machine()}, {available_cpus()} cores. Same config for both: TrainConfig defaults (D = 512, dims 2…512, global batch 256), "
        f"{args.epochs} epoch(s), train subset {args.train_subset or 'all 55k'}, seed 0; wall-clock is the whole `mrl train` command (start-up, data loading, per-epoch validation, saving), one run each.",
        "",
        markdown_table(header, rows),
        "",
    ])
    atomic_write(out / "ddp.md", (text + "\n").encode())
    write_json(out / "ddp.json", results)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
