"""Out-of-domain text quality per dim: base truncated, base + PCA, base + unsupervised adaptor, the
WordNet MRL recipe, the label-free default recipe (fitted on each set's own unlabeled documents), and
its general-text-only variant (fitted on WordNet text only: the transfer case).

Sets: BEIR folders under --ood-root (man pages NAME -> DESCRIPTION, Python docs signature ->
description, built by benchmarks/build_ood_sets.py) and the WordNet noun test split. PCA and the
adaptor are fitted on each set's unlabeled.jsonl (WordNet: its training split), never on its
queries, labels or evaluated documents. Metrics by ir-measures; cosine after truncate-then-normalise.

Resumable: each trained model and every encoding is kept under --out and reused. Train one model per
invocation under the CPU lock (its wall-clock is reported), then evaluate:

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/text_ood.py --train-one   # repeat until "all trained"
    nice -n 19 .venv/bin/python benchmarks/text_ood.py --evaluate                      # writes the RESULTS section
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mrl.evaluate.text_eval import evaluate_text, load_eval_set
from mrl.io import read_json, write_json
from mrl.precision import bf16_pays
from mrl.train.text import load_text_config, train_text

BF16 = bf16_pays("cpu")  # bf16 autocast only where the CPU computes it natively (AVX2-only: 6.4x slower than fp32)
ROOT = Path(__file__).resolve().parent.parent
DIMS = [8, 16, 32, 64, 128, 256, 384]
SETS = ("manpages", "pydocs")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def runs(args: argparse.Namespace) -> dict[str, tuple[Path, list[str]]]:
    """name -> (config, overrides) of every model the tables need."""
    common = [f"threads={args.threads}", f"max_texts={args.fit_texts}", f"max_steps={args.steps}", f"batch_size={args.batch}", f"max_seq_length={args.train_seq_len}", f"bf16={str(BF16).lower()}", "device=cpu", f"cache_dir={args.out / 'cache'}", "progress=false"]
    out = {f"distill-{name}": (ROOT / "configs/text_distill.yaml", [f"dataset={args.ood_root / name}", *common, *args.overrides]) for name in args.sets}
    out.update({f"distill-{name}-pq": (ROOT / "configs/text_distill.yaml", [f"dataset={args.ood_root / name}", *common, *args.overrides, "pseudo_queries=true"]) for name in args.sets})
    out["wordnet-mrl"] = (ROOT / "configs/wordnet_minilm.yaml", [f"max_steps={args.mrl_steps}", f"threads={args.threads}", f"bf16={str(BF16).lower()}", "device=cpu", "progress=false", f"cache_dir={args.out / 'cache'}"])
    out["distill-general"] = (ROOT / "configs/text_distill.yaml", ["dataset=wordnet", *common, *args.overrides])
    return out


def train_one(args: argparse.Namespace) -> bool:
    """Train the first missing model (or the one named by --only); False when all are trained."""
    for name, (config, overrides) in runs(args).items():
        if args.only and name != args.only:
            continue
        folder = args.out / "models" / name
        if (folder / "matryoshka.json").is_file():
            continue
        cfg = load_text_config(config, overrides)
        log(f"training {name}: {config.name} {' '.join(overrides)}")
        resume = any((folder / "checkpoints").glob("checkpoint-*"))
        res = train_text(cfg, folder, overwrite=not resume, resume=resume)
        log(f"{name}: {res.steps} encoder steps in {res.seconds:.0f}s; {res.wall_seconds:.0f}s in all (teacher encoding and projection fit included)")
        return True
    return False


def encode_base(args: argparse.Namespace) -> None:
    from mrl.models.text_encode import cached_encode

    for name in [*args.sets, "wordnet"]:
        data = load_eval_set(None if name == "wordnet" else args.ood_root / name, max_queries=args.max_queries, max_corpus=args.max_corpus, fit_texts=args.fit_texts, seed=0)
        for texts in (data.queries, data.corpus, data.fit_texts):
            cached_encode("all-MiniLM-L6-v2", texts, args.out / "cache", max_seq_length=args.eval_seq_len, bf16=BF16, progress=False)
        log(f"base encodings of {name} cached")


def time_steps(args: argparse.Namespace) -> None:
    """A short run of the distill recipe on the first set with 2 threads (run it under the CPU lock):
    the steps/s that the cost table reports for a machine held by this job alone."""
    import tempfile

    config, overrides = runs(args)[f"distill-{args.sets[0]}"]
    overrides = [o for o in overrides if not o.startswith(("max_steps=", "threads="))] + [f"max_steps={args.time_steps}", "threads=2", "warmup_ratio=0.0"]
    with tempfile.TemporaryDirectory() as tmp:
        res = train_text(load_text_config(config, overrides), Path(tmp) / "m")
    timing = {"steps": res.steps, "seconds": res.seconds, "steps_per_s": res.steps_per_s, "threads": 2, "overrides": overrides}
    write_json(args.out / "timing.json", timing)
    log(f"timed {res.steps} steps: {res.steps_per_s:.3f} steps/s")


def evaluate(args: argparse.Namespace) -> None:
    models = args.out / "models"
    results = read_json(args.out / "results.json") if (args.out / "results.json").is_file() else {}
    for name in args.eval_sets or [*args.sets, "wordnet"]:
        data = load_eval_set(None if name == "wordnet" else args.ood_root / name, max_queries=args.max_queries, max_corpus=args.max_corpus, fit_texts=args.fit_texts, seed=0)
        own = "distill-general" if name == "wordnet" else f"distill-{name}"
        rows = [("all-MiniLM-L6-v2", "Base (truncated)"), (models / "wordnet-mrl", "WordNet MRL recipe (mnrl)"), (models / own, "Default recipe (label-free, fitted on this set)" if name != "wordnet" else "Default recipe (label-free, fitted on WordNet train text)")]
        if name != "wordnet":
            rows.append((models / f"distill-{name}-pq", "Default recipe + pseudo_queries (fitted on this set)"))
            rows.append((models / "distill-general", "Default recipe, general text only (WordNet)"))
        rows = [(p, lbl) for p, lbl in rows if isinstance(p, str) or (p / "matryoshka.json").is_file()]  # models not trained yet are left out
        log(f"{name}: {len(data.queries)} queries, {len(data.corpus)} documents, {len(data.fit_texts)} fitting texts")
        recs = evaluate_text([str(p) for p, _ in rows], data, DIMS, labels=[lbl for _, lbl in rows], cache_dir=args.out / "cache", max_seq_length=args.eval_seq_len, bf16=BF16, adaptor_steps=args.adaptor_steps, progress=False, log=log)
        results[name] = {"queries": len(data.queries), "corpus": len(data.corpus), "fit_texts": len(data.fit_texts), "records": recs}
        write_json(args.out / "results.json", results)
    if not args.no_results:
        write_results(results, args)


def _table(recs: list[dict], metric: str = "ndcg@10") -> list[str]:
    order = ["Base (truncated)", "Base + PCA", "Base + adaptor (unsupervised)"]
    recs = sorted(recs, key=lambda r: order.index(r["method"]) if r["method"] in order else 3)
    lines = ["| method | " + " | ".join(f"d={d}" for d in DIMS) + " |", "|---|" + "---|" * len(DIMS)]
    for rec in recs:
        lines.append(f"| {rec['method']} | " + " | ".join(f"{100 * rec['per_dim'][str(d)][metric]:.1f}" if str(d) in rec["per_dim"] else "-" for d in DIMS) + " |")
    return lines


def _targets(recs: list[dict], own_label: str) -> list[str]:
    by = {r["method"]: {int(d): v["ndcg@10"] for d, v in r["per_dim"].items()} for r in recs}
    if own_label not in by:
        return [f"- {own_label}: not measured (the model was not trained in this run)."]
    base, pca, ad, own = by["Base (truncated)"], by["Base + PCA"], by["Base + adaptor (unsupervised)"], by[own_label]
    full = DIMS[-1]
    lines = []
    drop = 100 * (own[full] - base[full])
    lines.append(f"- full-D nDCG@10 {100 * own[full]:.1f} vs base {100 * base[full]:.1f} ({drop:+.1f} points; target >= -0.5: {'met' if drop >= -0.5 else 'MISSED'})")
    ret = own[64] / own[full]
    lines.append(f"- 64-d keeps {100 * ret:.1f}% of its own full-D nDCG@10 (target >= 95%: {'met' if ret >= 0.95 else 'MISSED'}; base model: {100 * base[64] / base[full]:.1f}%)")
    lost = [d for d in DIMS if d <= 64 and not (own[d] > pca[d] and own[d] > ad[d])]
    lines.append(f"- every d <= 64 beats base + PCA and the unsupervised adaptor: {'met' if not lost else 'MISSED at d=' + ','.join(map(str, lost))}")
    return lines


def write_results(results: dict, args: argparse.Namespace) -> None:
    from results_md import replace_section

    models = args.out / "models"
    info = {p.name: read_json(p / "matryoshka.json") for p in sorted(models.iterdir()) if (p / "matryoshka.json").is_file()}
    body = [
        "## Text: label-free Matryoshka adaptation, out-of-domain quality (issue 9)",
        "",
        f"Machine: the project's 2-core CPU box ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()}), no GPU; torch {torch.__version__}; "
        f"{'bf16 autocast' if BF16 else 'fp32 (this CPU has no native bf16, where bf16 autocast ran 6.4x slower)'}. Each model trained alone under `flock /work/coord/cpu.lock`. Seed 0 everywhere, one run per row.",
        "Rows: all-MiniLM-L6-v2 truncated; + PCA and + the unsupervised linear adaptor, both fitted on the set's `unlabeled.jsonl` (WordNet: its training split); "
        "the WordNet MRL recipe (`configs/wordnet_minilm.yaml`, mnrl on WordNet pairs); the default recipe (`configs/text_distill.yaml`) fitted on the set's own unlabeled documents "
        "(never its queries, labels or evaluated documents); the same with `pseudo_queries: true` (each document's first sentence joins the pool as a query-like text); and the default recipe fitted on WordNet text only (the transfer case).",
        f"Metric: nDCG@10 (%) by ir-measures (pytrec_eval), cosine on the first d dims (truncate, then L2-normalise), exact search; encodings in {'bf16 autocast' if BF16 else 'fp32'}, max_seq_length {args.eval_seq_len}.",
        "",
        "Commands:",
        "",
        "```",
        "flock /work/coord/cpu.lock .venv/bin/python benchmarks/text_ood.py --train-one" + "".join(f" --set {o}" for o in args.overrides) + f" --steps {args.steps} --batch {args.batch} --train-seq-len {args.train_seq_len} --threads {args.threads} --mrl-steps {args.mrl_steps}   # once per model (--only NAME)",
        "flock /work/coord/cpu.lock .venv/bin/python benchmarks/text_ood.py --evaluate" + "".join(f" --set {o}" for o in args.overrides),
        "mrl eval-text MODEL... --beir DIR --out r.json   # the same rows for one set from the CLI",
        "```",
        "",
    ]
    for name, res in results.items():
        own = "Default recipe (label-free, fitted on WordNet train text)" if name == "wordnet" else "Default recipe (label-free, fitted on this set)"
        body += [f"### {name}: {res['queries']} queries, {res['corpus']} documents, {res['fit_texts']} unlabeled fitting texts", "", *_table(res["records"]), "", "Targets for the default recipe:", "", *_targets(res["records"], own)]
        if name != "wordnet":
            for label, tag in (("Default recipe + pseudo_queries (fitted on this set)", "with pseudo_queries"), ("Default recipe, general text only (WordNet)", "general-text-only variant")):
                if any(r["method"] == label for r in res["records"]):
                    body += [t.replace("- ", f"- {tag}: ", 1) for t in _targets(res["records"], label)]
        body.append("")
    missing_sets = [n for n in [*args.sets, "wordnet"] if n not in results]
    missing_models = [n for n in runs(args) if n not in info]
    if missing_sets or missing_models:
        body += [f"**Not measured** (the commands above produce them): sets {missing_sets or 'none'}; models {missing_models or 'none'} (their rows are absent from the tables), the many-class cascade and the corpus model.", ""]
    body += [f"### Training cost (2-core CPU, {'bf16 autocast' if BF16 else 'fp32'})", "",
             "Wall-clock is the whole `train_text` call: teacher encoding of the pool, the projection fit on those cached vectors, and the encoder steps (if any).", "",
             "| model | data | trained layers | projection fit steps (batch 512) | encoder steps x batch | max_seq_length | wall-clock | of which encoder steps |", "|---|---|---|---|---|---|---|---|"]
    for name, inf in info.items():
        c = inf["config"]
        fit = c.get("init_steps", "-") if c.get("projection") in ("rotation", "adaptor") and c["loss"] == "distill" else "-"
        layers = "all" if c.get("train_layers") is None else c["train_layers"]
        wall = inf.get("wall_seconds", inf["seconds"] + inf.get("setup_seconds", 0.0))
        body.append(f"| {name} | `{Path(str(c['dataset'])).name}` ({inf.get('train_texts', inf.get('train_pairs'))} {'texts' if c['loss'] == 'distill' else 'pairs'}) | {layers} | {fit} | {inf['steps']} x {c['batch_size']} | {c['max_seq_length']} | {wall:.0f} s | {inf['seconds']:.0f} s |")
    timing_path = args.out / "timing.json"
    if timing_path.is_file():
        t = read_json(timing_path)
        body += ["", f"Clean timing (`flock /work/coord/cpu.lock .venv/bin/python benchmarks/text_ood.py --time-steps {t['steps']}`, the same recipe, 2 threads, under the lock): "
                 f"{t['steps_per_s']:.3f} steps/s ({t['steps_per_s'] * args.batch:.1f} texts/s); {args.steps} steps would take ~{args.steps / t['steps_per_s'] / 60:.1f} min. "
                 "The wall-clock column above comes from runs made in parallel at nice 19 on the busy shared machine."]
    replace_section("text-ood", "\n".join(body))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/text_ood")
    ap.add_argument("--ood-root", type=Path, default=ROOT / "benchmarks/out/ood")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--train-seq-len", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training run (runs may go in parallel).")
    ap.add_argument("--eval-seq-len", type=int, default=128)
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--max-corpus", type=int, default=3000)
    ap.add_argument("--fit-texts", type=int, default=5000)
    ap.add_argument("--adaptor-steps", type=int, default=500)
    ap.add_argument("--mrl-steps", type=int, default=80, help="Steps of the WordNet MRL recipe run (its config says 240).")
    ap.add_argument("--time-steps", type=int, default=0, help="Time this many steps of the distill recipe (run under the CPU lock).")
    ap.add_argument("--base-only", action="store_true", help="Only encode the base model's texts (fills the cache while models train).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="Override a key of the default recipe for the distill runs.")
    ap.add_argument("--train-one", action="store_true")
    ap.add_argument("--only", default=None, help="With --train-one: train this model (e.g. distill-pydocs), so runs can proceed in parallel.")
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--no-results", action="store_true")
    ap.add_argument("--eval-sets", type=lambda t: [x for x in t.split(",") if x], default=None, help="Evaluate only these sets (e.g. manpages,pydocs or wordnet); results.json keeps the others.")
    ap.add_argument("--write-results", action="store_true", help="Write the RESULTS section from --out/results.json (no computation).")
    args = ap.parse_args()
    args.sets = [s for s in args.sets.split(",") if s]
    if args.train_one:
        print("trained one" if train_one(args) else "all trained")
    if args.time_steps:
        time_steps(args)
    if args.base_only:
        encode_base(args)
    if args.evaluate:
        evaluate(args)
    elif args.write_results:
        write_results(read_json(args.out / "results.json"), args)


if __name__ == "__main__":
    main()
