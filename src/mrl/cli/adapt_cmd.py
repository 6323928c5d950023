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
    kind: str = typer.Option("linear", help="linear, mlp (residual MLP on top of the linear map) or rotation (orthogonal, no centring: full-width cosines stay exactly the original's)."),
    steps: int = typer.Option(1000, help="Optimisation steps."),
    batch_size: int = typer.Option(512),
    neighbours: int = typer.Option(7, help="True nearest neighbours drawn into each batch with every anchor (local neighbourhoods the ranking term preserves)."),
    supervised_weight: float = typer.Option(1.0, help="Weight of the supervised ranking term (needs --queries/--docs)."),
    seed: int = typer.Option(0),
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
    d = parse_dims(dims, x.shape[1]) if dims else log2_dims(min(8, x.shape[1]), x.shape[1])
    cfg = AdaptorConfig(matryoshka_dims=list(d), kind=kind, steps=steps, batch_size=batch_size, neighbours=neighbours, supervised_weight=supervised_weight if pairs else 0.0, seed=seed)
    result = fit_adaptor(x, cfg, out, pairs=pairs, overwrite=overwrite, inputs=[*embeddings, queries, docs])
    console.print(f"adaptor {kind} for {x.shape[1]}-d vectors trained on {x.shape[0]} rows in {result.seconds:.0f}s; saved to {out}")
