"""Funnel retrieval: shortlist with a small prefix over the whole corpus, rerank with larger prefixes.

A funnel is a short spec in the spirit of FAISS's ``index_factory`` strings::

    "32:1000 -> 128:100 -> 512:10"

Stage 1 ``32:1000`` keeps the 1000 best candidates of the whole corpus scored on the first 32 dims;
stage 2 rescores those 1000 on the first 128 dims and keeps 100; stage 3 keeps the final 10 at 512
dims. The last stage's ``k`` is the number of results. Exact search is the one-stage funnel ``D:k``.

Stage 1 may name how the corpus is scored (options joined by ``/``):

* storage: ``/int8`` (8-bit scalar quantizer), ``/fp16``, ``/binary`` (sign bits of the
  mean-centred prefix, Hamming distance; flat only); default float32;
* structure: ``/flat`` (default: every vector scored), ``/hnsw`` (a FAISS HNSW graph on the prefix;
  ``/m16`` sets its degree M, default 32), ``/ivf4096`` (a FAISS inverted file with 4096 lists;
  ``/c32`` clusters on the first 32 dims only while the lists hold the full stage prefix, AdANNS's
  decoupling), ``/usearch`` (a usearch HNSW graph; ``/m16`` as for HNSW);
* search breadth: ``/ef400`` for graphs (default ``max(k, 16)``), ``/np32`` lists probed for IVF
  (default 16).

Examples: ``128/int8/hnsw/m16/ef200:100 -> 384:10``, ``128/int8/ivf4096/c32/np24:200 -> 384:10``,
``64/fp16/usearch/ef160:100 -> 384:10``.

Later stages always rerank exactly: for each query batch the survivors' rows are gathered from the
full-``D`` store (prefix columns only) and scored with one batched matmul; no shared array is
modified. With ``metric="cosine"`` every stage re-normalises the query and candidate prefixes
(truncate, then L2-normalise, safely for any finite magnitude); ``"ip"`` scores raw prefixes by
inner product and ``"l2"`` by negative squared distance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrl.embeddings import normalize_rows_
from mrl.errors import MRLError
from mrl.knn import RETRIEVAL_METRICS

PRECISIONS = ("float32", "float16", "int8", "binary")
KINDS = ("flat", "hnsw", "ivf", "usearch")
METRICS = RETRIEVAL_METRICS  # cosine (truncate, normalise, inner product), ip (raw inner product), l2
GRAPH_KINDS = ("hnsw", "usearch")
HNSW_M = 32
IVF_NPROBE = 16
_ALIASES = {"fp16": "float16", "f16": "float16", "fp32": "float32", "f32": "float32", "i8": "int8"}
_NUMBERED = re.compile(r"^(ef|m|ivf|c|np)(\d+)$")
_STAGE = re.compile(r"^\s*(\d+)((?:/[a-z0-9]+)*)\s*:\s*(\d+)\s*$")


class FunnelError(MRLError):
    """A funnel spec is malformed or does not fit the index it is used with."""


def _positive(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 1


@dataclass(frozen=True)
class Stage:
    """One funnel stage: score at prefix ``dim`` and keep the best ``k``.

    The other fields only apply to stage 1 (later stages are exact float reranks):
    ``precision``/``kind`` say how the corpus prefix is stored and searched; ``m`` is the graph
    degree (HNSW/usearch), ``nlist``/``coarse`` the IVF lists and the prefix the coarse quantizer
    clusters on (default: ``dim``); ``ef`` (graphs) and ``nprobe`` (IVF) are search breadths.
    """

    dim: int
    k: int
    precision: str = "float32"
    kind: str = "flat"
    ef: int | None = None
    m: int | None = None
    nlist: int | None = None
    coarse: int | None = None
    nprobe: int | None = None

    def __str__(self) -> str:
        opts = ""
        if self.precision != "float32":
            opts += "/" + ("fp16" if self.precision == "float16" else self.precision)
        if self.kind in GRAPH_KINDS:
            opts += f"/{self.kind}" + (f"/m{self.m}" if self.m is not None else "")
        elif self.kind == "ivf":
            opts += f"/ivf{self.nlist}" + (f"/c{self.coarse}" if self.coarse is not None else "")
        for name, v in (("ef", self.ef), ("np", self.nprobe)):
            if v is not None:
                opts += f"/{name}{v}"
        return f"{self.dim}{opts}:{self.k}"

    @property
    def structure(self) -> Stage:
        """This stage without its search-time knobs (``k``, ``ef``, ``nprobe``): what gets built."""
        return Stage(self.dim, 1, self.precision, self.kind, m=self.m, nlist=self.nlist, coarse=self.coarse)

    @property
    def key(self) -> str:
        """Name of the built structure, e.g. ``32-float32-flat``, ``128-int8-hnsw-m16``, ``128-int8-ivf4096-c32``."""
        key = f"{self.dim}-{self.precision}-{self.kind}"
        if self.kind in GRAPH_KINDS and self.m not in (None, HNSW_M):
            key += f"-m{self.m}"
        if self.kind == "ivf":
            key = f"{self.dim}-{self.precision}-ivf{self.nlist}" + (f"-c{self.coarse}" if self.coarse not in (None, self.dim) else "")
        return key

    @property
    def graph_m(self) -> int:
        return self.m if self.m is not None else HNSW_M

    @property
    def coarse_dim(self) -> int:
        return self.coarse if self.coarse is not None else self.dim

    def bytes_per_code(self) -> float:
        """Bytes one stored prefix takes in this stage's structure (links and ids not included)."""
        return {"float32": 4.0, "float16": 2.0, "int8": 1.0, "binary": 1.0 / 8}[self.precision] * self.dim

    def validate(self) -> None:
        for name in ("dim", "k"):
            if not _positive(getattr(self, name)):
                raise FunnelError(f"funnel stage {name} must be a positive integer, got {getattr(self, name)!r} in {self}.")
        for name in ("ef", "m", "nlist", "coarse", "nprobe"):
            v = getattr(self, name)
            if v is not None and not _positive(v):
                raise FunnelError(f"funnel stage option {name} must be a positive integer, got {v!r} in {self}.")
        if self.precision not in PRECISIONS:
            raise FunnelError(f"unknown precision {self.precision!r} in stage {self}; choose one of {PRECISIONS}.")
        if self.kind not in KINDS:
            raise FunnelError(f"unknown first-stage kind {self.kind!r} in stage {self}; choose one of {KINDS}.")
        if self.precision == "binary" and self.kind != "flat":
            raise FunnelError(f"binary codes are scanned flat (Hamming); drop /binary or /{self.kind} from {self}.")
        if self.precision == "binary" and self.dim % 8:
            raise FunnelError(f"a binary first stage needs a dim that is a multiple of 8, got {self.dim}.")
        if self.ef is not None and (self.kind not in GRAPH_KINDS or self.ef < self.k):
            raise FunnelError(f"/ef sets a graph's search breadth: it needs /hnsw or /usearch and ef >= k (got {self}).")
        if self.m is not None and self.kind not in GRAPH_KINDS:
            raise FunnelError(f"/m sets a graph's degree: it needs /hnsw or /usearch (got {self}).")
        if self.kind == "ivf":
            if self.nlist is None:
                raise FunnelError(f"an IVF first stage needs its list count, e.g. /ivf4096 (got {self}).")
            if self.coarse is not None and self.coarse > self.dim:
                raise FunnelError(f"/c{self.coarse} clusters on more dims than the stage scans ({self.dim}); use /c <= {self.dim}.")
            if self.nprobe is not None and self.nprobe > self.nlist:
                raise FunnelError(f"/np{self.nprobe} probes more lists than /ivf{self.nlist} has.")
        elif self.coarse is not None or self.nprobe is not None or self.nlist is not None:
            raise FunnelError(f"/c and /np are IVF options: they need /ivfN (got {self}).")


