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
    q = quantize(x, "int8")
    assert q.dtype == np.int8 and q[0, 1] == -127 and q[0, 3] == 127
    b = quantize(x, "binary")
    assert b.shape == (1, 2) and b.dtype == np.uint8
    assert np.unpackbits(b, axis=1)[0, :9].tolist() == [1, 0, 0, 1, 0, 1, 1, 0, 1]
    with pytest.raises(MRLError, match="precision"):
        quantize(x, "int4")
