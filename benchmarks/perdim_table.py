"""Per-dimension table on Fashion-MNIST (GUIDE section 5): MRL, MRL-E, FF-d, PCA and random baselines.

Trains every model the table needs (skipping runs whose results already exist, so it can be
completed over several invocations), evaluates each prefix (head top-1, 1-NN, mAP@10; database =
train split, queries = test split, L2 search), measures the MRL vs FF-512 training step time in
the same process, writes a report under ``--out/report`` and the ``perdim`` section of RESULTS.md.

    python benchmarks/perdim_table.py                 # the full table (about 45 min on 2 cores)
    python benchmarks/perdim_table.py --seeds 0       # one seed of everything
"""

from __future__ import annotations

import argparse
import csv
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mrl.data.fashion_mnist import load_fashion_mnist, to_tensor
from mrl.evaluate.perdim import evaluate_baseline, evaluate_model, public
from mrl.io import read_json, write_json
from mrl.losses import MatryoshkaLoss
from mrl.models.classifier import build_classifier
from mrl.report import aggregate, write_report
from mrl.report.render import markdown_table, tables
from mrl.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import replace_section

DIMS = (2, 4, 8, 16, 32, 64, 128, 256, 512)


def plan(seeds: list[int], extra_ff_seeds: list[int]) -> list[tuple[str, dict[str, Any], int]]:
    """(run name, config changes, seed), ordered so a partial run already covers every row once."""
    main = [("mrl", {}), ("ff-512", {"mode": "ff", "matryoshka_dims": [512]}), ("mrl-e", {"mode": "mrl-e"}), ("ff-2", {"mode": "ff", "matryoshka_dims": [2]}), ("ff-4", {"mode": "ff", "matryoshka_dims": [4]})]
    others = [(f"ff-{d}", {"mode": "ff", "matryoshka_dims": [d]}) for d in DIMS[2:-1]]
    runs = [(n, c, seeds[0]) for n, c in main] + [(n, c, s) for s in extra_ff_seeds for n, c in others]
    runs += [(n, c, s) for s in seeds[1:] for n, c in main]
    return runs


def step_times(base: TrainConfig, batch: int, repeats: int, threads: int) -> dict[str, float]:
    """Median seconds per training step of MRL vs FF-512 on the same batch, interleaved in one process."""
    torch.set_num_threads(threads)
    data = load_fashion_mnist(base.data_root)
    x = to_tensor(data.train.images[:batch])
    y = torch.from_numpy(data.train.labels[:batch])
    setups = {}
    for name, mode, dims in (("mrl", "mrl", DIMS), ("ff-512", "ff", (512,))):
        torch.manual_seed(0)
        model = build_classifier(backbone=base.backbone, embed_dim=512, num_classes=10, matryoshka_dims=dims, mode=mode, width=base.width)
        loss = MatryoshkaLoss(dims, label_smoothing=base.label_smoothing)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        setups[name] = (model, loss, opt)

    def step(name: str) -> float:
        model, loss, opt = setups[name]
        t = time.perf_counter()
        out = loss(model(x), y)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        return time.perf_counter() - t

    for name in setups:  # warm-up
        for _ in range(3):
            step(name)
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(repeats):
        for name in setups:
            times[name].append(step(name))
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"mrl_s": med["mrl"], "ff512_s": med["ff-512"], "ratio": med["mrl"] / med["ff-512"], "batch": batch, "repeats": repeats, "threads": threads}


