"""Render aggregated per-dim results as Markdown, HTML and a PNG plot, written atomically."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mrl.io import atomic_write, guard_output, write_json  # noqa: E402
from mrl.report.aggregate import aggregate  # noqa: E402

METRIC_TITLES = {"top1": "Head top-1 accuracy (%)", "1nn": "1-NN accuracy (%)", "map@10": "mAP@10 (%)"}
# Titles of other metrics a record may carry (IR records from mrl.evaluate.ir); unknown names are shown as is.
EXTRA_TITLES = {"ndcg@10": "nDCG@10 (%)", "recall@10": "Recall@10 (%)", "recall@100": "Recall@100 (%)", "mrr@10": "MRR@10 (%)"}
# Cross-modal records (mrl.evaluate.cross_modal): text->image and image->text recall.
EXTRA_TITLES.update({f"{way}_recall@{k}": f"{label} recall@{k} (%)" for way, label in (("t2i", "Text->image"), ("i2t", "Image->text")) for k in (1, 5, 10)})


def metric_title(metric: str) -> str:
    return METRIC_TITLES.get(metric) or EXTRA_TITLES.get(metric) or metric


def record_metrics(records: list[dict[str, Any]]) -> tuple[str, ...]:
    """The metrics to render: the image metrics (top-1, 1-NN, mAP@10) when the records hold any of
    them (the default report), else every metric the records hold, in first-seen order."""
    seen: dict[str, None] = {}
    for rec in records:
        for metrics in rec.get("per_dim", {}).values():
            seen.update(dict.fromkeys(metrics))
    image = tuple(m for m in METRIC_TITLES if m in seen)
    known = tuple(m for m in EXTRA_TITLES if m in seen)  # canonical order (JSON files sort their keys)
    return image or known + tuple(m for m in seen if m not in known)


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "–"
    m, s, n = 100 * stats["mean"], 100 * stats["std"], stats["n"]
    return f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}"


def tables(agg: dict[str, dict[int, dict[str, dict[str, float]]]], metrics: tuple[str, ...] = tuple(METRIC_TITLES)) -> dict[str, tuple[list[str], list[list[str]]]]:
    """``{metric: (header, rows)}`` with one row per method family and one column per dim."""
    dims = sorted({d for fam in agg.values() for d in fam})
    out = {}
    for metric in metrics:
        header = ["method"] + [f"d={d}" for d in dims]
        rows = [[fam] + [_cell(agg[fam].get(d, {}).get(metric)) for d in dims] for fam in agg]
        out[metric] = (header, rows)
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot(agg: dict[str, dict[int, dict[str, dict[str, float]]]], path: Path, metrics: tuple[str, ...] = tuple(METRIC_TITLES)) -> None:
    """One subplot per metric: mean (± std band) vs log2(dim) for each method family."""
    cols = min(3, len(metrics))  # wrap after three plots so that six recall metrics stay readable
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        for fam, per_dim in agg.items():
            pts = [(math.log2(d), 100 * v[metric]["mean"], 100 * v[metric]["std"]) for d, v in per_dim.items() if metric in v]
            if not pts:
                continue
            xs, ys, ss = zip(*pts)
            ax.plot(xs, ys, marker="o", label=fam)
            ax.fill_between(xs, [y - s for y, s in zip(ys, ss)], [y + s for y, s in zip(ys, ss)], alpha=0.2)
        ax.set_xlabel("log2(dim)")
        ax.set_title(metric_title(metric))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def write_report(records: list[dict[str, Any]], out_dir: str | Path, *, title: str = "Matryoshka per-dimension report", notes: str = "", overwrite: bool = False, metrics: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``report.md``, ``report.html`` and ``per_dim.png`` into ``out_dir``.

    ``metrics`` defaults to :func:`record_metrics` (image metrics, or whatever the records hold).
    Refuses a folder that already holds a report unless ``overwrite``. Returns the written paths.
    """
    metrics = metrics or record_metrics(records)
    out = guard_output(out_dir, overwrite, lambda p: (p / "report.md").exists())
    agg = aggregate(records)
    paths = {"json": out / "results.json", "md": out / "report.md", "html": out / "report.html", "png": out / "per_dim.png"}
    write_json(paths["json"], {"schema": "mrl.eval/1", "runs": records})
    plot(agg, paths["png"], metrics)
    tabs = tables(agg, metrics)
    md = [f"# {title}", "", notes, "", "Cells: mean ± std over seeds (percent); a single run shows no std.", ""]
    for metric, (header, rows) in tabs.items():
        md += [f"## {metric_title(metric)}", "", markdown_table(header, rows), ""]
    md += ["![per-dim plot](per_dim.png)", ""]
    atomic_write(paths["md"], "\n".join(md).encode())
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(notes)}</p>"]
    for metric, (header, rows) in tabs.items():
        body.append(f"<h2>{html.escape(metric_title(metric))}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
        body.append("</table>")
    body.append('<img src="per_dim.png" alt="per-dim plot">')
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    atomic_write(paths["html"], page.encode())
    return paths
