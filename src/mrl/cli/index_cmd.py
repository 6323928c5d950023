"""``mrl index build|search|info`` and ``mrl tune``: the Matryoshka retrieval index and its funnel tuner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from mrl.cli.console import console, friendly, load_matrix
from mrl.errors import MRLError

app = typer.Typer(no_args_is_help=True, help="Persistent Matryoshka retrieval index with funnel search.")
tune_app = typer.Typer()


def _tune_and_report(index: Any, folder: Path, queries: Optional[Path], k: int, target_recall: float, sample: int, threads: int, confidence: Optional[float] = None) -> None:
    import faiss

    from mrl.index.tune import apply, check_target, tune
    from mrl.io import atomic_write

    check_target(target_recall)
    faiss.omp_set_num_threads(threads)
    q = load_queries(queries) if queries else None
    result = tune(index, queries=q, k=k, target_recall=target_recall, sample=sample, threads=threads, confidence_level=confidence, log=console.print)
    apply(index, result)
    index.save(folder)
    atomic_write(folder / "tuning.md", (f"# Funnel auto-tuning\n\nTarget recall@{k} >= {target_recall}; chosen `{result.funnel}` "
                                        f"(recall {result.recall:.4f}, {result.qps:,.0f} QPS, {result.exact_flops / result.flops:.1f}x fewer multiply-adds than exact).\n\n"
                                        + result.table() + "\n").encode())
    result.plot(folder / "tuning.png")
    console.print(f"chosen funnel {result.funnel}: recall@{k} {result.recall:.4f} on {result.sample} {result.query_source} queries, "
                  f"{result.qps:,.0f} QPS, {result.exact_flops / result.flops:.1f}x fewer MACs than exact; frontier: {folder / 'tuning.md'}, {folder / 'tuning.png'}")


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
    metric: str = typer.Option("cosine", help="cosine or l2."),
    dtype: str = typer.Option("float32", help="Storage of the full vectors: float32 or float16."),
    first_stage: list[str] = typer.Option([], "--first-stage", help="Prefix structure(s) to build, e.g. '32' or '32/hnsw' or '64/binary'."),
    funnel: Optional[str] = typer.Option(None, help="Default funnel, e.g. '32:1000 -> 128:100 -> 512:10'."),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", help="Auto-tune the funnel to this recall@k (in (0, 1])."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Held-out tuning queries .npy (default: sampled stored vectors)."),
    k: int = typer.Option(10, help="k for tuning."),
    sample: int = typer.Option(1000, help="Tuning queries used."),
    threads: int = typer.Option(2, help="Threads (FAISS and rerank)."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Tuning: require the recall's one-sided lower confidence bound (e.g. 0.95) to meet the target."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Build a Matryoshka index from an embeddings file (optionally auto-tuned)."""
    from mrl.index.tune import check_target
    from mrl.index import Funnel, MatryoshkaIndex
    from mrl.io import guard_output, load_npy

    guard_output(folder, overwrite)
    if target_recall is not None:
        check_target(target_recall)  # fail before the (long) build
    blocks, n, d = vector_blocks(vectors)
    id_arr = load_npy(ids) if ids else None
    if id_arr is not None and id_arr.shape != (n,):
        raise MRLError(f"--ids holds {id_arr.shape}, expected ({n},): one id per vector.")
    index = MatryoshkaIndex(d, metric=metric, dtype=dtype)
    start = 0
    for block in blocks:  # streamed: shards (or 128k-row slices) of memory-mapped vectors
        index.add(block, None if id_arr is None else id_arr[start : start + block.shape[0]])
        start += block.shape[0]
    for spec in first_stage:
        index.build_first_stage(spec if ":" in spec else f"{spec}:1")
    if funnel:
        index.funnel = Funnel.parse(funnel)
        index.funnel.validate_for(index.dim, index.count)
        index.build_first_stage(index.funnel.first)
    index.save(folder)
    console.print(f"wrote {folder}: {index.count} x {index.dim} {dtype} vectors, first stages {[fs.key for fs in index.first_stages()]}")
    if target_recall is not None:
        _tune_and_report(index, folder, queries, k, target_recall, sample, threads, confidence)


@app.command("search")
@friendly
def index_search(
    folder: Path = typer.Argument(..., help="Index folder."),
    queries: Path = typer.Option(..., "--queries", help="Queries .npy [B, D]."),
    k: int = typer.Option(10, help="Results per query."),
    funnel: Optional[str] = typer.Option(None, help="Funnel spec (default: the index's tuned funnel, else exact)."),
    early_exit: bool = typer.Option(False, "--early-exit", help="Stop reranking queries whose top-k is stable between two stages."),
    threads: int = typer.Option(2, help="Threads (FAISS and rerank)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write ids to OUT (.npy) and scores to OUT.scores.npy."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Search an index with a funnel; prints throughput and the work saved by early exit."""
    import faiss

    from mrl.index import MatryoshkaIndex
    from mrl.io import guard_output, save_npy

    if out is not None:
        if out.suffix != ".npy":
            raise MRLError(f"--out must end in .npy, got {out}.")
        guard_output(out, overwrite)
    faiss.omp_set_num_threads(threads)
    index = MatryoshkaIndex.load(folder)
    q = load_queries(queries)
    scores, ids, stats = index.search(q, k, funnel=funnel, early_exit=early_exit, threads=threads, return_stats=True)
    used = funnel or (str(index.funnel) if index.funnel else f"{index.dim}:{k}")
    console.print(f"{q.shape[0]} queries with funnel {used}: {q.shape[0] / stats.seconds:,.0f} QPS; early exit saved {100 * stats.saved_fraction:.2f}% of all multiply-adds ({100 * stats.rerank_saved_fraction:.1f}% of the rerank stages)")
    if out is not None:
        save_npy(out, ids)
        save_npy(out.with_suffix(".scores.npy"), scores)
        console.print(f"wrote {out}")


@app.command("info")
@friendly
def index_info(folder: Path = typer.Argument(..., help="Index folder."), verify: bool = typer.Option(True, help="Check SHA-256 checksums.")) -> None:
    """Print the manifest summary (count, dim, dtype, funnel, tuning, resident bytes per vector)."""
    import json

    from mrl.index import MatryoshkaIndex

    info = MatryoshkaIndex.load(folder, verify=verify).info()
    typer.echo(json.dumps(info, indent=2))


@tune_app.command("tune")
@friendly
def tune_cmd(
    folder: Path = typer.Argument(..., help="Index folder (tuned in place: manifest + chosen first stage)."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Held-out tuning queries .npy (default: sampled stored vectors)."),
    k: int = typer.Option(10),
    target_recall: float = typer.Option(0.99, "--target-recall", help="Required recall@k vs exact full-D, in (0, 1]."),
    sample: int = typer.Option(1000, help="Tuning queries used."),
    threads: int = typer.Option(2, help="Threads (FAISS and rerank), as when serving."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Require the recall's one-sided lower confidence bound (e.g. 0.95) to meet the target."),
) -> None:
    """Pick the fastest funnel meeting the recall target; store it in the index; write the frontier."""
    from mrl.index.tune import check_target
    from mrl.index import MatryoshkaIndex

    check_target(target_recall)
    index = MatryoshkaIndex.load(folder)
    _tune_and_report(index, folder, queries, k, target_recall, sample, threads, confidence)
