import pytest
import torch

from mrl.errors import MRLError
from mrl.heads import MatryoshkaLinear

DIMS = (2, 4, 8, 16, 32)


def test_mrl_heads_read_their_prefix_only():
    head = MatryoshkaLinear(32, 5, DIMS)
    x = torch.randn(7, 32)
    out = head(x)
    assert out.shape == (len(DIMS), 7, 5)
    y = x.clone()
    y[:, 4:] = torch.randn(7, 28)  # changing coordinates beyond 4 must not move the 2- and 4-dim heads
    out2 = head(y)
    assert torch.allclose(out[:2], out2[:2])
    assert not torch.allclose(out[2:], out2[2:])
    for i, m in enumerate(DIMS):
        assert torch.allclose(out[i], head.heads[i](x[:, :m]))


def test_mrl_e_chunked_equals_naive_sliced_loop():
    torch.manual_seed(0)
    head = MatryoshkaLinear(32, 5, DIMS, efficient=True).double()
    x = torch.randn(11, 32, dtype=torch.float64, requires_grad=True)
    fast = head(x)
    w, b = head.linear.weight, head.linear.bias
    naive = torch.stack([x[:, :m] @ w[:, :m].T + b for m in DIMS])
    assert torch.allclose(fast, naive, atol=1e-12)
    g1 = torch.autograd.grad(fast.sum(), (x, w))
    g2 = torch.autograd.grad(naive.sum(), (x, w))
    assert all(torch.allclose(a, c, atol=1e-10) for a, c in zip(g1, g2))


def test_state_dict_keys_are_clean():
    assert sorted(MatryoshkaLinear(8, 3, (4, 8)).state_dict()) == ["heads.0.bias", "heads.0.weight", "heads.1.bias", "heads.1.weight"]
    assert sorted(MatryoshkaLinear(8, 3, (4, 8), efficient=True).state_dict()) == ["linear.bias", "linear.weight"]


def test_bad_inputs():
    with pytest.raises(MRLError, match="larger than the embedding"):
        MatryoshkaLinear(16, 3, (8, 32))
    with pytest.raises(MRLError, match="expects input"):
        MatryoshkaLinear(16, 3, (8, 16))(torch.randn(4, 12))
