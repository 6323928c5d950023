"""Options of ``mrl index build|search|push`` and ``mrl tune``: one dataclass per command, built once
from the Typer arguments and validated there, before anything is read at length or written.

Each options object checks its values when it is made (``__post_init__``) and what depends on the
input (dims, counts, query files) in ``check_for(dim, count)``, so a command fails before its first
write and a rejected command leaves the disk exactly as it was. The input loaders (``--ids``,
``--meta``, ``--vectors``, ``--queries``) live here too: they are part of the same boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mrl.cli.console import load_matrix
from mrl.errors import MRLError

INT64_MAX = int(np.iinfo(np.int64).max)
ATTACHED = ("build.json", "tuning.md", "tuning.png")  # files a build or a tuning stores beside the index


def check_threads(threads: int, name: str = "--threads") -> int:
    """A positive thread count, else an :class:`MRLError`."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise MRLError(f"{name} must be a positive number of threads (e.g. 2), got {threads!r}.")
    return threads


def pick_alias(value: Any, alias: Any, name: str, alias_name: str) -> Any:
    """The value of an option given under its name or its hidden old name (not both)."""
    if alias is not None and value is not None and alias != value:
        raise MRLError(f"give {name} once ({alias_name} is its old name).")
    return value if value is not None else alias


def load_ids(spec: Optional[str], n: Optional[int] = None) -> Optional[np.ndarray]:
    """``--ids``: a .npy of integers or a comma-separated list (``3,17,42``). Shape: ``[n]`` int64."""
    from mrl.io import load_npy

    if spec is None:
        return None
    if spec.endswith(".npy"):
        arr = load_npy(Path(spec))
    else:
        try:
            values = [int(t) for t in spec.split(",") if t.strip()]
        except ValueError as exc:
            raise MRLError(f"--ids must be a .npy file or comma-separated integers like 3,17,42, got {spec[:80]!r}.") from exc
        bad = [v for v in values if not -INT64_MAX - 1 <= v <= INT64_MAX]
        if bad:
            raise MRLError(f"--ids {str(bad[0])[:40]} does not fit in a 64-bit integer; ids must lie in [-2^63, 2^63 - 1].")
        arr = np.array(values, dtype=np.int64)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise MRLError(f"--ids holds {arr.shape}, expected ({n if n is not None else 'M'},): one id per vector.")
    return arr


def load_metadata(path: Optional[Path], n: int) -> Optional[list[dict[str, Any]]]:
    """``--meta``: JSON Lines, one object of scalar fields per vector (``{"lang": "en", "year": 2020}``)."""
    from mrl.data.jsonl import json_object_lines

    if path is None:
        return None
    if path.is_dir():
        raise MRLError(f"--meta {path} is a folder; give a JSON Lines file with one object per vector.")
    if not path.is_file():
        raise MRLError(f"--meta {path} does not exist; give a JSON Lines file with one object per vector.")
    records = [rec for _, rec in json_object_lines(path.read_text(encoding="utf-8"), f"--meta {path}", 'write one object like {"lang": "en"} per line')]
    if len(records) != n:
        raise MRLError(f"--meta {path} holds {len(records)} records for {n} vectors; give one per vector, in order.")
    return records


def vector_blocks(path: Path) -> tuple[Any, int, int]:
    """Memory-mapped row blocks of a .npy or of a shard folder from `mrl encode`, plus ``(rows, dim)``."""
    from mrl.encode import is_shard_folder, open_shards

    if is_shard_folder(path):
        reader = open_shards(path)
        return reader.chunks(), reader.rows, reader.dim
    x = load_matrix(path, "--vectors")
    if x.shape[0] == 0:
        raise MRLError(f"--vectors {path} holds 0 rows; give at least one embedding.")
    step = 1 << 17
    return (x[s : s + step] for s in range(0, x.shape[0], step)), int(x.shape[0]), int(x.shape[1])


