"""``mrl encode``: texts -> embeddings. ``--out x.npy`` writes one array (+ JSON sidecar); any other
``--out`` is a resumable shard folder + manifest (the input of ``mrl index build``), encoded in this
process or, with ``--ray``, by Ray Data actors. ``mrl embed`` is the image-run counterpart."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mrl.cli.console import console, flag, friendly
from mrl.errors import MRLError

app = typer.Typer()


@app.command("encode")
@friendly
def encode(
    model: str = typer.Argument(..., help="Sentence-transformers folder or 'all-MiniLM-L6-v2'."),
    inputs: list[Path] = typer.Argument(..., help="JSONL files (.jsonl/.jsonl.gz), folders of them, or text files (one text per line); one text file for a .npy --out."),
    out: Path = typer.Option(..., "--out", "-o", help="OUT.npy: one float32 array with a JSON sidecar OUT.json. Any other OUT: a shard folder (resumed when it holds the same encoding)."),
    text_field: str = typer.Option("text", help="JSONL key of the text."),
    id_field: str = typer.Option("_id", help="JSONL key of the record id ('' for none)."),
    rows_per_shard: Optional[int] = typer.Option(None, help="Rows per shard (the unit of resume; default 16384, with --ray about 4 shards per actor)."),
    batch_size: int = typer.Option(128, help="Texts per model batch (length-sorted)."),
    truncate_dim: Optional[int] = typer.Option(None, help="OUT.npy only: keep the first d dims, then L2-normalise (default: full width, as the model outputs it)."),
    dtype: str = typer.Option("float32", help="Shard storage: float32 or float16 (full width either way)."),
    bf16: bool = flag(False, "--bf16", help="Run the model under bf16 autocast on CPU (fidelity vs fp32 is measured and recorded); fast only on CPUs with AVX-512 BF16 or AMX."),
    max_seq_length: Optional[int] = typer.Option(None, help="Tokens per text (default: the model's)."),
    limit: Optional[int] = typer.Option(None, help="Encode only the first N texts."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's)."),
    progress: bool = flag(True, help="Show a progress bar (throttled when stderr is not a terminal)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous output (only the files its manifest or sidecar lists)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Stop after the shard that passes this many seconds; rerun to resume (exit code 3 while shards remain)."),
    reuse: list[Path] = typer.Option([], "--reuse", help="Earlier shard folder of the same model and settings: texts it already encoded are copied, not re-encoded (repeatable)."),
    ray: bool = flag(False, "--ray", help="Encode the shard folder on Ray Data actors (each loads the model once); a local Ray unless --ray-address."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="--ray: a running Ray cluster (e.g. ray://head:10001 or auto)."),
    actors: int = typer.Option(2, "--actors", help="--ray: model replicas (actors)."),
) -> None:
    """Encode texts with a sentence encoder: into one .npy (OUT.npy) or into resumable .npy shards with a manifest (any other OUT; rerun to resume)."""
    from mrl.cli.text_encode import is_file_output, texts_to_npy, texts_to_ray
    from mrl.precision import bf16_pays

    if dtype not in ("float32", "float16"):
        raise MRLError(f"--dtype must be float32 or float16, got {dtype!r}.")
    if threads is not None and threads < 1:
        raise MRLError(f"--threads must be a positive number of threads, got {threads}.")
    if ray_address is not None and not ray:
        raise MRLError("--ray-address needs --ray.")
    if is_file_output(out):
        shard_only = [name for name, given in (("--ray", ray), ("--reuse", bool(reuse)), ("--time-limit", time_limit is not None), ("--dtype float16", dtype != "float32"),
                                               ("--rows-per-shard", rows_per_shard is not None), ("--bf16", bf16), ("--limit", limit is not None)) if given]
        if shard_only:
            raise MRLError(f"{', '.join(shard_only)} applies to a shard folder; give --out a folder (not {out.name}), or drop it.")
        if len(inputs) != 1:
            raise MRLError(f"one .npy is written from one text file; got {len(inputs)} inputs (give --out a folder to encode several).")
        return texts_to_npy(model, inputs[0], out, truncate_dim=truncate_dim, batch_size=batch_size, overwrite=overwrite)
    if truncate_dim:
        raise MRLError("a shard folder holds full-width vectors; drop --truncate-dim (funnels truncate at search time), or give --out a .npy file.")
    if bf16 and not bf16_pays("cpu"):
        console.print("warning: this CPU has no native bf16 (AVX-512 BF16 / AMX): --bf16 makes encoding several times slower than fp32 here (6.4x measured on an AVX2 machine); drop --bf16.")
    if ray:
        if reuse or time_limit is not None:
            raise MRLError("--reuse and --time-limit apply to encoding in this process; drop them with --ray (a rerun resumes on Ray).")
        return texts_to_ray(model, list(inputs), out, address=ray_address, actors=actors, rows_per_shard=rows_per_shard, batch_size=batch_size, bf16=bf16, overwrite=overwrite,
                            text_field=text_field, id_field=id_field or None, dtype=dtype, max_seq_length=max_seq_length, limit=limit, progress=progress)
    from mrl.encode.text import encode_corpus

    reader = encode_corpus(model, inputs, out, text_field=text_field, id_field=id_field or None, rows_per_shard=rows_per_shard or 16384, batch_size=batch_size,
                           dtype=dtype, bf16=bf16, max_seq_length=max_seq_length, limit=limit, threads=threads, overwrite=overwrite, progress=progress, reuse=reuse, time_limit=time_limit, log=console.print)
    if reader is None:
        raise typer.Exit(3)
    fid = reader.manifest.get("fidelity")
    extra = f"; bf16 vs fp32 cosine min {fid['full']['min']:.5f} on {fid['sample']} texts" if fid else ""
    console.print(f"wrote {out}: {reader.rows} x {reader.dim} {reader.dtype} in {len(reader.arrays)} shards{extra}")