def machine(args: argparse.Namespace) -> dict[str, Any]:
    """Where the runs were trained: read from ``OUT/machine.json``, written by the first training call."""
    path = Path(args.out) / "machine.json"
    if path.exists():
        return read_json(path)
    cuda = args.device.startswith("cuda")
    info = {"arch": platform.machine(), "device": args.device, "device_name": torch.cuda.get_device_name() if cuda else "CPU", "threads": args.threads, "precision": (args.precision or "auto") if cuda else "fp32", "torch": torch.__version__}
    write_json(path, info)
    return info


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = Path(args.out)
    data = load_fashion_mnist(args.data_root)
    extra = {"precision": args.precision} if args.precision else {}
    base = TrainConfig(epochs=args.epochs, data_root=args.data_root, device=args.device, threads=args.threads, progress=args.progress, **extra)
    records: list[dict[str, Any]] = []
    budget = args.max_new_runs
    for name, changes, seed in plan(args.seeds, args.extra_ff_seeds):
        run_dir = out / f"{name}-s{seed}"
        eval_path = run_dir / "eval.json"
        if not eval_path.exists():
            if budget is not None and budget <= 0:
                continue
            budget = None if budget is None else budget - 1
            if not (run_dir / "model.safetensors").exists():
                machine(args)
                print(f"[train] {run_dir.name}", flush=True)
                resume = (run_dir / "checkpoint.safetensors").exists()
                result = train(base.replace(seed=seed, **changes), run_dir, resume=resume, overwrite=not resume)
                print(f"[train] {run_dir.name} done in {result.seconds:.0f}s", flush=True)
            rec = evaluate_model(run_dir, data, device=base.device if base.device != "auto" else "cpu")
            recs = [public(rec)]
            if name == "ff-512":
                train_enc, test_enc = rec["_encoded"]
                recs += [evaluate_baseline(m, train_enc, test_enc, DIMS, seed=seed, source=str(run_dir)) for m in ("pca", "random")]
            write_json(eval_path, {"schema": "mrl.eval/1", "runs": recs})
            print(f"[eval] {run_dir.name}: " + ", ".join(f"{r['method']}" for r in recs), flush=True)
        records += read_json(eval_path)["runs"]
    return records


