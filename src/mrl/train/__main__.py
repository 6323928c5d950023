"""``python -m mrl.train`` / ``torchrun -m mrl.train``: train from a config, one rank per process.

Example (2 processes on one machine, gloo on CPU or NCCL on GPUs)::

    torchrun --standalone --nproc_per_node 2 -m mrl.train --out runs/mrl --set epochs=3

The same flags as ``mrl train`` (``--config``, ``--set key=value``, ``--resume``, ``--overwrite``).
Errors print one line on rank 0 and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from mrl.errors import MRLError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mrl.train", description="Train a Matryoshka classifier (one process or one torchrun rank).")
    parser.add_argument("--out", "-o", required=True, help="Run folder for checkpoint, metrics and model.")
    parser.add_argument("--config", "-c", default=None, help="YAML config (see configs/).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Override a config key, e.g. --set epochs=5.")
    parser.add_argument("--resume", action="store_true", help="Continue from OUT/checkpoint.safetensors.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a run already in OUT.")
    parser.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)  # for tests: stop as if killed
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from mrl.train import load_config, train
    from mrl.train.recipe import load_recipe

    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0") or 0)
    try:
        if load_recipe(args.config, args.overrides).task == "multimodal":
            from mrl.train.multimodal import train_multimodal
            from mrl.train.multimodal_config import load_multimodal_config

            mm = train_multimodal(load_multimodal_config(args.config, args.overrides), args.out, resume=args.resume, overwrite=args.overwrite, stop_after_epoch=args.stop_after_epoch)
            if rank == 0:
                print(f"trained two-tower model on {os.environ.get('WORLD_SIZE', '1')} process(es) in {mm.seconds:.0f}s", file=sys.stderr)
            return 0
        cfg = load_config(args.config, args.overrides)
        result = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, stop_after_epoch=args.stop_after_epoch)
    except MRLError as exc:
        if rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    if rank == 0:
        last = result.final
        accs = ", ".join(f"{d}: {100 * last[f'val_top1@{d}']:.1f}" for d in cfg.matryoshka_dims)
        world = os.environ.get("WORLD_SIZE", "1")
        print(f"trained {cfg.mode} on {world} process(es) in {result.seconds:.0f}s; validation top-1 per dim: {accs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
