"""Quantizers and layers of the PyTorch front end (a2qhls.frontend)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from a2qhls import bounds  # noqa: E402
from a2qhls.errors import A2QError  # noqa: E402
from a2qhls.frontend import (  # noqa: E402
    A2QWeightQuant,
    ActQuant,
    IntWeightQuant,
    QuantConv2d,
    QuantIdentity,
    QuantLinear,
    QuantReLU,
    input_spec,
    penalty,
)

torch.set_num_threads(1)


def _grown(layer, factor=50.0):
    """Push every channel's g far above its budget so the clamp is active."""
    with torch.no_grad():
        layer.weight_quant.log2_g.add_(np.log2(factor))
    return layer


@pytest.mark.parametrize("bits,signed", [(4, False), (4, True), (8, False), (3, True)])
@pytest.mark.parametrize("P", [10, 12, 16])
def test_a2q_integer_l1_within_budget(bits, signed, P):
    torch.manual_seed(P * 10 + bits)
    layer = _grown(QuantLinear(300, 24, weight_quant=A2QWeightQuant(4, P, bits, signed)))
    q = layer.int_weight().numpy()
    T = bounds.a2q_l1_budget(P, bits, signed)
    assert np.abs(q).sum(axis=1).max() <= T
    # and therefore the A2Q bound says the target width suffices
    assert max(bounds.a2q_acc_bits(int(r), bits, signed) for r in np.abs(q).sum(axis=1)) <= P


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("P", [10, 12, 16])
def test_a2qplus_positive_and_negative_parts_within_half_budget(bits, P):
    torch.manual_seed(P + bits)
    layer = QuantLinear(300, 24, weight_quant=A2QWeightQuant(4, P, bits, False, zero_center=True))
    with torch.no_grad():
        layer.weight.add_(0.05)  # a channel mean to remove
    _grown(layer)
    q = layer.int_weight().numpy()
    T = bounds.a2qplus_l1_budget(P, bits)
    assert bounds.a2qplus_effective_l1(q).max() <= T
    # the exact worst case of the integer weights fits P bits
    lo, hi = bounds.exact_channel_range(q, 0, (1 << bits) - 1)
    assert max(np.max(bounds.signed_bits_for_range(lo, hi)), 1) <= P


def test_a2q_rounds_toward_zero_and_baseline_to_nearest():
    torch.manual_seed(0)
    a2q = QuantLinear(64, 8, weight_quant=A2QWeightQuant(6, 24, 4, False))  # loose target: g unclamped
    wq = a2q.weight_quant
    real = (a2q.weight / wq.scale()).detach()  # g = ||v||_1 at default init, so w/s is the real value
    q = a2q.int_weight().float()
    # truncation: |q| <= |w/s| < |q| + 1 with the sign of w (up to float rounding of w/s)
    assert (q.abs() <= real.abs() + 1e-4).all() and (real.abs() < q.abs() + 1 + 1e-4).all()
    assert (q * real >= 0).all()
    assert float((real - q).abs().mean()) > 0.3  # truncation error is ~0.5 on average, not ~0.25
    base = QuantLinear(64, 8, weight_quant=IntWeightQuant(6))
    base.weight.data.copy_(a2q.weight.data)
    base.weight_quant.reset_from(base.weight)
    qb = base.int_weight().float()
    rb = (base.weight / base.weight_quant.scale()).detach()
    assert torch.equal(qb, torch.round(rb).clamp(-31, 31))
    assert not torch.equal(qb, q)  # the two roundings differ on real weights


def test_constrained_layer_without_input_quantizer_is_an_error():
    with pytest.raises(A2QError, match="input quantizer"):
        A2QWeightQuant(4, 12, None, False)
    with pytest.raises(A2QError, match="input quantizer"):
        A2QWeightQuant(4, 12, 4, None)
    with pytest.raises(A2QError):
        input_spec(torch.nn.ReLU())
    assert input_spec(QuantReLU(3)) == {"input_bits": 3, "input_signed": False}
    assert input_spec(QuantIdentity(5, signed=True)) == {"input_bits": 5, "input_signed": True}


def test_clamp_stops_g_gradient_and_penalty_pulls_it_back():
    torch.manual_seed(1)
    layer = _grown(QuantLinear(64, 4, weight_quant=A2QWeightQuant(4, 10, 4, False)))
    wq = layer.weight_quant
    x = torch.rand(16, 64)
    layer(x).sum().backward()
    assert wq.log2_g.grad is None or float(wq.log2_g.grad.abs().max()) == 0.0
    layer.zero_grad()
    pen = penalty(layer)
    assert float(pen) > 0
    pen.backward()
    assert (wq.log2_g.grad > 0).all()  # descending the penalty lowers g
    # within budget: no penalty
    with torch.no_grad():
        wq.log2_g.copy_(torch.log2(wq.scale() * wq.budget * 0.5))
    assert float(penalty(layer)) == 0.0


def test_straight_through_gradients_reach_weights_and_scales():
    torch.manual_seed(2)
    model = torch.nn.Sequential(QuantIdentity(4, signed=False), QuantLinear(16, 8, weight_quant=A2QWeightQuant(
        4, 12, 4, False, zero_center=True)), QuantReLU(4), QuantLinear(8, 3, weight_quant=IntWeightQuant(4)))
    model.train()
    model(torch.rand(32, 16)).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


@pytest.mark.parametrize("signed,narrow", [(False, False), (True, False), (True, True)])
def test_act_quant_range_and_rounding(signed, narrow):
    aq = ActQuant(4, signed=signed, narrow=narrow, init_scale=0.25)
    x = torch.linspace(-5, 5, 1001)
    y = aq(x)
    qi = (y / 0.25)
    lo, hi = bounds.int_range(4, signed, narrow)
    assert torch.equal(qi, torch.round(qi)) and float(qi.min()) == lo and float(qi.max()) == hi
    assert torch.equal(qi, torch.clamp(torch.round(x / 0.25), lo, hi))  # half to even, like QONNX ROUND


def test_act_quant_calibrates_on_first_training_batch_only():
    aq = ActQuant(4, signed=False)
    with pytest.raises(A2QError):
        aq.eval()(torch.rand(3))
    aq.train()
    aq(torch.tensor([0.0, 3.0]))
    assert abs(float(aq.scale()) - 3.0 / 15) < 1e-6
    aq(torch.tensor([0.0, 30.0]))
    assert abs(float(aq.scale()) - 3.0 / 15) < 1e-6


def test_depthwise_conv_budget_and_shape():
    torch.manual_seed(3)
    conv = QuantConv2d(8, 8, 3, padding=1, groups=8, weight_quant=A2QWeightQuant(4, 9, 4, False, zero_center=True))
    assert conv.K == 9
    _grown(conv)
    q = conv.int_weight().numpy()
    assert q.shape == (8, 9)
    assert bounds.a2qplus_effective_l1(q).max() <= bounds.a2qplus_l1_budget(9, 4)
    assert conv(torch.rand(2, 8, 5, 5)).shape == (2, 8, 5, 5)
    grouped = QuantConv2d(8, 4, (3, 1), groups=2, weight_quant=IntWeightQuant(4))
    assert grouped.K == 12 and grouped(torch.rand(1, 8, 4, 4)).shape == (1, 4, 2, 4)
    with pytest.raises(A2QError):
        QuantConv2d(6, 4, 3, groups=4)