def targets(agg: dict[str, Any], steps: dict[str, float] | None) -> list[str]:
    """Check the issue's targets against the aggregated means; every line says met or missed."""
    lines = []

    def m(fam: str, d: int, metric: str = "top1") -> float | None:
        v = agg.get(fam, {}).get(d, {}).get(metric)
        return None if v is None else 100 * v["mean"]

    gaps = [(d, m("MRL", d) - m("FF", d)) for d in DIMS if m("MRL", d) is not None and m("FF", d) is not None]
    worst = min(gaps, key=lambda t: t[1]) if gaps else None
    if worst:
        ok = worst[1] >= -0.3
        lines.append(f"- MRL >= FF - 0.3 points (head top-1) at every d: {'met' if ok else 'MISSED'}; smallest MRL - FF is {worst[1]:+.2f} at d={worst[0]} (per d: " + ", ".join(f"{d}: {g:+.2f}" for d, g in gaps) + ").")
    if m("MRL", 2) is not None and m("PCA", 2) is not None:
        gap = m("MRL", 2) - m("PCA", 2)
        lines.append(f"- MRL - PCA >= 8 points at d=2 (head top-1 vs probe): {'met' if gap >= 8 else 'MISSED'}: {m('MRL', 2):.1f} vs {m('PCA', 2):.1f} ({gap:+.1f}).")
    gaps_e = [(d, m("MRL-E", d) - m("MRL", d)) for d in DIMS if d >= 4 and m("MRL-E", d) is not None and m("MRL", d) is not None]
    if gaps_e:
        worst_e = max(gaps_e, key=lambda t: abs(t[1]))
        lines.append(f"- MRL-E within 1 point of MRL for d >= 4: {'met' if abs(worst_e[1]) <= 1 else 'MISSED'}; largest |MRL-E - MRL| is {worst_e[1]:+.2f} at d={worst_e[0]}.")
    if steps:
        lines.append(f"- MRL step <= 1.05x FF-512 step: {'met' if steps['ratio'] <= 1.05 else 'MISSED'}: {1000 * steps['mrl_s']:.1f} ms vs {1000 * steps['ff512_s']:.1f} ms = {steps['ratio']:.3f}x (on the 2-core CPU machine: median of {steps['repeats']} interleaved steps, batch {steps['batch']}, {steps['threads']} threads).")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/out/perdim")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--extra-ff-seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0], help="seeds for FF-8 ... FF-256")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default=None, help="fp32 / bf16 / auto (CUDA only; the table uses fp32 for CPU-comparable numerics)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--skip-step-time", action="store_true")
    p.add_argument("--no-results-md", action="store_true", help="do not write benchmarks/RESULTS.md")
    p.add_argument("--max-new-runs", type=int, default=None, help="train/evaluate at most this many missing runs, then report (lets a shell loop release the CPU between runs)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    steps = None
    step_path = Path(args.out) / "steptime.json"
    if not args.skip_step_time and not step_path.exists():
        steps = step_times(TrainConfig(data_root=args.data_root), batch=256, repeats=30, threads=args.threads)
        write_json(step_path, steps)
        print(f"[steps] {steps}", flush=True)
    if steps is None and step_path.exists():
        steps = read_json(step_path)
    records = run_all(args)
    mach = machine(args)
    agg = aggregate(records)
    paths = write_report(records, Path(args.out) / "report", title="Fashion-MNIST per-dimension table", overwrite=True)
    shutil.copyfile(paths["png"], Path(__file__).resolve().parent / "perdim.png")
    cmd = "python benchmarks/perdim_table.py " + " ".join(sys.argv[1:])
    train_secs = [sum(float(row["seconds"]) for row in csv.DictReader(p.read_text().splitlines())) for p in sorted(Path(args.out).glob("*/metrics.csv"))]
    counts = {fam: max(v["top1"]["n"] if "top1" in v else v["1nn"]["n"] for v in per.values()) for fam, per in agg.items()}
    body = [
        "## Per-dimension quality on Fashion-MNIST (issue: foundation)",
        "",
        f"Command: `{cmd.strip()}`. Training time summed over the {len(train_secs)} runs (from their metrics.csv): {sum(train_secs) / 60:.1f} min.",
        f"Trained on: {mach['device_name']} ({mach['arch']}, torch {mach['torch']}, {mach['threads']} CPU threads, {mach['precision']}); evaluation (FAISS, probes) on the same machine's CPU. Backbone: small ResNet (width 16), D = 512, dims 2…512, "
        f"{args.epochs} epochs, SGD + Nesterov, cosine schedule, label smoothing 0.1, batch 256, horizontal flips. Train = 55k images, validation = 5k (held out), test = 10k.",
        "Protocol: head top-1 on the test split (PCA / Random: a linear probe fit on the train split); retrieval with database = train split, queries = test split, relevant = same label, exact L2 search (FAISS) on the prefix; mAP@10 with AP normalised by k as in the paper.",
        "Rows: MRL, MRL-E (sliced shared head), FF (a separate model per d, a single head reading only x[:, :d]), PCA of FF-512 embeddings to d, a random d-subset of FF-512. "
        f"Runs per row (seeds, mean ± std where > 1): {', '.join(f'{k}: {v}' for k, v in counts.items())}; FF-8…FF-256 have {len(args.extra_ff_seeds)} seed(s).",
        "",
        "Targets:",
        *targets(agg, steps),
        "",
    ]
    for metric, (header, rows) in tables(agg).items():
        title = {"top1": "Head top-1 accuracy (%)", "1nn": "1-NN accuracy (%)", "map@10": "mAP@10 (%)"}[metric]
        body += [f"### {title}", "", markdown_table(header, rows), ""]
    body += ["![accuracy vs log2(dim)](perdim.png)", ""]
    if not args.no_results_md:
        replace_section("perdim", "\n".join(body))
    print("\n".join(body))
    print(f"report: {paths['md']}")


if __name__ == "__main__":
    main()
