"""Derived encodings: a shard folder of another model's vectors passed through a post-hoc adaptor.

A frozen encoder plus a :class:`~mrl.models.adaptor.MatryoshkaAdaptor` is a model of its own
(``adaptor(base(text))``); its encoding of a corpus is the base encoding transformed shard by shard,
so a new adaptor never re-runs the encoder. The derived folder is an ordinary shard folder (same
rows, ids and text hashes as its source), keyed by the source model's hash *and* the adaptor's
weights hash: resuming checks both, and a different adaptor needs ``overwrite`` (which removes only
the files that folder's manifest lists).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mrl.encode.shards import ShardReader, ShardSet, open_shards, write_shard
from mrl.errors import MRLError
from mrl.io import sha256_file


def adapt_shards(source: str | os.PathLike[str], adaptor: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False,
                 log: Callable[[str], None] = print) -> ShardReader:
    """Write ``adaptor(source rows)`` into the shard folder ``out`` (resumable; returns it opened).

    Shape: every source shard ``[n, D]`` -> ``[n, D]`` float32 (full width, not normalised: truncate
    to a prefix, then L2-normalise, as for any Matryoshka vector).

    Raises:
        MRLError: ``out`` is the source folder, the adaptor's width differs from the source's, or
            ``out`` holds another encoding and ``overwrite`` is not set.
    """
    from mrl.models.adaptor import load_adaptor

    src = open_shards(source)
    out, adaptor = Path(out), Path(adaptor)
    if out.resolve() == src.folder.resolve():
        raise MRLError(f"--out {out} is the source shard folder; write the adapted encoding to another folder.")
    model = load_adaptor(adaptor)
    if model.dim != src.dim:
        raise MRLError(f"the adaptor maps {model.dim}-d vectors but {src.folder} holds {src.dim}-d ones; fit the adaptor on this model's embeddings.")
    weights = adaptor / "adaptor.safetensors" if adaptor.is_dir() else adaptor
    adaptor_sha = sha256_file(weights)
    base = src.manifest["model"]
    header: dict[str, Any] = {
        "model": {"name": f"{base.get('name')} + adaptor {adaptor.name}", "sha256": hashlib.sha256(f"{base['sha256']}|{adaptor_sha}".encode()).hexdigest(),
                  "base": base, "adaptor": {"path": str(adaptor.resolve()), "sha256": adaptor_sha}},
        "dim": src.dim, "dtype": "float32", "rows": src.rows, "rows_per_shard": int(src.manifest["rows_per_shard"]),
        "sources": src.manifest.get("sources", []),
        "settings": {**src.manifest.get("settings", {}), "derived_from": str(src.folder.resolve()), "normalize": False},
    }
    text_hashes = None
    entry = src.manifest.get("texthash")
    if entry and (src.folder / entry["file"]).is_file():
        text_hashes = np.load(src.folder / entry["file"], allow_pickle=False)
    shards = ShardSet.create_or_resume(out, header, overwrite=overwrite, ids=src.ids(), text_hashes=text_hashes)
    pending = shards.pending()
    log(f"{src.rows} rows in {shards.num_shards} shards: {len(pending)} to adapt")
    starts = np.cumsum([0] + [a.shape[0] for a in src.arrays])
    for index in pending:
        t0 = time.perf_counter()
        start, stop = shards.shard_rows(index)
        k = int(np.searchsorted(starts, start, side="right") - 1)
        if starts[k] != start or starts[k + 1] != stop:
            raise MRLError(f"{src.folder} is sharded differently from {out}; pass --overwrite to start the derived folder afresh.")
        y = model.transform(src.arrays[k])
        shards.record({**write_shard(out, index, start, y, "float32"), "seconds": round(time.perf_counter() - t0, 3)})
    return open_shards(out)
