"""Training-step time of MRL (fused heads: one block GEMM + one cross-entropy) against FF-512.

Same batch (256 Fashion-MNIST images), same backbone (small ResNet, width 16, D = 512), same SGD
optimizer; one process, steps interleaved MRL / FF / per-head MRL after warm-up, medians reported.
"Per-head MRL" is the unfused reference (nine ``nn.Linear`` heads and nine cross-entropies, the
layout before the fusion), kept here to show what the fusion changes.

    flock /work/coord/cpu.lock python benchmarks/fused_step_time.py --repeats 30          # 2-core CPU
    python benchmarks/fused_step_time.py --device cuda --repeats 200                    # a GPU (bf16 autocast)

Prints one JSON line; ``--section`` also writes it into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mrl.data.fashion_mnist import load_fashion_mnist, to_tensor
from mrl.losses import MatryoshkaLoss
from mrl.models.classifier import build_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import replace_section

DIMS = (2, 4, 8, 16, 32, 64, 128, 256, 512)


class PerHeadMRL(nn.Module):
    """Reference: one ``nn.Linear(m, C)`` per prefix, logits stacked. Shape: ``[N, D] -> [G, N, C]``."""

    def __init__(self, dims: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.dims = dims
        self.heads = nn.ModuleList(nn.Linear(m, num_classes) for m in dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x[:, :m]) for h, m in zip(self.heads, self.dims)])


def per_head_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(logits[i], y, label_smoothing=0.1) for i in range(logits.shape[0]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--section", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else None
    data = load_fashion_mnist(None)
    x = to_tensor(data.train.images[: args.batch]).to(dev)
    y = torch.from_numpy(data.train.labels[: args.batch]).to(dev)
    setups = {}
    for name, mode, dims in (("mrl", "mrl", DIMS), ("ff512", "ff", (512,)), ("mrl_per_head", "mrl", DIMS)):
        torch.manual_seed(0)
        model = build_classifier(backbone="small_resnet", embed_dim=512, num_classes=10, matryoshka_dims=dims, mode=mode, width=16)
        if name == "mrl_per_head":
            model.head = PerHeadMRL(DIMS, 10)
            loss = per_head_loss
        else:
            mloss = MatryoshkaLoss(dims, label_smoothing=0.1)
            loss = lambda logits, t, m=mloss: m(logits, t).total  # noqa: E731
        model = model.to(dev)
        setups[name] = (model, loss, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))

    def step(name: str) -> float:
        model, loss, opt = setups[name]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        if amp is not None:
            with amp:
                total = loss(model(x), y)
        else:
            total = loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    for name in setups:
        for _ in range(args.warmup):
            step(name)
    times: dict[str, list[float]] = {n: [] for n in setups}
    for _ in range(args.repeats):
        for name in setups:
            times[name].append(step(name))
    med = {n: statistics.median(v) for n, v in times.items()}
    res = {
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU ({platform.machine()}, {args.threads} threads)",
        "batch": args.batch, "repeats": args.repeats,
        "ms": {n: round(1000 * v, 2) for n, v in med.items()},
        "ratio_mrl_fused_vs_ff512": round(med["mrl"] / med["ff512"], 3),
        "ratio_mrl_per_head_vs_ff512": round(med["mrl_per_head"] / med["ff512"], 3),
    }
    print(json.dumps(res))
    if args.section:
        cmd = "python benchmarks/fused_step_time.py " + " ".join(sys.argv[1:])
        target = 1.05 if dev.type == "cpu" else 1.2
        ok = "met" if res["ratio_mrl_fused_vs_ff512"] <= target else "MISSED"
        body = "\n".join([
            "## Fused Matryoshka heads: step time (issue 13)", "",
            f"Command: `flock /work/coord/cpu.lock {cmd.strip()}` on {res['device']}; batch {args.batch}, median of {args.repeats} interleaved steps after {args.warmup} warm-up steps each; small ResNet (width 16), D = 512, MRL heads at 2…512.", "",
            "| step | median ms | vs FF-512 |", "|---|---:|---:|",
            f"| FF-512 (one head) | {res['ms']['ff512']} | 1.000x |",
            f"| MRL, fused heads (one masked block GEMM + one cross-entropy) | {res['ms']['mrl']} | {res['ratio_mrl_fused_vs_ff512']}x |",
            f"| MRL, per-head reference (nine Linear + nine cross-entropies) | {res['ms']['mrl_per_head']} | {res['ratio_mrl_per_head_vs_ff512']}x |", "",
            f"Target MRL <= {target}x FF-512 on this device: {ok} ({res['ratio_mrl_fused_vs_ff512']}x).",
        ])
        replace_section(args.section, body)


if __name__ == "__main__":
    main()
