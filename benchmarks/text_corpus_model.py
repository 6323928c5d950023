"""Fit the default text recipe (label-free prefix distillation) on a sample of the 1M-passage corpus
and publish it for the retrieval benchmarks.

The sample is the first ``--sample`` passages of the (already shuffled) corpus shards that are not
listed in the corpus' ``exclude/*.txt`` (WordNet test-split definitions, passages of the
out-of-domain sets' evaluated documents); the held-out query passages are not in the shards.
The model is written to ``--out`` with ``README.txt`` written LAST, so its presence means the model
folder is complete.

    nice -n 19 .venv/bin/python benchmarks/text_corpus_model.py --corpus /work/wt/data/benchmarks/out/corpus --out /work/artifacts/corpus-minilm
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mrl.errors import DataError
from mrl.io import atomic_write, read_json, write_json
from mrl.precision import bf16_pays
from mrl.train.text import load_text_config, train_text

BF16 = bf16_pays("cpu")  # bf16 autocast only where the CPU computes it natively (AVX2-only: 6.4x slower than fp32)
ROOT = Path(__file__).resolve().parent.parent


def sample_passages(corpus: Path, n: int) -> tuple[list[dict], dict]:
    """First ``n`` non-excluded passages of the shards, in shard order; and what was excluded."""
    manifest = read_json(corpus / "manifest.json")
    if not manifest.get("complete"):
        raise DataError(f"{corpus}/manifest.json is not marked complete; wait for the corpus build to finish.")
    excluded: set[str] = set()
    for f in sorted((corpus / "exclude").glob("*.txt")):
        excluded |= {ln.strip() for ln in f.read_text().splitlines() if ln.strip()}
    out: list[dict] = []
    for shard in sorted(corpus.glob("passages-*.jsonl")):
        with shard.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if row["_id"] in excluded:
                    continue
                out.append({"_id": row["_id"], "text": row["text"]})
                if len(out) >= n:
                    return out, {"excluded_ids": len(excluded), "exclude_files": sorted(p.name for p in (corpus / "exclude").glob("*.txt"))}
    return out, {"excluded_ids": len(excluded)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("/work/wt/data/benchmarks/out/corpus"))
    ap.add_argument("--out", type=Path, default=Path("/work/artifacts/corpus-minilm"))
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks/out/corpus_model")
    ap.add_argument("--sample", type=int, default=5000)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    rows, excl = sample_passages(args.corpus, args.sample)
    args.work.mkdir(parents=True, exist_ok=True)
    sample = args.work / "sample.jsonl"
    atomic_write(sample, "".join(json.dumps(r) + "\n" for r in rows).encode())
    overrides = [f"dataset={sample}", f"max_texts={len(rows)}", f"bf16={str(BF16).lower()}", "device=cpu", "progress=false", f"cache_dir={args.work / 'cache'}", *args.overrides]
    cfg = load_text_config(ROOT / "configs/text_distill.yaml", overrides)
    marker = args.out / "README.txt"
    if marker.is_file() and marker.read_text().startswith("corpus-minilm:"):
        marker.unlink()  # ours, from an earlier run: the folder is not complete while it retrains
    t0 = time.perf_counter()
    res = train_text(cfg, args.out, overwrite=(args.out / "matryoshka.json").is_file(), resume=any((args.out / "checkpoints").glob("checkpoint-*")))
    wall = time.perf_counter() - t0
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_json(args.work / "run.json", {"sample": len(rows), **excl, "steps": res.steps, "train_seconds": res.seconds, "wall_seconds": wall})
    readme = "\n".join([
        "corpus-minilm: all-MiniLM-L6-v2 adapted label-free to the 1M-passage corpus (the default text recipe, configs/text_distill.yaml).",
        "",
        f"command: nice -n 19 .venv/bin/python benchmarks/text_corpus_model.py --corpus {args.corpus} --out {args.out} --sample {args.sample}" + "".join(f" --set {o}" for o in args.overrides),
        f"commit: {commit}",
        f"sample: {len(rows)} passages (first non-excluded passages of the shuffled shards; {excl['excluded_ids']} ids excluded via {args.corpus}/exclude/*.txt: WordNet test-split definitions and out-of-domain evaluated documents)",
        f"steps: {res.steps} x batch {cfg.batch_size}, max_seq_length {cfg.max_seq_length}, lr {cfg.lr}, projection {cfg.projection}, train_layers {cfg.train_layers}, seed {cfg.seed}",
        f"wall-clock: {wall:.0f} s in all ({res.seconds:.0f} s of Trainer steps), 2-core shared CPU at nice 19, bf16 autocast",
        "dims: 8,16,32,64,128,256,384 (truncate, then L2-normalise). Load: SentenceTransformer(path, truncate_dim=d).encode(texts, normalize_embeddings=True)",
        "",
    ])
    atomic_write(args.out / "README.txt", readme.encode())  # written last: its presence means the model is complete
    print(readme, file=sys.stderr)


if __name__ == "__main__":
    main()
