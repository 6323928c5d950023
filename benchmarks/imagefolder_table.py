"""Per-dim table of runs trained with ``dataset: imagefolder`` (e.g. Fashion-MNIST written out as PNGs).

Trains each requested run on ``--folder`` with the recipe overrides ``--set key=value`` (skipping runs
whose ``eval.json`` exists), evaluates every prefix (head top-1, 1-NN, mAP@10, recall@10; database =
the folder's training split, queries = its test split) plus PCA / random baselines of FF-D runs, and
writes a RESULTS.md section. With ``--compare-idx`` the MRL row of the per-dim section (the IDX path)
is set beside the folder's MRL row.

    python benchmarks/fashion_mnist_png.py --out benchmarks/out/fmnist-png
    python benchmarks/imagefolder_table.py --folder benchmarks/out/fmnist-png --out benchmarks/out/png-runs \\
        --runs mrl --compare-idx --section imagefolder-fmnist \\
        --set image_size=28 --set image_mode=L --set mean=[0.286] --set std=[0.353] \\
        --set crop_scale=[1,1] --set crop_pct=1 --set val_fraction=0.0833
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from mrl.config_io import read_config
from mrl.data.registry import load_image_data
from mrl.evaluate.perdim import evaluate_baseline, evaluate_model, public
from mrl.io import read_json, write_json
from mrl.report import aggregate
from mrl.report.render import markdown_table, tables
from mrl.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import RESULTS, replace_section

TITLES = {"top1": "Head top-1 accuracy (%)", "1nn": "1-NN accuracy (%)", "map@10": "mAP@10 (%)"}


def run_changes(name: str, width: int) -> dict[str, Any]:
    """``mrl`` / ``mrl-e`` / ``ff-<d>`` -> recipe changes."""
    if name in ("mrl", "mrl-e"):
        return {"mode": name}
    if name.startswith("ff-"):
        return {"mode": "ff", "matryoshka_dims": [int(name[3:]) if name[3:] != "D" else width]}
    raise SystemExit(f"unknown run {name!r}: use mrl, mrl-e or ff-<d>")


def idx_rows(metric: str) -> dict[int, str]:
    """The MRL row of the per-dim section (IDX path) for ``metric``: ``{d: "79.2 ± 0.2"}``."""
    text = RESULTS.read_text()
    section = text[text.index("<!-- section:perdim -->") : text.index("<!-- /section:perdim -->")]
    block = section[section.index(f"### {TITLES[metric]}") :]
    header = next(line for line in block.splitlines() if line.startswith("| method"))
    row = next(line for line in block.splitlines() if line.startswith("| MRL |"))
    dims = [int(m) for m in re.findall(r"d=(\d+)", header)]
    return dict(zip(dims, [c.strip() for c in row.strip("|").split("|")[1:]]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", required=True, help="ImageFolder root (train/<class>, val/<class>)")
    p.add_argument("--out", required=True)
    p.add_argument("--runs", default="mrl", help="comma list: mrl, mrl-e, ff-<d> (ff-D: full width; its PCA/random baselines are added)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", dest="sets", action="append", default=[], help="recipe override, e.g. --set image_size=32")
    p.add_argument("--section", default=None, help="RESULTS.md section to write (none: print only)")
    p.add_argument("--title", default="ImageFolder runs")
    p.add_argument("--notes", default="", help="text placed under the title")
    p.add_argument("--compare-idx", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--heads-only", action="store_true", help="record each head's final validation top-1 from the run's metrics (no retrieval evaluation)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    base = TrainConfig.from_dict({**read_config(None, args.sets), "dataset": "imagefolder", "data_root": args.folder, "device": "cpu", "threads": args.threads, "progress": False})
    width = base.embedding_width
    data = load_image_data({**base.to_dict(), "scan_images": not args.heads_only and base.scan_images}, log=print)
    records: list[dict[str, Any]] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in args.runs.split(","):
            run_dir = out / f"{name}-s{seed}"
            eval_path = run_dir / "eval.json"
            if not eval_path.exists():
                if not (run_dir / "model.safetensors").exists():
                    resume = (run_dir / "checkpoint.safetensors").exists()
                    print(f"[train] {run_dir.name}", flush=True)
                    result = train(base.replace(seed=seed, **run_changes(name, width)), run_dir, resume=resume, overwrite=not resume)
                    print(f"[train] {run_dir.name} done in {result.seconds:.0f}s", flush=True)
                if args.heads_only:
                    import csv

                    final = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))[-1]
                    dims = [int(k.split("@")[1]) for k in final if k.startswith("val_top1@")]
                    write_json(eval_path, {"schema": "mrl.eval/1", "runs": [{"method": name.upper(), "mode": run_changes(name, width)["mode"], "seed": seed, "split": "validation", "dims": dims, "per_dim": {str(d): {"top1": float(final[f"val_top1@{d}"])} for d in dims}}]})
                    records += read_json(eval_path)["runs"]
                    continue
                rec = evaluate_model(run_dir, data)
                recs = [public(rec)]
                tr, te = rec["_encoded"]
                if rec["mode"] == "ff" and rec["dims"][-1] == tr.embeddings.shape[1]:
                    recs += [evaluate_baseline(m, tr, te, list(base.matryoshka_dims), seed=seed, source=str(run_dir)) for m in ("pca", "random")]
                write_json(eval_path, {"schema": "mrl.eval/1", "runs": recs})
            records += read_json(eval_path)["runs"]
    agg = aggregate(records)
    cmd = "python benchmarks/imagefolder_table.py " + shlex.join(sys.argv[1:])
    sizes = ", ".join(f"{k} {len(getattr(data, k))}" for k in ("train", "val", "test"))
    body = [f"## {args.title}", "", f"Command: `{cmd.strip()}`.", f"Data: `{args.folder}` ({data.report.get('layout')}; {sizes}). Recipe: {', '.join(args.sets) or 'defaults'}; backbone {base.backbone}, D = {width}.", ""]
    if args.notes:
        body += [args.notes, ""]
    for metric, (header, rows) in tables(agg).items():
        if metric not in TITLES:
            continue
        if args.compare_idx:
            ref = idx_rows(metric)
            dims = [int(h[2:]) for h in header[1:]]
            rows = rows + [["MRL, IDX path (per-dim section)"] + [ref.get(d, "") for d in dims]]
        body += [f"### {TITLES[metric]}", "", markdown_table(header, rows), ""]
    if args.section:
        replace_section(args.section, "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
