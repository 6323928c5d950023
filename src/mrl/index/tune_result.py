"""What the funnel tuner reports: one :class:`TunePoint` per explored funnel and the :class:`TuneResult`.

Every funnel has one set of figures everywhere (table, headline, manifest, plot): the points the
tuner re-timed end to end (the feasible frontier, always including the chosen one) carry those
numbers; the others carry the split timing of exploration (stage 1 + reranks timed apart), marked
in the table. Structures the tuner did not build (:class:`SkippedStructure`: no shortlist of that
prefix can reach the target, or a lower bound on their latency already exceeds the best measured
funnel) are listed with the reason, so the report shows the whole space was covered.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrl.index.funnel import Funnel


@dataclass
class TunePoint:
    """One explored funnel.

    ``recall``: mean recall@k on the tuning queries; ``recall_bound``: its one-sided lower
    confidence bound (what qualifies a funnel); ``heldout_recall``: on queries the tuner never chose
    with (re-timed points only). ``ms_per_query``/``qps``: batch timing; ``p50_ms``/``p99_ms``:
    one query at a time (re-timed points only). ``flops``: multiply-adds per query (measured
    distances for graph/IVF first stages); ``resident_bytes_per_vector``: id + first-stage structure.
    """

    funnel: str
    recall: float
    ms_per_query: float
    flops: float
    resident_bytes_per_vector: float
    feasible: bool
    recall_bound: float | None = None
    heldout_recall: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    end_to_end: bool = False

    @property
    def qps(self) -> float:
        return 1000.0 / self.ms_per_query if self.ms_per_query > 0 else float("inf")

    def latency(self, mode: str) -> float:
        """The figure the tuner minimises: batch ms/query, or single-query p99 (ms)."""
        return self.p99_ms if mode == "single" and self.p99_ms is not None else self.ms_per_query

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "qps": self.qps}


@dataclass
class SkippedStructure:
    """A first-stage structure the tuner did not build, and why.

    ``reason``: ``"unreachable"`` (even the exact prefix shortlist of the largest ``k_1`` misses the
    target: ``shortlist_recall``) or ``"bound"`` (``bound_ms``, a lower bound on its batch ms/query
    at any setting that can meet the target, exceeds ``best_ms`` of ``best_funnel``, measured).
    """

    structure: str
    reason: str
    shortlist_recall: float | None = None
    min_k1: int | None = None
    bound_ms: float | None = None
    best_ms: float | None = None
    best_funnel: str | None = None

    def describe(self) -> str:
        if self.reason == "unreachable":
            return f"even the exact {self.structure.split('-')[0]}-d prefix top-{self.min_k1} holds only {self.shortlist_recall:.4f} of the true neighbours"
        return (f"lower bound {self.bound_ms:.3f} ms/query (shortlist >= {self.min_k1}) > best {self.best_ms:.3f} ms/query (`{self.best_funnel}`)")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "why": self.describe()}


def pareto(points: Sequence[TunePoint], mode: str = "batch") -> list[TunePoint]:
    """Points no other point beats on both recall (higher) and latency (lower)."""
    out, best = [], -1.0
    for p in sorted(points, key=lambda p: (p.latency(mode), -p.recall)):
        if p.recall > best:
            out.append(p)
            best = p.recall
    return out


@dataclass
class TuneResult:
    """The tuner's choice and everything it measured. ``funnel`` is ``None`` when no point qualified."""

    funnel: Funnel | None
    target_recall: float
    k: int
    sample: int
    heldout_sample: int
    query_source: str
    threads: int
    exact_flops: float
    latency_mode: str = "batch"
    confidence_level: float | None = None
    max_ram_per_vector: float | None = None
    points: list[TunePoint] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[SkippedStructure] = field(default_factory=list)
    built: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> TunePoint | None:
        return next((p for p in self.points if self.funnel is not None and p.funnel == str(self.funnel)), None)

    # The chosen point's figures (0 / NaN when nothing qualified).
    @property
    def recall(self) -> float:
        return self.chosen.recall if self.chosen else 0.0

    @property
    def heldout_recall(self) -> float | None:
        return self.chosen.heldout_recall if self.chosen else None

    @property
    def ms_per_query(self) -> float:
        return self.chosen.ms_per_query if self.chosen else float("nan")

    @property
    def qps(self) -> float:
        return self.chosen.qps if self.chosen else 0.0

    @property
    def flops(self) -> float:
        return self.chosen.flops if self.chosen else float("nan")

    def headline(self) -> str:
        """One line: the chosen funnel and its figures (the same numbers as its table row)."""
        p = self.chosen
        if p is None:
            return f"no explored funnel reached recall@{self.k} >= {self.target_recall}"
        bound = f" (lower {100 * self.confidence_level:.0f}% bound {p.recall_bound:.4f})" if self.confidence_level else ""
        held = f", held-out recall {p.heldout_recall:.4f} on {self.heldout_sample} queries" if p.heldout_recall is not None else ""
        single = f", single-query p50 {p.p50_ms:.3f} ms / p99 {p.p99_ms:.3f} ms" if p.p99_ms is not None else ""
        return (f"chosen `{p.funnel}`: recall@{self.k} {p.recall:.4f}{bound} on {self.sample} {self.query_source} queries{held}; "
                f"{p.qps:,.0f} QPS batch{single}; {p.resident_bytes_per_vector:.0f} B/vector resident; {self.exact_flops / p.flops:.1f}x fewer multiply-adds than exact")

    def to_dict(self) -> dict[str, Any]:
        p = self.chosen
        return {
            "funnel": str(self.funnel) if self.funnel else None,
            **({k: getattr(p, k) for k in ("recall", "recall_bound", "heldout_recall", "ms_per_query", "p50_ms", "p99_ms", "flops", "resident_bytes_per_vector")} if p else {}),
            "qps": p.qps if p else None,
            "exact_flops": self.exact_flops,
            "flops_ratio": self.exact_flops / p.flops if p and p.flops else None,
            "target_recall": self.target_recall, "k": self.k, "sample": self.sample, "heldout_sample": self.heldout_sample,
            "query_source": self.query_source, "threads": self.threads, "latency_mode": self.latency_mode,
            "confidence_level": self.confidence_level, "max_ram_per_vector": self.max_ram_per_vector, "seconds": self.seconds,
            "frontier": [q.to_dict() for q in pareto(self.points, self.latency_mode)], "explored": len(self.points),
            "structures_built": list(self.built), "structures_skipped": [s.to_dict() for s in self.skipped],
        }

    def table(self, *, all_points: bool = False) -> str:
        """Markdown table of the recall/latency frontier plus every re-timed point (or every point)."""
        front = {id(p) for p in pareto(self.points, self.latency_mode)}
        rows = [p for p in self.points if all_points or id(p) in front or p.end_to_end]
        rows.sort(key=lambda p: p.latency(self.latency_mode))
        lines = ["| funnel | recall@k (tuning) | lower bound | held-out recall | ms/query (batch) | QPS | single p50 ms | single p99 ms | MACs/query | RAM B/vector | meets target |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]

        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        for p in rows:
            mark = " **(chosen)**" if self.funnel and p.funnel == str(self.funnel) else ("" if p.end_to_end else " (split timing)")
            lines.append(f"| `{p.funnel}`{mark} | {p.recall:.4f} | {f(p.recall_bound, '.4f')} | {f(p.heldout_recall, '.4f')} | {p.ms_per_query:.4f} | {p.qps:,.0f} | "
                         f"{f(p.p50_ms, '.3f')} | {f(p.p99_ms, '.3f')} | {p.flops:,.0f} | {p.resident_bytes_per_vector:.0f} | {'yes' if p.feasible else 'no'} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        """``tuning.md``: the headline, the settings, the table."""
        cfg = (f"Target recall@{self.k} >= {self.target_recall}" + (f" at {100 * self.confidence_level:.0f}% confidence" if self.confidence_level else "")
               + f"; latency mode {self.latency_mode}" + (f"; RAM budget {self.max_ram_per_vector:.0f} B/vector" if self.max_ram_per_vector else "")
               + f"; {self.threads} threads; {len(self.points)} funnels explored in {self.seconds:.0f} s"
               + f" ({len(self.built)} first-stage structures built, {len(self.skipped)} skipped).")
        return f"# Funnel auto-tuning\n\n{self.headline()}\n\n{cfg}\n\n{self.table()}\n" + (f"\n{self.skipped_table()}\n" if self.skipped else "")

    def skipped_table(self) -> str:
        """Markdown list of the structures not built, each with its reason (empty when none)."""
        if not self.skipped:
            return ""
        lines = ["Structures not built (they cannot beat what was measured):", ""]
        lines += [f"- `{s.structure}`: {s.describe()}" for s in self.skipped]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Recall@k vs latency of every explored funnel, the Pareto frontier, target and choice."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mrl.io import atomic_write

        mode = self.latency_mode
        fig, ax = plt.subplots(figsize=(7, 4.5))
        kinds: dict[str, list[TunePoint]] = {}
        for p in self.points:
            first = Funnel.parse(p.funnel).first
            kinds.setdefault(f"{first.precision}/{first.kind}", []).append(p)
        for name, pts in sorted(kinds.items()):
            ax.scatter([p.latency(mode) for p in pts], [p.recall for p in pts], s=14, alpha=0.6, label=f"stage 1: {name}")
        front = pareto(self.points, mode)
        ax.plot([p.latency(mode) for p in front], [p.recall for p in front], "k-", lw=1, label="Pareto frontier")
        ax.axhline(self.target_recall, color="r", ls="--", lw=1, label=f"target {self.target_recall}")
        c = self.chosen
        if c is not None:
            ax.scatter([c.latency(mode)], [c.recall], marker="*", s=180, color="r", zorder=5, label=f"chosen: {c.funnel}")
        ax.set_xscale("log")
        ax.set_xlabel("ms per query, batch" if mode == "batch" else "single-query p99 (ms)")
        ax.set_ylabel(f"recall@{self.k} vs exact full-D")
        ax.set_title(f"Funnel auto-tuning ({self.sample} {self.query_source} queries, {self.threads} threads)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        atomic_write(path, buf.getvalue())
        return Path(path)
