"""What the search endpoint talks to: a small protocol, and its implementation over any index backend.

The HTTP layer only needs :class:`SearchBackend`: ``dim``, ``count``, ``plan`` (check a request's
``k`` / ``funnel`` / ``recall_target`` / ``filter`` before it is queued and name the funnel that will
run), ``search`` (one batch of queries, one plan), ``has_texts``/``texts`` and ``info``.
:class:`IndexSearch` implements it over the library's :class:`~mrl.index.backend.IndexBackend`
(the local :class:`~mrl.index.MatryoshkaIndex` folder, or a Milvus collection through the same
interface), plus the optional text store of the folder (:mod:`mrl.index.texts`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mrl.errors import MRLError
from mrl.index import Funnel, FunnelError, MatryoshkaIndex
from mrl.index.backend import IndexBackend, choose_funnel
from mrl.index.filters import Filter, parse_filter
from mrl.index.first_stage import FirstStage
from mrl.index.texts import TextStore

MAX_FUNNEL_CHARS = 256  # a funnel spec is a short string ("64/int8/hnsw/m16/ef200:400 -> 384:10" is 36)
MAX_STAGE_NUMBER = 2**31 - 1  # FAISS and usearch take C ints for dims, k, ef, M, lists and probes


def parse_funnel(spec: str) -> Funnel:
    """:meth:`Funnel.parse` for a spec from a request: bounded length and numbers, every failure a
    :class:`FunnelError` (a 400), never a ``ValueError`` from ``int()`` of a 5,000-digit number.

    Raises:
        FunnelError: the spec is too long, malformed, or holds a number beyond a C int.
    """
    if len(spec) > MAX_FUNNEL_CHARS:
        raise FunnelError(f"the funnel spec has {len(spec)} characters; a funnel is a short string (at most {MAX_FUNNEL_CHARS}), e.g. '32:1000 -> 128:100 -> 512:10'.")
    try:
        f = Funnel.parse(spec)
    except FunnelError:
        raise
    except (ValueError, OverflowError) as exc:  # e.g. int() of a number with thousands of digits
        raise FunnelError(f"cannot parse funnel {spec[:60]!r}: {exc}; write stages as DIM[/options]:K, e.g. '32:1000 -> 512:10'.") from exc
    for i, stage in enumerate(f.stages, 1):
        big = next((name for name, v in vars(stage).items() if isinstance(v, int) and v > MAX_STAGE_NUMBER), None)
        if big is not None:
            raise FunnelError(f"funnel stage {i} has {big} beyond any index (at most {MAX_STAGE_NUMBER}); use the index's dims and k, e.g. '32:1000 -> 512:10'.")
    return f


@dataclass(frozen=True)
class Plan:
    """A checked search request: the funnel that will run (as a spec), ``k``, the parsed filter, and
    why this funnel (``"request"``, ``"recall_target"`` or ``"default"``). ``expected_recall`` is the
    recall the tuner measured for this funnel at ``recall_k`` results per query (the tuning's ``k``,
    which may differ from the request's ``k``; exact search: 1.0 at any ``k``). Hashable: requests
    with equal plans share one search call."""

    funnel: str
    k: int
    chosen_by: str
    expected_recall: float | None = None
    filter: Filter | None = None
    recall_k: int | None = None


@dataclass
class SearchResult:
    """One batch's answer. Shape: ``scores [B, k]`` float32, ``ids [B, k]`` int64 (``-1`` = none)."""

    scores: np.ndarray
    ids: np.ndarray
    stages: list[dict[str, Any]] = field(default_factory=list)  # [{"stage": spec, "ms": float}] for the batch
    seconds: float = 0.0


class SearchBackend(Protocol):
    """The interface the search endpoint uses."""

    dim: int

    @property
    def count(self) -> int: ...

    def plan(self, k: int, *, funnel: str | None = None, recall_target: float | None = None, filter: str | dict[str, Any] | None = None) -> Plan: ...

    def search(self, queries: np.ndarray, plan: Plan) -> SearchResult: ...

    @property
    def has_texts(self) -> bool: ...

    def texts(self, ids: np.ndarray) -> list[str | None] | None: ...

    def info(self) -> dict[str, Any]: ...


class IndexSearch:
    """An :class:`IndexBackend` (and an optional text store) behind :class:`SearchBackend`.

    Args:
        index: a local :class:`MatryoshkaIndex` or any other :class:`IndexBackend`.
        text_store: passages by id (``None``: ``return_text`` is refused).
        max_build_bytes: local index only: a flat first stage missing from the folder is built on
            demand (and kept) only when it needs at most this much RAM; HNSW graphs are never built
            on demand (minutes of CPU inside a request).
        threads: rerank threads per search call (local index).
    """

    def __init__(self, index: IndexBackend, text_store: TextStore | None = None, *, max_build_bytes: int = 256 << 20, threads: int = 1) -> None:
        self.index, self.text_store, self.max_build_bytes, self.threads = index, text_store, max_build_bytes, threads
        self.dim = int(index.dim)
        self.local = isinstance(index, MatryoshkaIndex)

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, max_build_bytes: int = 256 << 20, verify: bool = True) -> IndexSearch:
        """Load an index folder (checksums verified) and its text store if it has one."""
        from mrl.index.backend import open_index

        folder = Path(folder)
        return cls(open_index(str(folder), verify=verify), TextStore.open(folder, verify=verify), max_build_bytes=max_build_bytes)

    @property
    def count(self) -> int:
        return int(self.index.count)

    # ------------------------------------------------------------------ planning
    def _unavailable(self, f: Funnel) -> str | None:
        """Why ``f``'s first stage cannot run here (``None`` if it is built or cheap to build)."""
        if not self.local:
            return None
        s0 = f.first
        key = FirstStage.for_stage(s0, self.index.metric).key
        if any(fs.key == key for fs in self.index.first_stages()):
            return None
        built = str(s0.structure).rsplit(":", 1)[0]  # e.g. "64/fp16/hnsw/m16": what `--first-stage` takes
        if s0.kind != "flat":
            return (f"its first stage {built} is not built in this index (a {s0.kind} structure takes minutes of CPU to build on a large index, so it is never built "
                    f"inside a request); build it with `mrl index build --first-stage {built}` or use a flat first stage")
        need = self.index.rows * s0.bytes_per_code()  # every precision the funnel grammar knows (float32, float16, int8, binary)
        if need > self.max_build_bytes:
            return (f"its first stage {built} is not built in this index and would need {need / 2**20:.0f} MiB (the on-demand limit is {self.max_build_bytes / 2**20:.0f} MiB); "
                    f"build it with `mrl index build --first-stage {built}`")
        return None

    def _check(self, f: Funnel, k: int) -> Funnel:
        if self.local:
            f = self.index._resolve(k, f)
        why = self._unavailable(f)
        if why:
            raise FunnelError(f"funnel {f} cannot run: {why}.")
        return f

    def frontier(self) -> list[dict[str, Any]]:
        """The tuned recall/latency frontier (``[]`` if the index was not tuned)."""
        t = self.index.tuning or {}
        return [p for p in t.get("frontier") or [] if isinstance(p, dict) and "funnel" in p and "recall" in p and "ms_per_query" in p]

    def plan(self, k: int, *, funnel: str | None = None, recall_target: float | None = None, filter: str | dict[str, Any] | None = None) -> Plan:
        """Check the request and pick the funnel: the request's, else the fastest tuned one meeting
        ``recall_target`` (among those whose first stage can run here), else the index's default.

        Raises:
            MRLError: bad ``k``, an unparsable/unfit funnel or filter, or no tuned funnel meets the target.
        """
        flt = parse_filter(filter, self.index.schema)
        if funnel is not None and recall_target is not None:
            raise MRLError("give either funnel or recall_target, not both.")
        if funnel is not None:
            return Plan(str(self._check(parse_funnel(funnel), k)), k, "request", None, flt)
        tuned_k = self.tuned_k()
        if recall_target is not None:
            usable = [p for p in self.frontier() if self._runs(p["funnel"], k)]
            met = [p for p in self.frontier() if float(p["recall"]) >= recall_target]
            if usable and met and not any(p in usable for p in met):  # only funnels whose first stage is not built here met it
                best = min(met, key=lambda p: float(p["ms_per_query"]))
                raise FunnelError(f"the tuned funnels that reached recall {recall_target} (fastest: {best['funnel']}) cannot run here: "
                                  f"{self._unavailable(Funnel.parse(best['funnel'])) or 'they do not fit this k'}; ask for a lower recall_target, or pass a funnel.")
            chosen = choose_funnel({"frontier": usable or self.frontier()}, recall_target, self.dim)
            recall = next((float(p["recall"]) for p in self.frontier() if p["funnel"] == str(chosen)), None)
            return Plan(str(self._check(chosen, k)), k, "recall_target", recall, flt, tuned_k if recall is not None else None)
        if self.index.funnel is None:  # the exact funnel finds the exact top-k: recall 1.0 at any k
            return Plan(str(self._check(Funnel.exact(self.dim, k), k)), k, "default", 1.0, flt, k)
        recall = (self.index.tuning or {}).get("recall")
        return Plan(str(self._check(self.index.funnel, k)), k, "default", recall, flt, tuned_k if recall is not None else None)

    def tuned_k(self) -> int | None:
        """The ``k`` at which the tuning record measured recall (``None``: not tuned)."""
        k = (self.index.tuning or {}).get("k")
        return int(k) if isinstance(k, int) and not isinstance(k, bool) else None

    def _runs(self, spec: str, k: int) -> bool:
        try:
            self._check(Funnel.parse(spec), k)
        except MRLError:
            return False
        return True

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, plan: Plan) -> SearchResult:
        """Run one plan on a batch. Shape: ``queries [B, D]`` -> ``SearchResult`` with ``[B, k]`` arrays."""
        t0 = time.perf_counter()
        if not self.local:
            scores, ids = self.index.search(queries, plan.k, funnel=plan.funnel, filter=plan.filter)
            return SearchResult(scores, ids, [], time.perf_counter() - t0)
        scores, ids, stats = self.index.search(queries, plan.k, funnel=plan.funnel, filter=plan.filter, threads=self.threads, return_stats=True)
        f = Funnel.parse(plan.funnel)
        names = [str(f.first)] + ([" -> ".join(str(s) for s in f.stages[1:])] if len(f.stages) > 1 else [])
        stages = [{"stage": n, "ms": 1e3 * t} for n, t in zip(names, stats.stage_seconds)]
        return SearchResult(scores, ids, stages, stats.seconds)

    @property
    def has_texts(self) -> bool:
        return self.text_store is not None

    def texts(self, ids: np.ndarray) -> list[str | None] | None:
        return self.text_store.get(ids) if self.text_store is not None else None

    def info(self) -> dict[str, Any]:
        i = self.index.info()
        return {"backend": "local" if self.local else type(self.index).__name__, "dim": self.dim, "count": self.count, "metric": i.get("metric"),
                "funnel": str(self.index.funnel) if self.index.funnel else None, "first_stages": i.get("first_stages", []),
                "metadata_fields": i.get("metadata_fields", {}), "texts": self.text_store is not None, "folder": i.get("folder"),
                "tuned_k": self.tuned_k(),
                "frontier": [{"funnel": p["funnel"], "recall": p["recall"], "ms_per_query": p["ms_per_query"]} for p in self.frontier()]}
