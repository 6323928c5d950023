"""Distributed text encoding on Ray Data: the same shards and manifest as :func:`mrl.encode.text.encode_corpus`.

    >>> reader = encode_corpus_ray("all-MiniLM-L6-v2", ["corpus/"], "enc/base")            # local Ray
    >>> reader = encode_corpus_ray(model, inputs, "/shared/enc", address="ray://head:10001")  # a cluster

The driver plans the encoding exactly as the single-process executor does (same manifest header:
model content hash, input hashes, settings), so either executor resumes the other's folder. It
sends each *pending* shard (index + its texts) through ``Dataset.map_batches`` to a pool of actors
(:class:`ShardEncoder`); each actor loads the model once, encodes a shard with the same length-sorted
code (:func:`~mrl.encode.text.encode_texts_sorted`) and writes it atomically
(:func:`~mrl.encode.shards.write_shard`); the driver records each finished shard in the manifest
(:meth:`~mrl.encode.shards.ShardSet.record`) as it streams back, so the manifest has one writer even
on a cluster (its lock lives in mrl's per-user lock folder, never in the output folder). A killed job
therefore loses at most the shards in flight; the rerun encodes only what the manifest does not
list. On a cluster the output folder and the inputs must be on a filesystem every node sees (the
actors write the shards themselves).

Shard size: unless given, ``rows_per_shard`` is chosen from the input size and the number of actors
(:func:`auto_rows_per_shard`: about 4 shards per actor, at most 16,384 rows), so a small input is
still spread over every actor; a folder being resumed keeps the shard size it was started with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl.encode.shards import MANIFEST, ShardReader, ShardSet, open_shards, write_shard
from mrl.errors import MRLError
from mrl.io import read_json

MAX_ROWS_PER_SHARD = 16384
SHARDS_PER_ACTOR = 4


def auto_rows_per_shard(rows: int, actors: int, *, folder: str | os.PathLike[str] | None = None) -> int:
    """Rows per shard for ``rows`` inputs on ``actors`` actors: about :data:`SHARDS_PER_ACTOR` shards
    per actor (every actor busy, and a killed job loses little), at most :data:`MAX_ROWS_PER_SHARD`,
    at least ``min(256, rows / actors)`` (tiny shards cost more in overhead than they balance).
    A ``folder`` that already holds a shard manifest keeps its own shard size (resume).
    """
    if folder is not None and (Path(folder) / MANIFEST).is_file():
        with contextlib.suppress(Exception):  # an unreadable manifest is reported by create_or_resume
            return int(read_json(Path(folder) / MANIFEST)["rows_per_shard"])
    per_actor = -(-rows // max(1, actors))
    spread = -(-rows // (max(1, actors) * SHARDS_PER_ACTOR))
    return max(1, min(MAX_ROWS_PER_SHARD, max(spread, min(256, per_actor))))


class ShardEncoder:
    """A Ray Data actor: loads the model once, then encodes and writes whole shards (the driver records them)."""

    def __init__(self, model: str, folder: str, dtype: str, bf16: bool, batch_size: int, max_seq_length: int | None, threads: int) -> None:
        import torch

        from mrl.models.text import load_sentence_transformer

        torch.set_num_threads(threads)
        self.st = load_sentence_transformer(model)
        if max_seq_length is not None:
            self.st.max_seq_length = int(max_seq_length)
        self.dtype, self.bf16, self.batch_size = dtype, bf16, batch_size
        self.shards = ShardSet(Path(folder), read_json(Path(folder) / MANIFEST))  # record() re-reads it under the lock

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from mrl.encode.text import encode_texts_sorted

        shards = self.shards
        out: dict[str, list[Any]] = {"index": [], "rows": [], "seconds": [], "pid": [], "start": [], "file": [], "bytes": [], "sha256": []}
        for index, texts in zip(batch["index"], batch["texts"]):
            t0 = time.perf_counter()
            emb = encode_texts_sorted(self.st, list(texts), batch_size=self.batch_size, bf16=self.bf16)
            entry = write_shard(shards.folder, int(index), shards.shard_rows(int(index))[0], emb, self.dtype)
            seconds = round(time.perf_counter() - t0, 3)
            for key in ("start", "file", "bytes", "sha256"):  # the driver records the shard from these
                out[key].append(entry[key])
            out["index"].append(int(index))
            out["rows"].append(len(texts))
            out["seconds"].append(seconds)
            out["pid"].append(os.getpid())
        return {k: np.asarray(v) for k, v in out.items()}


def start_ray(address: str | None, num_cpus: int | None = None) -> Any:
    """Connect to the cluster at ``address`` (``None``/``"local"``: start a local Ray with ``num_cpus``)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:  # pragma: no cover - the scale extra is part of `make setup`
        raise MRLError("Ray is not installed; pip install 'mrl[scale]' (ray[data]).") from exc
    if not ray.is_initialized():
        local = address in (None, "", "local")
        try:
            ray.init(address=None if local else address, num_cpus=num_cpus if local else None, include_dashboard=False, log_to_driver=False,
                     configure_logging=True, logging_level=logging.WARNING, ignore_reinit_error=True)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError by Ray version
            where = "a local Ray" if local else f"the Ray cluster at {address}"
            raise MRLError(f"cannot start {where} ({str(exc).splitlines()[0][:200]}); check the address (ray://host:10001 or host:6379) or run `ray status`.") from exc
    with warnings.catch_warnings():  # Ray's own DataContext sets its deprecated fields while it is built
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own bar counts shards; Ray's would flood a log
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return ray


