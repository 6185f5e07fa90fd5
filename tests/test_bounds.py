"""The bound formulas of A2QPLUS.md: hand-computed cases and properties over random weights."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from a2qhls import bounds


def wraps_to_itself(v: int, bits: int) -> bool:
    """True when v is representable as a signed ``bits``-bit integer (ap_int<bits> keeps it)."""
    m = 1 << bits
    w = (v + (m >> 1)) % m - (m >> 1)
    return w == v


# ---------------------------------------------------------------- hand-computed cases


def test_int_ranges():
    assert bounds.int_range(4, True) == (-8, 7)
    assert bounds.int_range(4, True, narrow=True) == (-7, 7)
    assert bounds.int_range(4, False) == (0, 15)
    assert bounds.int_range(4, False, narrow=True) == (0, 14)
    assert bounds.value_range(8, False, zero_point=128) == (-128, 127)


def test_datatype_bound_matches_paper_formula():
    # K=64, N=8 unsigned, M=4: alpha = 6 + 8 + 4 - 1 = 17; P >= alpha + phi(alpha) + 1 -> 19
    assert bounds.datatype_acc_bits(64, 8, False, 4) == 19
    # signed input drops one bit: alpha = 16 -> 18
    assert bounds.datatype_acc_bits(64, 8, True, 4) == 18
    for K, N, M, s in itertools.product([1, 3, 64, 100, 784], [1, 4, 8], [2, 4, 8], [False, True]):
        alpha = math.log2(K) + N + M - 1 - int(s)
        expect = math.ceil(alpha + bounds.phi(alpha) + 1 - 1e-12)
        assert bounds.datatype_acc_bits(K, N, s, M) == expect


def test_a2q_bound_hand_cases():
    # ||q||_1 = 16, N = 4 unsigned: 16 * 16 + 1 = 257 -> ceil(log2 257) = 9, + 1 = 10
    assert bounds.a2q_acc_bits(16, 4, False) == 10
    # budget for P = 10, N = 4 unsigned: (2^9 - 1) / 16 = 31.9375 >= 16
    assert bounds.a2q_l1_budget(10, 4, False) == pytest.approx(511 / 16)
    # signed input doubles the budget
    assert bounds.a2q_l1_budget(10, 4, True) == pytest.approx(511 / 8)
    assert bounds.a2q_acc_bits(16, 4, True) == 9


def test_a2qplus_bound_hand_cases():
    # ||q||_1 = 16, N = 4: 15 * 16 + 2 = 242 -> ceil(log2 242) = 8
    assert bounds.a2qplus_acc_bits(16, 4) == 8
    assert bounds.a2qplus_l1_budget(12, 4) == pytest.approx(4094 / 15)
    # about one bit better than A2Q for unsigned inputs: 2^(N+1)/(2^N-1) times the budget
    ratio = bounds.a2qplus_l1_budget(16, 8) / bounds.a2q_l1_budget(16, 8, False)
    assert ratio == pytest.approx(2**9 / 255, rel=1e-3)


def test_float_and_integer_paths_agree():
    for l1 in range(0, 300, 7):
        assert bounds.a2q_acc_bits(l1, 6, False) == bounds.a2q_acc_bits(float(l1), 6, False)
        assert bounds.a2qplus_acc_bits(l1, 6) == bounds.a2qplus_acc_bits(float(l1), 6)


def test_budget_and_width_are_inverse():
    for P in range(4, 24):
        for N in (2, 4, 8):
            t = bounds.a2q_l1_budget(P, N, False)
            assert bounds.a2q_acc_bits(math.floor(t), N, False) <= P
            tp = bounds.a2qplus_l1_budget(P, N)
            assert bounds.a2qplus_acc_bits(math.floor(tp), N) <= P


def test_exact_range_hand_case_with_bias_and_zero_point():
    q = np.array([[3, -2, 0], [-1, -1, -1]])
    # uint4 with zero-point 8: values in [-8, 7]
    lo, hi = bounds.exact_channel_range(q, -8, 7, bias=np.array([5, 0]))
    assert hi.tolist() == [5 + 21 + 16, 24]
    assert lo.tolist() == [5 - 24 - 14, -21]
    assert bounds.signed_bits_for_range(lo, hi).tolist() == [7, 6]


def test_signed_bits_edges():
    assert bounds.signed_bits_for_range(0, 0) == 1
    assert bounds.signed_bits_for_range(-1, 0) == 1
    assert bounds.signed_bits_for_range(0, 1) == 2
    assert bounds.signed_bits_for_range(-128, 127) == 8
    assert bounds.signed_bits_for_range(-129, 0) == 9
    assert bounds.signed_bits_for_range(0, 128) == 9


def test_exact_range_does_not_overflow_int64():
    q = np.full((1, 1000), -(2**31 - 1), dtype=np.int64)
    lo, hi = bounds.exact_channel_range(q, -(2**31), 2**31 - 1)
    assert int(hi[0]) == 1000 * (2**31 - 1) * 2**31
    assert bounds.signed_bits_for_range(lo, hi)[0] > 64


# ---------------------------------------------------------------- properties


@st.composite
def layer_case(draw):
    C = draw(st.integers(1, 6))
    K = draw(st.integers(1, 24))
    M = draw(st.integers(2, 8))
    N = draw(st.integers(1, 8))
    signed = draw(st.booleans()) if N > 1 else False
    narrow = draw(st.booleans())
    zp = draw(st.integers(-3, 3))
    wmax = (1 << (M - 1)) - 1
    q = np.array(draw(st.lists(st.integers(-wmax, wmax), min_size=C * K, max_size=C * K))).reshape(C, K)
    use_bias = draw(st.booleans())
    bias = np.array(draw(st.lists(st.integers(-500, 500), min_size=C, max_size=C))) if use_bias else None
    return q, bias, N, signed, narrow, zp, M


@settings(max_examples=300, deadline=None)
@given(layer_case())
def test_derived_width_is_exactly_minimal(case):
    q, bias, N, signed, narrow, zp, M = case
    x_min, x_max = bounds.value_range(N, signed, narrow, zp)
    lo, hi = bounds.exact_channel_range(q, x_min, x_max, bias)
    per = bounds.signed_bits_for_range(lo, hi)
    P = int(per.max())
    for j in range(q.shape[0]):
        xa, xb = bounds.adversarial_inputs(q[j], x_min, x_max)
        b = 0 if bias is None else int(bias[j])
        top = b + sum(int(a) * int(c) for a, c in zip(q[j], xa))
        bot = b + sum(int(a) * int(c) for a, c in zip(q[j], xb))
        assert top == int(hi[j]) and bot == int(lo[j])
        # never overflows at the channel's width (so not at the layer's either) ...
        assert wraps_to_itself(top, int(per[j])) and wraps_to_itself(bot, int(per[j]))
        assert wraps_to_itself(top, P) and wraps_to_itself(bot, P)
        # ... and one bit less always overflows on one of the two adversarial vectors
        if per[j] > 1:
            assert not (wraps_to_itself(top, int(per[j]) - 1) and wraps_to_itself(bot, int(per[j]) - 1))


@settings(max_examples=200, deadline=None)
@given(layer_case())
def test_exact_never_looser_than_a2q_or_a2qplus_or_datatype(case):
    q, bias, N, signed, narrow, zp, M = case
    if zp != 0 or bias is not None:
        return  # bounds 1-3 assume a zero zero-point and no bias
    x_min, x_max = bounds.value_range(N, signed, narrow)
    lo, hi = bounds.exact_channel_range(q, x_min, x_max)
    P = int(bounds.signed_bits_for_range(lo, hi).max())
    l1 = int(np.abs(q).sum(axis=1).max())
    assert P <= bounds.a2q_acc_bits(l1, N, signed)
    assert P <= bounds.a2qplus_acc_bits(int(bounds.a2qplus_effective_l1(q).max()), N)
    assert P <= bounds.datatype_acc_bits(q.shape[1], N, signed, M)


def test_adversarial_vector_is_the_true_maximum_by_enumeration():
    rng = np.random.default_rng(1)
    for _ in range(30):
        K = int(rng.integers(1, 5))
        q = rng.integers(-7, 8, size=(1, K))
        x_min, x_max = bounds.value_range(3, bool(rng.integers(2)), False, int(rng.integers(-2, 3)))
        lo, hi = bounds.exact_channel_range(q, x_min, x_max)
        sums = [int(np.dot(q[0], x)) for x in itertools.product(range(x_min, x_max + 1), repeat=K)]
        assert max(sums) == int(hi[0]) and min(sums) == int(lo[0])
