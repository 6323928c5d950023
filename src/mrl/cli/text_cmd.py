"""Text commands: the ``task: text`` branch of ``mrl train``, ``mrl adapt``, ``mrl embed-text``,
``mrl apply-adaptor`` (also ``mrl embed --adaptor``) and ``mrl eval-text``.

Registered on :data:`mrl.cli.app.app` by one import line in ``mrl/cli/app.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml

from mrl.cli.app import app, console, friendly
from mrl.errors import MRLError


def is_text_config(path: Path | None, overrides: list[str]) -> bool:
    """True when the YAML (or a ``--set task=...`` override) says ``task: text``."""
    task = None
    if path is not None and path.is_file():
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            return False  # the image loader reports the YAML error
        task = doc.get("task") if isinstance(doc, dict) else None
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "task":
            task = value.strip()
    return task == "text"


def train_text_command(config: Path | None, overrides: list[str], out: Path, *, resume: bool, overwrite: bool, nproc: int) -> None:
    """``mrl train`` with a ``task: text`` config: fine-tune a sentence encoder."""
    from mrl.models.text import load_text_config, train_text

    if resume:
        raise MRLError("--resume is not supported for text fine-tuning (the model is saved once at the end); rerun with --overwrite.")
    if nproc != 1:
        raise MRLError("--nproc is not supported for text fine-tuning; run it in one process.")
    cfg = load_text_config(config, overrides)
    result = train_text(cfg, out, overwrite=overwrite)
    last = result.history[-1] if result.history else {}
    losses = ", ".join(f"{d}: {last[f'loss@{d}']:.3f}" for d in cfg.matryoshka_dims if f"loss@{d}" in last)
    console.print(f"fine-tuned {cfg.model} for {result.steps} steps in {result.seconds:.0f}s ({result.steps_per_s:.2f} steps/s); last loss per dim: {losses}")
    console.print(f"model: {out} (load with SentenceTransformer('{out}', truncate_dim=d))")


@app.command("embed-text")
@friendly
def embed_text(
    model: str = typer.Argument(..., help="Sentence-transformers folder or 'all-MiniLM-L6-v2'."),
    input: Path = typer.Option(..., "--input", "-i", help="Text file, one text per line (UTF-8)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy (float32, full width)."),
    truncate_dim: Optional[int] = typer.Option(None, help="Keep the first d dims (then L2-normalise)."),
    batch_size: int = typer.Option(128),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Encode texts with a sentence encoder into a .npy (truncate-then-normalise when --truncate-dim)."""
    from mrl.embeddings import l2_normalize
    from mrl.evaluate.ir import encode_texts
    from mrl.io import guard_output, save_npy
    from mrl.models.text import load_sentence_transformer

    if out.suffix != ".npy":
        raise MRLError(f"--out must end in .npy, got {out}.")
    guard_output(out, overwrite)
    if not input.is_file():
        raise MRLError(f"{input} does not exist; give a UTF-8 text file with one text per line.")
    try:
        texts = [t for t in input.read_text(encoding="utf-8").splitlines() if t.strip()]
    except UnicodeDecodeError as exc:
        raise MRLError(f"{input} is not UTF-8 text; re-save it as UTF-8.") from exc
    if not texts:
        raise MRLError(f"{input} holds no text lines.")
    st = load_sentence_transformer(model, truncate_dim=truncate_dim)
    emb = encode_texts(st, texts, batch_size=batch_size)
    if truncate_dim:
        emb = l2_normalize(emb[:, :truncate_dim])
    save_npy(out, emb)
    console.print(f"wrote {out} {emb.shape}")


@app.command()
@friendly
def adapt(
    embeddings: list[Path] = typer.Argument(..., help="Frozen embeddings .npy [N, D] (several files are stacked)."),
    out: Path = typer.Option(..., "--out", "-o", help="Adaptor folder (adaptor.safetensors + adaptor.json)."),
    dims: Optional[str] = typer.Option(None, help="matryoshka_dims, e.g. '8,16,...,384' (default: doubling from 8 to D)."),
    queries: Optional[Path] = typer.Option(None, help="Query embeddings .npy for the supervised ranking term (row i pairs with --docs row i)."),
    docs: Optional[Path] = typer.Option(None, help="Document embeddings .npy paired with --queries."),
    kind: str = typer.Option("linear", help="linear or mlp (residual MLP on top of the linear map)."),
    steps: int = typer.Option(1000, help="Optimisation steps."),
    batch_size: int = typer.Option(512),
    topk: int = typer.Option(10, help="Neighbourhood size preserved by the ranking term."),
    supervised_weight: float = typer.Option(1.0, help="Weight of the supervised ranking term (needs --queries/--docs)."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Learn a post-hoc Matryoshka adaptor for frozen embeddings (any model, any API)."""
    import numpy as np

    from mrl.io import load_npy
    from mrl.models.adaptor import AdaptorConfig, fit_adaptor
    from mrl.nesting import log2_dims, parse_dims

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
    cfg = AdaptorConfig(matryoshka_dims=list(d), kind=kind, steps=steps, batch_size=batch_size, topk=topk, supervised_weight=supervised_weight if pairs else 0.0, seed=seed)
    result = fit_adaptor(x, cfg, out, pairs=pairs, overwrite=overwrite)
    console.print(f"adaptor {kind} for {x.shape[1]}-d vectors trained on {x.shape[0]} rows in {result.seconds:.0f}s; saved to {out}")


@app.command("apply-adaptor")
@friendly
def apply_adaptor_cmd(
    adaptor: Path = typer.Argument(..., help="Adaptor folder from `mrl adapt`."),
    input: Path = typer.Option(..., "--input", "-i", help="Embeddings .npy [N, D]."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy [N, D] (Matryoshka: truncate then normalise)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Apply an adaptor to frozen embeddings (same as `mrl embed --adaptor DIR --input x.npy`)."""
    run_adaptor(adaptor, input, out, overwrite)


def run_adaptor(adaptor: Path, input: Path, out: Path, overwrite: bool) -> None:
    from mrl.io import guard_output, load_npy, save_npy
    from mrl.models.adaptor import load_adaptor

    if out.suffix != ".npy":
        raise MRLError(f"--out must end in .npy, got {out}.")
    guard_output(out, overwrite)
    model = load_adaptor(adaptor)
    y = model.transform(load_npy(input))
    save_npy(out, y)
    console.print(f"wrote {out} {y.shape}")


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
