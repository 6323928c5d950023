"""``mrl index build|add|delete|compact|search|info|push`` and ``mrl tune``: the Matryoshka index, its
funnel tuner, and the same commands against a Milvus collection (``--milvus URI --collection NAME``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from mrl.cli.console import console, flag, friendly, load_matrix
from mrl.errors import MRLError

app = typer.Typer(no_args_is_help=True, help="Persistent Matryoshka retrieval index with funnel search (local folder or Milvus).")
tune_app = typer.Typer()

MILVUS_HELP = "Milvus URI: a Milvus Lite file (e.g. mrl.db) or http://host:19530 (token from MRL_MILVUS_TOKEN)."


def load_ids(spec: Optional[str], n: Optional[int] = None) -> Optional[np.ndarray]:
    """``--ids``: a .npy of integers or a comma-separated list (``3,17,42``)."""
    from mrl.io import load_npy

    if spec is None:
        return None
    if spec.endswith(".npy"):
        arr = load_npy(Path(spec))
    else:
        try:
            arr = np.array([int(t) for t in spec.split(",") if t.strip()], dtype=np.int64)
        except ValueError as exc:
            raise MRLError(f"--ids must be a .npy file or comma-separated integers like 3,17,42, got {spec!r}.") from exc
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise MRLError(f"--ids holds {arr.shape}, expected ({n if n is not None else 'M'},): one id per vector.")
    return arr


def load_metadata(path: Optional[Path], n: int) -> Optional[list[dict[str, Any]]]:
    """``--meta``: JSON Lines, one object of scalar fields per vector (``{"lang": "en", "year": 2020}``)."""
    import json

    if path is None:
        return None
    if not path.is_file():
        raise MRLError(f"--meta {path} does not exist; give a JSON Lines file with one object per vector.")
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MRLError(f"--meta {path} line {i + 1} is not JSON ({exc.msg}); write one object per line.") from exc
        if not isinstance(rec, dict):
            raise MRLError(f"--meta {path} line {i + 1} is not an object; write one object like {{\"lang\": \"en\"}} per line.")
        records.append(rec)
    if len(records) != n:
        raise MRLError(f"--meta {path} holds {len(records)} records for {n} vectors; give one per vector, in order.")
    return records


def open_backend(folder: Optional[Path], milvus: Optional[str], collection: Optional[str]) -> Any:
    from mrl.index.backend import open_index

    if milvus is None and folder is None:
        raise MRLError("give an index FOLDER, or --milvus URI --collection NAME.")
    if milvus is not None and folder is not None:
        raise MRLError("give either an index FOLDER or --milvus URI --collection NAME, not both (to copy a folder into Milvus use `mrl index push`).")
    return open_index(str(folder) if folder else None, milvus=milvus, collection=collection)


def _tune_and_report(index: Any, folder: Path, queries: Optional[Path], k: int, target_recall: float, sample: int, threads: int, confidence: Optional[float] = 0.95,
                     heldout: Optional[Path] = None, latency: str = "batch", max_ram: Optional[float] = None, space: Optional[dict] = None, timings: Optional[dict] = None) -> None:
    """Tune the funnel, apply it and save the index with ``tuning.md``/``tuning.png`` (and ``build.json``:
    ``timings`` of the build so far plus the tuning's own seconds) attached to its manifest."""
    import tempfile
    import time

    import faiss

    from mrl.index.tune import apply, check_target, tune
    from mrl.io import dumps

    check_target(target_recall)
    if index.catalog.n_deleted:
        raise MRLError(f"the index holds {index.catalog.n_deleted} deleted vectors; run `mrl index compact {folder}` before tuning.")
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    q = load_queries(queries) if queries else None
    ho = load_queries(heldout) if heldout else None
    result = tune(index, queries=q, heldout=ho, k=k, target_recall=target_recall, sample=sample, threads=threads, confidence_level=confidence or None,
                  latency=latency, max_ram_per_vector=max_ram, space=space, log=console.print)
    apply(index, result)
    with tempfile.TemporaryDirectory() as tmp:  # stored with the index, listed in its manifest
        png = result.plot(Path(tmp) / "tuning.png").read_bytes()
    attach = {"tuning.md": result.markdown().encode(), "tuning.png": png}
    if timings is not None:
        tune_s = time.perf_counter() - t0
        attach["build.json"] = dumps({**timings, "tune_s": tune_s, "seconds": timings.get("seconds", 0.0) + tune_s}).encode()
    index.save(folder, attach=attach)
    console.print(f"{result.headline()}; frontier: {folder / 'tuning.md'}, {folder / 'tuning.png'}")


def check_tune_options(target_recall: float, latency: str, max_ram: Optional[float]) -> None:
    from mrl.index.tune import LATENCY_MODES, check_target

    check_target(target_recall)
    if latency not in LATENCY_MODES:
        raise MRLError(f"--latency must be one of {', '.join(LATENCY_MODES)}, got {latency!r}.")
    if max_ram is not None and not max_ram > 0:
        raise MRLError(f"--max-ram-per-vector must be a positive number of bytes, got {max_ram}.")


TUNE_HELP = {
    "confidence": "Require the one-sided lower confidence bound of the tuning recall (default 0.95) to meet the target; 0 uses the mean.",
    "heldout": "Queries .npy (or shard folder) never used to choose, scored for the report (default: a fifth of --queries set aside).",
    "latency": "What to minimise: 'batch' (ms/query over a batch) or 'single' (p99 of one query at a time, as a server sends them).",
    "max_ram": "Bytes per vector the funnel may keep resident (id + first-stage structure; full vectors stay memory-mapped on disk).",
}


def vector_blocks(path: Path) -> tuple[Any, int, int]:
    """Memory-mapped row blocks of a .npy or of a shard folder from `mrl encode`, plus ``(rows, dim)``."""
    from mrl.encode import is_shard_folder, open_shards

    if is_shard_folder(path):
        reader = open_shards(path)
        return reader.chunks(), reader.rows, reader.dim
    x = load_matrix(path, "vectors")
    step = 1 << 17
    return (x[s : s + step] for s in range(0, x.shape[0], step)), int(x.shape[0]), int(x.shape[1])


def load_queries(path: Path) -> np.ndarray:
    """Query vectors from a .npy or a shard folder, as one contiguous float32 array [B, D]."""
    from mrl.encode import is_shard_folder, open_shards

    x = open_shards(path).array() if is_shard_folder(path) else load_matrix(path, "queries")
    return np.ascontiguousarray(x, dtype=np.float32)


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
    target_recall: Optional[float] = typer.Option(None, "--target-recall", help="Auto-tune the funnel to this recall@k (in (0, 1])."),
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
    """Build a Matryoshka index from an embeddings file or shard folder (optionally auto-tuned)."""
    from mrl.index import MatryoshkaIndex
    from mrl.index.catalog import check_ids
    from mrl.index.store import FORMAT, owned_files, writer_lock
    from mrl.io import check_output

    with writer_lock(folder, create=True):
        check_output(folder, FORMAT, overwrite=overwrite, inputs=[vectors, ids, meta, queries, heldout], owned=owned_files)
        MatryoshkaIndex(1, metric=metric, dtype=dtype)  # validates metric and dtype before reading anything
        if target_recall is not None:  # fail before the (long) build
            check_tune_options(target_recall, latency, max_ram)
        blocks, n, d = vector_blocks(vectors)
        id_arr = check_ids(load_ids(str(ids)), n) if ids else None
        records = load_metadata(meta, n)
        _build(folder, blocks, d, id_arr, records, metric, dtype, first_stage, funnel, target_recall, queries, k, sample, threads, confidence, heldout, latency, max_ram)


def _build(folder: Path, blocks: Any, d: int, id_arr: Optional[np.ndarray], records: Optional[list], metric: str, dtype: str, first_stage: list[str], funnel: Optional[str], target_recall: Optional[float],
           queries: Optional[Path], k: int, sample: int, threads: int, confidence: Optional[float], heldout: Optional[Path] = None, latency: str = "batch", max_ram: Optional[float] = None) -> None:
    import time

    import faiss

    from mrl.index import Funnel, MatryoshkaIndex
    from mrl.io import dumps

    spec = Funnel.parse(funnel) if funnel else None  # fail before the (long) build
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    index = MatryoshkaIndex(d, metric=metric, dtype=dtype)
    start = 0
    for block in blocks:  # streamed: shards (or 128k-row slices) of memory-mapped vectors; saved as one segment
        end = start + block.shape[0]
        index.add(block, None if id_arr is None else id_arr[start:end], None if records is None else records[start:end])
        start = end
    index.save(folder)  # the store first: first stages then read the saved, memory-mapped copy
    t1 = time.perf_counter()
    for fs in first_stage:
        index.build_first_stage(fs if ":" in fs else f"{fs}:1")
    if spec is not None:
        index.funnel = spec
        index.funnel.validate_for(index.dim, index.count)
        index.build_first_stage(index.funnel.first)
    t2 = time.perf_counter()
    timings = {"seconds": t2 - t0, "store_s": t1 - t0, "first_stages_s": t2 - t1, "threads": threads, "rows": index.rows}  # stored with the index, listed in its manifest
    index.save(folder, attach={"build.json": dumps(timings).encode()})
    console.print(f"wrote {folder}: {index.count} x {index.dim} {dtype} vectors, first stages {[fs.key for fs in index.first_stages()]} "
                  f"(store {t1 - t0:.1f} s, first stages {t2 - t1:.1f} s)")
    if target_recall is not None:
        t3 = time.perf_counter()
        _tune_and_report(index, folder, queries, k, target_recall, sample, threads, confidence, heldout, latency, max_ram, timings=timings)
        console.print(f"tuned in {time.perf_counter() - t3:.1f} s")


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
    folder: Path = typer.Argument(..., help="Local index folder to copy."),
    milvus: str = typer.Option("mrl.db", "--milvus", help=MILVUS_HELP),
    collection: str = typer.Option(..., "--collection", help="Milvus collection to create (or resume)."),
    prefix_dims: Optional[str] = typer.Option(None, "--prefix-dims", help="Prefix fields to create, e.g. '32,128' (default: the funnel's stage dims)."),
    batch_size: int = typer.Option(5000, "--batch-size", help="Rows per upsert (and per recorded progress step)."),
    index_type: str = typer.Option("FLAT", "--index-type", help="Milvus index on the vector fields: FLAT, IVF_FLAT or HNSW."),
    calibrate: bool = flag(True, "--calibrate/--no-calibrate", help="Time server vs client rerank and record the faster."),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", help="First tune the local funnel (float first stages, which Milvus can run) to this recall@k."),
    k: int = typer.Option(10, help="k for tuning."),
    sample: int = typer.Option(1000, help="Tuning queries used."),
) -> None:
    """Copy a local index (vectors, ids, metadata, tuned funnel) into Milvus; resumable after a kill."""
    import time

    from mrl.index.backends.push import push

    dims = [int(t) for t in prefix_dims.split(",") if t.strip()] if prefix_dims else None
    if target_recall is not None:
        from mrl.index import MatryoshkaIndex
        from mrl.index.store import writer_lock

        with writer_lock(folder):
            index = MatryoshkaIndex.load(folder)
            space = {"first": [(d, "float32", "flat") for d in (8, 16, 32, 64, 128) if d <= index.dim // 2]}
            _tune_and_report(index, folder, None, k, target_recall, sample, 2, space=space)
    t0 = time.perf_counter()
    mi = push(folder, milvus, collection, prefix_dims=dims, batch_size=batch_size, index_type=index_type, calibrate=calibrate, log=console.print)
    n = mi.count
    console.print(f"{collection} at {milvus}: {n} vectors, prefix fields {mi.prefix_dims}, funnel {mi.funnel} ({time.perf_counter() - t0:.1f}s)")


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
    filter: Optional[str] = typer.Option(None, "--filter", help="Metadata filter, e.g. 'lang == \"en\" and year in [2020, 2021]'."),
    early_exit: bool = flag(False, "--early-exit", help="Stop reranking queries whose top-k is stable between two stages (local)."),
    threads: int = typer.Option(2, help="Threads (FAISS and rerank)."),
    milvus: Optional[str] = typer.Option(None, "--milvus", help=MILVUS_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help="Milvus collection."),
    rerank: str = typer.Option("auto", "--rerank", help="Milvus: where later stages run: auto (the measured faster), server or client."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write ids to OUT (.npy), scores to OUT.scores.npy and a JSON sidecar OUT.json."),
    single: int = typer.Option(0, "--single", help="Local: also send the first N queries one at a time and print the latency p50/p99."),
    overwrite: bool = flag(False, "--overwrite", help="Replace a previous search output (never other files, never an input)."),
) -> None:
    """Search an index with a funnel (local or Milvus); prints throughput and, locally, each stage's work."""
    import contextlib

    if out is not None and out.suffix != ".npy":
        raise MRLError(f"--out must end in .npy, got {out}.")
    if single < 0:
        raise MRLError(f"--single must be 0 (off) or the number of queries to time one at a time, got {single}.")
    from mrl.io import open_files

    scores_path = out.with_suffix(".scores.npy") if out is not None else None
    index_files = list(folder.iterdir()) if folder is not None and folder.is_dir() else []
    guard = open_files(out, "mrl.search", [scores_path.name], overwrite=overwrite, inputs=[queries, *index_files]) if out is not None and scores_path is not None else contextlib.nullcontext()
    with guard as writer:
        _search(folder, queries, k, funnel, recall_target, filter, early_exit, threads, milvus, collection, rerank, out, scores_path, writer, single)


def _search(folder: Optional[Path], queries: Path, k: int, funnel: Optional[str], recall_target: Optional[float], filter: Optional[str], early_exit: bool, threads: int,
            milvus: Optional[str], collection: Optional[str], rerank: str, out: Optional[Path], scores_path: Optional[Path], writer: Any, single: int = 0) -> None:
    import time

    import faiss

    from mrl.io import save_npy

    faiss.omp_set_num_threads(threads)
    index = open_backend(folder, milvus, collection)
    q = load_queries(queries)
    if milvus is None:
        scores, ids, stats = index.search(q, k, funnel=funnel, recall_target=recall_target, filter=filter, early_exit=early_exit, threads=threads, return_stats=True)
        seconds = stats.seconds
        extra = f"; early exit saved {100 * stats.saved_fraction:.2f}% of all multiply-adds ({100 * stats.rerank_saved_fraction:.1f}% of the rerank stages)" if early_exit else ""
    else:
        t0 = time.perf_counter()
        scores, ids = index.search(q, k, funnel=funnel, recall_target=recall_target, filter=filter, rerank=rerank)
        seconds, extra = time.perf_counter() - t0, f" (Milvus, rerank {index.last_placement})"
    used = funnel or (str(index.funnel_for(recall_target)) if recall_target is not None else str(index.funnel) if index.funnel else f"{index.dim}:{k}")
    console.print(f"{q.shape[0]} queries with funnel {used}{' and filter ' + filter if filter else ''}: {q.shape[0] / seconds:,.0f} QPS{extra}")
    if milvus is None:
        for st in stats.stages:
            console.print(f"  {st['stage']}: {st['distances']:,.0f} vectors scored, {st['bytes'] / 1e3:,.1f} kB read, {1e6 * st['seconds'] / q.shape[0]:.1f} us per query")
        if single:
            from mrl.index.tune import single_query_latency

            p50, p99 = single_query_latency(index, q[:single], used if funnel or index.funnel or recall_target is not None else f"{index.dim}:{k}", threads=threads)
            console.print(f"  one query at a time ({min(single, q.shape[0])} queries): p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    if out is not None and scores_path is not None:
        with writer.file(out.name) as p:
            save_npy(p, ids)
        with writer.file(scores_path.name) as p:
            save_npy(p, scores)
        writer.meta.update({"index": str(folder) if folder else f"{milvus}#{collection}", "queries": str(queries), "count": int(ids.shape[0]), "k": int(ids.shape[1]),
                            "funnel": str(used), "filter": filter, "ids": out.name, "scores": scores_path.name, "early_exit": early_exit})
        console.print(f"wrote {out} (ids), {scores_path} (scores) and {out.with_suffix('.json')}")


@app.command("info")
@friendly
def index_info(
    folder: Optional[Path] = typer.Argument(None, help="Index folder (omit with --milvus)."),
    verify: bool = flag(True, help="Check SHA-256 checksums."),
    milvus: Optional[str] = typer.Option(None, "--milvus", help=MILVUS_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help="Milvus collection."),
) -> None:
    """Print the summary (count, deleted, fields, dim, dtype, funnel, tuning, resident bytes per vector)."""
    import json

    from mrl.index import MatryoshkaIndex

    info = open_backend(None, milvus, collection).info() if milvus is not None else MatryoshkaIndex.load(_need_folder(folder), verify=verify).info()
    typer.echo(json.dumps(info, indent=2))


@app.command("attach-texts")
@friendly
def index_attach_texts(
    folder: Path = typer.Argument(..., help="Index folder."),
    texts: str = typer.Option(..., "--texts", help="A .txt (one passage per line, ids 0..N-1), a .jsonl ({id, text} per line) or 'wordnet'."),
) -> None:
    """Store the passage of each id beside the index (for `mrl serve` search with return_text)."""
    import numpy as np

    from mrl.index import MatryoshkaIndex
    from mrl.index.texts import read_texts, write_text_store

    index = MatryoshkaIndex.load(folder, verify=False)
    ids, passages = read_texts(texts)
    missing = np.setdiff1d(index.ids, ids).size
    if missing:
        raise MRLError(f"{missing} of the index's {index.count} ids have no passage in {texts}; give the texts of the vectors the index was built from.")
    write_text_store(folder, ids, passages)
    console.print(f"attached {len(passages)} passages to {folder}")


@tune_app.command("tune")
@friendly
def tune_cmd(
    folder: Path = typer.Argument(..., help="Index folder (tuned in place: manifest + chosen first stage)."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Held-out tuning queries .npy (default: sampled stored vectors)."),
    k: int = typer.Option(10),
    target_recall: float = typer.Option(0.99, "--target-recall", help="Required recall@k vs exact full-D, in (0, 1]."),
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

    check_tune_options(target_recall, latency, max_ram)
    with writer_lock(folder):
        index = MatryoshkaIndex.load(folder)
        _tune_and_report(index, folder, queries, k, target_recall, sample, threads, confidence, heldout, latency, max_ram)
