"""Funnel specs and funnel search against a brute-force NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from mrl.index import Funnel, FunnelError, MatryoshkaIndex, Stage


def matryoshka_like(n: int, d: int, seed: int) -> np.ndarray:
    """Random vectors whose variance decays with the coordinate, so prefixes carry most signal."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * np.geomspace(4.0, 0.2, d)).astype(np.float32)


def scores_ref(q: np.ndarray, x: np.ndarray, d: int, metric: str) -> np.ndarray:
    qp, xp = q[:, :d].astype(np.float64), x[:, :d].astype(np.float64)
    if metric == "cosine":
        qp /= np.linalg.norm(qp, axis=1, keepdims=True)
        xp /= np.linalg.norm(xp, axis=1, keepdims=True)
        return qp @ xp.T
    return -((qp[:, None, :] - xp[None, :, :]) ** 2).sum(-1)


def funnel_ref(q: np.ndarray, x: np.ndarray, stages: list[tuple[int, int]], metric: str) -> np.ndarray:
    """Per-query loop reference: full scan at d_1, then rerank survivors at each later prefix."""
    out = []
    for qi in q:
        cand = np.arange(x.shape[0])
        for d, k in stages:
            s = scores_ref(qi[None], x[cand], d, metric)[0]
            cand = cand[np.argsort(-s, kind="stable")[:k]]
        out.append(cand)
    return np.array(out)


def test_parse_roundtrip_and_options() -> None:
    f = Funnel.parse("32:1000 -> 128:100 -> 512:10")
    assert f.stages == (Stage(32, 1000), Stage(128, 100), Stage(512, 10)) and f.k == 10
    assert Funnel.parse(str(f)) == f and str(f) == "32:1000 -> 128:100 -> 512:10"
    g = Funnel.parse("64/binary:2000->512:10")
    assert g.first == Stage(64, 2000, "binary", "flat") and str(g) == "64/binary:2000 -> 512:10"
    assert Funnel.parse("32/hnsw:500 -> 64:10").first.kind == "hnsw"
    assert Funnel.parse("16/int8:100").first.precision == "int8"
    h = Funnel.parse("32/hnsw/ef400:100 -> 64:10")
    assert h.first.ef == 400 and str(h) == "32/hnsw/ef400:100 -> 64:10"
    assert Funnel.of([(32, 100), (64, 10)]) == Funnel.parse("32:100 -> 64:10")
    assert Funnel.exact(512, 10) == Funnel.parse("512:10")
    assert f.flops(10_000) == 10_000 * 32 + 1000 * 128 + 100 * 512 and f.rerank_flops() == 1000 * 128 + 100 * 512
    ivf = Funnel.parse("128/int8/ivf4096/c32/np24:200 -> 384:10")
    assert ivf.first == Stage(128, 200, "int8", "ivf", nlist=4096, coarse=32, nprobe=24) and ivf.first.key == "128-int8-ivf4096-c32"
    us = Funnel.parse("64/f16/usearch/m16/ef160:100 -> 384:10")
    assert us.first == Stage(64, 100, "float16", "usearch", ef=160, m=16) and str(us) == "64/fp16/usearch/m16/ef160:100 -> 384:10"
    assert Funnel.parse(str(ivf)) == ivf and Funnel.parse("32/hnsw/m32:10").first.key == "32-float32-hnsw" != Funnel.parse("32/hnsw/m16:10").first.key


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("128:100 -> 32:10", "increase"),
        ("32:100 -> 32:10", "increase"),
        ("32:10 -> 64:100", "grow"),
        ("32:0", "positive"),
        ("32-100", "cannot parse"),
        ("", "cannot parse"),
        ("32/fp8:100", "unknown stage option"),
        ("12/binary:100", "multiple of 8"),
        ("16:100 -> 64/int8:10", "only the first stage"),
        ("16/binary/hnsw:100", "scanned flat"),
        ("16/ef100:10", "needs /hnsw"),
        ("16/ivf8/np16:10", "probes more"),
        ("16/ivf8/c32:10", "clusters on more"),
        ("16/c8:10", "IVF options"),
        ("16/m8:10", "graph's degree"),
        ("16/ivf0:10", "positive"),
        ("16/hnsw:100 -> 32/ivf4:10", "only the first stage"),
        ("16/hnsw/ef5:10", "ef >= k"),
    ],
)
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(FunnelError, match=match):
        Funnel.parse(spec)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_funnel_matches_bruteforce(metric: str) -> None:
    x, q = matryoshka_like(3000, 48, 0), matryoshka_like(40, 48, 1)
    index = MatryoshkaIndex(48, metric=metric)
    index.add(x[:1000])
    index.add(x[1000:])  # two segments: gathering crosses them
    for stages in ([(8, 300), (16, 60), (48, 10)], [(4, 1000), (48, 5)]):
        _, ids = index.search(q, funnel=Funnel.of(stages))
        assert (ids == funnel_ref(q, x, stages, metric)).all()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_one_stage_is_bruteforce(metric: str) -> None:
    x, q = matryoshka_like(2000, 32, 2), matryoshka_like(30, 32, 3)
    index = MatryoshkaIndex(32, metric=metric)
    index.add(x)
    scores, ids = index.search(q, 10)
    ref = scores_ref(q, x, 32, metric)
    gt = np.argsort(-ref, axis=1)[:, :10]
    assert (ids == gt).all()
    np.testing.assert_allclose(scores, np.take_along_axis(ref, gt, 1), rtol=1e-4, atol=1e-3)


