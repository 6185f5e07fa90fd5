"""The integer (numpy) threshold computation equals the Fraction reference, array for array:
random per-channel scales over wide exponent ranges, zero-points, offsets, relu, every rounding
mode, Trunc, two quantizers in a row, zero accumulator scales, and ranges beyond 2^62 (Python
integers) as well as small ones (int64)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from a2qhls.errors import A2QError
from a2qhls.ir import IntType, Requant, TruncSpec
from a2qhls.passes.thresholds import ROUNDING_MODES, requant_thresholds, requant_thresholds_reference


def _float(exp_lo: int, exp_hi: int):
    """Positive floats m * 2^e with a random 1..24-bit (float32-like) or 53-bit mantissa."""
    return st.builds(lambda m, e, full: float(np.ldexp(m if not full else m * 2**29 + 12345, e)),
                     st.integers(1, 2**24 - 1), st.integers(exp_lo, exp_hi), st.booleans())


def _op(mode, relu, bits, signed, zp, scale, trunc=None, pre=None, name="r"):
    t = IntType(bits, signed, False, int(zp))
    return Requant(name, ["a"], [name], relu, np.asarray(scale), np.asarray(float(zp)), t, mode, trunc=trunc, pre=pre)


def _same(op, sa, off, lo, hi):
    got = requant_thresholds(op, sa, off, lo, hi)
    want = requant_thresholds_reference(op, sa, off, lo, hi)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert all(int(a) == int(b) for a, b in zip(got.reshape(-1), want.reshape(-1)))
    return got


@settings(max_examples=200, deadline=None)
@given(
    mode=st.sampled_from(ROUNDING_MODES),
    relu=st.booleans(),
    bits=st.integers(1, 5),
    signed=st.booleans(),
    zp=st.integers(-3, 3),
    scales=st.lists(_float(-40, 8), min_size=1, max_size=4),
    acc_scales=st.lists(st.one_of(_float(-60, 4), st.just(0.0)), min_size=1, max_size=4),
    offsets=st.lists(st.one_of(st.just(0.0), _float(-50, 6), _float(-50, 6).map(lambda v: -v)), min_size=1, max_size=4),
    lo=st.one_of(st.integers(-(2**20), 0), st.integers(-(2**80), -(2**62))),
    span=st.one_of(st.integers(0, 2**21), st.integers(2**63, 2**81)),
)
def test_integer_thresholds_equal_fraction_reference(mode, relu, bits, signed, zp, scales, acc_scales, offsets, lo, span):
    C = max(len(scales), len(acc_scales), len(offsets))
    pick = lambda v: np.resize(np.asarray(v, dtype=np.float64), C) if len(v) > 1 else np.asarray(v[:1], dtype=np.float64)
    op = _op(mode, relu, bits, signed if bits > 1 else False, zp, pick(scales))
    T = _same(op, np.resize(np.asarray(acc_scales), C), pick(offsets), lo, lo + span)
    assert T.shape == (C, op.out_type.qmax - op.out_type.qmin)


@settings(max_examples=80, deadline=None)
@given(
    mode=st.sampled_from(ROUNDING_MODES),
    k=st.integers(-3, 4),
    signed=st.booleans(),
    scale=_float(-20, 2),
    tzp=st.sampled_from([0.0, 4.0, -2.0]),
    acc_scale=_float(-30, 2),
    offset=st.sampled_from([0.0, 0.375, -1.25]),
)
def test_integer_trunc_thresholds_equal_fraction_reference(mode, k, signed, scale, tzp, acc_scale, offset):
    ts = 2.0**k
    op = _op(mode, False, 4, signed, 0, np.float32(scale * ts), trunc=TruncSpec(scale, tzp, ts))
    _same(op, np.array([acc_scale, acc_scale * 3]), np.array([offset, -offset]), -5000, 5000)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_integer_composed_thresholds_equal_fraction_reference(mode):
    rng = np.random.default_rng(1)
    for bits1, relu, zp1 in ((3, True, 0), (6, True, 2), (4, False, -1)):
        first = _op("ROUND", relu, bits1, not relu, zp1, rng.uniform(0.05, 0.3, size=3).astype(np.float32), name="q1")
        op = _op(mode, False, 3, True, 1, np.float32(rng.uniform(0.1, 0.8)), pre=first, name="q2")
        _same(op, np.array([0.013, 0.021, 2.0**-30]), np.array([-0.1, 0.05, 0.0]), -300, 300)
        _same(op, np.array([0.013, 0.0, 0.5]), np.array([-0.1, 0.05, 1e-9]), -(2**70), 2**70)


def test_edge_cases_ties_and_extreme_exponents():
    """Exact ties (a breakpoint exactly on an accumulator value), subnormal and huge scales."""
    for mode in ROUNDING_MODES:
        op = _op(mode, False, 4, True, 0, np.array([1.0, 2.0**-1000, 2.0**500]))
        _same(op, np.array([0.5, 5e-324, 2.0**400]), np.array([0.0, 0.0, -(2.0**450)]), -64, 64)
        _same(op, np.array([0.5, 2.0**-1074, 1.0]), np.array([0.25, 0.0, 0.0]), -(2**100), 2**100)


def test_non_finite_and_non_positive_scales_are_refused():
    op = _op("ROUND", False, 4, True, 0, np.array([0.5]))
    with pytest.raises(A2QError, match="non-positive"):
        requant_thresholds(_op("ROUND", False, 4, True, 0, np.array([0.0])), np.array([1.0]), np.array([0.0]), -8, 8)
    with pytest.raises(A2QError, match="not finite"):
        requant_thresholds(op, np.array([1.0]), np.array([np.inf]), -8, 8)


def _bipolar(relu, scale, pre=None, name="b"):
    return Requant(name, ["a"], [name], relu, np.asarray(scale), np.asarray(0.0), IntType.bipolar_type(), "ROUND", pre=pre)


@settings(max_examples=120, deadline=None)
@given(
    relu=st.booleans(),
    scales=st.lists(_float(-40, 8), min_size=1, max_size=4),
    acc_scales=st.lists(st.one_of(_float(-60, 4), st.just(0.0)), min_size=1, max_size=4),
    offsets=st.lists(st.one_of(st.just(0.0), _float(-50, 6), _float(-50, 6).map(lambda v: -v)), min_size=1, max_size=4),
    lo=st.one_of(st.integers(-(2**20), 0), st.integers(-(2**80), -(2**62))),
    span=st.one_of(st.integers(0, 2**21), st.integers(2**63, 2**81)),
)
def test_bipolar_output_thresholds_equal_fraction_reference(relu, scales, acc_scales, offsets, lo, span):
    """A bipolar output (QONNX BipolarQuant, the sign: one threshold, v >= 0) on the integer path."""
    C = max(len(scales), len(acc_scales), len(offsets))
    pick = lambda v: np.resize(np.asarray(v, dtype=np.float64), C) if len(v) > 1 else np.asarray(v[:1], dtype=np.float64)
    T = _same(_bipolar(relu, pick(scales)), np.resize(np.asarray(acc_scales), C), pick(offsets), lo, lo + span)
    assert T.shape == (C, 1)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_bipolar_composed_thresholds_equal_fraction_reference(mode):
    """Two quantizers in a row with a bipolar stage: a bipolar first stage (values 2 q1 - 1) under an
    integer one, and an integer first stage under a bipolar one."""
    rng = np.random.default_rng(2)
    for relu in (False, True):
        first = _bipolar(relu, rng.uniform(0.05, 0.3, size=3).astype(np.float32), name="q1")
        op = _op(mode, False, 3, True, 1, np.float32(rng.uniform(0.1, 0.8)), pre=first, name="q2")
        _same(op, np.array([0.013, 0.021, 2.0**-30]), np.array([-0.1, 0.05, 0.0]), -300, 300)
        _same(op, np.array([0.013, 0.0, 0.5]), np.array([-0.1, 0.05, 1e-9]), -(2**70), 2**70)
        first = _op(mode, relu, 3, not relu, 0, rng.uniform(0.05, 0.3, size=3).astype(np.float32), name="q1")
        op = _bipolar(False, np.float32(rng.uniform(0.1, 0.8)), pre=first, name="q2")
        _same(op, np.array([0.013, 0.021, 2.0**-30]), np.array([-0.1, 0.05, 0.0]), -300, 300)