def encode_corpus_ray(
    model: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    address: str | None = None,
    actors: int = 2,
    cpus_per_actor: float = 1.0,
    threads_per_actor: int = 1,
    num_cpus: int | None = 2,
    text_field: str = "text",
    id_field: str | None = "_id",
    rows_per_shard: int | None = None,
    batch_size: int = 128,
    dtype: str = "float32",
    bf16: bool = False,
    max_seq_length: int | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Any = None,
) -> ShardReader:
    """Encode a corpus into ``out`` on Ray (same arguments and result as :func:`~mrl.encode.text.encode_corpus`).

    Args:
        address: a Ray cluster address, or ``None``/``"local"`` to start a local Ray (``num_cpus``).
        actors: model replicas (each holds the model once and encodes whole shards).
        cpus_per_actor / threads_per_actor: Ray CPUs reserved and torch threads used per actor.
        rows_per_shard: rows per shard (None: :func:`auto_rows_per_shard` of the input size and ``actors``).
    """
    from mrl.encode.text import input_files, iter_shard_texts, scan_inputs
    from mrl.models.text import load_sentence_transformer, model_dim, model_hash, resolve_model_path
    from mrl.progress import progress as progress_bar

    for name, v in (("actors", actors), ("rows_per_shard", rows_per_shard or 1), ("batch_size", batch_size), ("threads_per_actor", threads_per_actor)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise MRLError(f"{name} must be a positive integer, got {v!r}.")
    log = log or (lambda _m: None)
    files = input_files(inputs)
    path = resolve_model_path(model)
    st = load_sentence_transformer(model)  # the driver only reads the dim and sequence length: the header must equal encode_corpus's
    if max_seq_length is not None:
        st.max_seq_length = int(max_seq_length)
    dim, seq = model_dim(st), int(st.max_seq_length)
    del st
    sources, ids, hashes = scan_inputs(files, text_field, id_field, limit)
    rows = sum(s["rows"] for s in sources)
    if rows_per_shard is None:
        rows_per_shard = auto_rows_per_shard(rows, actors, folder=None if overwrite else out)
    header = {
        "model": {"name": str(model), "path": str(path.resolve()), "sha256": model_hash(path, seq)},
        "dim": dim, "dtype": dtype, "rows": rows, "rows_per_shard": rows_per_shard, "sources": sources,
        "settings": {"precision": "bf16-autocast" if bf16 else "fp32", "max_seq_length": seq, "text_field": text_field, "id_field": id_field, "normalize": False},
    }
    shards = ShardSet.create_or_resume(out, header, overwrite=overwrite, ids=ids, text_hashes=hashes)
    pending = set(shards.pending())
    done_rows = rows - sum(shards.shard_rows(i)[1] - shards.shard_rows(i)[0] for i in pending)
    log(f"{rows} texts in {shards.num_shards} shards of {rows_per_shard}: {len(pending)} to encode on Ray ({done_rows} rows already done)")
    if pending:
        ray = start_ray(address, num_cpus)
        items = [{"index": i, "texts": texts} for i, texts in iter_shard_texts(files, rows_per_shard, text_field, id_field, rows) if i in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardEncoder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actors, len(items))), num_cpus=cpus_per_actor,
            fn_constructor_kwargs={"model": str(path), "folder": str(shards.folder.resolve()), "dtype": dtype, "bf16": bf16, "batch_size": batch_size,
                                   "max_seq_length": max_seq_length, "threads": threads_per_actor})
        bar = progress_bar(total=rows, initial=done_rows, unit="text", desc="encode (ray)", disable=not progress)
        try:
            for row in ds.iter_rows():  # drives the streaming execution; each row is one finished shard
                entry = {"index": int(row["index"]), "start": int(row["start"]), "rows": int(row["rows"]), "file": str(row["file"]), "bytes": int(row["bytes"]), "sha256": str(row["sha256"])}
                shards.record({**entry, "seconds": float(row["seconds"]), "executor": "ray"})
                bar.update(int(row["rows"]))
        finally:
            bar.close()
    return open_shards(shards.folder)
