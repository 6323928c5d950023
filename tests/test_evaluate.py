import numpy as np
import pytest

from mrl.errors import MRLError
from mrl.evaluate.baselines import reduce_embeddings
from mrl.evaluate.metrics import per_dim_retrieval, retrieval_metrics, topk_accuracy
from mrl.evaluate.probe import fit_linear_probe
from mrl.knn import knn_search


def test_knn_search_matches_brute_force():
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)
    _, ids = knn_search(db, q, 5, metric="ip")
    np.testing.assert_array_equal(ids, np.argsort(-(q @ db.T), axis=1)[:, :5])
    _, ids = knn_search(db, q, 5, metric="l2")
    d2 = ((q[:, None, :] - db[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(ids, np.argsort(d2, axis=1)[:, :5])


def test_retrieval_metrics_by_hand():
    # query 0: relevant at ranks 1 and 3; query 1: relevant at rank 2 only.
    neigh = np.array([[1, 0, 1], [0, 1, 0]])
    out = retrieval_metrics(neigh, np.array([1, 1]), ks=(3,))
    assert out["1nn"] == 0.5
    ap0 = (1 / 1 + 2 / 3) / 3  # AP normalised by k, as in the paper
    ap1 = (1 / 2) / 3
    assert out["map@3"] == pytest.approx((ap0 + ap1) / 2)
    assert out["recall@3"] == 1.0 and out["precision@3"] == pytest.approx(3 / 6)


def test_per_dim_retrieval_uses_only_the_prefix():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    x = 6 * rng.normal(size=(200, 8)).astype(np.float32)
    x[:, 0] = labels * 10.0  # the first coordinate alone separates the classes
    res = per_dim_retrieval(x[:150], labels[:150], x[150:], labels[150:], [1, 8])
    assert res[1]["1nn"] == 1.0 and res[1]["map@10"] == pytest.approx(1.0)
    assert res[8]["1nn"] < 1.0
    with pytest.raises(MRLError, match="columns"):
        per_dim_retrieval(x[:150], labels[:150], x[150:, :4], labels[150:], [1])


def test_topk_accuracy_and_validation():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], np.float32)
    assert topk_accuracy(logits, np.array([1, 2]), 1) == 0.5
    assert topk_accuracy(logits, np.array([1, 2]), 3) == 1.0
    with pytest.raises(MRLError, match="k must be"):
        topk_accuracy(logits, np.array([1, 2]), 4)
    with pytest.raises(MRLError, match="integers"):
        topk_accuracy(logits, np.array([1.0, 2.0]), 1)


def test_probe_and_baselines():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 32)).astype(np.float32)
    x[:, 5] += 3 * y
    before = x.copy()
    tr, (te,) = reduce_embeddings("pca", x[:300], [x[300:]], 4)
    assert tr.shape == (300, 4) and te.shape == (100, 4)
    sub, _ = reduce_embeddings("random", x, [], 8, seed=3)
    assert sub.shape == (400, 8)
    np.testing.assert_array_equal(x, before)
    probe = fit_linear_probe(x[:300], y[:300])
    acc = (probe.predict_logits(x[300:]).argmax(1) == y[300:]).mean()
    assert acc > 0.8
    with pytest.raises(MRLError, match="unknown reduction"):
        reduce_embeddings("svd", x, [], 4)
    x[0, 0] = np.inf
    with pytest.raises(MRLError, match="NaN/Inf"):
        fit_linear_probe(x, y)


def test_pca_reductions_fit_once_and_equal_a_d_component_pca():
    from sklearn.decomposition import PCA

    from mrl.evaluate.baselines import reductions

    rng = np.random.default_rng(4)
    x = (rng.normal(size=(200, 5)) @ rng.normal(size=(5, 16)) + 0.1 * rng.normal(size=(200, 16))).astype(np.float32)
    out = list(reductions("pca", x[:150], [x[150:]], [2, 8]))
    assert [d for d, _, _ in out] == [2, 8]
    for d, tr, (te,) in out:
        ref = PCA(n_components=d, svd_solver="full").fit(x[:150])
        np.testing.assert_allclose(tr, ref.transform(x[:150]), atol=1e-4)
        np.testing.assert_allclose(te, ref.transform(x[150:]), atol=1e-4)
        assert tr.flags["C_CONTIGUOUS"]
    with pytest.raises(MRLError, match="d must be in"):
        list(reductions("pca", x, [], [0]))


