"""What ``mrl index search`` and ``mrl index info`` print: the top hits of the first queries, and a
short summary of an index (local or Milvus)."""

from __future__ import annotations

from typing import Any

import numpy as np
import typer


def print_hits(ids: np.ndarray, scores: np.ndarray, n: int, top: int = 5) -> None:
    """The first ``top`` hits (id and score) of the first ``n`` queries, one line per query, on stdout.
    Shape: ``ids, scores [B, k]`` (``-1`` ids pad: fewer hits than k)."""
    if n <= 0:
        return
    for i in range(min(n, ids.shape[0])):
        hits = [f"{int(j)} ({float(s):.4f})" for j, s in zip(ids[i, :top], scores[i, :top]) if j >= 0]
        more = f", ... ({int((ids[i] >= 0).sum())} hits)" if ids.shape[1] > top else ""
        typer.echo(f"query {i}: {', '.join(hits) if hits else 'no hits'}{more if hits else ''}")


def summary(info: dict[str, Any], name: str) -> str:
    """A few lines about an index from its ``info()`` (local or Milvus)."""
    lines = [f"{name}: {info['count']:,} live vectors x {info['dim']} dims" + (f" ({info['deleted']:,} deleted, awaiting `mrl index compact`)" if info.get("deleted") else "")
             + f", {info.get('dtype', 'float32')}, metric {info['metric']}"]
    if info.get("backend") == "milvus":
        push = info.get("push") or {}
        state = "complete" if push.get("done") else f"{int(push.get('rows_done', 0)):,} rows so far"
        lines.append(f"Milvus {'Lite ' if info.get('lite') else ''}at {info['uri']}: prefix fields {info.get('prefix_dims')}"
                     + (f", pushed from {push['source'].get('folder')} ({state})" if push.get("source") else ""))
    funnel = info.get("funnel")
    ram = info.get("resident_bytes_per_vector")
    lines.append(f"funnel: {funnel or 'none (exact search unless a search names one)'}" + (f", {ram:,.0f} B/vector resident" if ram else ""))
    if info.get("first_stages") is not None:
        lines.append(f"first stages: {', '.join(info['first_stages']) or 'none'}")
    fields = info.get("metadata_fields") or {}
    lines.append(f"metadata fields: {', '.join(f'{f} ({t})' for f, t in fields.items()) or 'none'}")
    t = info.get("tuning")
    if t:
        got = f"recall@{t.get('k')} {t['recall']:.4f}" if t.get("recall") is not None else f"recall@{t.get('k')}"
        qps = f", {t['qps']:,.0f} QPS" if t.get("qps") else ""
        space = f"; {len(t['structures_built'])} first-stage structures built, {len(t.get('structures_skipped') or [])} skipped" if "structures_built" in t else ""
        lines.append(f"tuned for recall@{t.get('k')} >= {t.get('target_recall')}: {t.get('funnel')} ({got}{qps}; {len(t.get('frontier') or [])} funnels on the frontier{space}"
                     + ("; see tuning.md)" if info.get("backend") != "milvus" else ")"))
    else:
        lines.append("tuned: no (`mrl tune FOLDER --recall-target 0.99` picks a funnel)")
    return "\n".join(lines)