@dataclass(frozen=True)
class Funnel:
    """An ordered tuple of :class:`Stage`. Build with :meth:`parse` or :meth:`of`.

    Invariants (checked on construction): at least one stage; dims strictly increasing; ``k``
    non-increasing and positive; only stage 1 may use a non-float precision or structure; binary
    stage-1 dims are multiples of 8.
    """

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise FunnelError("a funnel needs at least one stage, e.g. '512:10' (exact) or '32:1000 -> 512:10'.")
        for s in self.stages:
            s.validate()
        for a, b in zip(self.stages, self.stages[1:]):
            if b.dim <= a.dim:
                raise FunnelError(f"funnel dims must increase stage by stage, but {a} is followed by {b}; a rerank stage must use a larger prefix.")
            if b.k > a.k:
                raise FunnelError(f"funnel k must not grow: {a} keeps {a.k} candidates, so {b} cannot keep {b.k}; make later k smaller or equal.")
            if b.structure != Stage(b.dim, 1) or b.ef is not None or b.nprobe is not None:
                raise FunnelError(f"only the first stage may use {b.precision}/{b.kind} or search options; later stages rerank exactly ({b}).")

    @classmethod
    def parse(cls, spec: str | Funnel | Sequence[Any]) -> Funnel:
        """Parse ``"32:1000 -> 128:100 -> 512:10"`` (or pass through a Funnel / list of (dim, k) pairs)."""
        if isinstance(spec, Funnel):
            return spec
        if not isinstance(spec, str):
            return cls.of(spec)
        long = re.search(r"\d{10,}", spec)
        if long:  # also keeps int() within Python's digit limit
            raise FunnelError(f"funnel {spec[:80]!r}{'...' if len(spec) > 80 else ''} holds a {len(long.group())}-digit number; dims, k and options have at most 9 digits.")
        stages = []
        for part in re.split(r"->|,", spec):
            m = _STAGE.match(part)
            if not m:
                raise FunnelError(f"cannot parse funnel stage {part.strip()!r} in {spec!r}; write stages as DIM[/options]:K joined by '->', e.g. '32:1000 -> 128:100 -> 512:10'.")
            fields: dict[str, Any] = {"precision": "float32", "kind": "flat"}
            for o in (o for o in m.group(2).split("/") if o):
                o = _ALIASES.get(o, o)
                num = _NUMBERED.match(o)
                if num:
                    name, v = num.group(1), int(num.group(2))
                    if name == "ivf":
                        fields.update(kind="ivf", nlist=v)
                    else:
                        fields[{"ef": "ef", "m": "m", "c": "coarse", "np": "nprobe"}[name]] = v
                elif o in PRECISIONS:
                    fields["precision"] = o
                elif o in KINDS:
                    fields["kind"] = o
                else:
                    raise FunnelError(f"unknown stage option /{o} in {part.strip()!r}; options are /int8 /fp16 /binary /flat /hnsw /usearch /ivfN /mN /efN /cN /npN.")
            stages.append(Stage(int(m.group(1)), int(m.group(3)), **fields))
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

    def with_k(self, k: int) -> Funnel:
        """The same funnel returning ``k`` results (the last stage's ``k`` replaced)."""
        last = self.stages[-1]
        return Funnel(self.stages[:-1] + (Stage(**{**last.__dict__, "k": k}),))

    def validate_for(self, dim: int, count: int) -> None:
        """Check the funnel fits an index of ``count`` vectors of width ``dim``."""
        if self.stages[-1].dim > dim:
            raise FunnelError(f"funnel {self} reaches dim {self.stages[-1].dim} but the index stores {dim}-dim vectors; use dims <= {dim}.")
        if self.first.k > count:
            raise FunnelError(f"funnel {self} keeps k={self.first.k} in stage 1 but the index holds only {count} vectors; use k <= {count}.")
        if self.first.kind == "ivf" and self.first.nlist > count:
            raise FunnelError(f"funnel {self} asks for {self.first.nlist} IVF lists but the index holds only {count} vectors; use /ivfN with N <= {count} (about 4 sqrt(N) is usual).")

    def rerank_flops(self) -> float:
        """Multiply-adds per query of the rerank stages: ``sum_i k_{i-1} * d_i``."""
        return float(sum(a.k * b.dim for a, b in zip(self.stages, self.stages[1:])))

    def flops(self, corpus_size: int, first_distances: float | None = None) -> float:
        """Multiply-adds per query over ``corpus_size`` vectors: ``n_1 * d_1`` for stage 1 plus
        :meth:`rerank_flops`. ``n_1`` is ``corpus_size`` for a flat stage 1, else the measured distance
        computations per query (``first_distances``; graphs and IVF). Binary codes count ``d_1 / 64``
        per distance (one 64-bit XOR+popcount per 64 dims). Exact search at ``D`` costs ``N * D``."""
        s0 = self.first
        n1 = corpus_size if first_distances is None else first_distances
        return float(n1 * (s0.dim / 64.0 if s0.precision == "binary" else s0.dim) + self.rerank_flops())


def prefix(x: np.ndarray, dim: int, metric: str) -> np.ndarray:
    """First ``dim`` columns as a new float32 array, L2-normalised for ``metric="cosine"``.

    Shape: ``[..., D] -> [..., dim]``.
    """
    out = np.array(x[..., :dim], dtype=np.float32, copy=True)
    if metric == "cosine":
        normalize_rows_(out)
    return out
