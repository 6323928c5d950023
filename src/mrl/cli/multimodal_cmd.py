"""``mrl train`` for ``task: multimodal``, ``mrl eval-multimodal``, and ``mrl embed --tower image|text``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mrl.cli.console import console, flag, friendly, parse_list
from mrl.errors import MRLError

app = typer.Typer()


def run_multimodal(cfg, config: Path | None, overrides: list[str], out: Path, *, resume: bool, overwrite: bool, nproc: int, force: bool) -> None:
    """The ``mrl train`` runner of ``task: multimodal`` (one process, or ``nproc`` torchrun ranks); ``cfg`` is a MultimodalTrainConfig."""
    from mrl.train.multimodal import train_multimodal

    if nproc != 1:
        from mrl.train.distributed import check_nproc, launch
        from mrl.train.loop import check_run_folder, resolve_device

        check_nproc(nproc, force=force, use_cuda=resolve_device(cfg.device).type == "cuda")
        check_run_folder(out, resume=resume, overwrite=overwrite)
        if cfg.batch_size % nproc:
            raise MRLError(f"batch_size={cfg.batch_size} is the global batch and must be divisible by --nproc {nproc}.")
        args = ["--out", str(out), *(["--config", str(config)] if config else []), *[a for item in overrides for a in ("--set", item)]]
        args += ["--resume"] * resume + ["--overwrite"] * overwrite
        code = launch(nproc, args)
        if code != 0:
            raise MRLError(f"distributed training failed (torchrun exit code {code}); the rank errors are printed above.")
        console.print(f"model: {out / 'model.safetensors'}")
        return
    result = train_multimodal(cfg, out, resume=resume, overwrite=overwrite)
    last = result.final
    recall = ", ".join(f"{d}: {100 * last[f'val_t2i_recall@10@{d}']:.1f}" for d in cfg.matryoshka_dims)
    console.print(f"trained {cfg.mode} two-tower model in {result.seconds:.0f}s; validation text->image recall@10 per dim: {recall}")
    console.print(f"model: {out / 'model.safetensors'}")


@app.command("eval-multimodal")
@friendly
def eval_multimodal(
    runs: list[Path] = typer.Argument(..., help="Two-tower run folders (task: multimodal) to evaluate."),
    data: Path = typer.Option(..., "--data", help="The image-text data set folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON (schema mrl.eval/1; render with `mrl report`)."),
    split: str = typer.Option("test", help="Held-out split to search: test or val."),
    baselines: str = typer.Option("pca", help="Comma list of baselines of FF runs: pca ('' for none)."),
    dims: Optional[str] = typer.Option(None, help="Prefixes to evaluate, e.g. '8,16,...,256' (default: each run's matryoshka_dims)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache for frozen text-encoder features (default: none)."),
    overwrite: bool = flag(False, "--overwrite"),
) -> None:
    """Per-prefix text->image and image->text recall@1/5/10 (cosine) on the held-out split."""
    from mrl.data.image_text import load_image_text
    from mrl.evaluate.cross_modal import evaluate_multimodal
    from mrl.evaluate.records import results_document, results_writer
    from mrl.io import input_files, write_json
    from mrl.nesting import parse_dims

    if split not in ("val", "test"):
        raise MRLError(f"split must be val or test (held out from training), got {split!r}.")
    with results_writer(out, overwrite=overwrite, inputs=input_files(*runs, data)):
        records = evaluate_multimodal(runs, load_image_text(data), split=split, dims=parse_dims(dims) if dims else None, baselines=parse_list(baselines), cache_dir=cache_dir, log=console.print)
        write_json(out, results_document(records))
    console.print(f"wrote {out} ({len(records)} records)")


@app.command("export-text-tower")
@friendly
def export_text_tower_cmd(
    run: Path = typer.Argument(..., help="Two-tower run folder (task: multimodal)."),
    out: Path = typer.Option(..., "--out", "-o", help="Sentence-transformers folder to write."),
    overwrite: bool = flag(False, "--overwrite"),
) -> None:
    """Save the text tower as a sentence-transformers folder (for `mrl encode`, `mrl serve`, any ST user)."""
    from mrl.io import check_output
    from mrl.models.text import TEXT_MODEL_KIND
    from mrl.models.two_tower import export_text_tower, load_two_tower

    check_output(out, TEXT_MODEL_KIND, overwrite=overwrite, staged=True, inputs=[run])  # only a previous export is replaced
    model, cfg = load_two_tower(run)
    export_text_tower(model, cfg, out, overwrite=overwrite, inputs=[run])
    console.print(f"wrote {out}: text tower as a sentence-transformers model ({model.embed_dim}-d, Matryoshka dims {cfg['matryoshka_dims']})")


def embed_tower(model: Path, tower: str, out: Path, *, data: Path | None, split: str, input: Path | None, text_model: str | None, overwrite: bool) -> None:
    """``mrl embed RUN --tower image|text``: embeddings of pictures or captions, with a JSON sidecar.

    Input: ``--data DIR --split S`` (the split's pictures, or its distinct captions), or ``--input``
    (text: one caption per line; image: one picture path per line, relative to the list's folder).
    """
    import numpy as np

    from mrl.data.image_items import load_raster
    from mrl.data.image_text import load_image_text, to_square_rgb
    from mrl.embeddings import EMBEDDINGS_KIND, array_sha256
    from mrl.io import input_files, open_files, save_npy
    from mrl.models.two_tower import embed_images, embed_texts, load_two_tower

    if tower not in ("image", "text"):
        raise MRLError(f"--tower must be image or text, got {tower!r}.")
    if out.suffix != ".npy":
        raise MRLError(f"--out must end in .npy, got {out}.")
    if (data is None) == (input is None):
        raise MRLError("give either --data DIR (with --split) or --input FILE to embed.")
    if input is not None and not input.is_file():
        raise MRLError(f"{input} does not exist; give a UTF-8 file with one {'caption' if tower == 'text' else 'picture path'} per line.")
    with open_files(out, EMBEDDINGS_KIND, overwrite=overwrite, inputs=input_files(model, data, input)) as writer:
        net, cfg = load_two_tower(model)
        if input is not None:
            try:
                lines = [t.strip() for t in input.read_text(encoding="utf-8").splitlines() if t.strip()]
            except UnicodeDecodeError as exc:
                raise MRLError(f"{input} is not UTF-8 text; re-save it as UTF-8.") from exc
            if not lines:
                raise MRLError(f"{input} holds no lines to embed.")
            names = lines
            if tower == "image":
                size = int(cfg["image_size"])
                pictures = np.stack([to_square_rgb(load_raster(p if Path(p).is_absolute() else input.parent / p), size) for p in lines])
        else:
            held = load_image_text(data).split(split)
            texts, _ = held.caption_index()
            names = held.names if tower == "image" else texts
            pictures = held.images
        emb = embed_images(net, pictures) if tower == "image" else embed_texts(net, cfg, names, text_model=text_model)
        with writer.file(out.name) as p:
            save_npy(p, emb)
        writer.meta.update({
            "model": str(model), "tower": tower, "count": int(emb.shape[0]), "dim": int(emb.shape[1]), "matryoshka_dims": cfg["matryoshka_dims"],
            "mode": cfg["mode"], "dtype": "float32", "normalized": False, "source": str(input or f"{data}:{split}"), "items": names,
            "sha256": array_sha256(emb), "use": "truncate to d, then L2-normalise; compare by cosine",
        })
    console.print(f"wrote {out} {emb.shape} ({tower} tower, + {out.with_suffix('.json').name})")
