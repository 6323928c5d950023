"""Issue 24, tuning a user can wait for: the tuner skips structures that cannot reach the target or
cannot beat the best measured funnel, lists them in its report, and keeps its choice."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from test_funnel import matryoshka_like, scores_ref

from mrl.index import MatryoshkaIndex
from mrl.index.first_stage import FirstStage
from mrl.index.funnel import Funnel
from mrl.index.tune import exact_neighbors, per_query_recall, tune
from mrl.index.tune_prune import CostModel, ivf_truth_cover, shortlist_recall


@pytest.fixture(autouse=True)
def one_thread():
    n = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(n)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_shortlist_recall_is_the_exact_prefix_share_of_the_truth(metric) -> None:
    x, q = matryoshka_like(1500, 32, 1), matryoshka_like(25, 32, 2)
    index = MatryoshkaIndex(32, metric=metric)
    index.add(x)
    truth = exact_neighbors(index, q, 10)
    k1s = [10, 20, 50, 200]
    got = shortlist_recall(index, q, truth, [8, 16, 32], k1s, chunk=400)  # chunks that do not divide the store
    for d in (8, 16):
        order = np.argsort(-scores_ref(q, x, d, metric), axis=1)
        want = [per_query_recall(order[:, :k1], truth).mean() for k1 in k1s]
        assert got[d] == pytest.approx(want)
    assert (got[32] == 1.0).all()  # the full prefix ranks the truth first
    assert (np.diff(got[8]) >= 0).all() and (got[16] >= got[8]).all()


def test_ivf_cover_bounds_the_ivf_shortlist() -> None:
    x, q = matryoshka_like(3000, 32, 3), matryoshka_like(40, 32, 4)
    index = MatryoshkaIndex(32)
    index.add(x)
    truth = exact_neighbors(index, q, 10)
    fs = index.build_first_stage("16/int8/ivf32/np4:1", persist=False)
    cover = ivf_truth_cover(fs, q, truth, index.gather, [1, 4, 32])
    assert cover[32] == 1.0 and cover[1] <= cover[4] <= cover[32]
    for p in (1, 4):
        for k1 in (20, 200):
            assert per_query_recall(fs.search(q, k1, nprobe=p), truth).mean() <= cover[p] + 1e-12


def test_stage1_probe_scales_a_flat_scan_to_the_corpus() -> None:
    x, q = matryoshka_like(40_000, 32, 5), matryoshka_like(100, 32, 6)
    index = MatryoshkaIndex(32)
    index.add(x)
    model = CostModel(index, q, [20, 40], {}, 0.9)
    probe, _ = model.stage1_probe(Funnel.parse("16/fp16:1").first, 40)
    fs = FirstStage.for_stage(Funnel.parse("16/fp16:1").first, "cosine")
    fs.train(x[:8192])
    fs.add(x)
    full = min(_timed(lambda: fs.search(q, 40)) for _ in range(3)) * 1000 / len(q)
    assert 0 < probe < 3 * full and probe > full / 5  # the sample's scan, scaled: the full scan's order of magnitude


def _timed(fn) -> float:
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def small():
    x, q = matryoshka_like(5000, 64, 20), matryoshka_like(100, 64, 21)
    index = MatryoshkaIndex(64)
    index.add(x)
    return index, q


def test_structure_whose_bound_exceeds_the_best_is_skipped_and_reported(small, monkeypatch) -> None:
    index, q = small
    # an injected stage-1 probe: every flat scan would take a second per query
    monkeypatch.setattr(CostModel, "stage1_probe", lambda self, st, k1: (1000.0 if st.kind == "flat" else 0.0, None))
    space = {"first": ["16/int8/hnsw", "32/fp16", "8/binary"], "k1": [20, 40, 80, 160], "mid_factors": (), "two_mids": False, "ef_factors": (1, 2)}
    lines: list[str] = []
    result = tune(index, queries=q, k=10, target_recall=0.9, space=space, repeats=1, single_queries=5, log=lines.append)
    assert result.funnel is not None and result.funnel.first.key == "16-int8-hnsw" and result.built == ["16-int8-hnsw"]
    why = {s.structure: s for s in result.skipped}
    assert set(why) == {"32-float16-flat", "8-binary-flat"}
    flat = why["32-float16-flat"]
    assert flat.reason == "bound" and flat.bound_ms >= 1000.0 and flat.best_ms < 1000.0 and flat.best_funnel.startswith("16/int8/hnsw")
    # the 8-d prefix cannot hold the truth with 160 candidates, whatever its codes
    assert why["8-binary-flat"].reason == "unreachable" and why["8-binary-flat"].shortlist_recall < 0.9
    assert not any(Funnel.parse(p.funnel).first.kind == "flat" for p in result.points)
    # the report lists them: tuning.md, the manifest record (mrl index info --json) and the log
    md, rec = result.markdown(), result.to_dict()
    assert "2 skipped" in md and "`32-float16-flat`: lower bound" in md and "`8-binary-flat`: even the exact 8-d" in md
    assert rec["structures_built"] == ["16-int8-hnsw"] and {s["structure"] for s in rec["structures_skipped"]} == set(why)
    assert all(s["why"] for s in rec["structures_skipped"])
    from mrl.cli.index_output import summary  # `mrl index info` says how much of the space was built

    assert "1 first-stage structures built, 2 skipped; see tuning.md" in summary({"count": 5000, "dim": 64, "metric": "cosine", "tuning": rec}, "idx")
    # progress: skipped structures count as done
    progress = [ln.split(",")[0] for ln in lines if ln.startswith("[")]
    assert progress == ["[1/3 structures (0 skipped)", "[2/3 structures (1 skipped)"]
    assert sum(ln.startswith("skipped 32-float16-flat (2/3)") or ln.startswith("skipped 8-binary-flat (3/3)") for ln in lines) == 2


def test_structure_within_reach_of_the_best_is_built(small, monkeypatch) -> None:
    index, q = small
    monkeypatch.setattr(CostModel, "stage1_probe", lambda self, st, k1: (0.0, None))
    space = {"first": ["16/int8/hnsw", "32/fp16"], "k1": [20, 40, 80, 160], "mid_factors": (), "two_mids": False, "ef_factors": (1,)}
    result = tune(index, queries=q, k=10, target_recall=0.9, space=space, repeats=1, single_queries=5)
    assert sorted(result.built) == ["16-int8-hnsw", "32-float16-flat"] and not result.skipped


def test_pruning_keeps_the_choice() -> None:
    """Pruned and exhaustive tuning choose the same funnel (one point per structure qualifies, far apart)."""
    x, q = matryoshka_like(12_000, 64, 7), matryoshka_like(120, 64, 8)
    index = MatryoshkaIndex(64)
    index.add(x)
    space = {"first": ["16/int8/hnsw", "32/fp16", "16/fp16", "8/binary"], "k1": [20, 40, 80, 160, 320], "mid_factors": (), "two_mids": False, "ef_factors": (1,)}
    kw = {"queries": q, "k": 10, "target_recall": 0.95, "space": space, "repeats": 3, "single_queries": 5}
    pruned = tune(index, **kw)
    exhaustive = tune(index, **kw, prune=False)
    assert pruned.funnel is not None and str(pruned.funnel) == str(exhaustive.funnel)
    assert pruned.skipped and len(pruned.built) < 4 and exhaustive.built and len(exhaustive.built) == 4
    # every funnel the pruned run measured, the exhaustive run measured with the same recall
    same = {p.funnel: p.recall for p in exhaustive.points}
    assert all(same[p.funnel] == pytest.approx(p.recall) for p in pruned.points if p.funnel in same)


def test_graph_bound_charges_the_distances_a_built_graph_needed(small, monkeypatch) -> None:
    index, q = small
    model = CostModel(index, q, [20, 40, 80], {16: np.array([0.5, 0.95, 1.0])}, 0.9)
    st = Funnel.parse("16/fp16/usearch:1").first
    monkeypatch.setattr(CostModel, "stage1_probe", lambda self, st, k1: (0.1, 100.0))  # sample graph: 0.1 ms for 100 distances
    assert model.min_k1(16) == 40 and model.bound_ms(st, 1.0) == (pytest.approx(0.1), 40)  # nothing built yet: the probe alone
    model.observe_graph(Funnel.parse("16/int8/hnsw:1").first, 80, 5000.0)  # a wider search than the shortlist needs: no bound
    assert model.bound_ms(st, 1.0)[0] == pytest.approx(0.1)
    model.observe_graph(Funnel.parse("16/int8/hnsw:1").first, 40, 1000.0)  # same degree, same breadth: 1000 distances
    assert model.bound_ms(st, 1.0)[0] == pytest.approx(0.75 * 1000 * 0.1 / 100)
    model.observe_rerank(32, 40, 0.4)  # 0.01 ms per candidate at 32 dims: the first rerank (at D = 64 here) costs at least that
    assert model.bound_ms(st, 1.0)[0] == pytest.approx(0.75 + 40 * 0.01)
    assert model.bound_ms(Funnel.parse("16/fp16/usearch/m16:1").first, 1.0)[0] == pytest.approx(0.1 + 0.4)  # another degree: not charged


def test_graph_bound_charges_the_memory_factor_a_built_graph_showed_over_its_probe(small, monkeypatch) -> None:
    """A probe's sample sits in cache; once a probed graph is built and searched, later graph probes
    of that kind are charged the smallest measured whole-graph / probe cost per distance."""
    index, q = small
    model = CostModel(index, q, [20, 40, 80], {16: np.array([0.5, 0.95, 1.0]), 32: np.array([0.9, 1.0, 1.0])}, 0.9)
    built, later = Funnel.parse("32/int8/hnsw:1").first, Funnel.parse("16/int8/hnsw:1").first
    model.probe_cost[built.key] = 0.001  # its probe: 1 us per distance
    model.observe_graph(built, 40, 1000.0, ms_per_query=3.0)  # the whole graph: 3 us per distance
    model.observe_graph(built, 80, 2000.0, ms_per_query=8.0)  # 4 us at a wider breadth: the smaller factor is kept
    assert model.memory_factor == {"hnsw": [3.0, 4.0]}
    monkeypatch.setattr(CostModel, "stage1_probe", lambda self, st, k1: (0.1, 100.0))
    assert model.bound_ms(later, 100.0)[0] == pytest.approx(3.0 * 0.75 * 1000.0 * 0.1 / 100)  # shortlist 40: the distances seen at ef <= 40, at 3x
    assert model.bound_ms(Funnel.parse("16/fp16:1").first, 100.0)[0] < 1.0  # another kind: not charged
    model.observe_graph(Funnel.parse("16/int8/hnsw/m16:1").first, 40, 500.0, ms_per_query=9.0)  # never probed: no factor
    assert model.memory_factor == {"hnsw": [3.0, 4.0]}


def test_probe_records_its_cost_per_distance(small) -> None:
    index, q = small
    model = CostModel(index, q, [20, 40], {16: np.array([0.95, 1.0])}, 0.9)
    st = Funnel.parse("16/int8/hnsw:1").first
    ms, distances = model.stage1_probe(st, 20)
    assert distances and model.probe_cost[st.key] == pytest.approx(ms / distances)
