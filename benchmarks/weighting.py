"""Loss-weighting ablation on Fashion-MNIST: every strategy x seeds, per-dim head top-1 and 1-NN.

Same backbone and recipe as the foundation per-dim table (TrainConfig defaults: small ResNet width
16, D = 512, dims 2, 4, ..., 512, 3 epochs, batch 256). Each (strategy, seed) is trained into
``OUT/runs/<strategy>-s<seed>`` and evaluated into ``OUT/records/<strategy>-s<seed>.json``
(head top-1 on the test split; 1-NN with database = train split, queries = test split, L2).
Runs whose record exists are skipped, a run killed mid-training resumes from its checkpoint, so
the script can be stopped and restarted at will. At the end it writes ``OUT/weighting.md``
(mean ± std tables and the choice of default) and ``OUT/summary.json``.

Choice of default, from the data: a strategy meets the issue's target when its mean head top-1
over d in {2, 4, 8, 16} is >= +1 point above ``uniform`` and its head top-1 at d = 512 is at most
0.2 points below ``uniform`` (means over seeds). Among those, the largest small-d gain wins;
if none meets it, ``uniform`` stays the default and the table says so.

    python benchmarks/weighting.py --device cuda                      # the full ablation (GPU)
    python benchmarks/weighting.py --epochs 1 --train-subset 2000 --seeds 0 --strategies uniform,uncertainty --out benchmarks/out/weighting-tiny
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mrl.data.fashion_mnist import load_fashion_mnist
from mrl.errors import MRLError
from mrl.evaluate.perdim import evaluate_model, public
from mrl.io import atomic_write, read_json, write_json
from mrl.nesting import parse_dims
from mrl.report import aggregate
from mrl.report.render import markdown_table, tables
from mrl.train import TrainConfig, train
from mrl.train.checkpoint import CHECKPOINT_NAME, MODEL_NAME

DIMS = tuple(parse_dims("2,4,...,512"))
SMALL = tuple(d for d in DIMS if d <= 16)
BUDGET = {"new_runs": -1}  # --max-new-runs: trainings left in this invocation (-1: no limit)


def strategies() -> dict[str, dict[str, Any]]:
    """Strategy name -> config changes. ``fixed`` doubles the weight of every d <= 16."""
    return {
        "uniform": {},
        "fixed": {"weighting": "fixed", "matryoshka_weights": [2.0 if d <= 16 else 1.0 for d in DIMS]},
        "uncertainty": {"weighting": "uncertainty"},
        "dwa": {"weighting": "dwa", "weighting_kwargs": {"temperature": 2.0}},
        "focal": {"weighting": "focal", "weighting_kwargs": {"gamma": 1.0, "max_weight": 4.0, "momentum": 0.9}},
    }


def _final_weights(run_dir: Path) -> dict[str, float]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    return {k.split("@")[1]: float(v) for k, v in rows[-1].items() if k.startswith("weight@")}


def _reusable(run_dir: Path, cfg: TrainConfig) -> bool:
    """A finished run (e.g. the per-dim table's ``mrl-s<seed>``) trained with exactly this config."""
    if not (run_dir / MODEL_NAME).exists() or not (run_dir / "config.json").exists():
        return False
    try:
        return not TrainConfig.from_dict(read_json(run_dir / "config.json")).differences(cfg)
    except MRLError:
        return False


def run_one(name: str, seed: int, base: TrainConfig, out: Path, data: Any, eval_device: str, reuse_uniform: Path | None = None) -> dict[str, Any] | None:
    """Train (or resume, or reuse) one run and evaluate it; returns its record.

    Returns None instead of training when the budget of new runs (``--max-new-runs``) is spent.
    """
    record_path = out / "records" / f"{name}-s{seed}.json"
    if record_path.exists():
        return read_json(record_path)
    run_dir = out / "runs" / f"{name}-s{seed}"
    cfg = base.replace(seed=seed, **strategies()[name])
    if name == "uniform" and reuse_uniform is not None and _reusable(reuse_uniform / f"mrl-s{seed}", cfg):
        run_dir = reuse_uniform / f"mrl-s{seed}"
        print(f"[reuse] {run_dir} (same config as uniform, seed {seed})", flush=True)
    if not (run_dir / MODEL_NAME).exists():
        if BUDGET["new_runs"] == 0:
            return None
        BUDGET["new_runs"] -= 1
        resume = (run_dir / CHECKPOINT_NAME).exists()
        print(f"[train] {run_dir.name}{' (resuming)' if resume else ''}", flush=True)
        result = train(cfg, run_dir, resume=resume, overwrite=not resume)
        print(f"[train] {run_dir.name} done in {result.seconds:.0f}s", flush=True)
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    rec = public(evaluate_model(run_dir, data, dims=DIMS, device=eval_device))
    rec.update({"method": name, "mode": f"weighting:{name}", "strategy": name, "model": str(run_dir), "final_weights": _final_weights(run_dir), "train_seconds": sum(float(r["seconds"]) for r in rows)})
    write_json(record_path, rec)
    print(f"[eval] {run_dir.name}: top1@2 {100 * rec['per_dim']['2']['top1']:.1f}, top1@512 {100 * rec['per_dim']['512']['top1']:.1f}", flush=True)
    return rec


def choose_default(agg: dict[str, Any]) -> tuple[str, list[str], dict[str, dict[str, float]]]:
    """Apply the target rule; returns (default, explanation lines, per-strategy deltas in points)."""
    def mean(s: str, d: int) -> float:
        return 100 * agg[s][d]["top1"]["mean"]

    if "uniform" not in agg:
        return "uniform", ["- `uniform` was not run, so no strategy can be compared with it; default stays `uniform`."], {}
    deltas: dict[str, dict[str, float]] = {}
    lines = []
    for s in agg:
        if s == "uniform":
            continue
        small = statistics.fmean(mean(s, d) - mean("uniform", d) for d in SMALL)
        worst_small = min(mean(s, d) - mean("uniform", d) for d in SMALL)
        at512 = mean(s, 512) - mean("uniform", 512)
        met = small >= 1.0 and at512 >= -0.2
        deltas[s] = {"small_mean": small, "small_min": worst_small, "d512": at512, "met": met}
        lines.append(f"- `{s}`: mean head top-1 gain over d <= 16 {small:+.2f} points (smallest {worst_small:+.2f}), d=512 {at512:+.2f} points: target {'met' if met else 'missed'}.")
    winners = sorted((s for s, v in deltas.items() if v["met"]), key=lambda s: -deltas[s]["small_mean"])
    if winners:
        default = winners[0]
        lines.append(f"- Default chosen from the data: `{default}` (largest small-d gain among the strategies that meet the target).")
    else:
        default = "uniform"
        best = max(deltas, key=lambda s: deltas[s]["small_mean"]) if deltas else None
        lines.append("- No strategy meets the target, so the default stays `uniform`" + (f"; the largest small-d gain is `{best}` ({deltas[best]['small_mean']:+.2f} points at d <= 16, {deltas[best]['d512']:+.2f} at d=512)." if best else "."))
    return default, lines, deltas


def write_summary(records: list[dict[str, Any]], args: argparse.Namespace, out: Path, elapsed: float) -> str:
    agg = aggregate(records)
    agg = {s: agg[s] for s in sorted(agg, key=lambda s: list(strategies()).index(s))}  # uniform first, as listed
    default, lines, deltas = choose_default(agg)
    seeds = sorted({r["seed"] for r in records})
    cmd = "python benchmarks/weighting.py " + " ".join(sys.argv[1:])
    body = [
        "### Loss weighting ablation (Fashion-MNIST)",
        "",
        f"Command: `{cmd.strip()}` ({elapsed / 60:.1f} min wall-clock for this invocation; existing records reused).",
        f"Machine: {platform.machine()}, device {args.device}, {torch.get_num_threads()} CPU threads. Recipe: TrainConfig defaults (small ResNet width 16, D = 512, dims 2…512, batch 256, SGD + cosine), "
        f"{args.epochs} epoch(s), train subset {args.train_subset or 'all 55k'}; seeds {seeds}; mean ± sample std over seeds. Head top-1 on the 10k test split; 1-NN with database = train split, queries = test split, L2.",
        "Strategies: `uniform` (paper), `fixed` (weight 2 on d <= 16, 1 above), `uncertainty` (Kendall 2018, learned log-variances), `dwa` (Liu 2019, T = 2, per epoch), `focal` (lagging-prefix boost, gamma 1, cap 4, EMA 0.9, per step).",
        "",
        "Runs per strategy: " + ", ".join(f"`{s}` {agg[s][512]['top1']['n']}" for s in agg) + ".",
        "",
        "Target (issue): >= +1 point head top-1 at d <= 16 over `uniform` (read as the mean over d = 2, 4, 8, 16), with <= 0.2 point loss at d = 512.",
        *lines,
        "",
    ]
    for metric, (header, rows) in tables(agg, metrics=("top1", "1nn")).items():
        title = {"top1": "Head top-1 accuracy (%)", "1nn": "1-NN accuracy (%)"}[metric]
        body += [f"#### {title}", "", markdown_table(header, rows), ""]
    weight_rows = []
    for s in agg:
        ws = [r["final_weights"] for r in records if r["strategy"] == s]
        weight_rows.append([s] + [f"{statistics.fmean(w[str(d)] for w in ws):.2f}" for d in DIMS])
    body += ["#### Final per-prefix weights (mean over seeds, last epoch)", "", markdown_table(["strategy"] + [f"d={d}" for d in DIMS], weight_rows), ""]
    text = "\n".join(body)
    atomic_write(out / "weighting.md", (text + "\n").encode())
    write_json(out / "summary.json", {"default": default, "deltas": deltas, "aggregate": {s: {str(d): v for d, v in per.items()} for s, per in agg.items()}, "command": cmd})
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/out/weighting")
    p.add_argument("--strategies", default=",".join(strategies()), help="comma list; known: " + ", ".join(strategies()))
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-subset", type=int, default=None, help="train on the first N images only (quick checks)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu (training and evaluation)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--reuse-uniform", default=None, help="folder of the per-dim table's runs (mrl-s<seed>) to reuse as `uniform` when their config matches")
    p.add_argument("--max-new-runs", type=int, default=-1, help="train at most this many new runs, then summarise what exists and stop (-1: all)")
    args = p.parse_args()
    BUDGET["new_runs"] = args.max_new_runs
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in names if s not in strategies()]
    if unknown:
        print(f"error: unknown strategies {unknown}; choose from {list(strategies())}", file=sys.stderr)
        return 2
    out = Path(args.out)
    settings = {"epochs": args.epochs, "train_subset": args.train_subset}
    if (out / "settings.json").exists() and read_json(out / "settings.json") != settings:
        print(f"error: {out} holds runs made with {read_json(out / 'settings.json')}, not {settings}; use another --out", file=sys.stderr)
        return 2
    write_json(out / "settings.json", settings)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        base = TrainConfig(epochs=args.epochs, train_subset=args.train_subset, data_root=args.data_root, device=args.device, threads=args.threads, progress=args.progress)
        data = load_fashion_mnist(args.data_root)
        eval_device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
        t0 = time.perf_counter()
        records = []
        for seed in args.seeds:  # seed-major: a partial run already covers every strategy once
            for name in names:
                rec = run_one(name, seed, base, out, data, eval_device, Path(args.reuse_uniform) if args.reuse_uniform else None)
                if rec is not None:
                    records.append(rec)
        pending = len(args.seeds) * len(names) - len(records)
        if pending:
            print(f"[budget] {pending} run(s) still to do; run the same command again to continue", flush=True)
    except MRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if records:
        print(write_summary(records, args, out, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
