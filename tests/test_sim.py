"""The bit-accurate numpy model against plain Python big-integer references."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import hand_models
from a2qhls.ir import Dense, InputQuant, IntType, Model, TensorInfo
from a2qhls.passes.accumulator import size_accumulators
from a2qhls.passes.thresholds import requant_exact
from a2qhls.sim import BitSim, quantize_input, to_real, wrap
from a2qhls.passes.acc_bits import apply_acc_bits


def _wrap_ref(v: int, bits: int) -> int:
    m = 1 << bits
    v %= m
    return v - m if v >= m // 2 else v


def test_wrap_is_twos_complement():
    vals = [-(2**40), -129, -128, -1, 0, 1, 127, 128, 255, 256, 2**40 + 5]
    for bits in (2, 8, 12, 33):
        assert wrap(np.array(vals), bits).tolist() == [_wrap_ref(v, bits) for v in vals]
    assert [int(v) for v in wrap(np.array([2**70 + 3, -(2**70) - 1], dtype=object), 64)] == [
        _wrap_ref(2**70 + 3, 64),
        _wrap_ref(-(2**70) - 1, 64),
    ]


def _one_dense_model(w, bias, in_type):
    C, K = w.shape
    t = {
        "xq": TensorInfo("xq", (K,), in_type, np.ones(K), np.zeros(K)),
        "acc": TensorInfo("acc", (C,), None, np.ones(C), np.zeros(C)),
    }
    ops = [
        InputQuant("iq", ["x"], ["xq"], np.float32(1.0), np.float32(in_type.zero_point), in_type, "ROUND"),
        Dense("fc", ["xq"], ["acc"], w, IntType(int(np.abs(w).max()).bit_length() + 1, True), np.ones(C), bias),
    ]
    return size_accumulators(Model("one", "x", (K,), ops, t, ["acc"], ["y"]))


@settings(max_examples=120, deadline=None)
@given(
    data=st.data(),
    K=st.integers(1, 12),
    C=st.integers(1, 5),
    in_bits=st.integers(1, 20),
    signed=st.booleans(),
    zp=st.integers(-3, 3),
    w_bits=st.integers(2, 24),
    has_bias=st.booleans(),
    shrink=st.integers(0, 6),
)
def test_dense_wraps_like_big_int_reference(data, K, C, in_bits, signed, zp, w_bits, has_bias, shrink):
    """acc = wrap_P(bias + sum w*(q - zp)) for any P, including P narrower than safe (overflow)."""
    if in_bits == 1:
        signed = False
    in_type = IntType(in_bits, signed, False, zp)
    wm = (1 << (w_bits - 1)) - 1
    w = np.array(data.draw(st.lists(st.integers(-wm, wm), min_size=C * K, max_size=C * K)), dtype=np.int64).reshape(C, K)
    bias = np.array(data.draw(st.lists(st.integers(-(2**20), 2**20), min_size=C, max_size=C)), dtype=np.int64) if has_bias else None
    model = _one_dense_model(w, bias, in_type)
    safe = model.layers()[0].acc.acc_bits
    P = max(2, safe - shrink)
    B = 4
    q = np.array(data.draw(st.lists(st.integers(in_type.qmin, in_type.qmax), min_size=B * K, max_size=B * K)), dtype=np.int64).reshape(B, K)
    out = BitSim(apply_acc_bits(model, {"fc": P})).run(q, start="xq")["acc"]
    for b in range(B):
        for j in range(C):
            exact = sum(int(w[j, i]) * (int(q[b, i]) - zp) for i in range(K)) + (int(bias[j]) if has_bias else 0)
            assert int(out[b, j]) == _wrap_ref(exact, P)
            if P >= safe:
                assert int(out[b, j]) == exact


def _reference_pipeline(model: Model, x: np.ndarray, acc_bits: dict) -> np.ndarray:
    """Plain Python: qonnx's quant for the input, big ints, exact rational requantization."""
    from qonnx.custom_op.general.quant import quant

    vals = {}
    for op in model.ops:
        if isinstance(op, InputQuant):
            t = op.out_type
            y = quant(x.astype(np.float32), op.scale, op.zero_point, np.float32(t.bits), t.signed, t.narrow, op.rounding_mode)
            q = np.round(y / op.scale + op.zero_point).astype(np.int64)
            vals[op.outputs[0]] = [[int(v) for v in row] for row in q]
        elif isinstance(op, Dense):
            zp = model.tensors[op.inputs[0]].dtype.zero_point
            P = acc_bits[op.name]
            rows = []
            for row in vals[op.inputs[0]]:
                r = []
                for j in range(op.channels):
                    a = sum(int(op.weight[j, i]) * (row[i] - zp) for i in range(op.K))
                    a += int(op.bias[j]) if op.bias is not None else 0
                    r.append(_wrap_ref(a, P))
                rows.append(r)
            vals[op.outputs[0]] = rows
        else:
            info = model.tensors[op.inputs[0]]
            rows = []
            for row in vals[op.inputs[0]]:
                rows.append([
                    requant_exact(a, Fraction(float(info.scale[j])), Fraction(float(info.offset[j])), op, j)
                    for j, a in enumerate(row)
                ])
            vals[op.outputs[0]] = rows
    return np.array(vals[model.outputs[0]], dtype=np.int64)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    mode=st.sampled_from(["ROUND", "FLOOR", "HALF_UP", "DOWN", "CEIL"]),
    relu=st.booleans(),
    act_signed=st.booleans(),
    float_bias=st.booleans(),
    narrower=st.integers(0, 3),
)
def test_pipeline_matches_python_reference(seed, mode, relu, act_signed, float_bias, narrower):
    """Whole model (input quant, wrapped accumulators, thresholds) vs the plain-Python definition."""
    act = IntType(3, act_signed, False, 0)
    model = hand_models.mlp((7, 5, 3), seed=seed, act_type=act, act_rounding=mode, relu=relu, float_bias=float_bias)
    acc_bits = {d.name: max(2, d.acc.acc_bits - narrower) for d in model.layers()}
    x = np.random.default_rng(seed).uniform(-0.3, 1.3, size=(6, 7)).astype(np.float32)
    got = BitSim(apply_acc_bits(model, acc_bits)).run(x)["acc1"]
    assert np.array_equal(got, _reference_pipeline(model, x, acc_bits))


