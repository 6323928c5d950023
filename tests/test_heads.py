import pytest
import torch
import torch.nn.functional as F

from mrl.errors import MRLError
from mrl.heads import MatryoshkaLinear
from mrl.losses import MatryoshkaLoss

DIMS = (2, 4, 8, 16, 32)


def _per_head_reference(head: MatryoshkaLinear, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The unfused computation: one small matmul per prefix on independent leaf copies of the weights."""
    leaves = []
    outs = []
    for i, m in enumerate(head.matryoshka_dims):
        if head.efficient:
            w = head.weight[:, :m]
            b = head.bias + (head.prefix_bias[i] if head.prefix_bias is not None else 0)
            scale = head.log_scale[i].exp() if head.log_scale is not None else 1.0
            outs.append(scale * (x[:, :m] @ w.T) + b)
        else:
            w = head.weight[i, :, :m].detach().clone().requires_grad_(True)
            b = head.bias[i].detach().clone().requires_grad_(True)
            leaves += [w, b]
            outs.append(x[:, :m] @ w.T + b)
    return torch.stack(outs), leaves


def test_fused_mrl_equals_per_head_outputs_and_gradients():
    torch.manual_seed(0)
    head = MatryoshkaLinear(32, 5, DIMS).double()
    x = torch.randn(11, 32, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (11,))
    fused = head(x)
    ref, leaves = _per_head_reference(head, x)
    assert torch.allclose(fused, ref, atol=1e-12)
    # One fused cross-entropy vs a separate cross-entropy per head.
    loss = MatryoshkaLoss(DIMS, matryoshka_weights=[2, 1, 1, 0.5, 1], label_smoothing=0.1)
    total = loss(fused, target).total
    ref_total = sum(w * F.cross_entropy(ref[i], target, label_smoothing=0.1) for i, w in enumerate([2, 1, 1, 0.5, 1]))
    assert torch.allclose(total, ref_total, atol=1e-12)
    gx, gw, gb = torch.autograd.grad(total, (x, head.weight, head.bias))
    rgrads = torch.autograd.grad(ref_total, (x, *leaves))
    assert torch.allclose(gx, rgrads[0], atol=1e-12)
    for i, m in enumerate(DIMS):
        assert torch.allclose(gw[i, :, :m], rgrads[1 + 2 * i], atol=1e-12)
        assert torch.allclose(gb[i], rgrads[2 + 2 * i], atol=1e-12)
        assert gw[i, :, m:].abs().sum() == 0  # masked entries never move


@pytest.mark.parametrize("calibration", ["none", "scale", "bias", "scale_bias"])
def test_fused_mrl_e_equals_sliced_loop(calibration):
    torch.manual_seed(1)
    head = MatryoshkaLinear(32, 5, DIMS, efficient=True, prefix_calibration=calibration).double()
    with torch.no_grad():  # non-trivial calibration values
        if head.log_scale is not None:
            head.log_scale.uniform_(-1, 1)
        if head.prefix_bias is not None:
            head.prefix_bias.normal_()
    x = torch.randn(9, 32, dtype=torch.float64, requires_grad=True)
    fused = head(x)
    ref, _ = _per_head_reference(head, x)
    assert torch.allclose(fused, ref, atol=1e-12)
    params = [x] + [p for p in head.parameters()]
    g1 = torch.autograd.grad((fused * torch.arange(5.0, dtype=torch.float64)).sum(), params)
    g2 = torch.autograd.grad((ref * torch.arange(5.0, dtype=torch.float64)).sum(), params)
    assert all(torch.allclose(a, c, atol=1e-10) for a, c in zip(g1, g2))
    for i in range(len(DIMS)):  # the single-head path used by cascades agrees
        assert torch.allclose(head.head_logits(x, i), fused[i], atol=1e-12)


@pytest.mark.parametrize("calibration", ["owner", "owner_bias"])
def test_owner_routing_keeps_the_forward_and_trains_each_column_block_from_its_smallest_head(calibration):
    torch.manual_seed(2)
    plain = MatryoshkaLinear(32, 5, DIMS, efficient=True, prefix_calibration="bias").double()
    owner = MatryoshkaLinear(32, 5, DIMS, efficient=True, prefix_calibration=calibration).double()
    with torch.no_grad():
        plain.prefix_bias.normal_()
    owner.load_state_dict(plain.state_dict() if calibration == "owner_bias" else {k: v for k, v in plain.state_dict().items() if k != "prefix_bias"}, strict=False)
    if calibration == "owner":
        plain.prefix_bias.data.zero_()
    x = torch.randn(9, 32, dtype=torch.float64, requires_grad=True)
    out = owner(x)
    assert torch.allclose(out, plain(x), atol=1e-12)  # same logits as MRL-E: only the training gradient differs
    weights = torch.arange(5.0, dtype=torch.float64)
    gx, gw = torch.autograd.grad((out * weights).sum(), (x, owner.weight))
    assert torch.allclose(gx, torch.autograd.grad((plain(x) * weights).sum(), x)[0], atol=1e-12)  # the embedding sees every head
    # Reference: head i reads the columns of smaller prefixes as constants and trains only its own block.
    w = owner.weight.detach().clone().requires_grad_(True)
    prev = 0
    ref = []
    for m in DIMS:
        wi = torch.cat([w[:, :prev].detach(), w[:, prev:m]], dim=1)
        ref.append(x[:, :m] @ wi.T)
        prev = m
    (gw_ref,) = torch.autograd.grad((torch.stack(ref) * weights).sum(), w)
    assert torch.allclose(gw, gw_ref, atol=1e-12)
    assert gw[:, :2].abs().sum() > 0 and gw[:, DIMS[-1]:].abs().sum() == 0


def test_n_dims_per_step_gives_no_gradient_to_unsampled_heads():
    torch.manual_seed(3)
    head = MatryoshkaLinear(32, 5, DIMS)
    loss = MatryoshkaLoss(DIMS, n_dims_per_step=2)
    out = loss(head(torch.randn(6, 32)), torch.randint(0, 5, (6,)))
    out.total.backward()
    touched = head.weight.grad.abs().sum(dim=(1, 2)) > 0
    assert touched.tolist() == out.active.tolist() and int(out.active.sum()) == 2


def test_mrl_heads_read_their_prefix_only():
    head = MatryoshkaLinear(32, 5, DIMS)
    x = torch.randn(7, 32)
    out = head(x)
    y = x.clone()
    y[:, 4:] = torch.randn(7, 28)  # coordinates beyond 4 must not move the 2- and 4-dim heads
    out2 = head(y)
    assert torch.allclose(out[:2], out2[:2])
    assert not torch.allclose(out[2:], out2[2:])


def test_state_dict_keys_and_old_per_head_layout_load():
    assert sorted(MatryoshkaLinear(8, 3, (4, 8)).state_dict()) == ["bias", "weight"]
    assert sorted(MatryoshkaLinear(8, 3, (4, 8), efficient=True, prefix_calibration="scale_bias").state_dict()) == ["bias", "log_scale", "prefix_bias", "weight"]
    old = {"heads.0.weight": torch.randn(3, 4), "heads.0.bias": torch.randn(3), "heads.1.weight": torch.randn(3, 8), "heads.1.bias": torch.randn(3)}
    head = MatryoshkaLinear(8, 3, (4, 8))
    head.load_state_dict(old)
    x = torch.randn(2, 8)
    assert torch.allclose(head(x)[0], x[:, :4] @ old["heads.0.weight"].T + old["heads.0.bias"])
    e = MatryoshkaLinear(8, 3, (4, 8), efficient=True)
    e.load_state_dict({"linear.weight": torch.ones(3, 8), "linear.bias": torch.zeros(3)})
    assert torch.allclose(e(x)[0], x[:, :4].sum(1, keepdim=True).expand(2, 3))


def test_bad_inputs():
    with pytest.raises(MRLError, match="larger than the embedding"):
        MatryoshkaLinear(16, 3, (8, 32))
    with pytest.raises(MRLError, match="expects input"):
        MatryoshkaLinear(16, 3, (8, 16))(torch.randn(4, 12))
    with pytest.raises(MRLError, match="MRL-E"):
        MatryoshkaLinear(16, 3, (8, 16), prefix_calibration="scale")
