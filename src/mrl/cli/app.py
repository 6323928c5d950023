"""``mrl`` commands: train, embed, eval, report, demo.

Every command turns :class:`mrl.errors.MRLError` into a one-line red message and exit code 2.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from mrl.errors import MRLError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Matryoshka Representation Learning: train, evaluate and use nested embeddings.")
console = Console(stderr=True, soft_wrap=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report library errors as one clear line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MRLError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper


def _parse_list(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


@app.command()
@friendly
def train(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for checkpoint, metrics and model."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set epochs=5 --set mode=mrl-e."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.safetensors."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in OUT."),
    nproc: int = typer.Option(1, "--nproc", help="Processes for distributed data-parallel training (torchrun; gloo on CPU, NCCL on GPU)."),
    force: bool = typer.Option(False, "--force", help="Allow --nproc above the number of CPU cores."),
) -> None:
    """Train a Matryoshka (mrl, mrl-e) or fixed-feature (ff) classifier."""
    from mrl.train import load_config
    from mrl.train import train as run_train

    from mrl.cli.text_cmd import is_text_config, train_text_command

    if is_text_config(config, set_):  # `task: text`: fine-tune a sentence encoder (mrl.models.text)
        return train_text_command(config, set_, out, resume=resume, overwrite=overwrite, nproc=nproc)
    cfg = load_config(config, set_)
    if nproc != 1:
        from mrl.train.distributed import check_nproc, launch
        from mrl.train.loop import check_run_folder, resolve_device

        check_nproc(nproc, force=force, use_cuda=resolve_device(cfg.device).type == "cuda")
        check_run_folder(out, resume=resume, overwrite=overwrite)
        if cfg.batch_size % nproc:
            raise MRLError(f"batch_size={cfg.batch_size} is the global batch and must be divisible by --nproc {nproc}.")
        args = ["--out", str(out), *(["--config", str(config)] if config else []), *[a for item in set_ for a in ("--set", item)]]
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


@app.command()
@friendly
def embed(
    model: Optional[Path] = typer.Argument(None, help="Run folder or model.safetensors (not with --adaptor)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy (a .json sidecar is written beside it)."),
    split: str = typer.Option("test", help="train, val or test."),
    data_root: Optional[Path] = typer.Option(None, help="Folder with the Fashion-MNIST IDX files."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    adaptor: Optional[Path] = typer.Option(None, "--adaptor", help="Apply this `mrl adapt` folder to --input vectors instead of running a model."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Frozen embeddings .npy for --adaptor."),
) -> None:
    """Write the embeddings of a split as float32 .npy with a JSON sidecar (dims, model, split).

    With ``--adaptor DIR --input x.npy`` it maps frozen embeddings through a post-hoc adaptor instead.
    """
    if adaptor is not None or input is not None:
        from mrl.cli.text_cmd import run_adaptor

        if adaptor is None or input is None or model is not None:
            raise MRLError("use either MODEL (image run folder) or --adaptor DIR --input x.npy, not a mix.")
        return run_adaptor(adaptor, input, out, overwrite)
    if model is None:
        raise MRLError("give a run folder (MODEL) to embed, or --adaptor DIR --input x.npy.")
    from mrl.data.fashion_mnist import load_fashion_mnist
    from mrl.evaluate.perdim import encode_split
    from mrl.io import guard_output, save_npy, write_json
    from mrl.train.checkpoint import load_model

    if split not in ("train", "val", "test"):
        raise MRLError(f"split must be train, val or test, got {split!r}.")
    if out.suffix != ".npy":
        raise MRLError(f"--out must end in .npy, got {out}.")
    guard_output(out, overwrite)
    net, cfg = load_model(model)
    data = getattr(load_fashion_mnist(data_root if data_root is not None else cfg.get("data_root"), val_size=cfg["val_size"]), split)
    enc = encode_split(net, data.images, data.labels)
    save_npy(out, enc.embeddings)
    save_npy(out.with_suffix(".labels.npy"), enc.labels)
    sidecar = {
        "model": str(model), "split": split, "count": int(enc.embeddings.shape[0]), "dim": int(enc.embeddings.shape[1]),
        "matryoshka_dims": cfg["matryoshka_dims"], "mode": cfg["mode"], "dtype": "float32",
        "sha256": hashlib.sha256(enc.embeddings.tobytes()).hexdigest(), "labels": out.with_suffix(".labels.npy").name,
    }
    write_json(out.with_suffix(".json"), sidecar)
    console.print(f"wrote {out} {enc.embeddings.shape}")


@app.command("eval")
@friendly
def eval_(
    runs: list[Path] = typer.Argument(..., help="Run folders to evaluate."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON."),
    baselines: str = typer.Option("", help="Comma list of post-hoc baselines of FF-D runs: pca,random."),
    dims: Optional[str] = typer.Option(None, help="Dims for the baselines, e.g. '2,4,...,512' (default: the MRL runs' dims)."),
    metric: str = typer.Option("l2", help="Retrieval metric: l2 or cosine."),
    data_root: Optional[Path] = typer.Option(None),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Per-dim head top-1/top-5, 1-NN, mAP@10 and recall@10 (database = train, queries = test)."""
    from mrl.evaluate.suite import evaluate_runs
    from mrl.io import guard_output, write_json
    from mrl.nesting import parse_dims

    guard_output(out, overwrite)
    records = evaluate_runs(runs, _data_for_runs(runs, data_root), baselines=_parse_list(baselines), baseline_dims=parse_dims(dims) if dims else None, metric=metric, log=console.print)
    write_json(out, {"schema": "mrl.eval/1", "runs": records})
    console.print(f"wrote {out} ({len(records)} records)")