def test_input_quant_matches_qonnx_float32():
    from qonnx.custom_op.general.quant import quant

    t = IntType(8, True, True, 0)
    op = InputQuant("iq", ["x"], ["q"], np.float32(0.0123), np.float32(0), t, "ROUND")
    x = np.random.default_rng(0).normal(0, 1.5, size=(200, 17)).astype(np.float32)
    ref = quant(x, op.scale, op.zero_point, np.float32(8), True, True, "ROUND")
    assert np.array_equal(quantize_input(op, x).astype(np.float32) * np.float32(0.0123), ref)


def test_narrow_accumulator_gives_wrong_but_defined_answer():
    """At width-1 the adversarial input of the worst channel wraps; at the safe width it does not."""
    model = hand_models.mlp((8, 6, 4), seed=3)
    d = model.layers()[0]
    P = d.acc.acc_bits
    xin = d.acc.adversarial_max[None, :] + model.tensors[d.inputs[0]].dtype.zero_point
    j = d.acc.worst_channel
    ok = BitSim(apply_acc_bits(model)).run(xin, start=d.inputs[0], keep=True)[d.outputs[0]][0, j]
    bad = BitSim(apply_acc_bits(model, {d.name: P - 1})).run(xin, start=d.inputs[0], keep=True)[d.outputs[0]][0, j]
    assert ok == d.acc.per_channel_max[j]
    if ok > (1 << (P - 2)) - 1:
        assert bad == ok - (1 << (P - 1))
    xmin = d.acc.adversarial_min[None, :] + model.tensors[d.inputs[0]].dtype.zero_point
    assert BitSim(apply_acc_bits(model)).run(xmin, start=d.inputs[0], keep=True)[d.outputs[0]][0, j] == d.acc.per_channel_min[j]


def test_to_real_applies_scale_and_offset():
    model = hand_models.mlp(float_bias=True)
    info = model.tensors["acc1"]
    q = np.array([[1, -2, 3, 0]])
    assert np.allclose(to_real(model, "acc1", q), info.scale * q + info.offset)
