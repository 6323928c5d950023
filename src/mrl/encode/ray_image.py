"""Distributed image encoding on Ray Data: a trained image run's embeddings of a Fashion-MNIST split as shards.

    >>> reader = encode_split_ray("runs/mrl", "train", "enc/train")      # local Ray; address=... for a cluster

Same shard folder and manifest format as :mod:`mrl.encode.shards` (model = the run's
``model.safetensors`` hash, sources = the IDX files' hashes, settings = split and validation size),
same executor shape as :mod:`mrl.encode.ray_text`: each pending shard (a row range of the split)
goes to an actor that loaded the model and the split once, which encodes and writes it; the driver
records it in the manifest as it streams back (one manifest writer, even on a cluster). A rerun
after a kill encodes only the shards the manifest does not list.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mrl.encode.shards import MANIFEST, ShardReader, ShardSet, open_shards, sha256_file, source_entry, write_shard
from mrl.errors import MRLError
from mrl.io import read_json

SPLITS = ("train", "val", "test")


class ImageShardEncoder:
    """A Ray Data actor: loads the run's model and the split once, then encodes whole shards."""

    def __init__(self, model: str, split: str, data_root: str | None, val_size: int, folder: str, dtype: str, threads: int) -> None:
        import torch

        from mrl.data.fashion_mnist import load_fashion_mnist
        from mrl.train.checkpoint import load_model

        torch.set_num_threads(threads)
        self.net, _ = load_model(model)
        self.data = getattr(load_fashion_mnist(data_root, val_size=val_size), split)
        self.dtype = dtype
        self.shards = ShardSet(Path(folder), read_json(Path(folder) / MANIFEST))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from mrl.evaluate.perdim import encode_split

        out: dict[str, list[Any]] = {"index": [], "rows": [], "seconds": [], "start": [], "file": [], "bytes": [], "sha256": []}
        for index in batch["index"]:
            t0 = time.perf_counter()
            start, stop = self.shards.shard_rows(int(index))
            emb = encode_split(self.net, self.data.images[start:stop], self.data.labels[start:stop]).embeddings
            entry = write_shard(self.shards.folder, int(index), start, emb, self.dtype)
            seconds = round(time.perf_counter() - t0, 3)
            for key in ("start", "file", "bytes", "sha256"):  # the driver records the shard from these
                out[key].append(entry[key])
            out["index"].append(int(index))
            out["rows"].append(stop - start)
            out["seconds"].append(seconds)
        return {k: np.asarray(v) for k, v in out.items()}


def encode_split_ray(model: str | os.PathLike[str], split: str, out: str | os.PathLike[str], *, data_root: str | None = None, address: str | None = None, actors: int = 2,
                     cpus_per_actor: float = 1.0, threads_per_actor: int = 1, num_cpus: int | None = 2, rows_per_shard: int = 8192, dtype: str = "float32",
                     overwrite: bool = False, progress: bool = True, log: Any = None) -> ShardReader:
    """Encode one split of Fashion-MNIST with an image run on Ray into a resumable shard folder.

    Args:
        model: an image run folder (or its ``model.safetensors``).
        split: ``train``, ``val`` or ``test`` (the run's validation size carves ``val`` out of train).
        address: a Ray cluster, or ``None`` for a local Ray with ``num_cpus``.
    """
    from mrl.data.fashion_mnist import load_fashion_mnist
    from mrl.encode.ray_text import start_ray
    from mrl.progress import progress as progress_bar
    from mrl.train.checkpoint import load_model

    if split not in SPLITS:
        raise MRLError(f"split must be one of {SPLITS}, got {split!r}.")
    for name, v in (("actors", actors), ("rows_per_shard", rows_per_shard), ("threads_per_actor", threads_per_actor)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise MRLError(f"{name} must be a positive integer, got {v!r}.")
    log = log or (lambda _m: None)
    path = Path(model)
    weights = path / "model.safetensors" if path.is_dir() else path
    net, cfg = load_model(weights)
    root = data_root if data_root is not None else cfg.get("data_root")
    data = load_fashion_mnist(root, val_size=cfg["val_size"])
    rows = int(getattr(data, split).images.shape[0])
    dim = int(cfg["embed_dim"])
    del net, data
    idx_files = sorted(Path(p) for p in _idx_files(root))
    header = {
        "model": {"name": str(model), "path": str(weights.resolve()), "sha256": sha256_file(weights)},
        "dim": dim, "dtype": dtype, "rows": rows, "rows_per_shard": rows_per_shard,
        "sources": [source_entry(p, 0) for p in idx_files],  # rows 0: the whole file is an input
        "settings": {"task": "image", "split": split, "val_size": int(cfg["val_size"]), "normalize": False},
    }
    shards = ShardSet.create_or_resume(out, header, overwrite=overwrite)
    pending = shards.pending()
    done_rows = rows - sum(shards.shard_rows(i)[1] - shards.shard_rows(i)[0] for i in pending)
    log(f"{rows} {split} images in {shards.num_shards} shards of {rows_per_shard}: {len(pending)} to encode on Ray ({done_rows} rows already done)")
    if pending:
        ray = start_ray(address, num_cpus)
        ds = ray.data.from_items([{"index": i} for i in pending], override_num_blocks=len(pending)).map_batches(
            ImageShardEncoder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actors, len(pending))), num_cpus=cpus_per_actor,
            fn_constructor_kwargs={"model": str(weights.resolve()), "split": split, "data_root": None if root is None else str(root), "val_size": int(cfg["val_size"]),
                                   "folder": str(shards.folder.resolve()), "dtype": dtype, "threads": threads_per_actor})
        bar = progress_bar(total=rows, initial=done_rows, unit="img", desc="embed (ray)", disable=not progress)
        try:
            for row in ds.iter_rows():  # each row is one finished shard: recorded here, by the one manifest writer
                entry = {"index": int(row["index"]), "start": int(row["start"]), "rows": int(row["rows"]), "file": str(row["file"]), "bytes": int(row["bytes"]), "sha256": str(row["sha256"])}
                shards.record({**entry, "seconds": float(row["seconds"]), "executor": "ray"})
                bar.update(int(row["rows"]))
        finally:
            bar.close()
    return open_shards(shards.folder)


def _idx_files(root: str | None) -> list[str]:
    """The Fashion-MNIST IDX files the split is read from (their hashes key the encoding)."""
    from mrl.data.fashion_mnist import resolve_root

    folder = resolve_root(root)
    files = [str(p) for p in sorted(folder.iterdir()) if p.is_file() and "-ubyte" in p.name] if folder.is_dir() else []
    if not files:
        raise MRLError(f"no Fashion-MNIST IDX files in {folder}; pass --data-root or set MRL_FASHION_MNIST.")
    return files