def _data_for_runs(runs: list[Path], data_root: Path | None) -> Any:
    """Load Fashion-MNIST with the validation split the runs were trained with (database = train)."""
    from mrl.data.fashion_mnist import load_fashion_mnist
    from mrl.train.checkpoint import load_model

    configs = [load_model(run)[1] for run in runs]
    val_sizes = {c["val_size"] for c in configs}
    if len(val_sizes) > 1:
        raise MRLError(f"the runs were trained with different val_size values {sorted(val_sizes)}; evaluate them separately.")
    root = data_root if data_root is not None else configs[0].get("data_root")
    return load_fashion_mnist(root, val_size=val_sizes.pop())


@app.command()
@friendly
def report(
    results: list[Path] = typer.Argument(..., help="Results JSON files from `mrl eval`."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder."),
    title: str = typer.Option("Matryoshka per-dimension report"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Markdown + HTML report with per-dim tables and plots."""
    from mrl.io import read_json
    from mrl.report import write_report

    records = []
    for path in results:
        doc = read_json(path)
        if not isinstance(doc, dict) or doc.get("schema") != "mrl.eval/1":
            raise MRLError(f"{path} is not an `mrl eval` results file (schema mrl.eval/1).")
        records += doc["runs"]
    paths = write_report(records, out, title=title, overwrite=overwrite)
    console.print(f"report: {paths['md']} and {paths['html']}")


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Folder for runs and report."),
    epochs: int = typer.Option(3, help="Epochs per model."),
    all_baselines: bool = typer.Option(False, "--all-baselines", help="Also train MRL-E and FF-2/4/8."),
    data_root: Optional[Path] = typer.Option(None),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Train MRL and FF-512 on Fashion-MNIST, evaluate every prefix (+ PCA/random), write a report."""
    from mrl.data.fashion_mnist import load_fashion_mnist
    from mrl.evaluate.suite import evaluate_runs
    from mrl.io import guard_output
    from mrl.report import write_report
    from mrl.train import TrainConfig
    from mrl.train import train as run_train

    guard_output(out, overwrite, lambda p: (p / "report" / "report.md").exists() or (p / "runs").exists())
    data_root_str = str(data_root) if data_root else None
    data = load_fashion_mnist(data_root_str)  # fail early with the install hint
    base = TrainConfig(epochs=epochs, data_root=data_root_str)
    plans = [("mrl", base), ("ff-512", base.replace(mode="ff", matryoshka_dims=[base.embed_dim]))]
    if all_baselines:
        plans.append(("mrl-e", base.replace(mode="mrl-e")))
        plans += [(f"ff-{d}", base.replace(mode="ff", matryoshka_dims=[d])) for d in (2, 4, 8)]
    t0 = time.perf_counter()
    runs = []
    for name, cfg in plans:
        console.print(f"[bold]training {name}[/] ({epochs} epochs)")
        run_train(cfg, out / "runs" / name, overwrite=overwrite)
        runs.append(out / "runs" / name)
    records = evaluate_runs(runs, data, baselines=["pca", "random"], log=console.print)
    notes = f"Fashion-MNIST, small ResNet (D={base.embed_dim}), {epochs} epochs, seed {base.seed}; database = train split, queries = test split, L2 retrieval; demo took {time.perf_counter() - t0:.0f}s."
    paths = write_report(records, out / "report", notes=notes, overwrite=overwrite)
    console.print(f"[bold green]done[/] in {time.perf_counter() - t0:.0f}s. Report: {paths['md']} (HTML: {paths['html']})")


# Command groups of other modules register themselves on `app` here (one import line each).
# e.g. from mrl.cli import index_cmd  # noqa: E402,F401
from mrl.cli import adaptive_cmd  # noqa: E402,F401
from mrl.cli import text_cmd  # noqa: E402,F401


def main() -> None:
    app()
