"""``mrl eval`` (image runs), ``mrl eval-text`` (sentence encoders) and ``mrl report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from mrl.cli.console import console, flag, friendly, parse_list
from mrl.errors import MRLError

app = typer.Typer()


@app.command("eval")
@friendly
def eval_(
    runs: list[Path] = typer.Argument(..., help="Run folders to evaluate."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON."),
    baselines: str = typer.Option("", help="Comma list of post-hoc baselines of FF-D runs: pca,random."),
    dims: Optional[str] = typer.Option(None, help="Dims for the baselines, e.g. '2,4,...,512' (default: the MRL runs' dims)."),
    metric: str = typer.Option("l2", help="Retrieval metric: l2 (the default for image runs: post-ReLU prefixes keep their magnitude), cosine or ip."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder, if it moved since training (default: the runs' data_root)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace OUT (never one of the runs)."),
) -> None:
    """Per-dim head top-1/top-5, 1-NN, mAP@10 and recall@10 (database = train, queries = test)."""
    from mrl.evaluate.records import results_document, results_writer
    from mrl.evaluate.suite import evaluate_runs
    from mrl.io import input_files, write_json
    from mrl.knn import check_metric
    from mrl.nesting import parse_dims

    check_metric(metric)
    with results_writer(out, overwrite=overwrite, inputs=input_files(*runs)):
        records = evaluate_runs(runs, _data_for_runs(runs, data_root), baselines=parse_list(baselines), baseline_dims=parse_dims(dims) if dims else None, metric=metric, log=console.print, progress=True)
        write_json(out, results_document(records))
    typer.echo(per_dim_table(records))
    console.print(f"wrote {out} ({len(records)} records)")


def per_dim_table(records: list[dict[str, Any]], metrics: tuple[str, ...] = ("top1", "1nn", "map@10")) -> str:
    """A compact text table: one row per record and metric, one column per dim, values in %."""
    dims = sorted({int(d) for r in records for d in r["per_dim"]})
    head = ["method", "metric", *(f"d={d}" for d in dims)]
    rows = [[r["method"], m, *(f"{100 * r['per_dim'][str(d)][m]:.1f}" if m in r["per_dim"].get(str(d), {}) else "-" for d in dims)]
            for r in records for m in metrics if any(m in v for v in r["per_dim"].values())]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(str(x).rjust(w) if i > 1 else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))) for row in [head, *rows])


def _data_for_runs(runs: list[Path], data_root: Path | None) -> Any:
    """The dataset the runs were trained on, with their splits (database = train, queries = test)."""
    from mrl.data.registry import load_image_data, split_fields
    from mrl.train.checkpoint import load_model

    configs = [load_model(run)[1] for run in runs]
    identities = {json.dumps(split_fields(c), sort_keys=True) for c in configs}
    if len(identities) > 1:
        raise MRLError(f"the runs were trained on different data splits ({' vs '.join(sorted(identities))}); evaluate them separately.")
    return load_image_data(configs[0], data_root=str(data_root) if data_root is not None else None, log=console.print)


@app.command("eval-text")
@friendly
def eval_text(
    models: list[str] = typer.Argument(..., help="Sentence-transformers folders (or 'all-MiniLM-L6-v2'); LABEL=PATH names a row."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON (an `mrl eval` results file; render with `mrl report`)."),
    beir: Optional[Path] = typer.Option(None, "--beir", help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv[, unlabeled.jsonl]); default: the WordNet test split. Without unlabeled.jsonl the baselines fit on corpus documents no qrels file names, held out of the evaluation."),
    split: str = typer.Option("test", help="BEIR qrels split to evaluate."),
    max_queries: Optional[int] = typer.Option(2000, help="Evaluate a seeded sample of at most this many queries (sampled before encoding)."),
    max_corpus: Optional[int] = typer.Option(None, help="Keep the kept queries' relevant documents plus a seeded sample of others, up to this many (before encoding)."),
    baselines: str = typer.Option("pca,adaptor", help="Post-hoc baselines on the FIRST model, fit on unlabeled texts of the set: pca,adaptor ('' for none)."),
    fit_texts: int = typer.Option(5000, help="Unlabeled texts that fit the baselines (a BEIR folder's unlabeled.jsonl, else its unjudged corpus documents held out of the evaluation; WordNet's training split)."),
    adaptor: Optional[Path] = typer.Option(None, "--adaptor", help="Also evaluate the FIRST model's embeddings through this pre-fitted adaptor."),
    dims: str = typer.Option("8,16,...,384", help="Prefix sizes to evaluate."),
    data_root: Optional[Path] = typer.Option(None, help="Folder with WordNet's data.noun."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where encodings are cached (default $MRL_CACHE or ~/.cache/mrl/embeddings), keyed by model content + texts."),
    max_seq_length: int = typer.Option(128),
    bf16: bool = flag(False, "--bf16", help="Encode under bf16 autocast (fast on GPUs and AVX-512 BF16 / AMX CPUs, several times slower than fp32 on other CPUs; cosine >= 0.9999 to fp32)."),
    seed: int = typer.Option(0, help="Seed of the query/corpus/fitting samples."),
    overwrite: bool = flag(False, "--overwrite"),
) -> None:
    """Per-dim nDCG@10, recall@10/100, MRR@10 (ir-measures; cosine, truncate then normalise) on a BEIR folder or WordNet."""
    from mrl.evaluate.ir import ir_record
    from mrl.evaluate.records import results_document, results_writer
    from mrl.evaluate.text_eval import evaluate_text, load_eval_set
    from mrl.io import input_files, write_json
    from mrl.models.adaptor import load_adaptor
    from mrl.models.text_encode import cached_encode
    from mrl.nesting import parse_dims
    from mrl.progress import throttle_progress

    throttle_progress()
    wanted = list(parse_dims(dims))
    names, labels = [], []
    for item in models:
        label, sep, path = item.partition("=")
        names.append(path if sep and label and not Path(item).exists() else item)
        labels.append(label if sep and label and not Path(item).exists() else None)
    chosen = parse_list(baselines)
    inputs = input_files(*(Path(n) for n in names if Path(n).exists()), beir, adaptor, data_root)
    with results_writer(out, overwrite=overwrite, inputs=inputs):
        data = load_eval_set(beir, split=split, max_queries=max_queries, max_corpus=max_corpus, fit_texts=fit_texts if chosen else 0, seed=seed, data_root=data_root)
        console.print(f"{data.name}: {len(data.queries)} queries, {len(data.corpus)} documents, {len(data.fit_texts)} fitting texts" + (f" ({data.fit_source})" if data.fit_source else ""))
        if chosen and len(data.fit_texts) < 2:
            console.print(f"skipping the {', '.join(chosen)} baseline(s): no texts to fit them on ({data.fit_source or 'none'}).")
            chosen = []
        records = evaluate_text(names, data, wanted, baselines=chosen, labels=labels, cache_dir=cache_dir, max_seq_length=max_seq_length, bf16=bf16, log=console.print)
        if adaptor is not None:
            enc = dict(cache_dir=cache_dir, max_seq_length=max_seq_length, bf16=bf16)
            q, c = cached_encode(names[0], data.queries, **enc), cached_encode(names[0], data.corpus, **enc)
            model = load_adaptor(adaptor)
            records.append(ir_record(f"{records[0]['method'].replace(' (truncated)', '')} + adaptor", "adaptor", model.transform(q), model.transform(c), data.qrels, wanted, model=str(adaptor), grades=data.grades, dataset=data.name))
        write_json(out, results_document(records))
    console.print(f"wrote {out} ({len(records)} records)")


@app.command()
@friendly
def report(
    results: list[Path] = typer.Argument(..., help="Results JSON files from `mrl eval`."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder."),
    title: str = typer.Option("Matryoshka per-dimension report"),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous report in OUT (never other files, never an input)."),
) -> None:
    """Markdown + HTML report: one row per configuration (± over its seeds), a plot against the dims."""
    from mrl.evaluate.records import read_results
    from mrl.io import read_json
    from mrl.report import write_report

    records = []
    for path in results:
        records += read_results(read_json(path), path)
    paths = write_report(records, out, title=title, overwrite=overwrite, inputs=list(results))
    console.print(f"report: {paths['md']} and {paths['html']}")
