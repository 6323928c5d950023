"""``mrl demo``: the whole image pipeline on Fashion-MNIST in one command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from mrl.cli.console import console, flag, friendly

app = typer.Typer()


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Folder for runs and report."),
    epochs: int = typer.Option(3, help="Epochs per model (--epochs 1 for a quick check)."),
    train_subset: Optional[int] = typer.Option(None, "--train-subset", help="Train on only the first N training images (a quick check; evaluation still uses every split)."),
    all_baselines: bool = flag(False, "--all-baselines", help="Also train MRL-E and FF-2/4/8."),
    data_root: Optional[Path] = typer.Option(None, help="Folder with the four Fashion-MNIST IDX files (default: $MRL_FASHION_MNIST or Debian's dataset-fashion-mnist)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous demo in --out (only the files mrl wrote)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key of both models, as in `mrl train`: --set width=8 --set val_size=1000."),
) -> None:
    """Train MRL and FF-512 on Fashion-MNIST, evaluate every prefix (+ PCA/random), write a report.

    Writes OUT/runs/<model>/ and OUT/report/ (report.md, report.html, per_dim.png). A quick check:
    `mrl demo --epochs 1 --train-subset 2000`.
    """
    from mrl.config_io import read_config
    from mrl.data.fashion_mnist import load_fashion_mnist
    from mrl.errors import MRLError, OutputExistsError
    from mrl.evaluate.suite import evaluate_runs
    from mrl.io import check_output
    from mrl.report import write_report
    from mrl.report.render import REPORT_KIND
    from mrl.train import train as run_train
    from mrl.train.config import load_config
    from mrl.train.loop import check_run_folder

    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file; --out must be a folder.")
    if ((out / "report").exists() or (out / "runs").exists()) and not overwrite:
        raise OutputExistsError(f"{out} already holds a demo; pass --overwrite to replace it (only files mrl wrote), or choose another --out.")
    data_root_str = str(data_root) if data_root else None
    base = load_config(None, {"epochs": epochs, "data_root": data_root_str, "train_subset": train_subset, **read_config(None, set_)})  # validates every option
    if base.dataset != "fashion_mnist":
        raise MRLError(f"mrl demo trains on Fashion-MNIST (dataset={base.dataset!r} given); use `mrl train --set dataset=...` for other data.")
    data = load_fashion_mnist(base.data_root, val_size=base.val_size)  # fail early with the install hint
    plans = [("mrl", base), (f"ff-{base.embedding_width}", base.replace(mode="ff", matryoshka_dims=[base.embedding_width]))]
    if all_baselines:
        plans.append(("mrl-e", base.replace(mode="mrl-e")))
        plans += [(f"ff-{d}", base.replace(mode="ff", matryoshka_dims=[d])) for d in (2, 4, 8)]
    for name, _ in plans:  # fail before the first (long) training, not after it
        check_run_folder(out / "runs" / name, resume=False, overwrite=overwrite)
    check_output(out / "report", REPORT_KIND, overwrite=overwrite, staged=True)
    t0 = time.perf_counter()
    runs = []
    for name, cfg in plans:
        console.print(f"training {name} ({cfg.epochs} epochs)", style="bold")
        run_train(cfg, out / "runs" / name, overwrite=overwrite)
        runs.append(out / "runs" / name)
    records = evaluate_runs(runs, data, baselines=["pca", "random"], log=console.print)
    subset = f" on the first {train_subset} training images" if train_subset else ""
    notes = f"Fashion-MNIST, small ResNet (D={base.embedding_width}), {base.epochs} epochs{subset}, seed {base.seed}; database = train split, queries = test split, L2 retrieval; demo took {time.perf_counter() - t0:.0f}s."
    paths = write_report(records, out / "report", notes=notes, overwrite=overwrite)
    console.print(f"done in {time.perf_counter() - t0:.0f}s. Report: {paths['md']} (HTML: {paths['html']})", style="bold green")
