"""The page at ``/``: plain HTML + a little JavaScript (``static/``), no build step.

A person deciding how many dims they need types a query and sees, side by side, the top-k found on
small prefixes (e.g. 16, 64) and at full ``D``, each list's overlap with the full-``D`` list, and
the index's funnel answer with its latency; below, the served model's per-dim quality curve when an
evaluation report exists. The page calls the public API (``/v1/info``, ``/v1/embeddings``,
``/v1/search``) with the key the user types, so the shell itself holds no data and needs no auth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from mrl.io import read_json

STATIC = Path(__file__).with_name("static")
METRIC_PREFERENCE = ("ndcg@10", "recall@10", "mrr@10", "top1", "map@10", "1nn")


def mount_page(app: FastAPI) -> None:
    """Serve ``static/index.html`` at ``/`` and the rest of ``static/`` under ``/static``."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"cache-control": "no-store"})


def find_report(report: Path | None, model_path: Path | None) -> Path | None:
    """The report to plot: the one given, else ``eval.json`` in the model folder, else none."""
    if report is not None:
        return report
    if model_path is not None and (model_path / "eval.json").is_file():
        return model_path / "eval.json"
    return None


def quality_curves(report: Path | None) -> dict[str, Any] | None:
    """Per-dim curves from an ``mrl.eval/1`` JSON (``mrl eval-text`` / ``mrl eval``), or ``None``.

    Returns ``{"metric", "source", "curves": [{"label", "points": [[dim, value], ...]}]}``.
    """
    if report is None or not report.is_file():
        return None
    try:
        runs = read_json(report).get("runs") or []
        per_dim = [(r, {int(d): v for d, v in (r.get("per_dim") or {}).items()}) for r in runs if isinstance(r, dict)]
    except (AttributeError, TypeError, ValueError):
        return None
    keys = {k for _, pd in per_dim for v in pd.values() if isinstance(v, dict) for k in v}
    metric = next((m for m in METRIC_PREFERENCE if m in keys), sorted(keys)[0] if keys else None)
    if metric is None:
        return None
    curves = []
    for rec, pd in per_dim:
        pts = [[d, float(v[metric])] for d, v in sorted(pd.items()) if isinstance(v, dict) and isinstance(v.get(metric), (int, float))]
        if pts:
            curves.append({"label": str(rec.get("method") or rec.get("mode") or "run"), "points": pts})
    return {"metric": metric, "source": str(report), "curves": curves} if curves else None
