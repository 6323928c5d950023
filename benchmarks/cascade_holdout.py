"""How often does a cascade "held at 95 %" lose more than its budget on new rows? Plain
`fit_cascade` (bound checked on the rows it searched) vs `fit_cascade_holdout` (thresholds searched on
half the calibration rows, confirmed on the other half, mrl.adaptive.holdout).

Two studies, both with a 0.1-point budget vs the full head and a 95 % one-sided level:

* **Synthetic** (the logits of tests/test_cascade.py: heads that sharpen with the prefix): each repeat
  draws 3000 calibration rows and 50000 fresh rows; a violation is a fresh-row loss > the budget.
  With 50000 fresh rows the measured loss is close to the true one.
* **WordNet many-class** (benchmarks/text_manyclass.py's adaptor with class heads, seed 0, fitted once
  on the train split): the 6110 calibration + test rows are re-split at random into two halves per
  repeat; the cascade is fitted on one half and scored on the other. The scoring half is small, so
  its own noise adds violations to any cascade that exits early.

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/cascade_holdout.py --repeats 40
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mrl.adaptive.cascade import evaluate_cascade, fit_cascade
from mrl.adaptive.holdout import fit_cascade_holdout

MAX_DROP = 0.001
LEVEL = 0.95


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def compare(fit_rows: tuple[np.ndarray, np.ndarray], score_rows: tuple[np.ndarray, np.ndarray], dims: tuple[int, ...], seed: int) -> dict[str, tuple[float, float]]:
    """(loss in points vs the full head on the scoring rows, expected exit dims) per method."""
    plain = fit_cascade(*fit_rows, dims, max_drop=MAX_DROP, confidence_level=LEVEL, objective="final")
    held = fit_cascade_holdout(*fit_rows, dims, max_drop=MAX_DROP, confidence_level=LEVEL, objective="final", seed=seed)
    out = {}
    for name, casc in (("plain", plain), ("holdout", held)):
        rep = evaluate_cascade(casc, *score_rows)
        out[name] = (rep["drop_points"], rep["expected_dim"])
    return out


def summarise(runs: list[dict[str, tuple[float, float]]]) -> dict[str, dict[str, float]]:
    res = {}
    for name in ("plain", "holdout"):
        loss = np.array([r[name][0] for r in runs])
        dim = np.array([r[name][1] for r in runs])
        res[name] = {"violations": int((loss > 100 * MAX_DROP + 1e-9).sum()), "repeats": len(runs), "mean_loss": float(loss.mean()), "median_dims": float(np.median(dim)), "mean_dims": float(dim.mean())}
    return res


def synthetic(repeats: int) -> dict[str, dict[str, float]]:
    from test_cascade import DIMS, synthetic_logits

    runs = [compare(synthetic_logits(3000, seed=100 + r), synthetic_logits(50000, seed=10_000 + r), DIMS, r) for r in range(repeats)]
    return summarise(runs)


def wordnet(repeats: int) -> dict[str, dict[str, float]]:
    from text_manyclass import ADAPTOR, DIMS

    from mrl.data.wordnet_classes import load_wordnet_classes
    from mrl.models.text_encode import cached_encode
    from mrl.train.adaptor import AdaptorConfig, fit_adaptor

    task = load_wordnet_classes(max_per_class=1000)
    cache = Path(__file__).resolve().parent / "out/text_manyclass/cache"
    enc = {s: cached_encode("all-MiniLM-L6-v2", task.split(s).texts, cache, max_seq_length=64, progress=False) for s in ("train", "calibration", "test")}
    model = fit_adaptor(enc["train"], AdaptorConfig(DIMS, progress=False, seed=0, **ADAPTOR), labels=task.train.labels).model
    logits = np.concatenate([model.logits(enc["calibration"]), model.logits(enc["test"])], axis=1)
    labels = np.concatenate([task.calibration.labels, task.test.labels])
    log(f"adaptor fitted; {logits.shape[1]} rows to re-split")
    runs = []
    for r in range(repeats):
        perm = np.random.default_rng(r).permutation(labels.shape[0])
        a, b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        runs.append(compare((logits[:, a], labels[a]), (logits[:, b], labels[b]), tuple(DIMS), r))
    return summarise(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    studies = {}
    t0 = time.perf_counter()
    studies["Synthetic (3000 calibration rows, 50000 fresh rows)"] = synthetic(args.repeats)
    log(f"synthetic done in {time.perf_counter() - t0:.0f}s: {studies}")
    studies["WordNet many-class, adaptor with class heads (3055 / 3055 random halves)"] = wordnet(args.repeats)
    log(f"all done in {time.perf_counter() - t0:.0f}s: {studies}")
    if not args.no_results:
        write_results(studies, args)


def write_results(studies: dict, args: argparse.Namespace) -> None:
    from results_md import replace_section

    lines = [
        "| study | method | violations (loss > 0.1 point) | mean loss vs full head (points) | median expected exit dims | mean expected exit dims |",
        "|---|---|---|---|---|---|",
    ]
    for study, res in studies.items():
        for name, label in (("plain", "`fit_cascade` (bound on the searched rows)"), ("holdout", "`fit_cascade_holdout` (search half, confirm half)")):
            r = res[name]
            lines.append(f"| {study} | {label} | {r['violations']} / {r['repeats']} | {r['mean_loss']:.3f} | {r['median_dims']:.1f} | {r['mean_dims']:.1f} |")
    body = [
        "## Cascade bound: searched rows vs held-out confirmation",
        "",
        "Does a cascade fitted to lose at most 0.1 point against its full head, at 95 % one-sided confidence, keep that promise on new rows? "
        "`fit_cascade` checks its bound on the same rows it searched thresholds on; `fit_cascade_holdout` (`mrl cascade fit --confidence 0.95 --holdout 0.5`) "
        "searches a ladder of candidates on half the rows and confirms them, most conservative first, on the other half (fixed-sequence testing). "
        "A nominal 95 % level allows about 5 % violations. Objective: expected exit dims. 2-core CPU.",
        "",
        "```",
        f"flock /work/coord/cpu.lock .venv/bin/python benchmarks/cascade_holdout.py --repeats {args.repeats}",
        "```",
        "",
        *lines,
        "",
        "The WordNet study scores each repeat on only 3055 rows, and one paired SE there is about 0.3–0.5 point, so many of its violations are that half's own noise. "
        "A cascade that exits early reads above 0.1 point on a sizeable share of halves even when its true loss is 0, while one that always answers with the full head reads exactly 0. "
        "Coverage is measured by the synthetic study, which is scored on 50000 rows; the WordNet rows show what each method costs on the real task.",
    ]
    replace_section("cascade-holdout", "\n".join(body))


if __name__ == "__main__":
    main()