def test_search_never_mutates_inputs_and_is_repeatable() -> None:
    x, q = matryoshka_like(1500, 32, 4), matryoshka_like(20, 32, 5)
    x0, q0 = x.copy(), q.copy()
    index = MatryoshkaIndex(32, dtype="float16")
    index.add(x)
    first = index.search(q, funnel="8:200 -> 16:50 -> 32:10")
    again = index.search(q, funnel="8:200 -> 16:50 -> 32:10")
    index.search(q, funnel="8:100 -> 32:10")  # another config in between must not disturb the next
    assert (first[1] == again[1]).all() and (index.search(q, funnel="8:200 -> 16:50 -> 32:10")[1] == first[1]).all()
    assert (x == x0).all() and (q == q0).all()


def test_approximate_first_stages_reach_high_recall() -> None:
    x, q = matryoshka_like(4000, 64, 6), matryoshka_like(50, 64, 7)
    index = MatryoshkaIndex(64)
    index.add(x)
    _, exact = index.search(q, 10)
    specs = ("16/int8:400 -> 64:10", "16/fp16:400 -> 64:10", "32/binary:1500 -> 64:10", "16/hnsw/ef400:400 -> 64:10", "16/int8/hnsw/m16/ef400:400 -> 64:10",
             "16/ivf32/np8:400 -> 64:10", "32/int8/ivf32/c8/np8:400 -> 64:10", "16/usearch/ef400:400 -> 64:10", "16/fp16/usearch/m16/ef400:400 -> 64:10")
    for spec in specs:
        _, ids, st = index.search(q, funnel=spec, return_stats=True)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
        assert recall > 0.8, (spec, recall)
        f = Funnel.parse(spec)
        flat_cost = f.flops(index.count) * len(q)
        first = st.stages[0]
        if f.first.kind == "flat":
            assert st.flops == flat_cost and first["distances"] == index.count
        else:  # measured distance computations
            assert st.flops < flat_cost and 0 < first["distances"] < index.count
        assert first["bytes"] > 0 and [s["stage"] for s in st.stages[1:]] == ["64:10"] and st.stages[1]["bytes"] == f.first.k * 64 * 4
        _, one = index.search(q[:1], funnel=spec)  # the single-query path gives the batch path's answer
        assert (one == ids[:1]).all(), spec


def test_early_exit_saves_work_when_prefixes_agree() -> None:
    rng = np.random.default_rng(8)
    x = np.zeros((2000, 32), dtype=np.float32)
    x[:, :8] = rng.normal(size=(2000, 8))  # all information in the first 8 dims: later stages agree
    x[:, 8:] = 1e-4 * rng.normal(size=(2000, 24))
    q = x[:50] + 0.01 * rng.normal(size=(50, 32)).astype(np.float32)
    index = MatryoshkaIndex(32)
    index.add(x)
    spec = "8:200 -> 16:50 -> 32:10"
    _, plain, st0 = index.search(q, funnel=spec, return_stats=True)
    _, early, st = index.search(q, funnel=spec, early_exit=True, return_stats=True)
    assert st0.saved_fraction == 0.0 and st0.rerank_saved_fraction == 0.0
    assert sum(st.exited_after_stage.values()) > 25 and 0 < st.saved_fraction < st.rerank_saved_fraction < 1
    assert st.flops == pytest.approx(st.flops_without_early_exit - sum(st.exited_after_stage.values()) * 50 * 32)
    agree = np.mean([set(a) == set(b) for a, b in zip(plain, early)])
    assert agree > 0.9
