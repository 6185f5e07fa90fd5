"""Parity of a2qhls's A2Q / A2Q+ quantizers with Brevitas 0.13.4 (a test dependency)."""
import pytest

torch = pytest.importorskip("torch")
qnn = pytest.importorskip("brevitas.nn")

from brevitas.function.ops import get_upper_bound_on_l1_norm  # noqa: E402
from brevitas.quant import (  # noqa: E402
    Int8AccumulatorAwareWeightQuant,
    Int8AccumulatorAwareZeroCenterWeightQuant,
    Int8ActPerTensorFloat,
    Uint8ActPerTensorFloat,
)

from a2qhls.errors import A2QError  # noqa: E402
from a2qhls.frontend import A2QWeightQuant, QuantLinear, l1_budget  # noqa: E402

torch.set_num_threads(1)

CASES = [  # (seed, K, out, weight bits M, input bits N, input signed, target P)
    (0, 64, 32, 4, 4, False, 12),
    (1, 64, 32, 4, 4, True, 12),
    (2, 784, 64, 4, 4, False, 12),
    (3, 200, 16, 6, 8, False, 16),
    (4, 200, 16, 6, 8, True, 20),
    (5, 32, 10, 3, 2, False, 8),
    (6, 128, 24, 8, 4, False, 24),  # loose target: many channels unclamped
    (7, 16, 8, 5, 6, True, 14),
]


def _brevitas_pair(seed, K, out, M, N, signed, P, zero_center, rescale=True):
    torch.manual_seed(seed)
    act = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    inp = qnn.QuantIdentity(act_quant=act, bit_width=N, return_quant_tensor=True)
    wq = Int8AccumulatorAwareZeroCenterWeightQuant if zero_center else Int8AccumulatorAwareWeightQuant
    b = qnn.QuantLinear(K, out, bias=True, weight_quant=wq, weight_bit_width=M, weight_accumulator_bit_width=P)
    if rescale:  # channels of different norms (Brevitas's own init then no longer matches the weights)
        with torch.no_grad():
            b.weight.mul_(torch.rand(out, 1) * 3)
    qx = inp.train()(torch.randn(8, K))
    ours = QuantLinear(K, out, weight_quant=A2QWeightQuant(M, P, N, signed, zero_center=zero_center))
    ours.weight.data.copy_(b.weight.data)
    ours.weight_quant.reset_from(ours.weight)
    return b, qx, ours


def _copy_learned_state(b, ours):
    """Give ours Brevitas's learned s (the pre-clipping one) and g, both log2."""
    pre = b.weight_quant.tensor_quant.pre_scaling_impl
    with torch.no_grad():
        ours.weight_quant.log2_scale.copy_(pre.scaling_impl.value.view(-1, 1))
        ours.weight_quant.log2_g.copy_(pre.value.view(-1, 1))


@pytest.mark.parametrize("zero_center", [False, True], ids=["a2q", "a2q+"])
@pytest.mark.parametrize("case", CASES, ids=[f"K{c[1]}-M{c[3]}-N{c[4]}{'s' if c[5] else 'u'}-P{c[6]}" for c in CASES])
def test_integer_weights_equal_brevitas(case, zero_center):
    b, qx, ours = _brevitas_pair(*case, zero_center)
    _copy_learned_state(b, ours)
    ref = b.quant_weight(qx).int().to(torch.int64)
    assert torch.equal(ours.int_weight(), ref)
    # after a few identical-looking perturbations of the learned state they still agree
    with torch.no_grad():
        delta = torch.randn_like(ours.weight_quant.log2_g) * 0.5
        b.weight_quant.tensor_quant.pre_scaling_impl.value.add_(delta.view_as(
            b.weight_quant.tensor_quant.pre_scaling_impl.value))
    _copy_learned_state(b, ours)
    assert torch.equal(ours.int_weight(), b.quant_weight(qx).int().to(torch.int64))


@pytest.mark.parametrize("case", CASES[:6], ids=[f"P{c[6]}-N{c[4]}" for c in CASES[:6]])
def test_a2q_default_init_equals_brevitas_init(case):
    """A2Q's default init (g = ||w||_1, s = max|w| / qmax) is Brevitas's: same integers, no state copied."""
    b, qx, ours = _brevitas_pair(*case, False, rescale=False)
    assert torch.equal(ours.int_weight(), b.quant_weight(qx).int().to(torch.int64))


@pytest.mark.parametrize("case", CASES[:6], ids=[f"P{c[6]}-N{c[4]}" for c in CASES[:6]])
def test_a2qplus_clamped_channels_equal_brevitas_at_init(case):
    """At a tight target every channel sits on its budget, where q depends only on v and T."""
    seed, K, out, M, N, signed, P = case
    b, qx, ours = _brevitas_pair(seed, K, out, M, N, signed, P - 4, True, rescale=False)
    wq = ours.weight_quant
    clamped = (wq.g() >= wq.scale() * wq.budget).view(-1)
    ref = b.quant_weight(qx).int().to(torch.int64)
    assert clamped.sum() > 0
    assert torch.equal(ours.int_weight()[clamped], ref[clamped])


@pytest.mark.parametrize("P", [8, 12, 16, 24, 32])
@pytest.mark.parametrize("N,signed", [(1, False), (2, True), (4, False), (4, True), (8, False), (8, True)])
def test_budgets_match_brevitas(P, N, signed):
    # Brevitas computes in float32 (ours exactly, in float64): equal to float32 precision
    f32 = lambda v: pytest.approx(v, rel=2**-22, abs=0)  # noqa: E731
    ref_a2q = get_upper_bound_on_l1_norm(torch.tensor(float(P)), torch.tensor(float(N)), signed)
    assert float(ref_a2q) == f32(l1_budget("a2q", P, N, signed))
    if float(ref_a2q) >= 1:
        assert float(ref_a2q) == f32(A2QWeightQuant(4, P, N, signed).budget)
    else:  # a budget below 1 allows only all-zero weights: refused
        with pytest.raises(A2QError, match="no l1 budget"):
            A2QWeightQuant(4, P, N, signed)
    # Brevitas's A2Q+ budget lives on its zero-centring pre-scaling module
    b = qnn.QuantLinear(8, 2, weight_quant=Int8AccumulatorAwareZeroCenterWeightQuant, weight_bit_width=4,
                        weight_accumulator_bit_width=P)
    ref_plus = b.weight_quant.tensor_quant.pre_scaling_impl.calc_max_l1_norm(torch.tensor(float(N)), signed)
    assert float(ref_plus) == f32(l1_budget("a2q+", P, N, signed))
    if float(ref_plus) >= 1:
        assert float(ref_plus) == f32(A2QWeightQuant(4, P, N, signed, zero_center=True).budget)
    assert l1_budget("a2q", P, N, signed) != f32(float(ref_plus))  # the two budgets are told apart
