"""IR metrics, per-dim evaluation errors and report rendering of IR records (no model needed)."""

import numpy as np
import pytest

from mrl.errors import MRLError
from mrl.evaluate.baselines import pca_transform
from mrl.evaluate.ir import ir_metrics, ir_record, per_dim_ir
from mrl.report.render import record_metrics, write_report


def test_ir_metrics_by_ir_measures_on_a_hand_computed_fixture():
    """The one implementation (ir-measures) gives the textbook values: graded gains, a hit at rank 2,
    a query with no hit, and FAISS's -1 padding."""
    pad = [-1] * 7
    ids = np.array([[5, 1, 4, *pad], [8, 0, 7, *pad], [0, 1, 2, *pad]])
    qrels = [(1,), (7, 8), (9,)]
    grades = [(1,), (2, 1), (1,)]
    l2 = np.log2
    graded = ir_metrics(ids, qrels, ks=(1, 10), grades=grades)
    assert graded["ndcg@10"] == pytest.approx((1 / l2(3) + (1 + 2 / l2(4)) / (2 + 1 / l2(3)) + 0) / 3)
    assert graded["mrr@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert graded["recall@1"] == pytest.approx((0 + 1 / 2 + 0) / 3)
    assert graded["recall@10"] == pytest.approx((1 + 1 + 0) / 3)
    binary = ir_metrics(ids, qrels, ks=(10,))
    assert binary["ndcg@10"] == pytest.approx((1 / l2(3) + (1 + 1 / l2(4)) / (1 + 1 / l2(3))) / 3)


def test_per_dim_ir_refuses_bad_inputs():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(50, 16)).astype(np.float32)
    q = c[:5] + 0.01
    qrels = [(i,) for i in range(5)]
    res = per_dim_ir(q, c, qrels, [4, 16])
    assert res[16]["ndcg@10"] == pytest.approx(1.0)
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MRLError, match="NaN"):
        per_dim_ir(bad, c, qrels, [4])
    with pytest.raises(MRLError, match="16-d but corpus embeddings are 12-d"):
        per_dim_ir(q, c[:, :12], qrels, [4])
    with pytest.raises(MRLError, match="must lie in"):
        per_dim_ir(q, c, qrels, [32])
    with pytest.raises(MRLError, match="qrels"):
        per_dim_ir(q, c, qrels[:3], [4])
    with pytest.raises(MRLError, match="outside"):
        per_dim_ir(q, c, [(60,)] * 5, [4])


def test_pca_prefix_matches_reduced_pca():
    from mrl.evaluate.baselines import reduce_embeddings

    rng = np.random.default_rng(1)
    x = (rng.normal(size=(300, 6)) @ rng.normal(size=(6, 12))).astype(np.float32)
    (full,) = pca_transform(x, x)
    red, _ = reduce_embeddings("pca", x, [], 4)
    np.testing.assert_allclose(np.abs(full[:, :4]), np.abs(red), atol=1e-3)  # same axes up to sign


def test_report_renders_ir_records(tmp_path):
    rng = np.random.default_rng(0)
    c = rng.normal(size=(40, 8)).astype(np.float32)
    q = c[:6] + 0.1 * rng.normal(size=(6, 8)).astype(np.float32)
    recs = [ir_record("Base (truncated)", "truncate", q, c, [(i,) for i in range(6)], [2, 4, 8])]
    assert record_metrics(recs) == ("ndcg@10", "recall@10", "recall@100", "mrr@10")
    paths = write_report(recs, tmp_path / "r", title="text")
    md = paths["md"].read_text()
    assert "## nDCG@10 (%)" in md and "Base (truncated)" in md and "| method | d=2 | d=4 | d=8 |" in md
    assert record_metrics([{"per_dim": {"2": {"top1": 0.5, "top5": 0.9, "1nn": 0.4}}}]) == ("top1", "1nn")
