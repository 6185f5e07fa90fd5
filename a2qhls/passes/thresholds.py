"""Requantization as per-channel integer thresholds, computed exactly.

A :class:`~a2qhls.ir.Requant` maps a layer's integer accumulator ``acc`` to

    v = scale_in * acc + offset_in          (the accumulator tensor's real value)
    v = max(v, 0)                           (if relu)
    q = clip(rnd(v / scale + zero_point), qmin, qmax)

which is what QONNX's ``[Relu ->] Quant`` computes (or, for a bipolar output,
``q = 1 if v >= 0 else 0``: QONNX's ``BipolarQuant``, one threshold), but in exact real arithmetic
on the float scales as given (each float is exactly ``n * 2^e``: :func:`requant_thresholds`
computes on integers over a common power of two, :func:`requant_thresholds_reference` the same
on :class:`fractions.Fraction`).
Because ``acc -> q`` is monotone non-decreasing, it equals a multi-threshold unit

    q = qmin + #{t : acc >= T[j, t]},   t = 0 .. qmax - qmin - 1

with ``T[j, t]`` the least integer accumulator for which ``q >= qmin + 1 + t``.
For every rounding mode, ``rnd(u) >= k`` holds iff ``u >= c_k`` (or ``u > c_k``),
see :func:`level_breakpoint`; the condition is carried back through the affine maps
and the relu exactly.

Thresholds are clamped to ``[lo, hi + 1]`` where ``[lo, hi]`` is the union of the
layer's exact accumulator range and the range of its ``P``-bit accumulator
(``-2^(P-1) .. 2^(P-1) - 1``). So the unit computes the exact requantization of
whatever value the ``P``-bit accumulator holds, including a wrapped value when an
override makes ``P`` too narrow. Clamping does not change any result for values in
that range: a threshold below ``lo`` is always met, one above ``hi`` never.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..errors import A2QError
from ..ir import Model, Requant
from .acc_bits import built_acc_bits
from .accumulator import acc_range

ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")

__all__ = [
    "ROUNDING_MODES",
    "round_exact",
    "level_breakpoint",
    "acc_range",
    "requant_thresholds",
    "requant_thresholds_reference",
    "requant_exact",
    "compute_thresholds",
]


def _mode(mode: str) -> str:
    m = str(mode).upper()
    if m not in ROUNDING_MODES:
        raise A2QError(f"rounding mode '{mode}' is not supported (supported: {', '.join(ROUNDING_MODES)})")
    return "ROUND" if m == "HALF_EVEN" else m


def round_exact(u: Fraction, mode: str) -> int:
    """QONNX's rounding modes on an exact rational (no float involved)."""
    m = _mode(mode)
    u = Fraction(u)
    if m == "ROUND":
        return round(u)  # Fraction.__round__: ties to even
    if m == "FLOOR":
        return math.floor(u)
    if m == "CEIL":
        return math.ceil(u)
    sign = 1 if u > 0 else (-1 if u < 0 else 0)
    a = abs(u)
    if m == "UP":
        return sign * math.ceil(a)
    if m == "DOWN":
        return sign * math.floor(a)
    if m == "HALF_UP":
        return sign * math.floor(a + Fraction(1, 2))
    if m == "HALF_DOWN":
        return sign * math.ceil(a - Fraction(1, 2))
    raise AssertionError(m)


def level_breakpoint(k: int, mode: str) -> tuple[Fraction, bool]:
    """``(c, strict)`` such that ``rnd(u) >= k``  iff  ``u > c`` (strict) or ``u >= c``."""
    m = _mode(mode)
    half = Fraction(1, 2)
    if m == "ROUND":  # k - 1/2 rounds to k only when k is even
        return k - half, bool(k % 2)
    if m == "FLOOR":
        return Fraction(k), False
    if m == "CEIL":
        return Fraction(k - 1), True
    if m == "UP":  # away from zero: ceil for u > 0, floor for u < 0
        return (Fraction(k - 1), True) if k >= 1 else (Fraction(k), False)
    if m == "DOWN":  # toward zero
        return (Fraction(k), False) if k >= 1 else (Fraction(k - 1), True)
    if m == "HALF_UP":  # ties away from zero
        return (k - half, False) if k >= 1 else (k - half, True)
    if m == "HALF_DOWN":  # ties toward zero
        return (k - half, True) if k >= 1 else (k - half, False)
    raise AssertionError(m)


