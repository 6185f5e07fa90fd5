"""CNN ops of the bit-accurate model (Conv, depthwise Conv, max/avg Pool, residual Add) against
plain Python big-integer loops, with P-bit wraparound on every accumulator."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import assume, given, settings, strategies as st

import hand_models
from a2qhls.ir import Add, Conv, Dense, InputQuant, IntType, Pool
from a2qhls.passes.thresholds import requant_exact
from a2qhls.sim import BitSim
from a2qhls.passes.acc_bits import apply_acc_bits


def _wrap(v: int, bits: int) -> int:
    m = 1 << bits
    v %= m
    return v - m if v >= m // 2 else v


def _out_hw(H, W, k, s, p):
    return (H + p[0] + p[2] - k[0]) // s[0] + 1, (W + p[1] + p[3] - k[1]) // s[1] + 1


def reference(model, x: np.ndarray, acc_bits: dict) -> dict:
    """The definition, one integer at a time: ``{tensor: object array [B, *shape]}``."""
    from qonnx.custom_op.general.quant import quant

    vals = {}
    for op in model.ops:
        if isinstance(op, InputQuant):
            t = op.out_type
            y = quant(x.astype(np.float32), op.scale, op.zero_point, np.float32(t.bits), t.signed, t.narrow, op.rounding_mode)
            q = np.round(y / op.scale + op.zero_point).astype(np.int64).transpose(0, 2, 3, 1)  # NCHW -> NHWC
            vals[op.outputs[0]] = q.astype(object)
            continue
        src = vals[op.inputs[0]]
        B = src.shape[0]
        in_t = model.tensors[op.inputs[0]].dtype
        zp = in_t.zero_point if in_t is not None else 0
        if isinstance(op, (Conv, Pool)):
            H, W, C = op.in_shape
            (kh, kw), (sh, sw), pads = op.kernel, op.stride, op.pads
            OH, OW = _out_hw(H, W, op.kernel, op.stride, pads)
            cout = op.channels
            out = np.empty((B, OH, OW, cout), dtype=object)
            for b in range(B):
                for oy in range(OH):
                    for ox in range(OW):
                        for j in range(cout):
                            taps = []  # (weight, value) of the window, padding = value 0
                            for dy in range(kh):
                                for dx in range(kw):
                                    iy, ix = oy * sh - pads[0] + dy, ox * sw - pads[1] + dx
                                    inside = 0 <= iy < H and 0 <= ix < W
                                    if isinstance(op, Pool):
                                        taps.append(int(src[b, iy, ix, j]) if inside else None)
                                    elif op.depthwise:
                                        v = int(src[b, iy, ix, j]) - zp if inside else 0
                                        taps.append(int(op.weight[j, dy, dx, 0]) * v)
                                    else:
                                        for c in range(C):
                                            v = int(src[b, iy, ix, c]) - zp if inside else 0
                                            taps.append(int(op.weight[j, dy, dx, c]) * v)
                            if isinstance(op, Pool) and op.mode == "max":
                                out[b, oy, ox, j] = max(t for t in taps if t is not None)
                            elif isinstance(op, Pool):
                                out[b, oy, ox, j] = _wrap(sum(t - zp for t in taps if t is not None), acc_bits[op.name])
                            else:
                                a = sum(taps) + (int(op.bias[j]) if op.bias is not None else 0)
                                out[b, oy, ox, j] = _wrap(a, acc_bits[op.name])
        elif isinstance(op, Add):
            other = vals[op.inputs[1]]
            zb = model.tensors[op.inputs[1]].dtype.zero_point
            ma, mb = op.multipliers
            out = np.empty(src.shape, dtype=object)
            for idx in np.ndindex(src.shape):
                out[idx] = _wrap(ma * (int(src[idx]) - zp) + mb * (int(other[idx]) - zb), acc_bits[op.name])
        elif isinstance(op, Dense):
            flat = src.reshape(B, -1)  # (h, w, c) order
            out = np.empty((B, op.channels), dtype=object)
            for b in range(B):
                for j in range(op.channels):
                    a = sum(int(op.weight[j, i]) * (int(flat[b, i]) - zp) for i in range(op.K))
                    out[b, j] = _wrap(a + (int(op.bias[j]) if op.bias is not None else 0), acc_bits[op.name])
        else:  # Requant
            info = model.tensors[op.inputs[0]]
            out = np.empty(src.shape, dtype=object)
            for idx in np.ndindex(src.shape):
                j = idx[-1]
                out[idx] = requant_exact(int(src[idx]), Fraction(float(info.scale[j])), Fraction(float(info.offset[j])), op, j)
        vals[op.outputs[0]] = out
    return vals


spec = st.fixed_dictionaries({
    "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "stride": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "pads": st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 2), st.integers(0, 1)),
})


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    hw=st.tuples(st.integers(4, 7), st.integers(4, 7)),
    conv0=spec,
    dw=spec,
    in_zp=st.integers(-3, 3),
    in_signed=st.booleans(),
    add_ratio=st.sampled_from([1.0, 2.0, 0.5]),
    global_avg=st.booleans(),
    shrink=st.lists(st.integers(0, 3), min_size=6, max_size=6),
    mode=st.sampled_from(["ROUND", "FLOOR", "HALF_UP"]),
)
def test_cnn_matches_big_int_reference(seed, hw, conv0, dw, in_zp, in_signed, add_ratio, global_avg, shrink, mode):
    """Every tensor of a conv/depthwise/maxpool/residual/avgpool/dense model, at the safe widths or
    narrower ones (wrapping), equals the plain-Python definition."""
    H0, W0 = _out_hw(*hw, conv0["kernel"], conv0["stride"], conv0["pads"])
    assume(H0 >= 1 and W0 >= 1)
    H1, W1 = _out_hw(H0, W0, dw["kernel"], dw["stride"], dw["pads"])
    assume(H1 >= 2 and W1 >= 2)
    avg = None if global_avg else {"kernel": (2, 2), "stride": (1, 1), "pads": (0, 0, 1, 1)}
    m = hand_models.cnn(seed=seed, hw=hw, conv0=conv0, dw=dw, in_type=IntType(4, in_signed, False, in_zp),
                        add_ratio=add_ratio, avg=avg, act_rounding=mode)
    acc_bits = {op.name: max(2, op.acc.acc_bits - s) for op, s in zip(m.accumulating_ops(), shrink)}
    x = np.random.default_rng(seed).uniform(-0.6, 1.3, size=(2, 2, *hw)).astype(np.float32)
    got = BitSim(apply_acc_bits(m, acc_bits)).run(x, keep=True)
    want = reference(m, x, acc_bits)
    for t, v in want.items():
        assert np.array_equal(np.asarray(got[t]).astype(np.int64), v.astype(np.int64)), t


def test_safe_widths_never_wrap_and_adversarial_patch_reaches_the_extreme():
    """At the derived widths nothing wraps; the worst channel's adversarial patch, put at a window
    with the mask that reaches the extreme, drives the accumulator exactly to acc_max / acc_min."""
    from a2qhls.cosimulation import place_patch

    m = hand_models.cnn(seed=4, in_type=IntType(4, False, False, 2))
    sim = BitSim(m)
    x = np.random.default_rng(0).uniform(-1, 2, size=(64, 2, 6, 6)).astype(np.float32)
    vals = sim.run(x, keep=True)
    for op in m.accumulating_ops():
        ins = [vals[t] for t in op.inputs]
        assert np.array_equal(sim.accumulate(op, ins, exact=True), vals[op.outputs[0]]), op.name
    for op in m.layers()[:2]:
        in_t = m.tensors[op.inputs[0]].dtype
        j = op.acc.worst_channel
        for patch, want, which in ((op.acc.adversarial_max, op.acc.per_channel_max[j], "max"),
                                   (op.acc.adversarial_min, op.acc.per_channel_min[j], "min")):
            fmap, (oy, ox) = place_patch(op, patch, in_t, which)
            acc = sim.accumulate(op, [fmap[None]], exact=True)
            assert int(acc[0, oy, ox, j]) == int(want), op.name
