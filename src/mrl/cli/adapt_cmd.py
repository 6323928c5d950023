"""``mrl adapt``: fit a post-hoc Matryoshka adaptor to frozen embeddings (any model, any API)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mrl.cli.console import console, flag, friendly
from mrl.errors import MRLError

app = typer.Typer()


@app.command()
@friendly
def adapt(
    embeddings: list[Path] = typer.Argument(..., help="Frozen embeddings .npy [N, D] (several files are stacked)."),
    out: Path = typer.Option(..., "--out", "-o", help="Adaptor folder (adaptor.safetensors + adaptor.json)."),
    dims: Optional[str] = typer.Option(None, help="matryoshka_dims, e.g. '8,16,...,384' (default: doubling from 8 to D)."),
    queries: Optional[Path] = typer.Option(None, help="Query embeddings .npy for the supervised ranking term (row i pairs with --docs row i)."),
    docs: Optional[Path] = typer.Option(None, help="Document embeddings .npy paired with --queries."),
    kind: str = typer.Option("linear", help="linear, mlp (residual MLP on top of the linear map), rotation (orthogonal, no centring: full-width cosines stay exactly the original's) or residual (that rotation plus a capped residual MLP on the leading --residual-dim coordinates only)."),
    steps: int = typer.Option(1000, help="Optimisation steps (--kind rotation: 300 at --lr 0.005 is the text recipe's fit)."),
    orthogonal: str = typer.Option("cayley", help="--kind rotation: cayley (each step moves along the rotations; the default) or polar (AdamW on W, then the nearest orthogonal matrix: the fit before issue 26, with --steps 3000)."),
    batch_size: int = typer.Option(512),
    neighbours: int = typer.Option(7, help="True nearest neighbours drawn into each batch with every anchor (local neighbourhoods the ranking term preserves)."),
    supervised_weight: float = typer.Option(1.0, help="Weight of the supervised ranking term (needs --queries/--docs)."),
    labels: Optional[Path] = typer.Option(None, help="Class ids .npy [N] (int), one per embedding row: adds one class head per prefix, trained with the adaptor and saved with it (then `mrl cascade fit OUT --features ... --labels ...`)."),
    label_weight: float = typer.Option(1.0, help="Weight of the class heads' Matryoshka cross-entropy (with --labels)."),
    sim_weight: float = typer.Option(1.0, help="Weight of the similarity-matching term (0 with --labels: a purely supervised fit)."),
    rank_weight: float = typer.Option(1.0, help="Weight of the neighbour-ranking term."),
    hidden: Optional[int] = typer.Option(None, help="Hidden width of the residual MLP (--kind mlp or residual; default D)."),
    residual_dim: Optional[int] = typer.Option(None, help="--kind residual: how many leading coordinates the residual MLP may change (default min(64, D))."),
    residual_bend: Optional[float] = typer.Option(None, help="--kind residual: cap on the bend's length relative to those coordinates' (default 0.3; larger bends more and moves full width more)."),
    lr: float = typer.Option(1e-3, help="Learning rate (AdamW, cosine decay)."),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay."),
    dropout: float = typer.Option(0.0, help="Dropout on the adapted vectors before the class heads (with --labels)."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1, min=1, help="CPU threads for the fit: more is up to 1.7x faster on an idle machine, and many times slower where other jobs share the cores (threads wait on each other)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous adaptor in OUT (never other files, never an input)."),
) -> None:
    """Learn a post-hoc Matryoshka adaptor for frozen embeddings (any model, any API)."""
    import numpy as np

    from mrl.io import load_npy
    from mrl.nesting import log2_dims, parse_dims
    from mrl.train.adaptor import AdaptorConfig, fit_adaptor

    arrays = [load_npy(p) for p in embeddings]
    width = arrays[0].shape[1] if arrays[0].ndim == 2 else -1
    for p, a in zip(embeddings, arrays):
        if a.ndim != 2 or a.shape[1] != width:
            raise MRLError(f"{p} has shape {a.shape}; all inputs must be [N, {width}].")
    x = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    pairs = None
    if (queries is None) != (docs is None):
        raise MRLError("pass both --queries and --docs for the supervised term, or neither.")
    if queries is not None and docs is not None:
        pairs = (load_npy(queries), load_npy(docs))
    y = load_npy(labels) if labels is not None else None
    if y is not None and y.shape != (x.shape[0],):
        raise MRLError(f"{labels} has shape {y.shape}; it needs one class id per embedding row: shape ({x.shape[0]},).")
    d = parse_dims(dims, x.shape[1]) if dims else log2_dims(min(8, x.shape[1]), x.shape[1])
    cfg = AdaptorConfig(
        matryoshka_dims=list(d), kind=kind, orthogonal=orthogonal, hidden=hidden, residual_dim=residual_dim, residual_bend=residual_bend, steps=steps, batch_size=batch_size, neighbours=neighbours, lr=lr, weight_decay=weight_decay, dropout=dropout,
        sim_weight=sim_weight, rank_weight=rank_weight, supervised_weight=supervised_weight if pairs else 0.0, label_weight=label_weight if y is not None else 0.0, seed=seed, threads=threads,
    )
    result = fit_adaptor(x, cfg, out, pairs=pairs, labels=y, overwrite=overwrite, inputs=[*embeddings, queries, docs, labels])
    heads = f" with {result.model.num_classes}-class heads at dims {list(result.model.head_dims or ())}" if result.model.heads is not None else ""
    console.print(f"adaptor {kind}{heads} for {x.shape[1]}-d vectors trained on {x.shape[0]} rows in {result.seconds:.0f}s; saved to {out}")