def requant_exact(acc: int, scale_in: Fraction, offset_in: Fraction, op: Requant, channel: int) -> int:
    """The definition, on one exact integer: used by tests as the reference."""
    if op.pre is not None:  # q1 = pre(acc), then this op on q1's real value
        q1 = requant_exact(acc, scale_in, offset_in, op.pre, channel)
        s1, zp1 = _pre_scale(op.pre, channel)
        return requant_exact(q1, s1, -s1 * zp1, _single(op), channel)
    sc = np.asarray(op.scale).reshape(-1)
    zps = np.asarray(op.zero_point).reshape(-1)
    s = Fraction(float(sc[channel if sc.size > 1 else 0]))
    zp = Fraction(float(zps[channel if zps.size > 1 else 0]))
    v = scale_in * acc + offset_in
    if op.relu:
        v = max(v, Fraction(0))
    if op.out_type.bipolar:  # BipolarQuant: +1 (stored 1) iff v / s >= 0, i.e. v >= 0 (s > 0)
        return 1 if v >= 0 else 0
    if op.trunc is not None:
        tr = op.trunc
        y = round_exact(v / Fraction(tr.scale) + Fraction(tr.zero_point), "ROUND")
        q = round_exact(Fraction(y) / Fraction(tr.trunc_scale), op.rounding_mode)
    else:
        q = round_exact(v / s + zp, op.rounding_mode)
    return min(max(q, op.out_type.qmin), op.out_type.qmax)


def _single(op: Requant) -> Requant:
    """``op`` without its ``pre`` stage."""
    from dataclasses import replace

    return replace(op, pre=None, thresholds=None)


def _pre_scale(pre: Requant, channel: int) -> tuple[Fraction, Fraction]:
    """(scale, zero-point) of the intermediate activation ``pre`` produces, for one channel."""
    sc = np.asarray(pre.scale).reshape(-1)
    s = Fraction(float(sc[channel if sc.size > 1 else 0]))
    if pre.out_type.bipolar:  # real = s * (2 q1 - 1) = 2s * (q1 - 1/2)
        return 2 * s, Fraction(1, 2)
    return s, Fraction(int(pre.out_type.zero_point))


def _v_breakpoint(op: Requant, k: int, s: Fraction, zp: Fraction) -> tuple[Fraction, bool]:
    """``(r, strict)`` such that the Requant's output is ``>= k``  iff  ``v > r`` (strict) or ``v >= r``.
    Bipolar output (one threshold, ``k == 1``): ``v >= 0`` (QONNX ``BipolarQuant``, sign(0) = +1)."""
    if op.out_type.bipolar:
        return Fraction(0), False
    c, strict = level_breakpoint(k, op.rounding_mode)
    if op.trunc is None:  # rnd(v / s + zp) >= k
        return (c - zp) * s, strict
    tr = op.trunc  # rnd(y / ts) >= k  iff  the integer y >= m  iff  ROUND(v / s' + zp') >= m
    ts = Fraction(tr.trunc_scale)
    m = math.floor(ts * c) + 1 if strict else math.ceil(ts * c)
    c2, strict2 = level_breakpoint(m, "ROUND")
    return (c2 - Fraction(tr.zero_point)) * Fraction(tr.scale), strict2


def _dyadic(values) -> tuple[list, int]:
    """Floats or dyadic Fractions -> ``(N, E)`` with ``values[i] == N[i] * 2**E`` exactly (Python ints;
    every finite float is a dyadic rational, ``as_integer_ratio`` gives it with a power-of-two
    denominator; so are products and sums of floats, the Fractions given here)."""
    pairs = []
    for v in values:
        if type(v) is Fraction:  # not isinstance: its ABC check made this loop 1.7x slower (measured)
            n, d = v.numerator, v.denominator
            if d & (d - 1):
                raise AssertionError(f"breakpoint {v} is not dyadic")
        else:
            v = float(v)
            if not math.isfinite(v):
                raise A2QError(f"a scale, zero-point or offset is not finite ({v}); thresholds need finite values")
            n, d = v.as_integer_ratio()
        pairs.append((n, 1 - d.bit_length()))  # d == 2**(bit_length - 1)
    E = min((e for n, e in pairs if n), default=0)
    return [n << (e - E) if n else 0 for n, e in pairs], E


