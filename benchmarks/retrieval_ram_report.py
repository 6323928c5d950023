"""Budget arithmetic and the tables of the RAM-bounded retrieval benchmark (``benchmarks/retrieval_ram.py``).

Pure functions over the result dict that ``retrieval_ram.py table`` writes (``OUT/ram-NAME.json``): which
configs fit a resident budget, the settings chosen, how many rows fit a RAM size, and the markdown tables
(``retrieval_ram.py render`` re-prints them from the JSON).
"""

from __future__ import annotations

from typing import Any

import retrieval_peers as peers

GIB = float(1 << 30)


def fits(bytes_per_vector: float, budget: float) -> bool:
    return bytes_per_vector <= budget


def rows_that_fit(bytes_per_vector: float, fixed_bytes: float, ram_gib: float, headroom: float) -> int:
    """Rows an index of ``bytes_per_vector`` (+ ``fixed_bytes``) can hold in ``ram_gib`` GiB with a share ``headroom`` kept free."""
    usable = ram_gib * GIB * (1.0 - headroom) - fixed_bytes
    return max(int(usable // bytes_per_vector), 0)


def ivf_fixed_bytes(n: int, dim: int) -> float:
    """Bytes an IVF keeps independently of its row count: ``nlist`` float centroids (``nlist = 4 sqrt N``)."""
    return float(peers.nlist_for(n) * dim * 4)


def resident_bpv(c: dict[str, Any]) -> float:
    """Resident bytes per vector of a config: the larger of its serialized size and its measured RssAnon growth."""
    return max(c["serialized_bpv"], c["rss_bpv"])


def marginal_bpv(c: dict[str, Any], n: int, dim: int) -> float:
    """Resident bytes each added vector costs: :func:`resident_bpv` less the fixed part (IVF centroids) spread over ``n``."""
    return resident_bpv(c) - (ivf_fixed_bytes(n, dim) / n if c["fixed_bytes"] else 0.0)


def pick(sweep: list[dict[str, Any]], target: float, n: int = 2) -> list[dict[str, Any]]:
    """The ``n`` fastest settings (by ``qps``) with ``recall >= target``; else the one with the best recall."""
    ok = sorted((s for s in sweep if s["recall"] >= target), key=lambda s: -s["qps"])
    return ok[:n] if ok else sorted(sweep, key=lambda s: (-s["recall"], -s["qps"]))[:1]


def _p99(row: dict[str, Any]) -> str:
    """A timed row's single-query p99 (ms), or "-" for results written before it was recorded."""
    return f"{row['p99_ms']:.3f}" if "p99_ms" in row else "-"


def render(r: dict[str, Any]) -> str:
    n, dim = r["N"], r["D"]
    out: list[str] = []
    for budget in r["budgets"]:
        fit = [c for c in r["configs"] if c["best"] and fits(resident_bpv(c), budget)]
        fit.sort(key=lambda c: (c["best"]["recall"] < r["target"], -c["best"]["qps"]))
        ref = next((c for c in fit if c["family"] == "peer" and c["best"]["recall"] >= r["target"]), None)
        out += [f"**Budget {budget} B/vector resident** (N = {n:,}; recall@{r['k']} >= {r['target']} where reached; ratio = QPS / best fitting peer's QPS)", "",
                "| index | build params | setting | recall@10 | QPS (median) | single p50 / p99 (ms) | vectors scored / query | resident B/vector (serialized; RssAnon growth) | ratio |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in fit:
            b = c["best"]
            ratio = f"{b['qps'] / ref['best']['qps']:.2f}x" if ref else "-"
            name = f"**{c['describe']}**" if c["family"] == "funnel" else c["describe"]
            out.append(f"| {name} | {c['params']} | {b['setting']} | {b['recall']:.4f} | {b['qps']:,.0f} | {b['p50_ms']:.3f} / {_p99(b)} | {b['scored']:,.0f} | {c['serialized_bpv']:.0f}; {c['rss_bpv']:.0f} | {ratio} |")
        over = [c for c in r["configs"] if not fits(resident_bpv(c), budget)]
        if over:
            out.append("")
            out.append("Over this budget: " + "; ".join(f"{c['name']} ({resident_bpv(c):.0f} B)" for c in over) + ".")
        out.append("")
    out += [f"**Projection** (measured per-vector bytes at N = {n:,}; {r['ram_gib']:g} GiB RAM with {r['headroom']:.0%} kept free = "
            f"{r['ram_gib'] * (1 - r['headroom']):.1f} GiB for the index; IVF centroids counted as fixed, 4 sqrt(N) lists of {dim} floats)", "",
            "| index | resident B/vector | RAM at 1M rows (GiB) | rows that fit 24 GiB | float file at that size (GB, on disk, mmap) | build s per 1M vectors (1 thread, linear from N; CPU, or wall on the loaded box) |",
            "|---|---:|---:|---:|---:|---:|"]
    for c in sorted(r["configs"], key=lambda c: marginal_bpv(c, n, dim)):
        marginal = marginal_bpv(c, n, dim)
        fixed_1m = ivf_fixed_bytes(1_000_000, dim) if c["fixed_bytes"] else 0.0
        rows = rows_that_fit(marginal, fixed_1m, r["ram_gib"], r["headroom"])
        mmap = "-" if c["family"] == "in-RAM" else f"{rows * dim * 4 / 1e9:,.0f}"
        if c.get("build_cpu_s"):
            build = f"{c['build_cpu_s'] * 1e6 / n:,.0f} CPU"
        else:
            build = f"{c['build_s'] * 1e6 / n:,.0f} wall" if c["build_s"] else "-"
        out.append(f"| {c['describe']} | {marginal:.0f} | {(marginal * 1e6 + fixed_1m) / GIB:.2f} | {rows / 1e6:,.1f}M | {mmap} | {build} |")
    return "\n".join(out)
