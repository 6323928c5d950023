"""Render aggregated per-dim results as Markdown, HTML and a PNG plot, written atomically.

Markdown and HTML are rendered from one list of blocks, so the HTML holds every line the Markdown
has. The HTML page fits a 1400 px window (the plot is at most 1250 px wide and scales down).
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mrl.evaluate.baselines import BASELINES
from mrl.evaluate.records import results_document
from mrl.io import atomic_write, open_output, write_json
from mrl.report.aggregate import aggregate, groups

REPORT_KIND = "mrl.report"  # manifest format of a report folder
METRIC_TITLES = {"top1": "Head top-1 accuracy (%)", "1nn": "1-NN accuracy (%)", "map@10": "mAP@10 (%)"}
# Titles of other metrics a record may carry (IR records from mrl.evaluate.ir); unknown names are shown as is.
EXTRA_TITLES = {"ndcg@10": "nDCG@10 (%)", "recall@10": "Recall@10 (%)", "recall@100": "Recall@100 (%)", "mrr@10": "MRR@10 (%)"}
# Cross-modal records (mrl.evaluate.cross_modal): text->image and image->text recall.
EXTRA_TITLES.update({f"{way}_recall@{k}": f"{label} recall@{k} (%)" for way, label in (("t2i", "Text->image"), ("i2t", "Image->text")) for k in (1, 5, 10)})
MAX_PLOT_PX = 1250  # the page must fit a 1400 px window with its margins
PLOT_DPI = 100

Aggregate = dict[str, dict[int, dict[str, dict[str, float]]]]


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


def tables(agg: Aggregate, metrics: tuple[str, ...] = tuple(METRIC_TITLES)) -> dict[str, tuple[list[str], list[list[str]]]]:
    """``{metric: (header, rows)}`` with one row per configuration and one column per dim."""
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


def _reference_rows(agg: Aggregate, families: dict[str, str]) -> dict[str, int]:
    """FF rows whose largest dim is the table's largest: drawn as a horizontal reference line at that dim."""
    top = max((d for per in agg.values() for d in per), default=0)
    return {label: top for label, per in agg.items() if families.get(label) == "FF" and top in per}


def plot(agg: Aggregate, path: Path, metrics: tuple[str, ...] = tuple(METRIC_TITLES), families: dict[str, str] | None = None, chance: dict[str, float] | None = None) -> bytes:
    """One subplot per metric: mean (± std band) against the dim on a log2 axis labelled with the
    dims; the full-width FF model is a dashed reference line, the ``chance`` level of a metric a
    dotted one. Every y axis spans 0-100 % (never autoscaled, so noise of a point does not look
    like a spike). Returns the PNG bytes (also written to ``path`` when it is not None)."""
    families = families or {}
    chance = chance or {}
    refs = _reference_rows(agg, families)
    dims = sorted({d for per in agg.values() for d in per})
    cols = min(3, len(metrics))  # wrap after three plots so that six recall metrics stay readable
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(4.2 * cols, MAX_PLOT_PX / PLOT_DPI), 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        for label, per_dim in agg.items():
            pts = sorted((d, 100 * v[metric]["mean"], 100 * v[metric]["std"]) for d, v in per_dim.items() if metric in v)
            if label in refs:
                ref = [p for p in pts if p[0] == refs[label]]
                pts = [p for p in pts if p[0] != refs[label]]
                if ref:
                    ax.axhline(ref[0][1], ls="--", lw=1.2, color="black", alpha=0.7, label=f"{label}-{refs[label]} (reference)")
            if not pts:
                continue
            xs, ys, ss = zip(*pts)
            line = ax.plot(xs, ys, marker="o", ms=3.5, label=label)[0]
            ax.fill_between(xs, [y - s for y, s in zip(ys, ss)], [y + s for y, s in zip(ys, ss)], alpha=0.2, color=line.get_color())
        if metric in chance:
            ax.axhline(100 * chance[metric], ls=":", lw=1.2, color="grey", label=f"chance ({100 * chance[metric]:.1f} %)")
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_xscale("log", base=2)
        if dims:
            ax.set_xticks(dims)
            ax.set_xticklabels([str(d) for d in dims], fontsize=7)
            ax.minorticks_off()
        ax.set_xlabel("dimensions d (log scale)")
        ax.set_title(metric_title(metric), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, data)
    return data


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _run_list(records: list[dict[str, Any]]) -> str:
    """``seed 0 runs/mrl-s0, seed 1 runs/mrl-s1``: which run each row averages (run identity)."""
    return ", ".join(f"seed {r.get('seed')} {r.get('model') or '(no source recorded)'}" for r in records)