def _vals(a, C: int) -> list:
    """``a`` (one value, or ``C``) as ``C`` floats. Raises :class:`A2QError` for another count."""
    arr = np.asarray(a).reshape(-1)
    if arr.size not in (1, C):
        raise A2QError(f"expected 1 or {C} values, got {arr.size}")
    return [float(v) for v in arr] * (C if arr.size == 1 else 1)


def _vec(a, C: int) -> list:
    """:func:`_vals` as exact Fractions."""
    return [Fraction(v) for v in _vals(a, C)]


def _col(vals: list, dt) -> np.ndarray:
    return np.array(vals, dtype=dt).reshape(-1, 1)


def requant_thresholds(op: Requant, acc_scale, acc_offset, lo: int, hi: int) -> np.ndarray:
    """``T[C, qmax - qmin]`` (int64, or object when ``lo``/``hi`` need more than 62 bits) for
    accumulators known to lie in ``[lo, hi]``; ``C`` is the size of ``acc_scale``.

    Exact, on integers only (equal to :func:`requant_thresholds_reference`, which computes the same
    on :class:`~fractions.Fraction`): every float is ``n * 2^e``. For channel ``j`` and level ``t``,
    with the breakpoint ``r`` of :func:`level_breakpoint` carried to the real value ``v``
    (``r = (c_t - zp_j) * s_j``, ``c_t`` a multiple of 1/2), the least accumulator with
    ``sa_j * acc + oa_j >= r`` (or ``> r``) is ``ceil(X / d)`` (or ``floor(X / d) + 1``) where
    ``X / d = (r - oa_j) / sa_j`` is written over a common power of two: ``X`` and ``d > 0``
    integers. Those are int64 numpy arrays when a bound on ``|X|`` and ``d`` is below ``2^62``
    (the bound is computed first, on Python integers), else Python integers in object arrays.

    Raises :class:`~a2qhls.errors.A2QError` for a non-positive output scale, a negative
    accumulator scale or a value that is not finite.
    """
    if op.pre is not None:
        return _composed_thresholds(op, acc_scale, acc_offset, lo, hi)
    C = int(np.asarray(acc_scale).reshape(-1).size)
    sa_f, oa_f, s_f, zp_f = (_vals(v, C) for v in (acc_scale, acc_offset, op.scale, op.zero_point))
    for j in range(C):
        if not (s_f[j] > 0) or not (sa_f[j] >= 0):
            raise A2QError(f"{op.name}: channel {j} has a non-positive scale; thresholds need positive scales")
    qmin, qmax = op.out_type.qmin, op.out_type.qmax
    NT = qmax - qmin
    if NT == 0 or C == 0:
        return np.zeros((C, NT), dtype=np.int64)
    A, Ea = _dyadic(sa_f)
    O, Eo = _dyadic(oa_f)
    bipolar = bool(op.out_type.bipolar)  # BipolarQuant: one breakpoint, v >= 0 (see _v_breakpoint)
    if op.trunc is None and not bipolar:
        # r[j, t] = (c_t - zp_j) * s_j = (CN_t - Z_j) * S_j * 2^(Ec + Es), c_t = CN_t * 2^Ec
        bps = [level_breakpoint(qmin + 1 + t, op.rounding_mode) for t in range(NT)]
        Z, Ez = _dyadic(zp_f)
        Ec = min(Ez, -1)
        CN = [int(c * 2) << (-1 - Ec) for c, _ in bps]
        Z = [z << (Ez - Ec) for z in Z]
        S, Es = _dyadic(s_f)
        Er = Ec + Es
        r_bound = (max(map(abs, CN)) + max(map(abs, Z))) * max(S)
    else:  # the breakpoints do not depend on the channel (the Trunc's own scale and zero-point; bipolar: 0)
        bps = [_v_breakpoint(op, qmin + 1 + t, Fraction(0), Fraction(0)) for t in range(NT)]
        R, Er = _dyadic([r for r, _ in bps])
        r_bound = max(map(abs, R))
    strict = np.array([s for _, s in bps], dtype=bool)[None, :]
    E = min(Er, Eo)
    k = E - Ea  # a = X * 2^E / (A * 2^Ea): the power of two goes to the numerator (k >= 0) or the denominator
    sr, so = Er - E + max(k, 0), Eo - E + max(k, 0)
    d = [max(a, 1) << max(-k, 0) for a in A]  # a zero accumulator scale is handled below (constant v)
    x_bound = (r_bound << sr) + (max(map(abs, O)) << so)
    # the factors too: S << sr alone can exceed int64 when every breakpoint is 0 (r_bound == 0)
    s_bound = max(S) << sr if op.trunc is None and not bipolar else 0
    fits = x_bound < 2**62 and s_bound < 2**62 and max(d) < 2**62 and max(abs(lo), abs(hi) + 1) < 2**62
    dt = np.int64 if fits else object
    if op.trunc is None and not bipolar:
        diff = np.array(CN, dtype=dt)[None, :] - _col(Z, dt)  # sign of r (S_j > 0)
        X = diff * _col([s << sr for s in S], dt) - _col([o << so for o in O], dt)
    else:
        diff = np.array(R, dtype=dt)[None, :]
        X = (diff << sr) - _col([o << so for o in O], dt)
    D = _col(d, dt)
    low, high = np.array(lo, dtype=dt), np.array(hi + 1, dtype=dt)  # 0-d arrays: no float promotion of big ints
    th = np.where(strict, X // D + 1, -((-X) // D))
    zero = _col([a == 0 for a in A], bool)
    if zero.any():  # constant v = oa: every threshold met (lo) or none (hi + 1)
        ok = np.where(strict, X < 0, X <= 0)
        th = np.where(zero, np.where(ok, low, high), th)
    th = np.minimum(np.maximum(th, low), high)
    if op.relu:  # relu(v) >= r holds for every v when r <= 0 (r < 0 if strict)
        th = np.where(np.where(strict, diff < 0, diff <= 0), low, th)
    return th.astype(np.int64) if max(abs(lo), abs(hi) + 1) < 2**62 else th.astype(object)


def requant_thresholds_reference(op: Requant, acc_scale, acc_offset, lo: int, hi: int) -> np.ndarray:
    """The same as :func:`requant_thresholds`, computed one threshold at a time on exact
    :class:`~fractions.Fraction` values: the reference the tests compare it with (slow: use
    :func:`requant_thresholds`)."""
    if op.pre is not None:
        return _composed_thresholds(op, acc_scale, acc_offset, lo, hi, requant_thresholds_reference)
    C = int(np.asarray(acc_scale).reshape(-1).size)
    sa = _vec(acc_scale, C)
    oa = _vec(acc_offset, C)
    s = _vec(op.scale, C)
    zp = _vec(op.zero_point, C)
    qmin, qmax = op.out_type.qmin, op.out_type.qmax
    NT = qmax - qmin
    T = np.empty((C, NT), dtype=object)
    breakpoints: dict = {}  # (s, zp) -> the NT breakpoints: computed once per distinct output scale (often one)
    for j in range(C):
        if s[j] <= 0 or sa[j] < 0:
            raise A2QError(f"{op.name}: channel {j} has a non-positive scale; thresholds need positive scales")
        bps = breakpoints.get((s[j], zp[j]))
        if bps is None:
            bps = breakpoints[(s[j], zp[j])] = [_v_breakpoint(op, qmin + 1 + t, s[j], zp[j]) for t in range(NT)]
        for t in range(NT):
            r, strict = bps[t]  # condition on relu?(v): v' >= r (or > r)
            if op.relu and ((r <= 0) if not strict else (r < 0)):
                T[j, t] = lo  # max(v, 0) already satisfies it
                continue
            if sa[j] == 0:  # constant v
                ok = (oa[j] > r) if strict else (oa[j] >= r)
                T[j, t] = lo if ok else hi + 1
                continue
            a = (r - oa[j]) / sa[j]
            th = math.floor(a) + 1 if strict else math.ceil(a)
            T[j, t] = min(max(th, lo), hi + 1)
    if max(abs(lo), abs(hi) + 1) < 2**62:
        T = T.astype(np.int64)
    return T


def _composed_thresholds(op: Requant, acc_scale, acc_offset, lo: int, hi: int, thresholds=None) -> np.ndarray:
    """Thresholds of ``op`` after ``op.pre``: ``q2 >= k``  iff  ``q1 >= t``  iff  ``acc >= T1[t]``."""
    thresholds = thresholds or requant_thresholds
    pre = op.pre
    T1 = thresholds(pre, acc_scale, acc_offset, lo, hi)
    C = T1.shape[0]
    q1min, q1max = pre.out_type.qmin, pre.out_type.qmax
    s1 = np.broadcast_to(np.asarray(pre.scale, dtype=np.float64).reshape(-1), (C,))
    if pre.out_type.bipolar:  # q1's real value s1 * (2 q1 - 1)
        T2 = np.asarray(thresholds(_single(op), 2 * s1, -s1, q1min, q1max)).astype(np.int64)
    else:
        T2 = np.asarray(thresholds(_single(op), s1, -s1 * pre.out_type.zero_point, q1min, q1max)).astype(np.int64)  # over q1
    # T2[j, k] = t: met by every q1 (t <= q1min), by none (t > q1max), else exactly when acc >= T1[j, t - q1min - 1]
    idx = np.clip(T2 - q1min - 1, 0, max(T1.shape[1] - 1, 0))
    T1o = T1.astype(object)
    picked = np.take_along_axis(T1o, idx, axis=1) if T1.shape[1] else np.zeros(T2.shape, dtype=object)
    T = np.where(T2 <= q1min, lo, np.where(T2 > q1max, hi + 1, picked)).astype(object)
    return T.astype(np.int64) if max(abs(lo), abs(hi) + 1) < 2**62 else T


def _check_table_size(model: Model, op: Requant) -> None:
    """Refuse, before computing it, a threshold table above :data:`a2qhls.limits.MAX_THRESHOLDS`."""
    from ..limits import MAX_THRESHOLDS

    C = int(model.tensors[op.inputs[0]].shape[-1])
    r = op
    while r is not None:
        levels = int(r.out_type.qmax) - int(r.out_type.qmin)
        if C * levels > MAX_THRESHOLDS:
            raise A2QError(
                f"{op.name}: requantizing {C} channels to {r.out_type.bits} bits needs {C * levels} thresholds, above the "
                f"limit of {MAX_THRESHOLDS} (see README, Limits); use a narrower activation"
            )
        r = getattr(r, "pre", None)


def compute_thresholds(model: Model) -> Model:
    """Fill ``Requant.thresholds`` for every Requant (in place); returns ``model``.

    A Requant may follow any accumulating op (Dense, Conv, average Pool, Add); its input
    tensor's ``scale``/``offset`` give the accumulator's real value.

    Thresholds are clamped to the exact range joined with the range of the width the hardware
    uses (``op.acc_bits``, see :mod:`a2qhls.passes.acc_bits`; an override included).
    """
    widths = built_acc_bits(model)
    for op in model.ops:
        if not isinstance(op, Requant):
            continue
        prod = model.producer(op.inputs[0])
        if prod is None or prod.name not in widths:
            raise A2QError(
                f"{op.name}: a Requant must follow an accumulator (MatMul/Gemm/Conv, average pool or residual add); "
                f"found {getattr(prod, 'op', None)}"
            )
        P = widths[prod.name]
        _check_table_size(model, op)
        lo, hi = acc_range(model, prod)
        lo, hi = min(lo, -(1 << (P - 1))), max(hi, (1 << (P - 1)) - 1)
        info = model.tensors[op.inputs[0]]
        op.thresholds = requant_thresholds(op, info.scale, info.offset, lo, hi)
    return model
