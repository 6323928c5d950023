"""Encoding speed of all-MiniLM-L6-v2 on the CPU in fp32 and under bf16 autocast, side by side.

The same batch (64 texts of 128 tokens) is encoded in turns (fp32, bf16, fp32, bf16, ...) with 1
torch thread; the medians and their ratio are printed as one JSON line, with the CPU's bf16 flags and
what :func:`mrl.precision.bf16_pays` says about it. Run it alone (under the CPU lock):

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/bf16_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mrl.models.text import load_sentence_transformer, resolve_model_path
from mrl.precision import _CPU_BF16_FLAGS, _cpu_flags, bf16_pays


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_sentence_transformer(resolve_model_path("all-MiniLM-L6-v2"))
    model.max_seq_length = 128
    texts = ["word " * 150] * 64  # every text fills the 128 tokens
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for mode in times:
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                model.encode(texts, batch_size=64)
            times[mode].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    flags = sorted(f for f in _CPU_BF16_FLAGS if f in _cpu_flags())
    print(json.dumps({"texts": 64, "tokens": 128, "threads": args.threads, "repeats": args.repeats, "seconds": {k: round(v, 2) for k, v in med.items()},
                      "bf16_over_fp32": round(med["bf16"] / med["fp32"], 2), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_flags": flags, "bf16_pays": bf16_pays("cpu")}))


if __name__ == "__main__":
    main()
