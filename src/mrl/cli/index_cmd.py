"""``mrl index build|add|delete|compact|search|info|push`` and ``mrl tune``: the Matryoshka index, its
funnel tuner, and the same commands against a Milvus collection (``--milvus URI --collection NAME``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from mrl.cli.console import console, flag, friendly, load_matrix
from mrl.cli.index_build import build, check_attachable, tune_and_save
from mrl.cli.index_options import BuildOptions, PushOptions, SearchOptions, TuneOptions, load_ids, load_metadata, load_queries, pick_alias, vector_blocks
from mrl.cli.index_output import print_hits, summary
from mrl.errors import MRLError

__all__ = ["app", "load_ids", "load_metadata", "load_queries", "tune_app", "vector_blocks"]

app = typer.Typer(no_args_is_help=True, help="Persistent Matryoshka retrieval index with funnel search (local folder or Milvus).")
tune_app = typer.Typer()

MILVUS_HELP = "Milvus URI: a Milvus Lite file (e.g. mrl.db) or http://host:19530 (token from MRL_MILVUS_TOKEN)."
RECALL_HELP = "Auto-tune the funnel to this recall@k (in (0, 1]); --target-recall is its old name."


def open_backend(folder: Optional[Path], milvus: Optional[str], collection: Optional[str]) -> Any:
    from mrl.index.backend import open_index

    if milvus is None and folder is None:
        raise MRLError("give an index FOLDER, or --milvus URI --collection NAME.")
    if milvus is not None and folder is not None:
        raise MRLError("give either an index FOLDER or --milvus URI --collection NAME, not both (to copy a folder into Milvus use `mrl index push`).")
    return open_index(str(folder) if folder else None, milvus=milvus, collection=collection)


TUNE_HELP = {
    "confidence": "Require the one-sided lower confidence bound of the tuning recall (default 0.95) to meet the target; 0 uses the mean.",
    "heldout": "Queries .npy (or shard folder) never used to choose, scored for the report (default: a fifth of --queries set aside).",
    "latency": "What to minimise: 'batch' (ms/query over a batch) or 'single' (p99 of one query at a time, as a server sends them).",
    "max_ram": "Bytes per vector the funnel may keep resident (id + first-stage structure; full vectors stay memory-mapped on disk).",
}


@app.command("build")
@friendly
def index_build(
    folder: Path = typer.Argument(..., help="Index folder to write."),
    vectors: Path = typer.Option(..., "--vectors", help="Full-D embeddings: a .npy [N, D] (e.g. `mrl embed RUN --split train`) or a shard folder / its manifest.json from `mrl encode`."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="int64 ids .npy [N] (default 0..N-1)."),
    meta: Optional[Path] = typer.Option(None, "--meta", help="Metadata: JSON Lines, one object of str/int fields per vector (e.g. {\"lang\": \"en\"})."),
    metric: str = typer.Option("cosine", help="cosine (truncate, normalise, inner product; the default for an index), ip (raw inner product) or l2."),
    dtype: str = typer.Option("float32", help="Storage of the full vectors: float32 or float16."),
    first_stage: list[str] = typer.Option([], "--first-stage", help="Prefix structure(s) to build, e.g. '32' or '32/hnsw' or '64/binary'."),
    funnel: Optional[str] = typer.Option(None, help="Default funnel, e.g. '32:1000 -> 128:100 -> 512:10'."),
    recall_target: Optional[float] = typer.Option(None, "--recall-target", help=RECALL_HELP),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", hidden=True),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Held-out tuning queries .npy (default: sampled stored vectors)."),
    k: int = typer.Option(10, help="k for tuning."),
    sample: int = typer.Option(1000, help="Tuning queries used."),
    threads: int = typer.Option(2, help="Threads (FAISS and rerank)."),
    confidence: float = typer.Option(0.95, "--confidence", help=TUNE_HELP["confidence"]),
    heldout: Optional[Path] = typer.Option(None, "--heldout-queries", help=TUNE_HELP["heldout"]),
    latency: str = typer.Option("batch", "--latency", help=TUNE_HELP["latency"]),
    max_ram: Optional[float] = typer.Option(None, "--max-ram-per-vector", help=TUNE_HELP["max_ram"]),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous index in FOLDER (only files its manifest lists; never an input)."),
) -> None:
    """Build a Matryoshka index from an embeddings file or shard folder (optionally auto-tuned).

    Every option is checked before anything is written; the index is built in a hidden sibling
    folder and put in place only when complete, so a failed build leaves FOLDER as it was.
    """
    target = pick_alias(recall_target, target_recall, "--recall-target", "--target-recall")
    tune = TuneOptions(target, k=k, sample=sample, threads=threads, confidence=confidence, queries=queries, heldout=heldout, latency=latency, max_ram=max_ram) if target is not None else None
    opts = BuildOptions(folder, vectors, ids=ids, meta=meta, metric=metric, dtype=dtype, first_stages=tuple(first_stage), funnel=funnel, threads=threads, overwrite=overwrite, tune=tune)
    build(opts)


@app.command("add")
@friendly
def index_add(
    folder: Optional[Path] = typer.Argument(None, help="Index folder (omit with --milvus)."),
    vectors: Path = typer.Option(..., "--vectors", help="Full-D embeddings .npy [n, D]."),
    ids: Optional[str] = typer.Option(None, "--ids", help="Ids: int .npy [n] or comma-separated integers (default: after the largest id)."),
    meta: Optional[Path] = typer.Option(None, "--meta", help="Metadata JSON Lines, one object per vector (same fields as the index)."),
    upsert: bool = flag(False, "--upsert", help="Replace the vectors of ids already present (else they are refused)."),
    milvus: Optional[str] = typer.Option(None, "--milvus", help=MILVUS_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help="Milvus collection."),
) -> None:
    """Add (or --upsert) vectors with ids and metadata; the change is atomic (old or new state, never between)."""
    x = load_matrix(vectors, "vectors")
    id_arr = load_ids(ids, x.shape[0])
    records = load_metadata(meta, x.shape[0])
    if upsert and id_arr is None:
        raise MRLError("--upsert needs --ids: the ids whose vectors to replace.")
    if milvus is not None:
        index = open_backend(None, milvus, collection)
        (index.upsert if upsert else index.add)(np.asarray(x), id_arr, records)
        console.print(f"{'upserted' if upsert else 'added'} {x.shape[0]} vectors; {collection} now holds {index.count}")
        return
    from mrl.index import MatryoshkaIndex
    from mrl.index.store import writer_lock

    folder = _need_folder(folder)
    with writer_lock(folder):
        index = MatryoshkaIndex.load(folder)
        before = index.count
        index.add(np.asarray(x), id_arr, records, upsert=upsert)
        index.save(folder)
    console.print(f"{'upserted' if upsert else 'added'} {x.shape[0]} vectors to {folder}: {before} -> {index.count} live ({index.catalog.n_deleted} deleted awaiting `mrl index compact`)")


@app.command("delete")
@friendly
def index_delete(
    folder: Optional[Path] = typer.Argument(None, help="Index folder (omit with --milvus)."),
    ids: str = typer.Option(..., "--ids", help="Ids to delete: int .npy or comma-separated integers."),
    milvus: Optional[str] = typer.Option(None, "--milvus", help=MILVUS_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help="Milvus collection."),
) -> None:
    """Delete vectors by id (local: tombstones that searches skip at once; `compact` reclaims the space)."""
    id_arr = load_ids(ids)
    if milvus is not None:
        n = open_backend(None, milvus, collection).delete(id_arr)
        console.print(f"deleted {n} of {id_arr.size} ids from {collection}")
        return
    from mrl.index import MatryoshkaIndex
    from mrl.index.store import writer_lock

    folder = _need_folder(folder)
    with writer_lock(folder):
        index = MatryoshkaIndex.load(folder)
        n = index.delete(id_arr)
        if n:
            index.save(folder)
    console.print(f"deleted {n} of {id_arr.size} ids ({id_arr.size - n} not found); {index.count} live, {index.catalog.n_deleted} tombstones")


@app.command("compact")
@friendly
def index_compact(folder: Path = typer.Argument(..., help="Index folder.")) -> None:
    """Rewrite the index without deleted vectors, as one segment (atomic; first stages rebuilt)."""
    from mrl.index import MatryoshkaIndex
    from mrl.index.store import writer_lock

    with writer_lock(folder):
        index = MatryoshkaIndex.load(folder)
        merge = len(index._segments) > 1
        removed = index.compact()
        if removed or merge:
            index.save(folder)
    console.print(f"compacted {folder}: removed {removed} deleted vectors, {index.count} remain in one segment")


@app.command("push")
@friendly
def index_push(
    folder: Path = typer.Argument(..., help="Local index folder to copy (read only: never changed)."),
    milvus: str = typer.Option("mrl.db", "--milvus", help=MILVUS_HELP),
    collection: str = typer.Option(..., "--collection", help="Milvus collection to create (or resume)."),
    prefix_dims: Optional[str] = typer.Option(None, "--prefix-dims", help="Prefix fields to create, e.g. '32,128' (default: the funnel's stage dims)."),
    batch_size: int = typer.Option(5000, "--batch-size", help="Rows per upsert (and per recorded progress step)."),
    index_type: str = typer.Option("FLAT", "--index-type", help="Milvus index on the vector fields: FLAT, IVF_FLAT or HNSW."),
    calibrate: bool = flag(True, "--calibrate/--no-calibrate", help="Time server vs client rerank and record the faster."),
    recall_target: Optional[float] = typer.Option(None, "--recall-target", help="Tune a funnel for the collection (float first stages, which Milvus can run) to this recall@k; "
                                                  "the local index is not changed. --target-recall is its old name."),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", hidden=True),
    k: int = typer.Option(10, help="k for tuning."),
    sample: int = typer.Option(1000, help="Tuning queries used."),
    threads: int = typer.Option(2, help="Threads for tuning (FAISS and rerank)."),
) -> None:
    """Copy a local index (vectors, ids, metadata, tuned funnel) into Milvus; resumable after a kill."""
    target = pick_alias(recall_target, target_recall, "--recall-target", "--target-recall")
    tune = TuneOptions(target, k=k, sample=sample, threads=threads) if target is not None else None
    push_index(PushOptions(folder, milvus, collection, prefix_dims=PushOptions.parse_dims(prefix_dims), batch_size=batch_size, index_type=index_type, calibrate=calibrate, tune=tune))


def push_index(opts: PushOptions) -> None:
    """Tune in memory when asked (the source folder is only read), then push."""
    import dataclasses
    import time

    from mrl.index.backends.push import push

    funnel = tuning = None
    if opts.tune is not None:
        from mrl.index import MatryoshkaIndex

        index = MatryoshkaIndex.load(opts.folder)
        if index.catalog.n_deleted:
            raise MRLError(f"the index holds {index.catalog.n_deleted} deleted vectors; run `mrl index compact {opts.folder}` before tuning.")
        space = {"first": [(d, "float32", "flat") for d in (8, 16, 32, 64, 128) if d <= index.dim // 2]}
        tune = dataclasses.replace(opts.tune, space=space)
        tune.check_for(index.dim, index.count)
        result = tune.run(index, console.print)
        console.print(f"{result.headline()} (recorded in the collection; {opts.folder} is unchanged)")
        funnel, tuning = index.funnel, index.tuning
    t0 = time.perf_counter()
    mi = push(opts.folder, opts.milvus, opts.collection, prefix_dims=opts.prefix_dims, batch_size=opts.batch_size, index_type=opts.index_type, calibrate=opts.calibrate,
              funnel=funnel, tuning=tuning, log=console.print)
    console.print(f"{opts.collection} at {opts.milvus}: {mi.count} vectors, prefix fields {mi.prefix_dims}, funnel {mi.funnel} ({time.perf_counter() - t0:.1f}s)")


def _need_folder(folder: Optional[Path]) -> Path:
    if folder is None:
        raise MRLError("give an index FOLDER, or --milvus URI --collection NAME.")
    return folder


@app.command("search")
@friendly
def index_search(
    folder: Optional[Path] = typer.Argument(None, help="Index folder (omit with --milvus)."),
    queries: Path = typer.Option(..., "--queries", help="Queries .npy [B, D]."),
    k: int = typer.Option(10, help="Results per query."),
    funnel: Optional[str] = typer.Option(None, help="Funnel spec (default: the index's tuned funnel, else exact)."),
    recall_target: Optional[float] = typer.Option(None, "--recall-target", help="Use the fastest tuned funnel whose recall@k met this target."),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", hidden=True),
    filter: Optional[str] = typer.Option(None, "--filter", help="Metadata filter, e.g. 'lang == \"en\" and year in [2020, 2021]'."),
    early_exit: bool = flag(False, "--early-exit", help="Stop reranking queries whose top-k is stable between two stages (local)."),
    threads: int = typer.Option(2, help="Threads (FAISS and rerank)."),
    milvus: Optional[str] = typer.Option(None, "--milvus", help=MILVUS_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help="Milvus collection."),
    rerank: str = typer.Option("auto", "--rerank", help="Milvus: where later stages run: auto (the measured faster), server or client."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write ids to OUT (.npy), scores to OUT.scores.npy and a JSON sidecar OUT.json."),
    single: int = typer.Option(0, "--single", help="Local: also send the first N queries one at a time and print the latency p50/p99."),
    show: int = typer.Option(3, "--show", help="Print the top hits (id and score) of the first N queries (0: none)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous search output (never other files, never an input)."),
) -> None:
    """Search an index with a funnel (local or Milvus); prints the top hits of the first queries, the throughput and, locally, each stage's work."""
    import contextlib

    from mrl.io import open_files

    target = pick_alias(recall_target, target_recall, "--recall-target", "--target-recall")
    opts = SearchOptions(folder, queries, k=k, funnel=funnel, recall_target=target, filter=filter, early_exit=early_exit, threads=threads, milvus=milvus,
                         collection=collection, rerank=rerank, out=out, single=single, show=show, overwrite=overwrite)
    index_files = list(folder.iterdir()) if folder is not None and folder.is_dir() else []
    guard = (open_files(opts.out, "mrl.search", [opts.scores_path.name], overwrite=overwrite, inputs=[queries, *index_files])
             if opts.out is not None and opts.scores_path is not None else contextlib.nullcontext())
    with guard as writer:
        search(opts, writer)