def load_queries(path: Path, dim: Optional[int] = None, name: str = "--queries") -> np.ndarray:
    """Query vectors from a .npy or a shard folder, as one contiguous float32 array. Shape: ``[B, D]``, ``B >= 1``."""
    from mrl.encode import is_shard_folder, open_shards

    x = open_shards(path).array() if is_shard_folder(path) else load_matrix(path, name)
    if x.shape[0] == 0:
        raise MRLError(f"{name} {path} holds 0 rows; give at least one query vector.")
    if dim is not None and x.shape[1] != dim:
        raise MRLError(f"{name} {path} holds dim {x.shape[1]} vectors but the index stores dim {dim}; encode the queries with the index's model.")
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass(frozen=True)
class TuneOptions:
    """``--recall-target`` and the tuner's options (``mrl tune``, ``index build``, ``index push``)."""

    recall_target: float
    k: int = 10
    sample: int = 1000
    threads: int = 2
    confidence: float = 0.95
    queries: Optional[Path] = None
    heldout: Optional[Path] = None
    latency: str = "batch"
    max_ram: Optional[float] = None
    space: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        from mrl.index.frontier import check_target
        from mrl.index.tune import LATENCY_MODES

        check_target(self.recall_target)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise MRLError(f"--k must be a positive number of results to tune for (e.g. 10), got {self.k!r}.")
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 1:
            raise MRLError(f"--sample must be a positive number of tuning queries (e.g. 1000), got {self.sample!r}.")
        check_threads(self.threads)
        if self.confidence != 0 and not 0.5 <= self.confidence < 1.0:
            raise MRLError(f"--confidence must be in [0.5, 1) (e.g. 0.95), or 0 to use the mean recall; got {self.confidence}.")
        if self.latency not in LATENCY_MODES:
            raise MRLError(f"--latency must be one of {', '.join(LATENCY_MODES)}, got {self.latency!r}.")
        if self.max_ram is not None and not (np.isfinite(self.max_ram) and self.max_ram > 0):
            raise MRLError(f"--max-ram-per-vector must be a positive number of bytes, got {self.max_ram}.")

    @property
    def inputs(self) -> list[Path]:
        return [p for p in (self.queries, self.heldout) if p is not None]

    def check_for(self, dim: int, count: int) -> None:
        """What depends on the index: ``k`` within its count, query files readable at its width."""
        if self.k > count:
            raise MRLError(f"--k {self.k} exceeds the {count} vectors of the index; tune for k <= {count}.")
        for path, name in ((self.queries, "--queries"), (self.heldout, "--heldout-queries")):
            if path is not None:
                load_queries(path, dim, name)

    def run(self, index: Any, log: Any) -> Any:
        """Tune ``index`` in memory and apply the chosen funnel (nothing is saved). Returns the :class:`TuneResult`."""
        import faiss

        from mrl.index.tune import apply, tune

        faiss.omp_set_num_threads(self.threads)
        q = load_queries(self.queries, index.dim) if self.queries else None
        ho = load_queries(self.heldout, index.dim, "--heldout-queries") if self.heldout else None
        result = tune(index, queries=q, heldout=ho, k=self.k, target_recall=self.recall_target, sample=self.sample, threads=self.threads,
                      confidence_level=self.confidence or None, latency=self.latency, max_ram_per_vector=self.max_ram, space=self.space, log=log)
        apply(index, result)
        return result