# --------------------------------------------------------------------------- report: chance, test-set size, identity (issue 25 §2.16)
def test_chance_levels_match_random_rankings():
    """The chance levels the report draws equal the metrics of random rankings (simulated)."""
    from mrl.evaluate.metrics import chance_levels

    rng = np.random.default_rng(0)
    db = rng.choice(4, size=50_000, p=[0.55, 0.25, 0.15, 0.05])
    queries = rng.choice(4, size=4_000, p=[0.1, 0.2, 0.3, 0.4])
    want = chance_levels(db, queries, 4, ks=(10,))
    got = retrieval_metrics(db[rng.integers(0, db.size, size=(queries.size, 10))], queries, (10,))
    for m in ("1nn", "map@10", "recall@10", "precision@10"):
        assert got[m] == pytest.approx(want[m], abs=0.01), m
    assert want["top1"] == 0.25 and want["top5"] == 1.0


def _record(method, mode, seed, top1, test_set=True):
    rec = {"method": method, "mode": mode, "seed": seed, "model": f"runs/{mode}-s{seed}", "dims": [4, 16], "config": {"epochs": 1}, "config_key": mode,
           "per_dim": {"4": {"top1": top1, "1nn": top1, "map@10": top1}, "16": {"top1": top1 + 0.01, "1nn": top1, "map@10": top1}}}
    if test_set:
        rec["test_set"] = {"data": {"dataset": "fashion_mnist", "data_root": "/data/fm", "val_size": 5000}, "queries": 10_000, "database": 55_000, "classes": 10,
                           "chance": {"top1": 0.1, "top5": 0.5, "1nn": 0.1, "map@10": 0.0363}}
    return rec


def test_report_states_chance_test_size_and_identity_and_fixes_the_y_axes(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from mrl.report import render

    made = []
    real = plt.subplots
    monkeypatch.setattr(render.plt, "subplots", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    monkeypatch.setattr(render.plt, "close", lambda fig: None)
    recs = [_record("MRL", "mrl", 0, 0.80), _record("MRL", "mrl", 1, 0.81), _record("FF-16", "ff", 0, 0.79)]
    md = render.write_report(recs, tmp_path / "rep")["md"].read_text()
    assert "Test set: fashion_mnist (data_root=/data/fm, val_size=5000): 10,000 test queries against 55,000 database items, 10 classes" in md
    assert "sampling standard error of at most 0.50 points" in md
    assert "Chance level (an embedding that carries no information; dotted line in the plot): Head top-1 accuracy 10.0 %, 1-NN accuracy 10.0 %, mAP@10 3.6 %." in md
    assert "MRL: 2 seed(s) (seed 0 runs/mrl-s0, seed 1 runs/mrl-s1)" in md
    (_, axes), = made
    for ax in axes.flat[:3]:
        assert ax.get_ylim() == (0.0, 100.0)  # not autoscaled around a 1-point difference
        assert any(line.get_label().startswith("chance (") for line in ax.get_lines())
    old = render.write_report([_record("MRL", "mrl", 0, 0.8, test_set=False)], tmp_path / "old")["md"].read_text()
    assert "1 record(s) carry no test-set size or chance level" in old


def test_evaluated_records_carry_their_test_set(tiny_config, tmp_path):
    from mrl.evaluate.perdim import Encoded, evaluate_baseline, test_set_info

    rng = np.random.default_rng(0)
    train = Encoded(rng.normal(size=(200, 8)).astype(np.float32), np.zeros((1, 200, 4)), rng.integers(0, 4, 200))
    test = Encoded(rng.normal(size=(50, 8)).astype(np.float32), np.zeros((1, 50, 4)), rng.integers(0, 4, 50))
    info = test_set_info(train, test, tiny_config.to_dict())
    assert info["queries"] == 50 and info["database"] == 200 and info["classes"] == 4 and info["data"]["dataset"] == "fashion_mnist"
    assert info["chance"]["top1"] == 0.25 and 0 < info["chance"]["map@10"] < info["chance"]["1nn"]
    rec = evaluate_baseline("pca", train, test, [2, 8], source_config=tiny_config.to_dict())
    assert rec["test_set"]["queries"] == 50
