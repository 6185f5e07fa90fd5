"""Accumulator bounds of A2Q and A2Q+ (see A2QPLUS.md), as pure functions.

This module is the single home of the bound formulas. It depends on numpy
only (no torch), so the compiler imports it without pulling in the front end,
and the front end's quantizers import the same functions.

Integer inputs get exact integer answers (bit lengths instead of logarithms);
float inputs (e.g. a trained l1 norm) go through the same formulas in float.
"""
from __future__ import annotations

import math
from numbers import Integral

import numpy as np

__all__ = [
    "int_range",
    "value_range",
    "phi",
    "datatype_acc_bits",
    "a2q_l1_budget",
    "a2qplus_l1_budget",
    "a2q_acc_bits",
    "a2qplus_acc_bits",
    "a2qplus_effective_l1",
    "exact_channel_range",
    "range_from_sums",
    "signed_bits_for_range",
    "adversarial_inputs",
]


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Range ``[lo, hi]`` of a ``bits``-bit integer (narrow drops the most negative value)."""
    if bits < 1:
        raise ValueError(f"bit width must be >= 1, got {bits}")
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if narrow:
            lo += 1
    else:
        lo, hi = 0, (1 << bits) - 1
        if narrow:
            hi -= 1
    return lo, hi


def value_range(bits: int, signed: bool, narrow: bool = False, zero_point: int = 0) -> tuple[int, int]:
    """Range of the value ``q - zero_point`` that enters a multiply-accumulate."""
    lo, hi = int_range(bits, signed, narrow)
    return lo - int(zero_point), hi - int(zero_point)


def phi(alpha: float) -> float:
    """``phi(alpha) = log2(1 + 2^-alpha)``."""
    return math.log2(1.0 + 2.0 ** (-alpha))


def _ceil_log2_plus1(m) -> int:
    """``ceil(log2(m + 1))``: exact for integers (= bit length), float otherwise."""
    if isinstance(m, Integral):
        return int(m).bit_length()
    return int(math.ceil(math.log2(float(m) + 1.0)))


def datatype_acc_bits(K: int, in_bits: int, in_signed: bool, w_bits: int) -> int:
    """Bound 1: the data-type bound, ``P >= alpha + phi(alpha) + 1``.

    ``alpha = log2(K) + N + M - 1 - [x signed]``. Since ``alpha + phi(alpha) =
    log2(2^alpha + 1)`` this is ``ceil(log2(K * 2^(N+M-1-s) + 1)) + 1``, computed
    exactly on integers.
    """
    shift = in_bits + w_bits - 1 - int(bool(in_signed))
    if shift >= 0:
        return _ceil_log2_plus1(int(K) << shift) + 1
    return int(math.ceil(math.log2(K * 2.0**shift + 1.0))) + 1


def a2q_l1_budget(acc_bits: int, in_bits: int, in_signed: bool) -> float:
    """Bound 2 inverted: largest ``||q||_1`` safe for a ``acc_bits`` accumulator (A2Q)."""
    return float(((1 << (acc_bits - 1)) - 1) * 2.0 ** (int(bool(in_signed)) - in_bits))


def a2qplus_l1_budget(acc_bits: int, in_bits: int) -> float:
    """Bound 3 inverted: largest ``||q||_1`` of zero-centred weights safe for ``acc_bits`` (A2Q+)."""
    return float(((1 << acc_bits) - 2) / ((1 << in_bits) - 1))


def a2q_acc_bits(l1, in_bits: int, in_signed: bool) -> int:
    """Bound 2: smallest P with ``||q||_1 <= (2^(P-1) - 1) * 2^([x signed] - N)``."""
    shift = in_bits - int(bool(in_signed))
    if isinstance(l1, Integral) and shift >= 0:
        return _ceil_log2_plus1(int(l1) << shift) + 1
    return int(math.ceil(math.log2(float(l1) * 2.0**shift + 1.0) + 1.0))


def a2qplus_acc_bits(l1, in_bits: int) -> int:
    """Bound 3: smallest P with ``||q||_1 <= (2^P - 2) / (2^N - 1)``."""
    span = (1 << in_bits) - 1
    if isinstance(l1, Integral):
        return _ceil_log2_plus1(span * int(l1) + 1)
    return int(math.ceil(math.log2(span * float(l1) + 2.0)))


def channel_sums(q) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(sum of positive weights, sum of negative weights)`` of ``[..., K]`` integers,
    exact (int64 when ``K * max|q|`` fits, else Python ints). One pass for both sums."""
    q = np.asarray(q)
    if q.dtype != object and int(np.abs(q).max(initial=0)) * max(q.shape[-1], 1) >= 2**62:
        q = q.astype(object)
    elif q.dtype != object:
        q = q.astype(np.int64, copy=False)
    pos = (np.maximum(q, 0) if q.dtype != object else np.clip(q, 0, None)).sum(axis=-1)
    return pos, q.sum(axis=-1) - pos


