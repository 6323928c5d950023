"""MRL-E with per-prefix calibration on Fashion-MNIST: does it close the gap to MRL at small d?

Trains MRL and MRL-E (``prefix_calibration`` none / scale / bias / scale_bias) with the per-dim
table's recipe (small ResNet, D = 512, dims 2...512, 3 epochs), evaluates every prefix (head top-1,
1-NN, mAP@10; database = train, queries = test) and reports per candidate the largest
|MRL-E - MRL| head top-1 gap over d >= 4 (target: <= 1 point). Runs whose ``eval.json`` exists are
reused, so a screen (1 seed) and the final table (3 seeds) can be built in several invocations.

    python benchmarks/mrl_e_calibration.py --candidates none,scale,bias,scale_bias --seeds 0   # screen
    python benchmarks/mrl_e_calibration.py --candidates none,scale_bias --seeds 0,1,2          # final

A reduced screen (``--train-subset 5000 --warmup-steps 10 --heads-only --out benchmarks/out/mrl_e_screen``)
trains on 5k images and reads each head's top-1 on the 5k validation split from the run's own
metrics (no retrieval evaluation): minutes instead of an hour on a busy 2-core machine, for ranking
candidates only.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from mrl.config_io import read_config
from mrl.data.registry import load_image_data
from mrl.evaluate.perdim import evaluate_model, public
from mrl.io import read_json, write_json
from mrl.report import aggregate
from mrl.report.render import markdown_table, tables
from mrl.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import replace_section

SECTION = "mrl-e"


def label(cal: str | None, tag: str = "") -> str:
    return "MRL" if cal is None else f"MRL-E ({cal}{', ' + tag if tag else ''})"


def run_one(out: Path, base: TrainConfig, cal: str | None, seed: int, data: Any, heads_only: bool = False, mrl_e_changes: dict[str, Any] | None = None, tag: str = "") -> list[dict[str, Any]]:
    name = "mrl" if cal is None else f"mrl-e-{cal}" + (f"-{tag}" if tag else "")
    run_dir = out / f"{name}-s{seed}"
    eval_path = run_dir / "eval.json"
    if not eval_path.exists():
        if not (run_dir / "model.safetensors").exists():
            changes: dict[str, Any] = {"seed": seed} if cal is None else {"seed": seed, "mode": "mrl-e", "prefix_calibration": cal, **(mrl_e_changes or {})}
            resume = (run_dir / "checkpoint.safetensors").exists()
            print(f"[train] {run_dir.name}", flush=True)
            result = train(base.replace(**changes), run_dir, resume=resume, overwrite=not resume)
            print(f"[train] {run_dir.name} done in {result.seconds:.0f}s", flush=True)
        if heads_only:  # final validation top-1 of every head, from the run's metrics
            final = _final_row(run_dir)
            dims = base.matryoshka_dims
            rec = {"method": label(cal, tag), "seed": seed, "model": str(run_dir), "dims": dims, "split": "validation", "per_dim": {str(d): {"top1": float(final[f"val_top1@{d}"])} for d in dims}}
        else:
            rec = public(evaluate_model(run_dir, data, method=label(cal, tag)))
        rec["mode"] = "mrl" if cal is None else f"mrl-e:{cal}" + (f":{tag}" if tag else "")  # one row per candidate in the aggregate
        write_json(eval_path, {"schema": "mrl.eval/1", "runs": [rec]})
    return read_json(eval_path)["runs"]


def _final_row(run_dir: Path) -> dict[str, str]:
    import csv

    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))[-1]


def gap_line(agg: dict[str, Any], fam: str) -> str:
    mrl, e = agg.get("MRL", {}), agg.get(fam, {})
    gaps = [(d, 100 * (e[d]["top1"]["mean"] - mrl[d]["top1"]["mean"])) for d in sorted(e) if d >= 4 and d in mrl]
    if not gaps:
        return f"- {fam}: no MRL reference yet."
    worst = max(gaps, key=lambda t: abs(t[1]))
    n = max(v["top1"]["n"] for v in e.values())
    ok = abs(worst[1]) <= 1
    return f"- {fam} ({n} seed(s)): {'met' if ok else 'MISSED'}; largest |MRL-E - MRL| over d >= 4 is {worst[1]:+.2f} at d={worst[0]} (per d: " + ", ".join(f"{d}: {g:+.2f}" for d, g in gaps) + ")."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/out/mrl_e")
    p.add_argument("--candidates", default="none,scale,bias,scale_bias", help="prefix_calibration values of MRL-E to train")
    p.add_argument("--seeds", default="0", help="comma list of seeds (MRL is trained with the same seeds)")
    p.add_argument("--no-mrl", action="store_true", help="train only the MRL-E candidates this time (MRL runs already in --out still count)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-subset", type=int, default=None, help="reduced screen: train on the first N images")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--heads-only", action="store_true", help="record the heads' final validation top-1 (no retrieval evaluation)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-results-md", action="store_true")
    p.add_argument("--section", default=SECTION)
    p.add_argument("--mrl-e-set", dest="mrl_e_sets", action="append", default=[], help="recipe override for the MRL-E candidates only, e.g. --mrl-e-set matryoshka_weights=[1,3,1,1,1,1,1,1,1] (needs --tag)")
    p.add_argument("--tag", default="", help="names the MRL-E runs made with --mrl-e-set (run folder mrl-e-<cal>-<tag>, row 'MRL-E (<cal>, <tag>)')")
    args = p.parse_args()
    if args.mrl_e_sets and not args.tag:
        p.error("--mrl-e-set changes the recipe: give --tag NAME so these runs get their own folders and rows")
    mrl_e_changes = read_config(None, args.mrl_e_sets) if args.mrl_e_sets else {}
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = TrainConfig(data_root=args.data_root, device="cpu", threads=args.threads, progress=False, train_subset=args.train_subset, warmup_steps=args.warmup_steps)
    data = None if args.heads_only else load_image_data(base.to_dict())
    for seed in seeds:
        for cal in ([] if args.no_mrl else [None]) + [c for c in args.candidates.split(",") if c]:
            run_one(out, base, cal, seed, data, heads_only=args.heads_only, mrl_e_changes=mrl_e_changes if cal is not None else None, tag=args.tag if cal is not None else "")
    records = [r for path in sorted(out.glob("*/eval.json")) for r in read_json(path)["runs"]]
    agg = aggregate(records)
    cmd = "python benchmarks/mrl_e_calibration.py " + shlex.join(sys.argv[1:])
    body = [
        "## MRL-E with per-prefix calibration (issue 13)",
        "",
        f"Command (last invocation): `{cmd.strip()}` (runs of earlier invocations in `{out}` are reused). Recipe of the per-dim table: small ResNet (width 16), D = 512, dims 2…512, 3 epochs, SGD + Nesterov, batch 256, label smoothing 0.1; trained on the 2-core CPU (fp32). Test split = 10k, database = train (55k).",
        "Candidates (`prefix_calibration`, MRL-E only; the weight matrix stays one shared `W`, sliced per prefix): `none` (plain MRL-E), `scale` (a learned logit scale exp(s_i) per prefix, i.e. a temperature), `bias` (a learned per-prefix bias added to the shared one), `scale_bias` (both). Extra parameters: G = 9 scales and/or G x C = 90 biases.",
        "",
        *([f"Reduced screen: the first {args.train_subset} training images, warm-up {args.warmup_steps} steps, top-1 of each head on the 5k validation split (not the test split); for ranking candidates only.", ""] if args.heads_only else []),
        "Target: MRL-E within 1 point of MRL (head top-1) for every d >= 4:",
        *[gap_line(agg, fam) for fam in agg if fam.startswith("MRL-E")],
        "",
    ]
    for metric, (header, rows) in tables(agg, metrics=("top1",) if args.heads_only else ("top1", "1nn", "map@10")).items():
        title = {"top1": "Head top-1 accuracy (%)", "1nn": "1-NN accuracy (%)", "map@10": "mAP@10 (%)"}[metric]
        body += [f"### {title}", "", markdown_table(header, rows), ""]
    if not args.no_results_md:
        replace_section(args.section, "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
