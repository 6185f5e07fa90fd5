"""Exact threshold computation: every rounding mode, relu, offsets, clamping."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from a2qhls.ir import IntType, Requant
from a2qhls.passes.thresholds import (
    ROUNDING_MODES,
    level_breakpoint,
    requant_exact,
    requant_thresholds,
    round_exact,
)
from a2qhls.sim import round_like_qonnx

GRID = [Fraction(n, d) for d in (1, 2, 3, 4, 8) for n in range(-6 * d, 6 * d + 1)]


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_exact_matches_qonnx_numpy_rounding(mode):
    """On values exactly representable in float, exact rounding equals QONNX's numpy functions."""
    for u in GRID:
        if u.denominator in (1, 2, 4, 8):
            assert round_exact(u, mode) == int(round_like_qonnx(np.float64(u), mode)), (mode, u)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_rounding_functions_are_qonnx_own(mode):
    """round_like_qonnx (used by the importer in place of qonnx's op package) equals qonnx's
    resolve_rounding_mode on ties, near-ties and random values of both signs, float32 and float64."""
    from qonnx.custom_op.general.intquant import resolve_rounding_mode

    rng = np.random.default_rng(0)
    base = np.concatenate([np.arange(-40, 41) / 4, rng.normal(0, 50, 500), [0.49999997, -0.49999997, 2.5000002]])
    for y in (base.astype(np.float64), base.astype(np.float32)):
        want = resolve_rounding_mode(mode)(y)
        got = round_like_qonnx(y, mode)
        assert got.dtype == want.dtype and np.array_equal(got, want), mode


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_level_breakpoint_characterises_rounding(mode):
    """rnd(u) >= k  iff  u >= c (or u > c when strict), for every k and u on a fine grid."""
    for k in range(-5, 6):
        c, strict = level_breakpoint(k, mode)
        for u in GRID:
            expect = round_exact(u, mode) >= k
            got = (u > c) if strict else (u >= c)
            assert got == expect, (mode, k, u, c, strict)


def _requant(relu, bits, signed, narrow, zp, scale, mode):
    t = IntType(bits, signed, narrow, zp)
    return Requant("r", ["a"], ["q"], relu, np.float32(scale), np.float32(zp), t, mode)


@settings(max_examples=150, deadline=None)
@given(
    mode=st.sampled_from(ROUNDING_MODES),
    relu=st.booleans(),
    bits=st.integers(1, 4),
    signed=st.booleans(),
    narrow=st.booleans(),
    zp=st.integers(-2, 2),
    scale=st.floats(0.0625, 4.0, width=32),
    acc_scale=st.lists(st.floats(0.0009765625, 2.0, width=32), min_size=1, max_size=3),
    offset=st.floats(-3.0, 3.0, width=32),
    lo=st.integers(-300, 0),
    span=st.integers(0, 400),
)
def test_thresholds_equal_exact_definition(mode, relu, bits, signed, narrow, zp, scale, acc_scale, offset, lo, span):
    """q = qmin + #{acc >= T} equals clip(rnd(relu(s_a*acc + o)/s + zp)) for every acc in range."""
    if bits == 1 and signed:
        signed = False
    op = _requant(relu, bits, signed, narrow, zp, scale, mode)
    C = len(acc_scale)
    sa = np.asarray(acc_scale, dtype=np.float64)
    off = np.full(C, float(offset))
    hi = lo + span
    T = requant_thresholds(op, sa, off, lo, hi)
    assert T.shape == (C, op.out_type.qmax - op.out_type.qmin)
    assert np.all(T >= lo) and np.all(T <= hi + 1)
    assert np.all(np.diff(T, axis=1) >= 0)
    for j in range(C):
        for acc in range(lo, hi + 1, max(1, span // 60)):
            want = requant_exact(acc, Fraction(float(sa[j])), Fraction(float(off[j])), op, j)
            got = op.out_type.qmin + int(np.sum(acc >= T[j]))
            assert got == want, (j, acc)


def test_thresholds_at_exact_ties_follow_the_mode():
    """scale 1, acc scale 1/2: acc = 1 is exactly u = 0.5, a tie each mode breaks its own way."""
    expect = {"ROUND": 0, "HALF_EVEN": 0, "HALF_UP": 1, "HALF_DOWN": 0, "UP": 1, "DOWN": 0, "CEIL": 1, "FLOOR": 0}
    for mode, q in expect.items():
        op = _requant(False, 4, True, False, 0, 1.0, mode)
        T = requant_thresholds(op, np.array([0.5]), np.array([0.0]), -64, 64)
        assert op.out_type.qmin + int(np.sum(1 >= T[0])) == q, mode
        # acc = 3 is u = 1.5: ties to even go up to 2
        if mode in ("ROUND", "HALF_EVEN"):
            assert op.out_type.qmin + int(np.sum(3 >= T[0])) == 2