def a2qplus_effective_l1(q) -> np.ndarray:
    """Per-row ``2 * max(sum of positive weights, sum of |negative weights|)``.

    Equals ``||q||_1`` for zero-sum rows; for rows that round-to-zero left not
    exactly zero-sum it is the l1 norm for which the A2Q+ bound still holds.
    """
    pos, neg = channel_sums(q)
    return 2 * np.maximum(pos, -neg)


def exact_channel_range(q, x_min: int, x_max: int, bias=None) -> tuple[np.ndarray, np.ndarray]:
    """Bound 4: exact ``(acc_min, acc_max)`` per output channel.

    ``q`` is ``[channels, K]`` integers, the input values lie in ``[x_min, x_max]``
    (zero-point already subtracted), ``bias`` is ``[channels]`` integers in
    accumulator units or None. Each term ``q_i * x_i`` is largest at ``x_max`` for
    ``q_i > 0`` and at ``x_min`` for ``q_i < 0``, so with ``S+``/``S-`` the sums of the
    positive/negative weights: ``acc_max = x_max * S+ + x_min * S-`` and
    ``acc_min = x_min * S+ + x_max * S-`` (plus the bias), in Python integers.
    """
    return range_from_sums(*channel_sums(q), x_min, x_max, bias)


def range_from_sums(pos, neg, x_min: int, x_max: int, bias=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_channel_range` from the per-channel sums ``S+`` (``pos``) and ``S-`` (``neg``)
    of :func:`channel_sums`: ``acc_max = x_max * S+ + x_min * S- (+ bias)``, ``acc_min`` mirrored."""
    x_min, x_max = int(x_min), int(x_max)
    if x_min > x_max:
        raise ValueError(f"empty input range [{x_min}, {x_max}]")
    pos, neg = np.asarray(pos).astype(object), np.asarray(neg).astype(object)
    acc_max = x_max * pos + x_min * neg
    acc_min = x_min * pos + x_max * neg
    if bias is not None:
        b = np.asarray(bias).astype(object)
        acc_max = acc_max + b
        acc_min = acc_min + b
    return _narrowest(acc_min), _narrowest(acc_max)


def _narrowest(a: np.ndarray) -> np.ndarray:
    """Python-int results as int64 when every value fits (as the sums were before), else objects."""
    if a.size == 0 or all(-(2**62) <= int(v) < 2**62 for v in (a.min(), a.max())):
        return a.astype(np.int64)
    return a


def signed_bits_for_range(lo, hi):
    """Least signed width P with ``-2^(P-1) <= lo`` and ``hi <= 2^(P-1) - 1`` (elementwise)."""

    def one(a: int, b: int) -> int:
        a, b = int(a), int(b)
        need_hi = b.bit_length() + 1 if b > 0 else 1  # b <= 2^(P-1) - 1
        need_lo = (-a - 1).bit_length() + 1 if a < 0 else 1  # a >= -2^(P-1)
        return max(need_hi, need_lo)

    if np.ndim(lo) == 0:
        return one(lo, hi)
    return np.array([one(a, b) for a, b in zip(np.ravel(lo), np.ravel(hi))], dtype=np.int64).reshape(np.shape(lo))


def adversarial_inputs(q_row, x_min: int, x_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The input vectors reaching a channel's ``acc_max`` and ``acc_min`` exactly.

    ``x_i = x_max if q_i > 0 else x_min`` maximizes the sum (the mirror minimizes it).
    Returns ``(x_for_max, x_for_min)`` as int64 vectors.
    """
    q_row = np.asarray(q_row)
    x_for_max = np.where(q_row > 0, x_max, x_min).astype(np.int64)
    x_for_min = np.where(q_row > 0, x_min, x_max).astype(np.int64)
    return x_for_max, x_for_min
