"""``mrl train``: run a recipe (``task: image`` classifier, ``task: text`` sentence encoder, ``task: multimodal`` two-tower model)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

from mrl.cli.console import console, flag, friendly
from mrl.cli.multimodal_cmd import run_multimodal
from mrl.errors import MRLError

app = typer.Typer()


def _run_image(cfg, config: Path | None, overrides: list[str], out: Path, *, resume: bool, overwrite: bool, nproc: int, force: bool) -> None:
    from mrl.train import train as run_train

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
    result = run_train(cfg, out, resume=resume, overwrite=overwrite)
    last = result.final
    accs = ", ".join(f"{d}: {100 * last[f'val_top1@{d}']:.1f}" for d in cfg.matryoshka_dims)
    console.print(f"trained {cfg.mode} in {result.seconds:.0f}s; validation top-1 per dim: {accs}")
    console.print(f"model: {out / 'model.safetensors'}")


def _run_text(cfg, config: Path | None, overrides: list[str], out: Path, *, resume: bool, overwrite: bool, nproc: int, force: bool) -> None:
    from mrl.train.text import train_text

    if nproc != 1:
        raise MRLError(f"text training runs on several GPUs through the Trainer's launcher, not --nproc: `accelerate launch --num_processes {nproc} -m mrl train ...` (or `torchrun --nproc_per_node {nproc} -m mrl train ...`).")
    result = train_text(cfg, out, overwrite=overwrite, resume=resume)
    console.print(result.summary(str(cfg.model), cfg.loss))
    console.print(f"model: {out} (load with SentenceTransformer('{out}', truncate_dim=d) and encode(..., normalize_embeddings=True))")


# task -> how `mrl train` runs it (a registry, so a new task is one line here and one recipe class).
RUNNERS: dict[str, Callable[..., None]] = {"image": _run_image, "text": _run_text, "multimodal": run_multimodal}


@app.command()
@friendly
def train(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for checkpoint, metrics and model."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML recipe (see configs/); its `task:` picks the trainer."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set epochs=5 --set mode=mrl-e."),
    resume: bool = flag(False, "--resume", help="Continue from the last checkpoint in OUT (image: OUT/checkpoint.safetensors; text: OUT/checkpoints/)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a run already in OUT."),
    nproc: int = typer.Option(1, "--nproc", help="Processes for distributed data-parallel training (torchrun; gloo on CPU, NCCL on GPU)."),
    force: bool = flag(False, "--force", help="Allow --nproc above the number of CPU cores."),
) -> None:
    """Train a Matryoshka model: a classifier (mrl, mrl-e, ff), a sentence encoder (task: text) or an image-text two-tower model (task: multimodal)."""
    from mrl.train.recipe import load_recipe

    if nproc < 1:
        raise MRLError(f"--nproc must be >= 1, got {nproc}.")
    cfg = load_recipe(config, set_)
    RUNNERS[cfg.task](cfg, config, set_, out, resume=resume, overwrite=overwrite, nproc=nproc, force=force)
