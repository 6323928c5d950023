"""``mrl embed`` (image runs, or frozen vectors through an adaptor) and ``mrl apply-adaptor``; ``mrl embed-text`` is the hidden old name of ``mrl encode``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mrl.cli.console import console, flag, friendly
from mrl.embeddings import EMBEDDINGS_KIND, array_sha256
from mrl.errors import MRLError

app = typer.Typer()


@app.command()
@friendly
def embed(
    model: Optional[Path] = typer.Argument(None, help="Run folder or model.safetensors (not with --adaptor)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy; OUT.labels.npy and a JSON sidecar OUT.json are written beside it."),
    split: str = typer.Option("test", help="train, val or test."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder, if it moved since training (default: the run's data_root)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous output of this command (never other files, never an input)."),
    adaptor: Optional[Path] = typer.Option(None, "--adaptor", help="Apply this `mrl adapt` folder to --input vectors instead of running a model."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Frozen embeddings .npy for --adaptor; with --tower, a file of captions or picture paths (one per line)."),
    tower: Optional[str] = typer.Option(None, "--tower", help="Two-tower runs (task: multimodal): embed with the image or the text tower."),
    data: Optional[Path] = typer.Option(None, "--data", help="With --tower: the image-text data set whose --split pictures or captions to embed."),
    text_model: Optional[str] = typer.Option(None, "--text-model", help="With --tower text: the sentence encoder feeding the projection (default: the one trained with)."),
    ray: bool = flag(False, "--ray", help="Encode on Ray Data into a resumable shard folder (--out is a folder); a local Ray unless --ray-address."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="--ray: a running Ray cluster (e.g. ray://head:10001)."),
    actors: int = typer.Option(2, "--actors", help="--ray: model replicas (actors)."),
    rows_per_shard: int = typer.Option(8192, "--rows-per-shard", help="--ray: rows per shard (the unit of work and of resume)."),
) -> None:
    """Write the embeddings of a split as float32 .npy with a JSON sidecar (dims, model, split).

    With ``--adaptor DIR --input x.npy`` it maps frozen embeddings through a post-hoc adaptor instead.
    With ``--tower image|text`` it embeds pictures or captions with a two-tower run (both land in one
    space: search pictures with text queries).
    With ``--ray`` the split is encoded by Ray actors into shards plus a manifest (as `mrl encode`).
    """
    if tower is not None:
        from mrl.cli.multimodal_cmd import embed_tower

        if model is None or adaptor is not None:
            raise MRLError("--tower needs a two-tower run folder (MODEL) and no --adaptor.")
        return embed_tower(model, tower, out, data=data, split=split, input=input, text_model=text_model, overwrite=overwrite)
    if ray_address is not None and not ray:
        raise MRLError("--ray-address needs --ray.")
    if ray:
        from mrl.encode.ray_image import encode_split_ray

        if model is None or adaptor is not None:
            raise MRLError("--ray encodes an image run's split: give MODEL (a run folder), not --adaptor.")
        if out.suffix == ".npy":
            raise MRLError(f"--ray writes a shard folder, not a .npy: give --out a folder, got {out}.")
        reader = encode_split_ray(model, split, out, data_root=None if data_root is None else str(data_root), address=ray_address, actors=actors,
                                  rows_per_shard=rows_per_shard, overwrite=overwrite, log=console.print)
        console.print(f"wrote {out}: {reader.rows} x {reader.dim} {reader.dtype} in {len(reader.arrays)} shards")
        return
    if adaptor is not None or input is not None:
        if adaptor is None or input is None or model is not None:
            raise MRLError("use either MODEL (image run folder) or --adaptor DIR --input x.npy, not a mix.")
        return run_adaptor(adaptor, input, out, overwrite)
    if model is None:
        raise MRLError("give a run folder (MODEL) to embed, or --adaptor DIR --input x.npy.")
    from mrl.data.registry import load_image_data
    from mrl.evaluate.perdim import encode_split
    from mrl.io import open_files, save_npy
    from mrl.train.checkpoint import MODEL_NAME, load_model

    if split not in ("train", "val", "test"):
        raise MRLError(f"split must be train, val or test, got {split!r}.")
    _check_npy_out(out)
    labels = out.with_suffix(".labels.npy")
    with open_files(out, EMBEDDINGS_KIND, [labels.name], overwrite=overwrite, inputs=[model, model / MODEL_NAME]) as writer:
        net, cfg = load_model(model)
        data = load_image_data(cfg, data_root=str(data_root) if data_root is not None else None, log=console.print).split(split)
        enc = encode_split(net, data, desc=f"embedding {split}")
        with writer.file(out.name) as p:
            save_npy(p, enc.embeddings)
        with writer.file(labels.name) as p:
            save_npy(p, enc.labels)
        writer.meta.update({
            "model": str(model), "source": f"{cfg.get('dataset', 'fashion_mnist')}/{split}", "split": split, "count": int(enc.embeddings.shape[0]), "dim": int(enc.embeddings.shape[1]),
            "matryoshka_dims": cfg["matryoshka_dims"], "mode": cfg["mode"], "dtype": "float32", "normalized": False,
            "sha256": array_sha256(enc.embeddings), "labels": labels.name,
        })
    console.print(f"wrote {out} {enc.embeddings.shape} (+ {labels.name}, {out.with_suffix('.json').name})")


def _check_npy_out(out: Path) -> None:
    if out.suffix != ".npy":
        raise MRLError(f"--out must end in .npy, got {out}.")


@app.command("embed-text", hidden=True)
@friendly
def embed_text(
    model: str = typer.Argument(..., help="Sentence-transformers folder or 'all-MiniLM-L6-v2'."),
    input: Path = typer.Option(..., "--input", "-i", help="Text file, one text per line (UTF-8)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy (float32) with a JSON sidecar OUT.json; with --ray a shard folder."),
    truncate_dim: Optional[int] = typer.Option(None, help="Keep the first d dims, then L2-normalise (default: full width, as the model outputs it)."),
    batch_size: int = typer.Option(128),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous output of this command (never other files, never an input)."),
    ray: bool = flag(False, "--ray", help="Encode on Ray Data into a resumable shard folder (as `mrl encode`); a local Ray unless --ray-address."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="--ray: a running Ray cluster (e.g. ray://head:10001 or auto); default: start a local Ray (2 CPUs)."),
    actors: int = typer.Option(2, "--actors", help="--ray: model replicas (actors), each loads the model once."),
    rows_per_shard: Optional[int] = typer.Option(None, "--rows-per-shard", help="--ray: rows per shard (the unit of work and of resume; default: about 4 shards per actor, at most 16384)."),
    bf16: bool = flag(False, "--bf16", help="--ray: bf16 autocast on CPU."),
) -> None:
    """Old name of `mrl encode MODEL TEXTS.txt --out OUT` (kept for a release): OUT.npy is one array, any other OUT a shard folder (with --ray)."""
    from mrl.cli.text_encode import texts_to_npy, texts_to_ray

    if ray_address is not None and not ray:
        raise MRLError("--ray-address needs --ray.")
    if ray:
        if truncate_dim:
            raise MRLError("--ray writes full-width shards; drop --truncate-dim (funnels truncate at search time).")
        return texts_to_ray(model, [input], out, address=ray_address, actors=actors, rows_per_shard=rows_per_shard, batch_size=batch_size, bf16=bf16, overwrite=overwrite)
    texts_to_npy(model, input, out, truncate_dim=truncate_dim, batch_size=batch_size, overwrite=overwrite)


@app.command("apply-adaptor")
@friendly
def apply_adaptor_cmd(
    adaptor: Path = typer.Argument(..., help="Adaptor folder from `mrl adapt`."),
    input: Path = typer.Option(..., "--input", "-i", help="Embeddings .npy [N, D], or a shard folder from `mrl encode`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy [N, D] (Matryoshka: truncate then normalise) with a JSON sidecar OUT.json; a shard folder when --input is one."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous output of this command (never other files, never an input)."),
) -> None:
    """Apply an adaptor to frozen embeddings (same as `mrl embed --adaptor DIR --input x.npy`).

    A shard folder is adapted shard by shard into a new shard folder (resumable; keyed by the base
    model and the adaptor, so the index and benchmarks read it like any encoding).
    """
    from mrl.encode import is_shard_folder

    if is_shard_folder(input):
        from mrl.encode.derive import adapt_shards

        reader = adapt_shards(input, adaptor, out, overwrite=overwrite, log=console.print)
        console.print(f"wrote {out}: {reader.rows} x {reader.dim} adapted vectors in {len(reader.arrays)} shards")
        return
    run_adaptor(adaptor, input, out, overwrite)


def run_adaptor(adaptor: Path, input: Path, out: Path, overwrite: bool) -> None:
    from mrl.cli.console import load_matrix
    from mrl.io import open_files, save_npy
    from mrl.models.adaptor import load_adaptor

    _check_npy_out(out)
    with open_files(out, EMBEDDINGS_KIND, overwrite=overwrite, inputs=[input, *(adaptor.iterdir() if adaptor.is_dir() else [adaptor])]) as writer:
        model = load_adaptor(adaptor)
        x = load_matrix(input, "--input")
        if x.shape[0] == 0:
            raise MRLError(f"--input {input} holds 0 rows; give at least one embedding.")
        y = model.transform(x)
        with writer.file(out.name) as p:
            save_npy(p, y)
        writer.meta.update({
            "adaptor": str(adaptor), "source": str(input), "count": int(y.shape[0]), "dim": int(y.shape[1]), "dtype": "float32", "normalized": False,
            "sha256": array_sha256(y), "note": "adaptor output at full width: truncate to a prefix, then L2-normalise",
        })
    console.print(f"wrote {out} {y.shape} (+ {out.with_suffix('.json').name})")