def test_sets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct test sets the records were measured on (``test_set`` of :mod:`mrl.evaluate.perdim`
    and :mod:`mrl.evaluate.ir`), each ``{"dataset", "data", "queries", "database", "classes", "chance"}``;
    records of one dataset and size are one set (their identifying fields merged)."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in records:
        ts = rec.get("test_set")
        if not isinstance(ts, dict):
            continue
        data = ts.get("data") or {}
        name = data.get("dataset") or rec.get("dataset") or "unnamed data set"
        key = (name, ts.get("queries"), ts.get("database"), ts.get("classes"))
        entry = found.setdefault(key, {"dataset": name, "data": {}, "queries": key[1], "database": key[2], "classes": key[3], "chance": dict(ts.get("chance") or {})})
        for k, v in data.items():
            if v is not None and k != "dataset":
                entry["data"].setdefault(k, v)
    return list(found.values())


def shared_chance(records: list[dict[str, Any]]) -> dict[str, float]:
    """The chance level of each metric on which every test set of the records agrees (the plot's line)."""
    sets = test_sets(records)
    if not sets:
        return {}
    first = sets[0]["chance"]
    return {m: v for m, v in first.items() if all(math.isclose(s["chance"].get(m, math.nan), v) for s in sets)}


def test_set_lines(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[str]:
    """One line per test set: identity, size, the sampling error that size allows, chance levels."""
    lines = []
    for ts in test_sets(records):
        where = ", ".join(f"{k}={v}" for k, v in ts["data"].items())
        line = f"Test set: {ts['dataset']}" + (f" ({where})" if where else "")
        if ts["queries"]:
            line += f": {ts['queries']:,} test queries against {ts['database']:,} database items" + (f", {ts['classes']} classes" if ts["classes"] else "")
            line += f"; a rate measured on {ts['queries']:,} queries has a sampling standard error of at most {50 / math.sqrt(ts['queries']):.2f} points."
        chance = [f"{metric_title(m).replace(' (%)', '')} {_pct(ts['chance'][m])}" for m in metrics if m in ts["chance"]]
        if chance:
            line += " Chance level (an embedding that carries no information; dotted line in the plot): " + ", ".join(chance) + "."
        lines.append(line)
    missing = sum(1 for r in records if not isinstance(r.get("test_set"), dict))
    if missing:
        lines.append(f"{missing} record(s) carry no test-set size or chance level (written by an older mrl, or by an evaluation that does not record them).")
    return lines


def method_notes(records: list[dict[str, Any]], families: set[str]) -> list[str]:
    """One sentence per method family present, saying what the row is."""
    width = max([int((r.get("config") or {}).get("width") or 0) for r in records if r.get("mode") in ("pca", "random")] + [0])
    width = width or max([max(r.get("dims") or [0]) for r in records if r.get("mode") == "ff"] + [0])
    ff = f"FF-{width}" if width else "the full-width FF model"
    notes = {
        "MRL": "MRL: the Matryoshka model, one linear head per prefix size d (head top-1 uses the head at d).",
        "MRL-E": "MRL-E: efficient Matryoshka, one shared head whose weight matrix is sliced to its first d columns.",
        "FF": f"FF: fixed-feature baselines, a separate model trained with a single d-dim feature for each d; {ff} is the full-width model (the dashed reference line in the plot).",
        **{b.label: b.description.format(source=ff) for b in BASELINES.values()},
    }
    return [text for fam, text in notes.items() if fam in families]


def report_blocks(records: list[dict[str, Any]], *, title: str, notes: str, metrics: tuple[str, ...]) -> tuple[list[tuple[str, ...]], Aggregate, dict[str, str]]:
    """The report as blocks ``("h1"|"h2"|"p", text)``, ``("table", header, rows)``, ``("img", src, alt)``."""
    grps = groups(records)
    agg = aggregate(records)
    families = {g.label: g.family for g in grps}
    blocks: list[tuple[Any, ...]] = [("h1", title)]
    if notes:
        blocks.append(("p", notes))
    blocks.append(("p", "Cells: mean ± sample std over the seeds of one configuration (percent); a configuration with a single run shows no std."))
    seeds = "; ".join(f"{g.label}: {len(g.seeds)} seed(s) ({_run_list(g.records)})" for g in grps)
    blocks.append(("p", f"Runs per row: {seeds}."))
    for line in test_set_lines(records, metrics):
        blocks.append(("p", line))
    for line in method_notes(records, set(families.values())):
        blocks.append(("p", line))
    for metric, (header, rows) in tables(agg, metrics).items():
        blocks += [("h2", metric_title(metric)), ("table", header, rows)]
    blocks.append(("img", "per_dim.png", "per-dim plot: each metric against the dimensions d (log2 axis)"))
    return blocks, agg, families


def to_markdown(blocks: list[tuple[Any, ...]]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h1":
            out += [f"# {b[1]}", ""]
        elif b[0] == "h2":
            out += [f"## {b[1]}", ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "table":
            out += [markdown_table(b[1], b[2]), ""]
        elif b[0] == "img":
            out += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(out)


def to_html(blocks: list[tuple[Any, ...]], title: str) -> str:
    e = html.escape
    body = []
    for b in blocks:
        if b[0] in ("h1", "h2", "p"):
            body.append(f"<{b[0]}>{e(b[1])}</{b[0]}>")
        elif b[0] == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f'<div class="scroll"><table><tr>{head}</tr>{rows}</table></div>')
        elif b[0] == "img":
            body.append(f'<img src="{e(b[1])}" alt="{e(b[2])}">')
    style = ("body{font-family:sans-serif;margin:1.5em auto;max-width:1340px;padding:0 1em}img{max-width:100%;height:auto}"
             ".scroll{overflow-x:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}")
    return f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'><title>{e(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"


def write_report(records: list[dict[str, Any]], out_dir: str | Path, *, title: str = "Matryoshka per-dimension report", notes: str = "", overwrite: bool = False, metrics: tuple[str, ...] | None = None, inputs: list[Any] | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``report.md``, ``report.html`` and ``per_dim.png`` into ``out_dir``.

    ``metrics`` defaults to :func:`record_metrics` (image metrics, or whatever the records hold).
    The folder must be new, empty or a previous report (``overwrite``); it is replaced as a whole,
    and ``inputs`` (the results files read) are never replaced. Returns the written paths.
    """
    metrics = metrics or record_metrics(records)
    out = Path(out_dir)
    blocks, agg, families = report_blocks(records, title=title, notes=notes, metrics=metrics)
    names = {"json": "results.json", "md": "report.md", "html": "report.html", "png": "per_dim.png"}
    with open_output(out, REPORT_KIND, overwrite=overwrite, staged=True, inputs=inputs or []) as writer:
        write_json(writer.path / names["json"], results_document(records))
        plot(agg, writer.path / names["png"], metrics, families, shared_chance(records))
        atomic_write(writer.path / names["md"], to_markdown(blocks).encode())
        atomic_write(writer.path / names["html"], to_html(blocks, title).encode())
    return {k: out / v for k, v in names.items()}
