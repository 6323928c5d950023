"""A >= 1M-vector retrieval corpus that the trained MRL encoder really produced (cached under benchmarks/out).

Fashion-MNIST training images under random augmentation (random crop after 2-pixel padding,
horizontal flip, affine jitter: rotation +-10 deg, scale 0.9-1.1, translation +-2 px, all torch ops)
are encoded by the model; copy 0 of every image is the un-augmented original. Queries are the
test images (un-augmented); tuning queries are the validation images (held out from both).

    flock /tmp/mrl-cpu.lock .venv/bin/python benchmarks/retrieval_corpus.py --model benchmarks/out/mrl-bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mrl.data.fashion_mnist import load_fashion_mnist, to_tensor
from mrl.io import atomic_open, save_npy, write_json
from mrl.models.classifier import encode
from mrl.train.checkpoint import load_model

OUT = Path("benchmarks/out/retrieval")


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (pad 2), horizontal flip and affine jitter of a batch ``[B, 1, 28, 28]``."""
    b = x.shape[0]
    pad = F.pad(x, (2, 2, 2, 2), value=float(x.min()))
    ox, oy = torch.randint(0, 5, (2, b), generator=gen)
    rows = oy[:, None] + torch.arange(28)[None, :]  # [B, 28]
    cols = ox[:, None] + torch.arange(28)[None, :]
    crop = pad[:, 0][torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    flip = torch.rand(b, generator=gen) < 0.5
    crop = torch.where(flip.view(-1, 1, 1, 1), crop.flip(-1), crop)
    ang = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(b, generator=gen)
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * (2 / 14)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(crop.shape), align_corners=False)
    bg = float(x.min())
    return F.grid_sample(crop - bg, grid, align_corners=False, padding_mode="zeros") + bg


def model_digest(model: Path) -> str:
    p = model / "model.safetensors" if model.is_dir() else model
    return hashlib.sha256(p.read_bytes()).hexdigest()[:12]


def corpus_paths(model: Path, size: int) -> dict[str, Path]:
    tag = f"{model_digest(model)}-{size}"
    return {"corpus": OUT / f"corpus-{tag}.npy", "queries": OUT / f"queries-{tag}.npy", "tune": OUT / f"tunequeries-{tag}.npy", "meta": OUT / f"corpus-{tag}.json"}


def build(model: Path, size: int, *, seed: int = 0, batch: int = 2048, threads: int = 2) -> dict[str, Path]:
    paths = corpus_paths(model, size)
    if all(p.exists() for p in paths.values()):
        print(f"corpus cached: {paths['corpus']}")
        return paths
    torch.set_num_threads(threads)
    net, cfg = load_model(model)
    data = load_fashion_mnist(cfg.get("data_root"), val_size=cfg["val_size"])
    base = to_tensor(data.train.images)
    n_img = base.shape[0]
    gen = torch.Generator().manual_seed(seed)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    save_npy(paths["queries"], encode(net, to_tensor(data.test.images), with_logits=False)[0].numpy())
    save_npy(paths["tune"], encode(net, to_tensor(data.val.images), with_logits=False)[0].numpy())
    dim = cfg["embed_dim"]
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (size, dim)}
    labels = np.empty(size, dtype=np.int64)
    with atomic_open(paths["corpus"], "wb") as fh:  # streamed: temp file, fsync, rename
        np.lib.format.write_array_header_1_0(fh, header)
        done = 0
        while done < size:
            m = min(batch, size - done)
            src = (np.arange(done, done + m) % n_img)
            x = base[torch.from_numpy(src)]
            if done >= n_img:  # copy 0 of each image is the original
                x = augment(x, gen)
            emb = encode(net, x, batch_size=batch, with_logits=False)[0].numpy().astype(np.float32)
            fh.write(emb.tobytes())
            labels[done : done + m] = data.train.labels[src]
            done += m
            if done % (batch * 50) < batch:
                print(f"  encoded {done}/{size} ({time.perf_counter() - t0:.0f}s)", flush=True)
    save_npy(paths["corpus"].with_suffix(".labels.npy"), labels)
    meta = {"model": str(model), "model_sha256_12": model_digest(model), "size": size, "dim": dim, "seed": seed, "images": n_img, "seconds": time.perf_counter() - t0,
            "augment": "pad-2 random crop, hflip p=0.5, rotation +-10 deg, scale 0.9-1.1, translate +-2 px; copy 0 = original"}
    write_json(paths["meta"], meta)
    print(json.dumps(meta))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    build(a.model, a.size, threads=a.threads)


if __name__ == "__main__":
    main()
