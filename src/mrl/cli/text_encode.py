"""Encoding texts into one ``.npy`` or into a shard folder on Ray: the work behind ``mrl encode``
(and its hidden old name ``mrl embed-text``). No command lives here; both command modules call it.

The output's form follows its name, the same for every encode command: ``--out x.npy`` is one array
file with a JSON sidecar; any other ``--out`` is a resumable shard folder plus a manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from mrl.cli.console import console
from mrl.embeddings import EMBEDDINGS_KIND, array_sha256
from mrl.errors import MRLError


def is_file_output(out: Path) -> bool:
    """``True`` for a ``.npy`` output (one file), ``False`` for a shard folder."""
    return out.suffix == ".npy"


def texts_to_npy(model: str, input: Path, out: Path, *, truncate_dim: Optional[int] = None, batch_size: int = 128, overwrite: bool = False) -> None:
    """Encode the lines of a UTF-8 text file into ``out`` (.npy float32 ``[N, D]`` or ``[N, truncate_dim]``)
    with a JSON sidecar; truncate-then-normalise when ``truncate_dim``."""
    from mrl.embeddings import l2_normalize
    from mrl.evaluate.ir import encode_texts
    from mrl.io import open_files, save_npy
    from mrl.models.text import load_sentence_transformer, resolve_model_path

    if not is_file_output(out):
        raise MRLError(f"--out must end in .npy, got {out}.")
    if batch_size < 1:
        raise MRLError(f"--batch-size must be >= 1, got {batch_size}.")
    if input.is_dir():
        raise MRLError(f"{input} is a folder; one .npy is written from one UTF-8 text file (one text per line). For folders of JSONL give --out a folder (shards).")
    if not input.is_file():
        raise MRLError(f"{input} does not exist; give a UTF-8 text file with one text per line.")
    path = resolve_model_path(model)
    with open_files(out, EMBEDDINGS_KIND, overwrite=overwrite, inputs=[input, path]) as writer:
        try:
            texts = [t for t in input.read_text(encoding="utf-8").splitlines() if t.strip()]
        except UnicodeDecodeError as exc:
            raise MRLError(f"{input} is not UTF-8 text; re-save it as UTF-8.") from exc
        if not texts:
            raise MRLError(f"{input} holds no text lines.")
        st = load_sentence_transformer(model, truncate_dim=truncate_dim)
        emb = encode_texts(st, texts, batch_size=batch_size)
        if truncate_dim:
            emb = l2_normalize(emb[:, :truncate_dim])
        with writer.file(out.name) as p:
            save_npy(p, emb)
        writer.meta.update({
            "model": str(model), "model_path": str(path), "source": str(input), "count": int(emb.shape[0]), "dim": int(emb.shape[1]),
            "truncate_dim": truncate_dim, "normalized": bool(truncate_dim), "dtype": "float32", "sha256": array_sha256(emb),
            "note": "truncated to truncate_dim then L2-normalised" if truncate_dim else "full width as the model outputs it; truncate then L2-normalise to use a prefix",
        })
    console.print(f"wrote {out} {emb.shape} (+ {out.with_suffix('.json').name})")


def texts_to_ray(model: str, inputs: list[Path], out: Path, *, address: Optional[str] = None, actors: int = 2, rows_per_shard: Optional[int] = None, batch_size: int = 128,
                 bf16: bool = False, overwrite: bool = False, **kw: object) -> None:
    """Encode ``inputs`` on Ray Data actors into the shard folder ``out`` (resumable; as the local shard encoder)."""
    from mrl.encode.ray_text import encode_corpus_ray

    if is_file_output(out):
        raise MRLError(f"--ray writes a shard folder, not a .npy: give --out a folder, got {out}.")
    reader = encode_corpus_ray(model, inputs, out, address=address, actors=actors, rows_per_shard=rows_per_shard, batch_size=batch_size, bf16=bf16, overwrite=overwrite, log=console.print, **kw)
    console.print(f"wrote {out}: {reader.rows} x {reader.dim} {reader.dtype} in {len(reader.arrays)} shards")
