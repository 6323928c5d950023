import numpy as np
import pytest

from mrl.embeddings import quantize, truncate
from mrl.errors import MRLError


def test_truncate_then_normalize_does_not_touch_input():
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    before = x.copy()
    t = truncate(x, 4)
    assert t.shape == (5, 4)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t, x[:, :4] / np.linalg.norm(x[:, :4], axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(x, before)
    raw = truncate(x, 16, normalize=False)
    raw[0, 0] = 123.0
    assert x[0, 0] != 123.0


@pytest.mark.parametrize("bad", [0, 17, 2.5])
def test_truncate_rejects_bad_dim(bad):
    with pytest.raises(MRLError, match="truncate_dim"):
        truncate(np.ones((2, 16), np.float32), bad)


def test_rejects_nan_and_wrong_shape():
    x = np.ones((3, 8), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(MRLError, match="NaN"):
        truncate(x, 4)
    with pytest.raises(MRLError, match="2-D"):
        truncate(np.ones(8, np.float32), 4)
    with pytest.raises(MRLError, match="floating"):
        truncate(np.ones((2, 8), np.int64), 4)


def test_quantize():
    x = np.array([[0.5, -1.0, 0.0, 2.0, -0.1, 0.3, 0.2, -0.2, 1.0]], np.float32)
    b = quantize(x, "binary")
    assert b.shape == (1, 2) and b.dtype == np.uint8
    assert np.unpackbits(b, axis=1)[0, :9].tolist() == [1, 0, 0, 1, 0, 1, 1, 0, 1]
    with pytest.raises(MRLError, match="precision"):
        quantize(x, "int4")


def test_quantize_int8_is_faiss_scalar_quantizer_with_calibration():
    """int8 = FAISS QT_8bit codes - 128: per-dim ranges from the calibration rows (min -> -128,
    max -> 127, within one step of the value), values outside the ranges clip."""
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(200, 16)).astype(np.float32)
    q = quantize(corpus, "int8")
    assert q.dtype == np.int8 and q.shape == corpus.shape
    assert (q.min(axis=0) == -128).all() and (q.max(axis=0) == 127).all()
    lo, step = corpus.min(axis=0), (corpus.max(axis=0) - corpus.min(axis=0)) / 255
    assert (np.abs((q.astype(np.float32) + 128) * step + lo - corpus) <= step + 1e-6).all()
    queries = np.vstack([corpus[:2], corpus.max(axis=0) + 1, corpus.min(axis=0) - 1])
    qq = quantize(queries, "int8", calibration=corpus)
    assert (qq[:2] == q[:2]).all() and (qq[2] == 127).all() and (qq[3] == -128).all()
    with pytest.raises(MRLError, match="calibration embeddings are 8-d"):
        quantize(queries, "int8", calibration=corpus[:, :8])
