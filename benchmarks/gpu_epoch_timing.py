"""Time one training epoch of MRL (heads at 2, 4, ..., 512) against FF-512 with the same batch.

Uses the training loop's own pieces (model factory, loss, optimizer, ``fetch_batch``,
``train_step``), so on CUDA it measures what ``mrl train`` does there: bf16 autocast
(``--precision auto``), channels-last, pinned-memory batches copied with ``non_blocking=True``.

It times ``--steps`` optimisation steps after ``--warmup`` untimed ones, ``--repeats`` times,
alternating MRL and FF, and reports the median time per step and the epoch time it implies
(``steps_per_epoch = train_size // batch_size``, 214 for Fashion-MNIST at batch 256). One JSON line
goes to stdout.

    python benchmarks/gpu_epoch_timing.py                          # on a GPU machine: full epochs
    python benchmarks/gpu_epoch_timing.py --device cpu --steps 20  # quick check anywhere

Images come from Fashion-MNIST when installed, else (or with ``--synthetic``) from random
uint8 images of the same shape: the step time does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
import torch

from mrl.data.fashion_mnist import load_fashion_mnist, to_tensor
from mrl.errors import MRLError
from mrl.losses import MatryoshkaLoss
from mrl.models.classifier import build_classifier
from mrl.train import TrainConfig
from mrl.train.loop import build_optimizer, fetch_batch, resolve_device, resolve_precision, train_step


def _images(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    if not args.synthetic:
        try:
            data = load_fashion_mnist(args.data_root)
            return to_tensor(data.train.images), torch.from_numpy(data.train.labels), "fashion_mnist"
        except MRLError as exc:
            print(f"note: {exc}; using synthetic images", file=sys.stderr)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(55_000, 28, 28), dtype=np.uint8)
    return to_tensor(images), torch.from_numpy(rng.integers(0, 10, size=55_000).astype(np.int64)), "synthetic"


class Runner:
    """One model + optimizer; ``run(k)`` does ``k`` training steps and returns the wall-clock."""

    def __init__(self, cfg: TrainConfig, device: torch.device, x: torch.Tensor, y: torch.Tensor, total_steps: int) -> None:
        self.device, self.x, self.y = device, x, y
        self.model = build_classifier(backbone=cfg.backbone, embed_dim=cfg.embed_dim, num_classes=10, matryoshka_dims=cfg.matryoshka_dims, mode=cfg.mode, width=cfg.width).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = MatryoshkaLoss(cfg.matryoshka_dims, weighting=cfg.build_weighting().to(device), label_smoothing=cfg.label_smoothing)
        self.opt, self.sched = build_optimizer(cfg, list(self.model.parameters()), total_steps)
        self.amp = resolve_precision(cfg.precision, device)
        self.batch = cfg.batch_size
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.model.train()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, steps: int) -> float:
        n = self.x.shape[0]
        flips = torch.rand(n, generator=self.gen) < 0.5
        self._sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, n, (self.batch,), generator=self.gen)
            xb, yb = fetch_batch(self.x, self.y, flips, idx, self.device)
            train_step(self.model, self.loss_fn, self.opt, self.sched, xb, yb, amp_dtype=self.amp)
        self._sync()
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default: one full epoch)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before timing (cuDNN autotune, allocator)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per model (default 3 on CUDA, 1 on CPU)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--synthetic", action="store_true", help="random images instead of Fashion-MNIST")
    args = ap.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except MRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    x, y, source = _images(args)
    steps_per_epoch = x.shape[0] // args.batch_size
    steps = args.steps or steps_per_epoch
    repeats = args.repeats or (3 if device.type == "cuda" else 1)
    if steps <= 0 or repeats <= 0 or args.warmup < 0:
        print("error: --steps and --repeats must be positive, --warmup >= 0", file=sys.stderr)
        return 2
    base = TrainConfig(batch_size=args.batch_size, precision=args.precision, device=str(device), progress=False)
    total = args.warmup + steps * repeats + 1
    runners = {"mrl": Runner(base, device, x, y, total), "ff512": Runner(base.replace(mode="ff", matryoshka_dims=[base.embed_dim]), device, x, y, total)}
    for r in runners.values():
        r.run(args.warmup)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):  # alternate so that drift (clocks, other load) hits both alike
        for name, r in runners.items():
            times[name].append(r.run(steps) / steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "gpu_epoch_timing",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "data": source,
        "batch_size": args.batch_size,
        "precision": "bf16" if resolve_precision(args.precision, device) is not None else "fp32",
        "channels_last": device.type == "cuda",
        "timed_steps": steps,
        "repeats": repeats,
        "steps_per_epoch": steps_per_epoch,
        "mrl_step_ms": round(1000 * med["mrl"], 3),
        "ff512_step_ms": round(1000 * med["ff512"], 3),
        "mrl_epoch_s": round(med["mrl"] * steps_per_epoch, 3),
        "ff512_epoch_s": round(med["ff512"] * steps_per_epoch, 3),
        "mrl_over_ff512": round(med["mrl"] / med["ff512"], 4),
        "epoch_extrapolated": steps != steps_per_epoch,
    }
    if device.type == "cuda":
        result["max_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
