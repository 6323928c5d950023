import math

import pytest
import torch
import torch.nn.functional as F

from mrl.errors import MRLError
from mrl.losses import MatryoshkaEmbeddingLoss, MatryoshkaLoss, in_batch_negatives_loss
from mrl.weighting import create_weighting

DIMS = (4, 8, 16)


def test_matches_explicit_per_dim_loop_with_weights():
    torch.manual_seed(0)
    logits = torch.randn(3, 10, 6, requires_grad=True)
    target = torch.randint(0, 6, (10,))
    weights = [2.0, 1.0, 0.5]
    out = MatryoshkaLoss(DIMS, matryoshka_weights=weights, label_smoothing=0.1)(logits, target)
    ref = [F.cross_entropy(logits[i], target, label_smoothing=0.1) for i in range(3)]
    assert torch.allclose(out.total, sum(w * r for w, r in zip(weights, ref)))
    assert torch.allclose(out.per_dim, torch.stack(ref).detach())
    out.total.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_n_dims_per_step_samples_a_subset():
    torch.manual_seed(1)
    loss = MatryoshkaLoss(DIMS, n_dims_per_step=1)
    out = loss(torch.randn(3, 5, 4), torch.randint(0, 4, (5,)))
    assert int(out.active.sum()) == 1
    assert torch.isnan(out.per_dim).sum() == 2
    assert math.isfinite(out.total.item())


def test_embedding_loss_truncates_then_normalizes():
    torch.manual_seed(0)
    a, p = torch.randn(6, 16), torch.randn(6, 16)
    out = MatryoshkaEmbeddingLoss(DIMS)(a, p)
    ref = [in_batch_negatives_loss(F.normalize(a[:, :m], dim=-1), F.normalize(p[:, :m], dim=-1)) for m in DIMS]
    assert torch.allclose(out.per_dim, torch.stack(ref))
    assert torch.allclose(out.total, sum(ref))


def test_weights_follow_the_device_of_the_logits():
    loss = MatryoshkaLoss(DIMS, matryoshka_weights=[1, 2, 3]).to(torch.float64)
    out = loss(torch.randn(3, 4, 5, dtype=torch.float64), torch.randint(0, 5, (4,)))
    assert out.total.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"matryoshka_weights": [1, 2]}, "one weight per dim"),
        ({"matryoshka_weights": [1, -1, 1]}, ">= 0"),
        ({"matryoshka_weights": [0, 0, 0]}, "all zero"),
        ({"n_dims_per_step": 4}, "n_dims_per_step"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(MRLError, match=match):
        MatryoshkaLoss(DIMS, **kwargs)


def test_wrong_logits_shape_and_unknown_weighting():
    with pytest.raises(MRLError, match="expects logits"):
        MatryoshkaLoss(DIMS)(torch.randn(2, 4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(MRLError, match="unknown weighting"):
        create_weighting("nope", 3)
