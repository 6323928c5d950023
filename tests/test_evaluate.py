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
