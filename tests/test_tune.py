"""Funnel auto-tuning: target validation, the choice meets the target, persistence, CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_funnel import matryoshka_like, scores_ref

from mrl.errors import MRLError
from mrl.index import Funnel, MatryoshkaIndex
from mrl.index.tune import TunePoint, apply, exact_neighbors, pareto, recall_at_k, tune

SPACE = {"first": [(8, "float32", "flat"), (16, "int8", "flat"), (32, "binary", "flat")], "k1": [20, 50, 100, 200, 400], "mid_factors": (2,), "mid_ratios": (4,)}


@pytest.fixture(scope="module")
def index_and_queries():
    x, q = matryoshka_like(5000, 64, 20), matryoshka_like(100, 64, 21)
    index = MatryoshkaIndex(64)
    index.add(x)
    return index, q, x


def test_exact_neighbors_and_recall(index_and_queries) -> None:
    index, q, x = index_and_queries
    rows = exact_neighbors(index, q, 10, chunk=700)  # chunks that do not divide the corpus
    gt = np.argsort(-scores_ref(q, x, 64, "cosine"), axis=1)[:, :10]
    assert (rows == gt).all()
    assert recall_at_k(gt, gt) == 1.0
    half = gt.copy()
    half[:, 5:] = -1
    assert recall_at_k(half, gt) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01, 2, float("nan"), True])
def test_target_outside_unit_interval(index_and_queries, bad) -> None:
    index, q, _ = index_and_queries
    with pytest.raises(MRLError, match=r"\(0, 1\]"):
        tune(index, queries=q, target_recall=bad)


def test_tune_meets_target_and_persists(index_and_queries, tmp_path) -> None:
    index, q, _ = index_and_queries
    result = tune(index, queries=q, k=10, target_recall=0.95, space=SPACE, repeats=1, confidence_level=None, single_queries=20)
    assert result.funnel is not None and result.recall >= 0.95 and result.heldout_sample == 20 and result.sample == 80
    assert result.flops < result.exact_flops and result.qps > 0
    assert all((p.recall >= 0.95) == p.feasible for p in result.points)
    chosen = result.chosen
    assert chosen.end_to_end and chosen.heldout_recall is not None and chosen.p99_ms >= chosen.p50_ms > 0
    assert chosen.ms_per_query == min(p.ms_per_query for p in result.points if p.feasible and p.end_to_end)
    # one figure per funnel: the headline, the table row and the manifest carry the same numbers
    row = next(line for line in result.table().splitlines() if "(chosen)" in line)
    assert f"{chosen.qps:,.0f}" in row and f"{chosen.qps:,.0f} QPS" in result.headline() and f"{chosen.recall:.4f}" in row and f"{chosen.recall:.4f}" in result.headline()
    assert result.plot(tmp_path / "f.png").stat().st_size > 1000
    apply(index, result)
    index.save(tmp_path / "idx")
    loaded = MatryoshkaIndex.load(tmp_path / "idx")
    man = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert man["funnel"] == str(result.funnel) and man["tuning"]["recall"] == pytest.approx(result.recall) and man["tuning"]["qps"] == pytest.approx(chosen.qps)
    assert [fs.key for fs in loaded.first_stages()] == [result.funnel.first.key]
    _, ids = loaded.search(q, 10)  # the tuned funnel is the default
    assert recall_at_k(ids, loaded.ids[exact_neighbors(loaded, q, 10)]) >= 0.9


def test_heldout_queries_and_latency_modes(index_and_queries) -> None:
    index, q, _ = index_and_queries
    single = tune(index, queries=q[:60], heldout=q[60:], k=10, target_recall=0.9, space=SPACE, repeats=1, latency="single", single_queries=20)
    assert single.sample == 60 and single.heldout_sample == 40 and single.latency_mode == "single"
    timed = [p for p in single.points if p.end_to_end and p.feasible]
    assert single.chosen.p99_ms == min(p.p99_ms for p in timed)
    assert "single p99" in single.table() and single.to_dict()["heldout_recall"] == single.chosen.heldout_recall
    with pytest.raises(MRLError, match="latency"):
        tune(index, queries=q, latency="p99")


def test_ram_budget_filters_and_impossible_budget_is_refused(index_and_queries) -> None:
    index, q, _ = index_and_queries
    lean = tune(index, queries=q, k=10, target_recall=0.9, space=SPACE, repeats=1, max_ram_per_vector=8 + 16 + 1, single_queries=10)
    assert lean.funnel is not None and all(p.resident_bytes_per_vector <= 25 for p in lean.points)
    with pytest.raises(MRLError, match=r"smallest explored needs 12 B/vector \(32-binary-flat\)"):
        tune(index, queries=q, k=10, target_recall=0.9, space=SPACE, repeats=1, max_ram_per_vector=10)


def test_new_first_stage_kinds_are_explored(index_and_queries) -> None:
    import faiss

    index, q, _ = index_and_queries
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        space = {"first": ["16/int8/hnsw/m16", "32/int8/ivf64/c8", "16/fp16/usearch/m16"], "k1": [20, 50, 100, 200], "mid_factors": (), "nprobes": (8, 32)}
        lines: list[str] = []
        # prune=False: every kind is built whatever the timings (pruned, a near-tie bound decides on a loaded machine)
        result = tune(index, queries=q, k=10, target_recall=0.9, space=space, repeats=1, single_queries=10, log=lines.append, prune=False)
    finally:
        faiss.omp_set_num_threads(threads)
    built = {line.split()[2].rstrip(":") for line in lines if line.startswith("first stage")}
    assert built == {"16-int8-hnsw-m16", "32-int8-ivf64-c8", "16-float16-usearch-m16"} and result.funnel is not None
    assert result.funnel.first.kind in ("hnsw", "ivf", "usearch") and result.chosen.recall_bound >= 0.9
    # a slower structure's larger shortlists are pruned, but its smallest shortlist is always tried
    assert {Funnel.parse(p.funnel).first.kind for p in result.points} == {"hnsw", "ivf", "usearch"}


def test_tune_without_queries_samples_corpus(index_and_queries) -> None:
    index, _, _ = index_and_queries
    result = tune(index, k=5, target_recall=0.9, sample=50, space=SPACE, repeats=1, single_queries=10)
    assert result.query_source == "sampled corpus" and result.sample == 50 and result.heldout_sample == 10 and result.recall >= 0.9


def test_unreachable_target_is_reported(index_and_queries) -> None:
    index, q, _ = index_and_queries
    space = {"first": [(8, "binary", "flat")], "k1": [20], "mid_factors": (), "mid_ratios": ()}
    result = tune(index, queries=q, k=10, target_recall=1.0, space=space, repeats=1)
    assert result.funnel is None and "no explored funnel" in result.headline()
    # not built: even the exact 8-d top-20 misses part of the truth (issue 24: pruning)
    assert not result.points and [(s.structure, s.reason) for s in result.skipped] == [("8-binary-flat", "unreachable")]
    assert 0 < result.skipped[0].shortlist_recall < 1.0 and "8-binary-flat" in result.markdown()
    exhaustive = tune(index, queries=q, k=10, target_recall=1.0, space=space, repeats=1, prune=False)
    assert exhaustive.funnel is None and exhaustive.points and not exhaustive.skipped
    assert max(p.recall for p in exhaustive.points) <= result.skipped[0].shortlist_recall  # the exact prefix bounds the binary codes
    with pytest.raises(MRLError, match="lower the target"):
        apply(index, result)


def test_pareto() -> None:
    pts = [TunePoint(f"8:{k} -> 64:10", r, t, 0, 0, r >= 0.9) for k, r, t in ((20, 0.5, 1.0), (50, 0.4, 2.0), (100, 0.95, 3.0), (200, 0.9, 4.0))]
    assert [p.recall for p in pareto(pts)] == [0.5, 0.95]


def test_cli_build_tune_search_info(tmp_path) -> None:
    from typer.testing import CliRunner

    from mrl.cli import app
    from mrl.io import save_npy

    x, q = matryoshka_like(3000, 32, 30), matryoshka_like(50, 32, 31)
    save_npy(tmp_path / "x.npy", x)
    save_npy(tmp_path / "q.npy", q)
    runner = CliRunner()
    res = runner.invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "x.npy"), "--target-recall", "1.5"])
    assert res.exit_code == 2 and "(0, 1]" in res.output and not (tmp_path / "idx").exists()
    res = runner.invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "x.npy"), "--first-stage", "8/int8"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["tune", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.npy"), "--target-recall", "0.9", "--sample", "50"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "idx" / "tuning.png").exists() and "chosen" in (tmp_path / "idx" / "tuning.md").read_text()
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.npy"), "--out", str(tmp_path / "ids.npy"), "--single", "5"])
    assert res.exit_code == 0, res.output
    assert "vectors scored" in res.output and "p99" in res.output
    build = json.loads((tmp_path / "idx" / "build.json").read_text())
    assert build["seconds"] >= build["store_s"] > 0
    assert np.load(tmp_path / "ids.npy").shape == (50, 10)
    res = runner.invoke(app, ["index", "build", str(tmp_path / "idx2"), "--vectors", str(tmp_path / "x.npy"), "--target-recall", "0.9", "--queries", str(tmp_path / "q.npy"), "--sample", "50", "--confidence", "0.9"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "idx2" / "manifest.json").read_text())["funnel"]
    res = runner.invoke(app, ["tune", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.npy"), "--target-recall", "0.9", "--sample", "50", "--max-ram-per-vector", "9"])
    assert res.exit_code == 2 and "smallest explored needs" in res.output
    res = runner.invoke(app, ["index", "info", str(tmp_path / "idx"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["count"] == 3000
    save_npy(tmp_path / "q16.npy", q[:, :16])
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "q16.npy")])
    assert res.exit_code == 2 and "dim 16" in res.output
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.npy"), "--funnel", "16:10 -> 8:5"])
    assert res.exit_code == 2 and "increase" in res.output


def test_confidence_level_demands_more_recall(index_and_queries) -> None:
    index, q, _ = index_and_queries
    plain = tune(index, queries=q, k=10, target_recall=0.95, space=SPACE, repeats=1, confidence_level=None, single_queries=10)
    safe = tune(index, queries=q, k=10, target_recall=0.95, space=SPACE, repeats=1, confidence_level=0.99, single_queries=10)
    assert plain.funnel is not None and safe.funnel is not None and safe.chosen.recall_bound >= 0.95 and safe.recall > 0.95
    plain_recall = {p.funnel: p.recall for p in plain.points}
    assert all(plain_recall.get(p.funnel, 1.0) >= 0.95 for p in safe.points if p.feasible)  # qualifying under the bound implies under the mean
    assert all(p.feasible <= (p.recall >= 0.95) for p in safe.points)  # the bound is stricter than the mean
    with pytest.raises(MRLError, match="confidence_level"):
        tune(index, queries=q, confidence_level=0.2)


def test_tuning_logs_progress_with_count_and_time_left(index_and_queries) -> None:
    """Issue 24: a long tuning shows how many structures are done and about how long is left."""
    index, q, _ = index_and_queries
    lines: list[str] = []
    tune(index, queries=q, k=10, target_recall=0.9, space=SPACE, repeats=1, confidence_level=None, single_queries=5, log=lines.append)
    progress = [ln for ln in lines if ln.startswith("[") and "structures" in ln]
    assert [ln.split(" structures")[0] for ln in progress] == ["[1/3", "[2/3"]
    assert all("s left]" in ln for ln in progress)
    assert sum("(3/3)" in ln for ln in lines) == 1