@dataclass(frozen=True)
class BuildOptions:
    """``mrl index build``: validated when made; :meth:`check_for` once the input's shape is known."""

    folder: Path
    vectors: Path
    ids: Optional[Path] = None
    meta: Optional[Path] = None
    metric: str = "cosine"
    dtype: str = "float32"
    first_stages: tuple[str, ...] = ()
    funnel: Optional[str] = None
    threads: int = 2
    overwrite: bool = False
    tune: Optional[TuneOptions] = None
    stages: tuple[Any, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        from mrl.index import Funnel, MatryoshkaIndex

        MatryoshkaIndex(1, metric=self.metric, dtype=self.dtype)  # validates metric and dtype
        check_threads(self.threads)
        if self.folder.exists() and not self.folder.is_dir():
            raise MRLError(f"{self.folder} is a file; an index is written into a folder.")
        stages = tuple(Funnel.parse(fs if ":" in fs else f"{fs}:1").first for fs in self.first_stages)
        object.__setattr__(self, "stages", stages)
        if self.funnel is not None:
            Funnel.parse(self.funnel)

    @property
    def inputs(self) -> list[Optional[Path]]:
        return [self.vectors, self.ids, self.meta, *(self.tune.inputs if self.tune else [])]

    def check_for(self, dim: int, count: int) -> None:
        """Everything that depends on the vectors: stage dims, the funnel, the tuning inputs."""
        from mrl.errors import ForeignFileError
        from mrl.index import Funnel
        from mrl.index.funnel import FunnelError
        from mrl.index.store import owned_files, read_owned

        for s in self.stages:
            if s.dim > dim:
                raise FunnelError(f"--first-stage {s.dim} exceeds the {dim}-dim vectors of {self.vectors}; use dims <= {dim}.")
            if s.kind == "ivf" and s.nlist > count:
                raise FunnelError(f"--first-stage {s} asks for {s.nlist} IVF lists but {self.vectors} holds only {count} vectors; use fewer lists.")
        if self.funnel is not None:
            Funnel.parse(self.funnel).validate_for(dim, count)
        if self.tune is not None:
            self.tune.check_for(dim, count)
        if self.folder.is_dir():
            mine = owned_files(self.folder, read_owned(self.folder))
            for name in ATTACHED:
                if (self.folder / name).exists() and name not in mine:
                    raise ForeignFileError(f"{self.folder / name} exists and was not written by an index; move it away first (the build would store its own {name} there, and never replaces a user's file).")


@dataclass(frozen=True)
class SearchOptions:
    """``mrl index search``."""

    folder: Optional[Path]
    queries: Path
    k: int = 10
    funnel: Optional[str] = None
    recall_target: Optional[float] = None
    filter: Optional[str] = None
    early_exit: bool = False
    threads: int = 2
    milvus: Optional[str] = None
    collection: Optional[str] = None
    rerank: str = "auto"
    out: Optional[Path] = None
    single: int = 0
    show: int = 3
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.out is not None and self.out.suffix != ".npy":
            raise MRLError(f"--out must end in .npy, got {self.out}.")
        if self.single < 0:
            raise MRLError(f"--single must be 0 (off) or the number of queries to time one at a time, got {self.single}.")
        if self.show < 0:
            raise MRLError(f"--show must be 0 (off) or the number of queries whose hits to print, got {self.show}.")
        if isinstance(self.k, bool) or self.k < 1:
            raise MRLError(f"--k must be a positive number of results per query, got {self.k}.")
        if self.funnel is not None and self.recall_target is not None:
            raise MRLError("give either --funnel or --recall-target, not both.")
        if self.recall_target is not None:
            from mrl.index.frontier import check_target

            check_target(self.recall_target)
        check_threads(self.threads)

    @property
    def scores_path(self) -> Optional[Path]:
        return self.out.with_suffix(".scores.npy") if self.out is not None else None


@dataclass(frozen=True)
class PushOptions:
    """``mrl index push``: the source folder is read, never written."""

    folder: Path
    milvus: str
    collection: str
    prefix_dims: Optional[list[int]] = None
    batch_size: int = 5000
    index_type: str = "FLAT"
    calibrate: bool = True
    tune: Optional[TuneOptions] = None

    @staticmethod
    def parse_dims(text: Optional[str]) -> Optional[list[int]]:
        if not text:
            return None
        try:
            dims = [int(t) for t in text.split(",") if t.strip()]
        except ValueError as exc:
            raise MRLError(f"--prefix-dims must be comma-separated integers like 32,128, got {text[:80]!r}.") from exc
        if not dims or any(not 1 <= d <= 1 << 20 for d in dims):
            raise MRLError(f"--prefix-dims must be positive dims like 32,128, got {text[:80]!r}.")
        return dims

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise MRLError(f"--batch-size must be a positive number of rows, got {self.batch_size}.")
