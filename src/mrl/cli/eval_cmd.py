"""``mrl eval`` (image runs), ``mrl eval-text`` (sentence encoders) and ``mrl report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mrl.cli.console import console, friendly, parse_list
from mrl.errors import MRLError

app = typer.Typer()


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
    records = evaluate_runs(runs, _data_for_runs(runs, data_root), baselines=parse_list(baselines), baseline_dims=parse_dims(dims) if dims else None, metric=metric, log=console.print)
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


@app.command("eval-text")
@friendly
def eval_text(
    models: list[str] = typer.Argument(..., help="Sentence-transformers folders (or 'all-MiniLM-L6-v2') to evaluate."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON (schema mrl.eval/1; render with `mrl report`)."),
    adaptor: Optional[Path] = typer.Option(None, "--adaptor", help="Also evaluate the FIRST model's embeddings through this adaptor (fit on that model's vectors)."),
    pca_fit_pairs: int = typer.Option(0, "--pca-fit-pairs", help="Also evaluate PCA of the FIRST model's embeddings, fit on this many training pairs (0: skip)."),
    dims: str = typer.Option("8,16,...,384", help="Prefix sizes to evaluate."),
    data_root: Optional[Path] = typer.Option(None, help="Folder with WordNet's data.noun."),
    max_queries: int = typer.Option(2000, help="Test queries sampled from the test synsets."),
    cache_dir: Path = typer.Option(Path("runs/embedding-cache"), help="Where encoded embeddings are cached."),
    max_seq_length: int = typer.Option(128),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Per-dim nDCG@10, recall@10/100, MRR@10 on the WordNet test split (cosine, truncate then normalise)."""
    import numpy as np

    from mrl.data.wordnet import load_wordnet
    from mrl.evaluate.baselines import pca_transform
    from mrl.evaluate.ir import cached_encode, ir_record
    from mrl.io import guard_output, write_json
    from mrl.models.adaptor import load_adaptor
    from mrl.models.text import read_matryoshka_dims, resolve_model_path
    from mrl.nesting import parse_dims

    guard_output(out, overwrite)
    wanted = parse_dims(dims)
    data = load_wordnet(data_root, max_queries=max_queries)
    test = data.test
    records = []
    first: tuple[str, np.ndarray, np.ndarray, Path] | None = None  # (record label, queries, corpus, path)
    for name in models:
        path = resolve_model_path(name)
        q = cached_encode(path, test.queries, cache_dir, max_seq_length=max_seq_length)
        c = cached_encode(path, test.corpus, cache_dir, max_seq_length=max_seq_length)
        tuned = read_matryoshka_dims(path) is not None
        records.append(ir_record("MRL fine-tuned" if tuned else "Base (truncated)", "mrl-ft" if tuned else "truncate", q, c, test.qrels, wanted, model=str(name)))
        first = first or (records[-1]["method"].replace(" (truncated)", ""), q, c, path)
        console.print(f"{name}: nDCG@10 " + ", ".join(f"{d}: {100 * v['ndcg@10']:.1f}" for d, v in records[-1]["per_dim"].items()))
    assert first is not None
    label, q, c, path = first
    if adaptor is not None:
        model = load_adaptor(adaptor)
        records.append(ir_record(f"{label} + adaptor", "adaptor", model.transform(q), model.transform(c), test.qrels, wanted, model=str(adaptor)))
    if pca_fit_pairs:
        fit = data.train.subset(range(min(pca_fit_pairs, len(data.train))))
        x = np.concatenate([cached_encode(path, fit.anchor, cache_dir, max_seq_length=max_seq_length), cached_encode(path, fit.positive, cache_dir, max_seq_length=max_seq_length)])
        pq, pc = pca_transform(x, q, c)
        pca_dims = [d for d in wanted if d <= pq.shape[1]]
        if len(pca_dims) < len(wanted):
            console.print(f"PCA of {x.shape[0]} rows has {pq.shape[1]} components: evaluated at dims {pca_dims} only; raise --pca-fit-pairs.")
        if not pca_dims:
            raise MRLError(f"PCA of {x.shape[0]} rows has only {pq.shape[1]} components, below every requested dim; raise --pca-fit-pairs.")
        records.append(ir_record(f"{label} + PCA", "pca-text", pq, pc, test.qrels, pca_dims, model=str(path), fit_rows=int(x.shape[0])))
    write_json(out, {"schema": "mrl.eval/1", "runs": records})
    console.print(f"wrote {out} ({len(records)} records)")


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
