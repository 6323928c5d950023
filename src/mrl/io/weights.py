"""Weights in safetensors, with a content hash in the file's metadata that is verified on load.

:func:`save_safetensors` stores ``mrl.sha256``: the SHA-256 of every tensor's name, dtype, shape and
bytes (in name order), and ``mrl.metadata_sha256``: the SHA-256 of the other metadata (the run's
config with its ``matryoshka_dims`` and ``seed``, the class names...). :func:`load_safetensors`
recomputes both, so a flipped bit anywhere in the weights (which would otherwise give silently
wrong outputs, e.g. an exponent bit turning 0.1 into 1e37) or an edited header is refused with a
clear error. Files written without a hash still load (nothing to verify).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mrl.errors import CheckpointError
from mrl.io.atomic import atomic_write

HASH_KEY = "mrl.sha256"
META_HASH_KEY = "mrl.metadata_sha256"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def metadata_sha256(metadata: dict[str, str]) -> str:
    """Hex SHA-256 of the string metadata (sorted keys), leaving out the two hash keys."""
    body = {k: v for k, v in metadata.items() if k not in (HASH_KEY, META_HASH_KEY)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_safetensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``tensors`` (+ string ``metadata``) with their content hash in the metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {**(metadata or {}), HASH_KEY: tensors_sha256(tensors)}
    meta[META_HASH_KEY] = metadata_sha256(meta)
    atomic_write(path, st_save(tensors, metadata=meta))


def load_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load tensors and metadata, verifying the content hash when the file has one.

    Raises:
        CheckpointError: the file is missing, not safetensors, truncated, or fails its hash.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; train a model first or check the path.")
    raw = p.read_bytes()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, RuntimeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p} is not a valid safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); it is truncated or corrupted: retrain or restore it.") from exc
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    meta = meta if isinstance(meta, dict) else {}
    expected = meta.get(HASH_KEY)
    if expected is not None and tensors_sha256(tensors) != expected:
        raise CheckpointError(f"{p} fails its content checksum: the weights are corrupted; retrain or restore the file.")
    if META_HASH_KEY in meta and metadata_sha256(meta) != meta[META_HASH_KEY]:
        raise CheckpointError(f"{p} fails its metadata checksum: its header (config, dims, seed) was edited or corrupted; retrain or restore the file.")
    return tensors, {k: v for k, v in meta.items() if k not in (HASH_KEY, META_HASH_KEY)}
