"""Many-class adaptive classification on a text encoder: WordNet noun synsets -> their hypernym
category at a fixed depth (>= 100 categories, mrl.data.wordnet_classes), per-dim accuracy and the
calibrated cascade.

Except in the label-trained encoder rows, the encoder is frozen: texts (``lemma: definition``) are
encoded once (cached). Rows:

* Matryoshka adaptor with class heads: a residual-MLP adaptor over the base model's frozen vectors,
  trained with the labels (Matryoshka cross-entropy of one head per prefix; `mrl adapt --labels`,
  mrl.train.adaptor), its heads saved with it;
* Matryoshka encoder: the label-free default recipe's model (its prefixes were trained to keep the
  teacher's similarity structure; no class label was used) + one linear probe per prefix;
* Matryoshka encoder trained on the labels (``--classify-encoder``): all-MiniLM-L6-v2 fine-tuned with
  one class head per prefix (``loss: classify``, ``configs/text_classify_wordnet.yaml``; the MRL
  objective on the encoder itself), read through its own saved heads; a folder named ``*-refit`` is a
  copy of such a model whose heads ``mrl cascade refit-heads`` refitted on its frozen embeddings;
* FF-style: the base all-MiniLM-L6-v2 truncated to d + one linear probe per d;
* PCA: base embeddings projected on the top-d principal axes (fitted on train) + one probe per d.

Linear probes: a softmax head fitted on every prefix of the cached train embeddings
(mrl.evaluate.probe, LBFGS). The adaptor's settings were chosen on the validation split.

Cascade (mrl.adaptive.cascade): thresholds fitted on the calibration split so that accuracy stays
within 0.1 point of the full head with 95 % confidence (one-sided lower bound), reported on the
disjoint test split, against the most accurate single prefix and against the smallest single prefix
at least as accurate as the cascade.

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/text_manyclass.py --encoder benchmarks/out/text_ood/models/distill-general --adaptor-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mrl.adaptive.cascade import evaluate_cascade, fit_cascade
from mrl.data.wordnet_classes import load_wordnet_classes
from mrl.embeddings import l2_normalize
from mrl.evaluate.baselines import pca_transform
from mrl.evaluate.probe import fit_linear_probe
from mrl.io import write_json
from mrl.models.text_encode import cached_encode
from mrl.precision import bf16_pays
from mrl.train.adaptor import AdaptorConfig, fit_adaptor

BF16 = bf16_pays("cpu")  # bf16 autocast only where the CPU computes it natively (AVX2-only: 6.4x slower than fp32)
ROOT = Path(__file__).resolve().parent.parent
DIMS = [8, 16, 32, 64, 128, 256, 384]
# The adaptor with class heads, chosen on the validation split: with the geometry terms kept
# (sim/rank 1.0) the cascade exited at ~47 dims vs 30 to 53 without them, at higher accuracy.
ADAPTOR = {"kind": "mlp", "hidden": 1024, "steps": 5000, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-2, "dropout": 0.3, "sim_weight": 1.0, "rank_weight": 1.0, "label_weight": 1.0, "neighbours": 7, "threads": 2}
ADAPTOR_ROW = "Base + Matryoshka adaptor with class heads (trained on the labels), seed {seed}"
CLASSIFY_ROW = "Matryoshka encoder trained on the labels (loss: classify, {epochs} epochs{extra}), {heads}"  # extra: a non-zero self_distill
JOINT_HEADS = "its own heads"
REFIT_HEADS = "heads refit on its frozen embeddings (mrl cascade refit-heads)"
REFIT_SUFFIX = "-refit"  # a refit row's folder is a copy of the trained model's folder, named with this suffix
REFIT_COMMAND = "cp -r {joint} {out} && flock /work/coord/cpu.lock .venv/bin/mrl cascade refit-heads {out} --texts wordnet-classes:train --val wordnet-classes:val   # the same encoder, heads refit"
CLASSIFY_COMMAND = "flock /work/coord/cpu.lock .venv/bin/mrl train --config configs/text_classify_wordnet.yaml --out {out} --set threads=2{sets}   # a label-trained encoder"
# How the distill-general encoder of the RESULTS section was trained (benchmarks/text_ood.py).
ENCODER_COMMAND = "flock /work/coord/cpu.lock .venv/bin/python benchmarks/text_ood.py --train-one --only distill-general --steps 0 --batch 64 --train-seq-len 128 --threads 2   # the encoder (configs/text_distill.yaml)"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def head_logits(train: np.ndarray, y: np.ndarray, others: list[np.ndarray], n_classes: int, *, normalize: bool = True) -> list[np.ndarray]:
    """Per-prefix heads; returns logits ``[G, N, C]`` for each array of ``others``."""
    out = [np.zeros((len(DIMS), o.shape[0], n_classes), dtype=np.float32) for o in others]
    for g, d in enumerate(DIMS):
        prep = (lambda a, d=d: l2_normalize(a[:, :d])) if normalize else (lambda a, d=d: np.ascontiguousarray(a[:, :d]))
        probe = fit_linear_probe(prep(train), y, num_classes=n_classes, max_iter=100)
        for o, arr in zip(out, others):
            o[g] = probe.predict_logits(prep(arr))
    return out


def score_row(label: str, cal_logits: np.ndarray, test_logits: np.ndarray, y: dict[str, np.ndarray]) -> dict:
    """Per-dim test accuracy and the cascade (fitted on calibration, reported on test) of one row.

    Shape: logits ``[G, N, C]`` per split. The paired standard error of the cascade's accuracy minus
    the best single prefix's is reported too (how much of a 0.1-point difference the test split resolves).
    """
    acc = (test_logits.argmax(-1) == y["test"][None]).mean(axis=1)
    # Both confidence scores are fitted; the one cheaper on calibration is kept (as `mrl cascade fit --score best`).
    fits = [fit_cascade(cal_logits, y["calibration"], DIMS, max_drop=0.001, confidence_level=0.95, objective="final", score=score) for score in ("maxprob", "margin")]
    casc = min(fits, key=lambda f: f.calibration["expected_cost"])
    rep = evaluate_cascade(casc, test_logits, y["test"])
    best = int(np.argmax(acc))
    pred, _ = casc.predict(test_logits)
    diff = (pred == y["test"]).astype(np.float64) - (test_logits[best].argmax(-1) == y["test"])
    se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    log(f"{label}: " + ", ".join(f"{d}: {100 * a:.1f}" for d, a in zip(DIMS, acc)) + f" | cascade {100 * rep['accuracy']:.2f} at {rep['expected_dim']:.1f} dims (best single {DIMS[best]}: {100 * acc[best]:.2f}; as accurate: {rep['fixed_dim']})")
    return {"per_dim": {str(d): float(a) for d, a in zip(DIMS, acc)}, "cascade": rep, "best_dim": DIMS[best], "best_acc": float(acc[best]), "paired_se": se}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", type=Path, required=True, help="The Matryoshka text model (default recipe).")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/text_manyclass")
    ap.add_argument("--max-per-class", type=int, default=1000)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--adaptor-seeds", type=int, nargs="+", default=[0, 1, 2], help="One adaptor row per seed (its init, batches and dropout).")
    ap.add_argument("--classify-encoder", type=Path, nargs="+", default=[], help="Models trained with loss: classify on this task (configs/text_classify_wordnet.yaml): one row each, read through its saved heads.")
    ap.add_argument("--only-classify", action="store_true", help="Keep the other rows of --out/results.json and (re)compute the --classify-encoder row alone.")
    ap.add_argument("--no-results", action="store_true")
    ap.add_argument("--base-only", action="store_true", help="Only encode with the base model (fills the cache while the encoder trains).")
    ap.add_argument("--write-results", action="store_true", help="Write the RESULTS section from --out/results.json (no computation).")
    args = ap.parse_args()
    task = load_wordnet_classes(max_per_class=args.max_per_class)
    if args.write_results:
        from mrl.io import read_json

        write_results(read_json(args.out / "results.json")["rows"], task, args)
        return
    c = len(task.class_names)
    log(f"{c} classes at depth {task.depth}; train {len(task.train)}, calibration {len(task.calibration)}, test {len(task.test)}")
    splits = {"train": task.train, "calibration": task.calibration, "test": task.test}
    if args.only_classify:
        from mrl.io import read_json

        if not args.classify_encoder:
            raise SystemExit("--only-classify needs --classify-encoder.")
        doc = read_json(args.out / "results.json")
        doc["rows"] = {k: v for k, v in doc["rows"].items() if "train" not in v}  # earlier label-trained encoder rows are replaced
        doc["rows"].update(dict(classify_row(e, task, args) for e in args.classify_encoder))
        write_json(args.out / "results.json", doc)
        if not args.no_results:
            write_results(doc["rows"], task, args)
        return
    enc = {}
    for name, model in (("base", "all-MiniLM-L6-v2"),) if args.base_only else (("mrl", str(args.encoder)), ("base", "all-MiniLM-L6-v2")):
        enc[name] = {s: cached_encode(model, sp.texts, args.out / "cache", max_seq_length=args.seq_len, bf16=BF16, progress=False) for s, sp in splits.items()}
        log(f"encoded with {model}")
    if args.base_only:
        return
    y = {s: np.asarray(sp.labels) for s, sp in splits.items()}
    rows = {}
    for seed in args.adaptor_seeds:
        t0 = time.perf_counter()
        fitted = fit_adaptor(enc["base"]["train"], AdaptorConfig(DIMS, progress=False, seed=seed, **ADAPTOR), labels=y["train"])
        adaptor_seconds = time.perf_counter() - t0
        log(f"adaptor with class heads (seed {seed}) fitted in {adaptor_seconds:.0f}s")
        label = ADAPTOR_ROW.format(seed=seed)
        rows[label] = score_row(label, fitted.model.logits(enc["base"]["calibration"]), fitted.model.logits(enc["base"]["test"]), y)
        rows[label]["fit_seconds"] = adaptor_seconds
    rows.update(dict(classify_row(e, task, args) for e in args.classify_encoder))
    pca = pca_transform(enc["base"]["train"], enc["base"]["train"], enc["base"]["calibration"], enc["base"]["test"])
    for label, (tr, ca, te), norm in (
        ("Matryoshka encoder (label-free default recipe) + heads", (enc["mrl"]["train"], enc["mrl"]["calibration"], enc["mrl"]["test"]), True),
        ("Base truncated + heads (FF-style)", (enc["base"]["train"], enc["base"]["calibration"], enc["base"]["test"]), True),
        ("Base + PCA + heads", tuple(pca), False),
    ):
        rows[label] = score_row(label, *head_logits(tr, y["train"], [ca, te], c, normalize=norm), y)
    write_json(args.out / "results.json", {"classes": c, "depth": task.depth, "sizes": {s: len(sp) for s, sp in splits.items()}, "adaptor": ADAPTOR, "rows": rows})
    if not args.no_results:
        write_results(rows, task, args)


def classify_row(encoder: Path, task, args: argparse.Namespace) -> tuple[str, dict]:
    """(label, row) of a ``loss: classify`` model: its saved heads on its own calibration/test embeddings."""
    from mrl.io import read_json
    from mrl.models.text_heads import load_text_heads

    heads = load_text_heads(encoder)
    if heads.class_names != task.class_names:
        raise SystemExit(f"{encoder} was trained on other classes than this task's {len(task.class_names)}; train it on dataset: wordnet-classes.")
    if bool(heads.refit) != encoder.name.endswith(REFIT_SUFFIX):
        raise SystemExit(f"{encoder}: name a folder with refit heads *{REFIT_SUFFIX} (a copy of the trained folder), and only such a folder; the RESULTS command lines rely on it.")
    y = {s: np.asarray(task.split(s).labels) for s in ("calibration", "test")}
    # max_seq_length None: the model's own (as it was trained)
    logits = {s: heads.logits(cached_encode(str(encoder), task.split(s).texts, args.out / "cache", max_seq_length=None, bf16=BF16, progress=False)) for s in y}
    info = read_json(encoder / "matryoshka.json")
    sd = float(info["config"].get("self_distill", 0.0))
    label = CLASSIFY_ROW.format(epochs=info["config"]["epochs"], extra=f", self_distill {sd:g}" if sd else "", heads=REFIT_HEADS if heads.refit else JOINT_HEADS)
    row = score_row(label, logits["calibration"], logits["test"], y)
    row["budgets"] = budget_sweep(logits["calibration"], logits["test"], y)
    row["train"] = {k: info.get(k) for k in ("steps", "seconds", "wall_seconds", "device", "bf16", "threads", "train_texts")} | {
        "epochs": info["config"]["epochs"],
        "batch_size": info["config"]["batch_size"],
        "max_seq_length": info["config"]["max_seq_length"],
        "self_distill": sd,
        "path": str(encoder),
    }
    if heads.refit:
        row["train"]["refit"] = heads.refit
    return label, row


BUDGETS = (0.1, 0.25, 0.5, 1.0)  # accuracy budgets (points vs the full head) of the sweep


def budget_sweep(cal_logits: np.ndarray, test_logits: np.ndarray, y: dict[str, np.ndarray]) -> list[dict]:
    """Where the cascade's cost goes: for each budget, the cascade held at 95 % (and one fitted on
    calibration alone, no bound) and its test accuracy and expected dims. Shape: logits ``[G, N, C]``."""
    out = []
    for budget in BUDGETS:
        for conf in (0.95, None):
            fits = [fit_cascade(cal_logits, y["calibration"], DIMS, max_drop=budget / 100, confidence_level=conf, objective="final", score=score) for score in ("maxprob", "margin")]
            rep = evaluate_cascade(min(fits, key=lambda f: f.calibration["expected_cost"]), test_logits, y["test"])
            out.append({"budget": budget, "confidence": conf, "accuracy": rep["accuracy"], "full_accuracy": rep["full_accuracy"], "expected_dim": rep["expected_dim"]})
    return out


def classify_text(trained: list[dict]) -> str:
    """How the label-trained encoder rows were trained (from their matryoshka.json)."""
    t = trained[0]
    joint = [r for r in trained if "refit" not in r]
    runs = "; ".join(f"{r['epochs']} epochs = {r['steps']} steps" + (f", self_distill {r['self_distill']:g}" if r["self_distill"] else "") + f": {r['wall_seconds'] / 60:.1f} min" for r in joint)
    refits = "; ".join(
        f"{r['epochs']} epochs: weight decay " + ", ".join(f"{p['dim']}: {p['weight_decay']:g}" for p in r["refit"]) + f" ({sum(p['fit_seconds'] for p in r['refit']) / 60:.1f} min of fitting)"
        for r in trained
        if "refit" in r
    )
    grid = sorted({float(wd) for r in trained if "refit" in r for p in r["refit"] for wd in p["tried"]})  # the weight decays each refit tried
    text = (
        f"**Label-trained encoder rows**: all-MiniLM-L6-v2 fine-tuned end to end with one linear class head per prefix (`loss: classify`, `configs/text_classify_wordnet.yaml`: Matryoshka cross-entropy, uniform weights,"
        f" label smoothing 0.1; `self_distill` adds each smaller head's KL to the full head) over the {t['train_texts']} training texts, batch {t['batch_size']}, max_seq_length {t['max_seq_length']},"
        f" on the 2-core CPU ({t['device']}, {t['threads']} threads, {'bf16' if t['bf16'] else 'fp32'}): {runs}; one seed (0) each. Rows marked 'its own heads' are read through the heads trained with the encoder."
    )
    if refits:
        text += (
            " Rows marked 'heads refit' are the same encoders after `mrl cascade refit-heads MODEL --texts wordnet-classes:train --val wordnet-classes:val`: per prefix, a multinomial logistic regression"
            f" (L-BFGS) on the frozen embeddings of the training texts, its weight decay out of {{{', '.join(f'{wd:g}' for wd in grid)}}} chosen by log-loss on the validation split (never calibration or test): {refits},"
            " plus one encoding pass over the training and validation texts."
        )
    return text


def budget_table(rows: dict) -> list[str]:
    """The budget sweep of the label-trained encoder rows (expected dims vs accuracy given up)."""
    lines = [
        "",
        "### Cascade budget vs saving (label-trained encoder rows; calibration -> test)",
        "",
        "| encoder | budget (points) | bound | test accuracy | full head | expected dims | dims saved vs full width |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        for b in r.get("budgets", []):
            bound = "95 % confidence" if b["confidence"] else "calibration only"
            lines.append(f"| {label} | {b['budget']:g} | {bound} | {100 * b['accuracy']:.2f} | {100 * b['full_accuracy']:.2f} | {b['expected_dim']:.1f} | {DIMS[-1] / b['expected_dim']:.1f}x |")
    return lines


ROW_ORDER = ("Base + Matryoshka adaptor", "Matryoshka encoder trained on the labels", "Matryoshka encoder (label-free", "Base truncated", "Base + PCA")


def write_results(rows: dict, task, args: argparse.Namespace) -> None:
    from results_md import replace_section

    # results.json stores rows with sorted keys; the tables keep one order: adaptor rows, label-trained encoders, then the probes
    rows = dict(sorted(rows.items(), key=lambda kv: (next((i for i, p in enumerate(ROW_ORDER) if kv[0].startswith(p)), len(ROW_ORDER)), kv[0])))

    lines = ["| head on | " + " | ".join(f"d={d}" for d in DIMS) + " |", "|---|" + "---|" * len(DIMS)]
    for label, r in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * r['per_dim'][str(d)]:.1f}" for d in DIMS) + " |")
    casc = [
        "| encoder | cascade test accuracy | expected dims (exit) | expected cumulative dims | best single prefix | its accuracy | accuracy loss (points, ± paired SE) | dims saved vs best prefix | smallest prefix as accurate as the cascade | dims saved vs it |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for label, r in rows.items():
        c = r["cascade"]
        loss = 100 * (r["best_acc"] - c["accuracy"])
        ratio = r["best_dim"] / c["expected_dim"]
        same = f"{c['fixed_dim']} | {c['ratio_final']:.1f}x" if c["fixed_dim"] else "none (the cascade beats every prefix) | -"
        casc.append(f"| {label} | {100 * c['accuracy']:.2f} | {c['expected_dim']:.1f} | {c['expected_cost']:.1f} | {r['best_dim']} | {100 * r['best_acc']:.2f} | {loss:.2f} ± {100 * r['paired_se']:.2f} | {ratio:.1f}x | {same} |")
        verdicts.append(
            f"- {label}: {ratio:.1f}x fewer expected dims than the best single prefix at {loss:.2f} points accuracy loss (target >= 3.5x at <= 0.1: {'met' if ratio >= 3.5 and loss <= 0.1 else 'MISSED'});"
            f" vs the full head (what the 95 % bound holds): {-c['drop_points']:+.2f} points."
        )
    trained = [r for r in rows.values() if "train" in r]
    body = [
        "## Text: many-class adaptive classification (WordNet hypernym categories)",
        "",
        f"Task (mrl.data.wordnet_classes): WordNet 3.0 noun synsets labelled by their hypernym at depth {task.depth}: {len(task.class_names)} categories (>= 50 members each, at most {args.max_per_class} per category),"
        f" split by synset: train {len(task.train)}, calibration {len(task.calibration)}, test {len(task.test)}. Text = `lemma: definition`, max_seq_length {args.seq_len}, {'bf16' if BF16 else 'fp32'} encode.",
        "Except in the label-trained encoder row, the encoder is frozen and encoded once. "
        f"**Adaptor row**: a residual-MLP Matryoshka adaptor over the base model's vectors with one class head per prefix, trained on the train split's labels (`mrl adapt --labels`; {', '.join(f'{k}={v}' for k, v in ADAPTOR.items())}; fitted in {min(r['fit_seconds'] for r in rows.values() if 'fit_seconds' in r):.0f}–{max(r['fit_seconds'] for r in rows.values() if 'fit_seconds' in r):.0f} s on 2 threads; settings chosen on the validation split with seed 0). "
        "**Other rows**: one linear softmax probe per prefix fitted on the cached train embeddings (L-BFGS, mrl.evaluate.probe). "
        "The Matryoshka encoder is the default recipe's model fitted label-free on WordNet training text (`benchmarks/text_ood.py`, `distill-general`); no class label reached the encoder.",
        *([classify_text([r["train"] for r in trained])] if trained else []),
        "Cascade: thresholds on max-softmax or top-2 margin (the cheaper on calibration) fitted on calibration (accuracy within 0.1 point of the full head, held at 95 % confidence), reported on the disjoint test split. 2-core CPU, seed 0.",
        "",
        "```",
        *([ENCODER_COMMAND] if args.encoder.name == "distill-general" else []),
        *[
            CLASSIFY_COMMAND.format(out=r["train"]["path"], sets=f" --set epochs={r['train']['epochs']}" + (f" --set self_distill={r['train']['self_distill']:g}" if r["train"]["self_distill"] else ""))
            for r in trained
            if "refit" not in r["train"]
        ],
        *[REFIT_COMMAND.format(joint=r["train"]["path"].removesuffix(REFIT_SUFFIX), out=r["train"]["path"]) for r in trained if "refit" in r["train"]],
        f"flock /work/coord/cpu.lock .venv/bin/python benchmarks/text_manyclass.py --encoder {args.encoder} --max-per-class {args.max_per_class} --adaptor-seeds {' '.join(map(str, args.adaptor_seeds))}"
        + (" --classify-encoder " + " ".join(r["train"]["path"] for r in trained) if trained else ""),
        "```",
        "",
        "### Test top-1 accuracy (%) per dim",
        "",
        *lines,
        "",
        "### Cascade on the test split",
        "",
        *casc,
        "",
        *verdicts,
        *(budget_table(rows) if trained else []),
    ]
    replace_section("text-manyclass", "\n".join(body))


if __name__ == "__main__":
    main()
