"""Per-dim retrieval evaluation of text encoders on a BEIR folder or the WordNet test split.

:func:`load_eval_set` bounds the work *before* anything is encoded (``max_queries`` queries sampled,
their relevant documents kept, the rest of the corpus sampled up to ``max_corpus``) and returns the
set plus the texts that post-hoc baselines may be fitted on: a BEIR folder's ``unlabeled.jsonl``
(same domain, disjoint from the evaluated corpus); in a standard BEIR folder without that file, a
seeded sample of the corpus documents that no qrels file names, held out of the evaluated corpus
(:func:`mrl.data.beir.load_beir_with_fit_docs`); or WordNet's training split. ``EvalSet.fit_source``
says which, in words.

:func:`evaluate_text` encodes with each model (cached by model content + texts) and returns one
record per row: each model truncated, and on the first model PCA and the unsupervised adaptor
fitted on those unlabeled texts (never on queries, labels or evaluated documents).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrl.errors import MRLError
from mrl.evaluate.ir import ir_record
from mrl.models.text_encode import cached_encode

BASELINES = ("pca", "adaptor")


@dataclass(frozen=True)
class EvalSet:
    """Queries, corpus, qrels (+ grades) and the unlabeled texts allowed for fitting baselines."""

    name: str
    queries: tuple[str, ...]
    corpus: tuple[str, ...]
    qrels: tuple[tuple[int, ...], ...]
    grades: tuple[tuple[int, ...], ...] | None
    fit_texts: tuple[str, ...]
    fit_source: str = ""  # where fit_texts come from (printed beside the counts)


def load_eval_set(beir: str | os.PathLike[str] | None = None, *, split: str = "test", max_queries: int | None = 2000, max_corpus: int | None = None, fit_texts: int = 5000, seed: int = 0, data_root: str | os.PathLike[str] | None = None) -> EvalSet:
    """A BEIR folder's ``split`` (or, with ``beir=None``, the WordNet test split), bounded.

    Raises:
        DataError: as the BEIR/WordNet loaders (missing files, unknown ids in qrels, duplicates,
            empty texts, non-UTF-8 bytes, ...).
    """
    from mrl.data.texts import load_texts

    if beir is not None:
        from mrl.data.beir import UNLABELED, load_beir, load_beir_with_fit_docs

        name = Path(beir).name
        if not fit_texts or (Path(beir) / UNLABELED).is_file():
            ir = load_beir(beir, split, max_queries=max_queries, max_corpus=max_corpus, seed=seed)
            fit = load_texts(beir, max_texts=fit_texts, seed=seed) if fit_texts else ()
            return EvalSet(name, ir.queries, ir.corpus, ir.qrels, ir.grades, fit, f"{UNLABELED} (disjoint from the corpus)" if fit else "")
        ir, fit = load_beir_with_fit_docs(beir, split, max_fit=fit_texts, max_queries=max_queries, max_corpus=max_corpus, seed=seed)
        source = "corpus documents that no qrels file names (a seeded sample of at most half of them), held out of the evaluated corpus" if fit else f"none: no {UNLABELED} and no corpus document outside the qrels to hold out"
        return EvalSet(name, ir.queries, ir.corpus, ir.qrels, ir.grades, fit, source)
    from mrl.data.wordnet import load_wordnet

    data = load_wordnet(data_root, max_queries=max_queries, max_corpus=max_corpus, seed=seed)
    fit = load_texts("wordnet", max_texts=fit_texts, seed=seed, data_root=data_root) if fit_texts else ()
    return EvalSet("wordnet", data.test.queries, data.test.corpus, data.test.qrels, None, fit, "WordNet's training split" if fit else "")


def model_label(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(method label, mode) of a model folder: ``Base (truncated)`` for a model we did not train."""
    from mrl.io import read_json
    from mrl.models.text import MATRYOSHKA_FILE, resolve_model_path

    info_path = resolve_model_path(path) / MATRYOSHKA_FILE
    if not info_path.is_file():
        return "Base (truncated)", "truncate"
    info = read_json(info_path)
    loss = (info.get("config") or {}).get("loss", "mnrl")
    if loss == "distill":
        return "Label-free distilled", "distill"
    return f"MRL fine-tuned ({loss})", "mrl-ft"


def evaluate_text(models: Sequence[str], data: EvalSet, dims: Sequence[int], *, baselines: Sequence[str] = BASELINES, labels: Sequence[str | None] | None = None, cache_dir: str | os.PathLike[str] | None = None, max_seq_length: int | None = 128, bf16: bool = False, adaptor_steps: int = 500, progress: bool = True, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One IR record per row (see module docstring). ``labels[i]`` overrides model ``i``'s label.

    Raises:
        MRLError: unknown baseline, baselines asked for without fitting texts, bad model folders.
    """
    from mrl.evaluate.baselines import pca_transform
    from mrl.models.text import resolve_model_path

    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise MRLError(f"unknown baseline(s) {unknown}; choose from {BASELINES}.")
    if baselines and not data.fit_texts:
        raise MRLError("the PCA/adaptor baselines need unlabeled fitting texts; raise --fit-texts or pass --baselines ''.")
    enc = dict(cache_dir=cache_dir, max_seq_length=max_seq_length, bf16=bf16, progress=progress)
    records: list[dict[str, Any]] = []
    first: tuple[str, Path, np.ndarray, np.ndarray] | None = None
    for i, name in enumerate(models):
        path = resolve_model_path(name)
        q = cached_encode(path, data.queries, **enc)
        c = cached_encode(path, data.corpus, **enc)
        method, mode = model_label(path)
        if labels is not None and labels[i]:
            method = str(labels[i])
        records.append(ir_record(method, mode, q, c, data.qrels, dims, model=str(name), grades=data.grades, dataset=data.name))
        if log:
            log(f"{method}: nDCG@10 " + ", ".join(f"{d}: {100 * v['ndcg@10']:.1f}" for d, v in records[-1]["per_dim"].items()))
        if first is None:
            first = (method.replace(" (truncated)", ""), path, q, c)
    if first is None or not baselines:
        return records
    label, path, q, c = first
    x = cached_encode(path, data.fit_texts, **enc)
    if "pca" in baselines:
        pq, pc = pca_transform(x, q, c)
        pca_dims = [d for d in dims if d <= pq.shape[1]]
        if not pca_dims:
            raise MRLError(f"PCA of {x.shape[0]} fitting texts has {pq.shape[1]} components, below every requested dim; raise --fit-texts.")
        records.append(ir_record(f"{label} + PCA", "pca-text", pq, pc, data.qrels, pca_dims, model=str(path), fit_rows=int(x.shape[0]), grades=data.grades, dataset=data.name))
    if "adaptor" in baselines:
        from mrl.train.adaptor import AdaptorConfig, fit_adaptor

        ad = fit_adaptor(x, AdaptorConfig(sorted(set(dims) | {x.shape[1]}), kind="linear", steps=adaptor_steps, progress=progress)).model
        records.append(ir_record(f"{label} + adaptor (unsupervised)", "adaptor-unsup", ad.transform(q), ad.transform(c), data.qrels, dims, model=str(path), fit_rows=int(x.shape[0]), grades=data.grades, dataset=data.name))
    if log:
        for rec in records[len(models):]:
            log(f"{rec['method']}: nDCG@10 " + ", ".join(f"{d}: {100 * v['ndcg@10']:.1f}" for d, v in rec["per_dim"].items()))
    return records
