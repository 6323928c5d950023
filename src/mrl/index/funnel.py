"""Funnel retrieval: shortlist with a small prefix over the whole corpus, rerank with larger prefixes.

A funnel is a short spec in the spirit of FAISS's ``index_factory`` strings::

    "32:1000 -> 128:100 -> 512:10"

Stage 1 ``32:1000`` keeps the 1000 best candidates of the whole corpus scored on the first 32 dims;
stage 2 rescores those 1000 on the first 128 dims and keeps 100; stage 3 keeps the final 10 at 512
dims. The last stage's ``k`` is the number of results. Exact search is the one-stage funnel ``D:k``.

Stage 1 may name how the corpus is scored: ``32/int8:1000`` (8-bit scalar-quantized prefix),
``64/binary:2000`` (sign bits of the mean-centred prefix, Hamming distance), ``32/hnsw:1000`` (an
HNSW graph on the prefix; ``32/hnsw/ef400:100`` searches it with breadth 400); the default is exact
float32 (``/flat``). Options combine:
``32/int8/hnsw:1000`` is not supported (HNSW stores float vectors), ``64/binary/flat`` is.

Later stages always rerank exactly: for each query batch the survivors' rows are gathered from the
full-``D`` store (prefix columns only) and scored with one batched matmul (``einsum``); no shared
array is modified. With ``metric="cosine"`` every stage re-normalises the query and candidate
prefixes (truncate, then L2-normalise, safely for any finite magnitude); ``"ip"`` scores raw
prefixes by inner product and ``"l2"`` by negative squared distance.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrl.embeddings import normalize_rows_
from mrl.errors import MRLError
from mrl.knn import RETRIEVAL_METRICS

PRECISIONS = ("float32", "int8", "binary")
KINDS = ("flat", "hnsw")
METRICS = RETRIEVAL_METRICS  # cosine (truncate, normalise, inner product), ip (raw inner product), l2
_STAGE = re.compile(r"^\s*(\d+)((?:/[a-z0-9]+)*)\s*:\s*(\d+)\s*$")


class FunnelError(MRLError):
    """A funnel spec is malformed or does not fit the index it is used with."""


@dataclass(frozen=True)
class Stage:
    """One funnel stage: score at prefix ``dim`` and keep the best ``k``.

    ``precision``/``kind`` only apply to stage 1 (later stages are exact float reranks).
    """

    dim: int
    k: int
    precision: str = "float32"
    kind: str = "flat"
    ef: int | None = None  # HNSW search breadth (default max(k, 16))

    def __str__(self) -> str:
        opts = "".join(f"/{o}" for o, default in ((self.precision, "float32"), (self.kind, "flat")) if o != default)
        if self.ef is not None:
            opts += f"/ef{self.ef}"
        return f"{self.dim}{opts}:{self.k}"


@dataclass(frozen=True)
class Funnel:
    """An ordered tuple of :class:`Stage`. Build with :meth:`parse` or :meth:`of`.

    Invariants (checked on construction): at least one stage; dims strictly increasing; ``k``
    non-increasing and positive; only stage 1 may use a non-float precision or HNSW; binary
    stage-1 dims are multiples of 8.
    """

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise FunnelError("a funnel needs at least one stage, e.g. '512:10' (exact) or '32:1000 -> 512:10'.")
        for s in self.stages:
            for name in ("dim", "k"):
                v = getattr(s, name)
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                    raise FunnelError(f"funnel stage {name} must be a positive integer, got {v!r} in {s}.")
            if s.precision not in PRECISIONS:
                raise FunnelError(f"unknown precision {s.precision!r} in stage {s}; choose one of {PRECISIONS}.")
            if s.kind not in KINDS:
                raise FunnelError(f"unknown first-stage kind {s.kind!r} in stage {s}; choose one of {KINDS}.")
        for a, b in zip(self.stages, self.stages[1:]):
            if b.dim <= a.dim:
                raise FunnelError(f"funnel dims must increase stage by stage, but {a} is followed by {b}; a rerank stage must use a larger prefix.")
            if b.k > a.k:
                raise FunnelError(f"funnel k must not grow: {a} keeps {a.k} candidates, so {b} cannot keep {b.k}; make later k smaller or equal.")
            if b.precision != "float32" or b.kind != "flat" or b.ef is not None:
                raise FunnelError(f"only the first stage may use {b.precision}/{b.kind}; later stages rerank exactly ({b}).")
        s0 = self.stages[0]
        if s0.precision == "binary" and s0.dim % 8:
            raise FunnelError(f"a binary first stage needs a dim that is a multiple of 8, got {s0.dim}.")
        if s0.ef is not None and (s0.kind != "hnsw" or isinstance(s0.ef, bool) or not isinstance(s0.ef, (int, np.integer)) or s0.ef < s0.k):
            raise FunnelError(f"/ef sets the HNSW search breadth: it needs /hnsw and an integer ef >= k (got {s0}).")
        if s0.kind == "hnsw" and s0.precision != "float32":
            raise FunnelError(f"an HNSW first stage stores float32 vectors; drop /{s0.precision} from {s0}.")

    @classmethod
    def parse(cls, spec: str | Funnel | Sequence[Any]) -> Funnel:
        """Parse ``"32:1000 -> 128:100 -> 512:10"`` (or pass through a Funnel / list of (dim, k) pairs)."""
        if isinstance(spec, Funnel):
            return spec
        if not isinstance(spec, str):
            return cls.of(spec)
        parts = [p for p in re.split(r"->|,", spec)]
        stages = []
        for part in parts:
            m = _STAGE.match(part)
            if not m:
                raise FunnelError(f"cannot parse funnel stage {part.strip()!r} in {spec!r}; write stages as DIM[/int8|/binary|/hnsw]:K joined by '->', e.g. '32:1000 -> 128:100 -> 512:10'.")
            dim, opts, k = int(m.group(1)), [o for o in m.group(2).split("/") if o], int(m.group(3))
            precision, kind, ef = "float32", "flat", None
            for o in opts:
                if re.fullmatch(r"ef\d+", o):
                    ef = int(o[2:])
                    continue
                if o in PRECISIONS:
                    precision = o
                elif o in KINDS:
                    kind = o
                else:
                    raise FunnelError(f"unknown stage option /{o} in {part.strip()!r}; options are /{'/'.join(PRECISIONS + KINDS)}.")
            stages.append(Stage(dim, k, precision, kind, ef))
        return cls(tuple(stages))

    @classmethod
    def of(cls, stages: Sequence[Any]) -> Funnel:
        """From ``[(dim, k), ...]`` or ``[Stage, ...]``."""
        out = []
        for s in stages:
            if isinstance(s, Stage):
                out.append(s)
            else:
                try:
                    out.append(Stage(*s))
                except TypeError as exc:
                    raise FunnelError(f"funnel stages must be (dim, k) pairs or Stage objects, got {s!r}.") from exc
        return cls(tuple(out))

    @classmethod
    def exact(cls, dim: int, k: int) -> Funnel:
        return cls((Stage(dim, k),))

    def __str__(self) -> str:
        return " -> ".join(str(s) for s in self.stages)

    @property
    def k(self) -> int:
        return self.stages[-1].k

    @property
    def first(self) -> Stage:
        return self.stages[0]

    def validate_for(self, dim: int, count: int) -> None:
        """Check the funnel fits an index of ``count`` vectors of width ``dim``."""
        if self.stages[-1].dim > dim:
            raise FunnelError(f"funnel {self} reaches dim {self.stages[-1].dim} but the index stores {dim}-dim vectors; use dims <= {dim}.")
        if self.first.k > count:
            raise FunnelError(f"funnel {self} keeps k={self.first.k} in stage 1 but the index holds only {count} vectors; use k <= {count}.")

    def flops(self, corpus_size: int, first_distances: float | None = None) -> float:
        """Multiply-adds per query over ``corpus_size`` vectors: ``N * d_1`` for a flat stage 1
        (``N * d_1 / 64`` for binary codes: one 64-bit XOR+popcount per 64 dims; for HNSW pass the
        measured distance computations per query as ``first_distances``, else ``N`` is assumed) plus
        ``k_{i-1} * d_i`` per rerank stage. Exact search at ``D`` costs ``N * D``."""
        s0 = self.first
        n1 = corpus_size if first_distances is None else first_distances
        first = n1 * (s0.dim / 64.0 if s0.precision == "binary" else s0.dim)
        return float(first + sum(a.k * b.dim for a, b in zip(self.stages, self.stages[1:])))


def prefix(x: np.ndarray, dim: int, metric: str) -> np.ndarray:
    """First ``dim`` columns as a new float32 array, L2-normalised for ``metric="cosine"``.

    Shape: ``[..., D] -> [..., dim]``.
    """
    out = np.array(x[..., :dim], dtype=np.float32, copy=True)
    if metric == "cosine":
        normalize_rows_(out)
    return out


def rerank(queries: np.ndarray, candidates: np.ndarray, gather: Callable[[np.ndarray, int], np.ndarray], dim: int, k: int, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Rescore each query's candidates on prefix ``dim`` and keep the best ``k``.

    Args:
        queries: ``[B, D]`` full query vectors (raw; normalised here for cosine).
        candidates: ``[B, K]`` int64 row numbers into the store (``-1`` = no candidate).
        gather: ``gather(rows [M], dim) -> [M, dim]`` reads rows' first ``dim`` columns (a copy).
        dim, k: the prefix to score on and how many to keep (``k <= K``).

    Returns:
        (scores ``[B, k]`` float32, higher is better; rows ``[B, k]`` int64), best first. For
        ``metric="l2"`` the score is the negative squared distance, for ``"ip"`` the inner product.
    """
    B, K = candidates.shape
    k = min(k, K)
    valid = candidates >= 0
    rows = gather(np.where(valid, candidates, 0).ravel(), dim).reshape(B, K, dim)
    q = prefix(queries, dim, metric)
    if metric == "cosine":
        normalize_rows_(rows)
    if metric in ("cosine", "ip"):
        scores = np.einsum("bd,bkd->bk", q, rows)
    else:
        scores = 2.0 * np.einsum("bd,bkd->bk", q, rows) - np.einsum("bkd,bkd->bk", rows, rows) - np.einsum("bd,bd->b", q, q)[:, None]
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    if k < K:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(K), (B, K))
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    out_rows = np.take_along_axis(candidates, best, axis=1)
    out_scores = np.take_along_axis(scores, best, axis=1)
    out_rows = np.where(np.isfinite(out_scores), out_rows, -1)
    return out_scores, out_rows