def search(opts: SearchOptions, writer: Any = None) -> None:
    """Run the search of ``opts``; print the hits, the funnel actually run and its work; write ``--out``."""
    import time

    import faiss

    from mrl.io import save_npy

    faiss.omp_set_num_threads(opts.threads)
    index = open_backend(opts.folder, opts.milvus, opts.collection)
    q = load_queries(opts.queries, index.dim)
    if opts.milvus is None:
        scores, ids, stats = index.search(q, opts.k, funnel=opts.funnel, recall_target=opts.recall_target, filter=opts.filter, early_exit=opts.early_exit, threads=opts.threads, return_stats=True)
        seconds = stats.seconds
        used = " -> ".join(st["stage"] for st in stats.stages if not st["stage"].endswith("(scores)"))  # the funnel run, with this k
        extra = f"; early exit saved {100 * stats.saved_fraction:.2f}% of all multiply-adds ({100 * stats.rerank_saved_fraction:.1f}% of the rerank stages)" if opts.early_exit else ""
    else:
        used = str(index.resolve(opts.k, opts.funnel, opts.recall_target))
        t0 = time.perf_counter()
        scores, ids = index.search(q, opts.k, funnel=opts.funnel, recall_target=opts.recall_target, filter=opts.filter, rerank=opts.rerank)
        seconds, extra = time.perf_counter() - t0, f" (Milvus, rerank {index.last_placement})"
    print_hits(ids, scores, opts.show)
    console.print(f"{q.shape[0]} queries with funnel {used}{' and filter ' + opts.filter if opts.filter else ''}: {q.shape[0] / max(seconds, 1e-9):,.0f} QPS{extra}")
    if opts.milvus is None:
        for st in stats.stages:
            console.print(f"  {st['stage']}: {st['distances']:,.0f} vectors scored, {st['bytes'] / 1e3:,.1f} kB read, {1e6 * st['seconds'] / q.shape[0]:.1f} us per query")
        if opts.single:
            from mrl.index.tune import single_query_latency

            p50, p99 = single_query_latency(index, q[: opts.single], used, threads=opts.threads)
            console.print(f"  one query at a time ({min(opts.single, q.shape[0])} queries): p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    if opts.out is not None and opts.scores_path is not None:
        out, scores_path = opts.out, opts.scores_path
        with writer.file(out.name) as p:
            save_npy(p, ids)
        with writer.file(scores_path.name) as p:
            save_npy(p, scores)
        writer.meta.update({"index": str(opts.folder) if opts.folder else f"{opts.milvus}#{opts.collection}", "queries": str(opts.queries), "count": int(ids.shape[0]), "k": int(ids.shape[1]),
                            "funnel": used, "filter": opts.filter, "ids": out.name, "scores": scores_path.name, "early_exit": opts.early_exit})
        console.print(f"wrote {out} (ids), {scores_path} (scores) and {out.with_suffix('.json')}")


@app.command("info")
@friendly
def index_info(
    folder: Optional[Path] = typer.Argument(None, help="Index folder (omit with --milvus)."),
    verify: bool = flag(True, help="Check SHA-256 checksums."),
    as_json: bool = flag(False, "--json", help="Print everything (the tuning record included) as JSON instead of the summary."),
    milvus: Optional[str] = typer.Option(None, "--milvus", help=MILVUS_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help="Milvus collection."),
) -> None:
    """Print a summary (count, deleted, dim, dtype, metric, funnel, tuning, fields, resident bytes per vector); --json for everything."""
    import json

    from mrl.index import MatryoshkaIndex

    info = open_backend(None, milvus, collection).info() if milvus is not None else MatryoshkaIndex.load(_need_folder(folder), verify=verify).info()
    typer.echo(json.dumps(info, indent=2) if as_json else summary(info, str(folder) if milvus is None else f"{milvus} collection {collection}"))


@app.command("attach-texts")
@friendly
def index_attach_texts(
    folder: Path = typer.Argument(..., help="Index folder."),
    texts: str = typer.Option(..., "--texts", help="A .txt (one passage per line, ids 0..N-1), a .jsonl ({id, text} per line) or 'wordnet'."),
) -> None:
    """Store the passage of each id beside the index (for `mrl serve` search with return_text)."""
    from mrl.index import MatryoshkaIndex
    from mrl.index.texts import read_texts, write_text_store

    index = MatryoshkaIndex.load(folder, verify=False)
    ids, passages = read_texts(texts)
    live = index.ids[~index.catalog.deleted]  # deleted vectors need no passage
    missing = np.setdiff1d(live, ids).size
    if missing:
        raise MRLError(f"{missing} of the index's {index.count} live ids have no passage in {texts}; give the texts of the vectors the index was built from.")
    write_text_store(folder, ids, passages)
    extra = int(np.setdiff1d(ids, live).size)
    console.print(f"attached {len(passages) - extra} passages to the {index.count} live vectors of {folder}" + (f" ({extra} more passages have no live vector)" if extra else ""))


@tune_app.command("tune")
@friendly
def tune_cmd(
    folder: Path = typer.Argument(..., help="Index folder (tuned in place: manifest + chosen first stage)."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Held-out tuning queries .npy (default: sampled stored vectors)."),
    k: int = typer.Option(10),
    recall_target: Optional[float] = typer.Option(None, "--recall-target", help="Required recall@k vs exact full-D, in (0, 1] (default 0.99); --target-recall is its old name."),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", hidden=True),
    sample: int = typer.Option(1000, help="Tuning queries used."),
    threads: int = typer.Option(2, help="Threads (FAISS and rerank), as when serving."),
    confidence: float = typer.Option(0.95, "--confidence", help=TUNE_HELP["confidence"]),
    heldout: Optional[Path] = typer.Option(None, "--heldout-queries", help=TUNE_HELP["heldout"]),
    latency: str = typer.Option("batch", "--latency", help=TUNE_HELP["latency"]),
    max_ram: Optional[float] = typer.Option(None, "--max-ram-per-vector", help=TUNE_HELP["max_ram"]),
) -> None:
    """Pick the fastest funnel meeting the recall target; store it in the index; write the frontier."""
    from mrl.index import MatryoshkaIndex
    from mrl.index.store import writer_lock

    target = pick_alias(recall_target, target_recall, "--recall-target", "--target-recall")
    opts = TuneOptions(0.99 if target is None else target, k=k, sample=sample, threads=threads, confidence=confidence, queries=queries, heldout=heldout, latency=latency, max_ram=max_ram)
    with writer_lock(folder):
        index = MatryoshkaIndex.load(folder)
        opts.check_for(index.dim, index.count)
        check_attachable(folder)
        tune_and_save(index, folder, opts)
