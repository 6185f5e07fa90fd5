"""``Add``, ``Sub``, ``Mul``, ``Div``: float preprocessing of the graph input, a bias or scale on an
accumulator (a negative scale only where the accumulator leaves the graph, e.g. BNN-PYNQ's
``TensorNorm``), and the residual add (:class:`~a2qhls.ir.Add`) of two quantized tensors or layer
outputs (``bn2(conv2(x)) + shortcut(x)`` before the activation Quant), their scales aligned exactly
per channel."""
from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np

from ..errors import A2QError
from ..ir import Add, Conv, Dense, TensorInfo
from .context import (AccState, Ctx, FloatInput, IntState, QConst, acc_view, axis1_values, channel_values, const_array, finalize_acc,
                      no_pending_relu, sole_reader)

MAX_ALIGN_BITS = 62  # a larger multiplier cannot give a sum within 64 bits (the widest accumulator)


def add_bias(ctx: Ctx, node, st: AccState, bname: str, out: str, src: str = "", axis1: bool = False) -> AccState:
    """The constant ``bname`` added to the accumulator ``src`` (a layer's output, seen through the state ``st``):
    by ONNX broadcasting (an Add, a Gemm's C), or along axis 1 (``axis1``: a Conv's B, shape ``[C]``); one value or
    one per channel (:func:`~.context.channel_values`), else a one-line error. An integer bias in accumulator units
    on the layer's own accumulator becomes part of it; any other a float offset of its real value."""
    C = st.layer.channels
    src = src or st.layer.outputs[0]
    b = ctx.consts.get(bname)
    if b is None:
        raise A2QError(
            f"{ctx.where(node)}: adding the tensor '{bname}' to a layer's accumulator before its activation Quant is not "
            "supported; quantize both branches before the Add (e.g. one shared QuantReLU, as brevitas_examples' "
            "QuantBasicBlock does)"
        )
    view = acc_view(ctx, st)

    def per_channel(v) -> np.ndarray:
        get = axis1_values if axis1 else channel_values
        return np.broadcast_to(get(ctx, node, "bias", np.asarray(v), src, *view), (C,))

    if isinstance(b, QConst):
        ints = per_channel(b.ints)
        bscale = per_channel(np.broadcast_to(np.asarray(b.scale), b.ints.shape)).astype(np.float64)
        val = per_channel(b.value)
        same_scale = np.allclose(bscale, st.scale, rtol=1e-6, atol=0)
        # the accumulator before the bias is needed nowhere else (a Gemm/Conv's own bias input: it is the node's output)
        acc = st.layer.outputs[0]
        sole_use = len(ctx.consumers.get(acc, [])) <= 1 if acc == out else sole_reader(ctx, acc)
        if same_scale and isinstance(st.layer, (Dense, Conv)) and st.layer.bias is None and not st.relu and sole_use and np.all(st.offset == 0):
            # an integer bias in accumulator units: it becomes part of the accumulator
            st.layer.bias = np.asarray(ints, dtype=np.int64).copy()
            return replace(st)
    else:
        val = per_channel(b)
    if st.relu:
        raise A2QError(f"{ctx.where(node)}: Add after Relu is not supported")
    return replace(st, offset=st.offset + np.asarray(val, dtype=np.float64))


def on_float_input_op(ctx: Ctx, node) -> bool:
    """``x op c`` or ``c op x`` (Add, Sub, Mul, Div) on the float graph input with a constant ``c``:
    float preprocessing (e.g. ``2 * x - 1``, ``(x - mean) / std``) that the input quantizer absorbs.
    Returns False when ``node`` does not read the float input."""
    from .quant import preprocess

    a, b = node.input[0], node.input[1]
    sa, sb = ctx.state.get(a), ctx.state.get(b)
    if not isinstance(sa, FloatInput) and not isinstance(sb, FloatInput):
        return False
    x, c, st = (a, b, sa) if isinstance(sa, FloatInput) else (b, a, sb)
    cv = const_array(ctx, c)
    if cv is None:
        raise A2QError(f"{ctx.where(node)}: {node.op_type} of the float input with a non-constant '{c}' is not supported; "
                       "supported before the input quantizer: Add/Sub/Mul/Div by a constant and Relu")
    op = node.op_type
    if x != a:  # c op x
        if op in ("Add", "Mul"):
            pass  # commutative, and exactly so in float32
        elif op == "Sub":  # c - x = (x * -1) + c, exactly so in float32
            st = preprocess(ctx, node, st, "Mul", -1.0)
            op = "Add"
        else:
            raise A2QError(f"{ctx.where(node)}: a constant divided by the float input is not supported; supported: x / c")
    ctx.state[node.output[0]] = preprocess(ctx, node, st, op, cv)
    return True


def on_sub_div(ctx: Ctx, node) -> None:
    if on_float_input_op(ctx, node):
        return
    st = ctx.state.get(node.input[0])
    c = const_array(ctx, node.input[1]) if len(node.input) > 1 else None
    if isinstance(st, AccState) and c is not None and not st.relu:
        # a float affine on a layer's accumulator (e.g. BNN-PYNQ's TensorNorm, (acc - mean) / sqrt(var + eps)):
        # folded exactly into the accumulator tensor's real value scale * acc + offset
        c = channel_values(ctx, node, "constant", np.asarray(c, dtype=np.float64), node.input[0], *acc_view(ctx, st))
        if not np.all(np.isfinite(c)):
            raise A2QError(f"{ctx.where(node)}: {node.op_type} of a layer output by a non-finite constant")
        if node.op_type == "Sub":
            ctx.state[node.output[0]] = replace(st, offset=st.offset - c)
        else:
            if np.any(c == 0):
                raise A2QError(f"{ctx.where(node)}: division of a layer output by zero")
            ctx.state[node.output[0]] = replace(st, scale=st.scale / c, offset=st.offset / c)
        return
    raise A2QError(f"{ctx.where(node)}: {node.op_type} is supported on the float graph input before its quantizer and on a "
                   "layer output, by a constant")


def on_add(ctx: Ctx, node) -> None:
    if on_float_input_op(ctx, node):
        return
    a, b = node.input[0], node.input[1]
    if a in ctx.consts and b not in ctx.consts:
        a, b = b, a
    st = ctx.state.get(a)
    if isinstance(st, AccState) and b in ctx.consts:
        ctx.state[node.output[0]] = add_bias(ctx, node, st, b, node.output[0], src=a)
        return
    sb = ctx.state.get(b)
    if isinstance(st, (AccState, IntState)) and isinstance(sb, (AccState, IntState)):
        on_residual_add(ctx, node, [_operand(ctx, node, a, st), _operand(ctx, node, b, sb)])
        return
    raise A2QError(
        f"{ctx.where(node)}: supported Adds are a constant bias on a layer output and the sum of two quantized tensors "
        "or layer outputs (residual add)"
    )


def _operand(ctx: Ctx, node, name: str, st) -> tuple:
    """``(tensor, scale [C], offset [C])`` of one input of a residual add: an integer activation, or a
    layer's accumulator seen through its float post-ops (BatchNormalization, Mul, a constant Add)."""
    if isinstance(st, AccState):
        if st.deferred is not None:
            raise A2QError(f"{ctx.where(node)}: adding a MaxPool of a layer output '{name}' before its activation Quant is not "
                           "supported; supported: the pool after the Add's activation")
        if st.relu:
            raise A2QError(f"{ctx.where(node)}: the input '{name}' is a Relu of a layer output without a Quant; supported: "
                           "a layer output (after BatchNormalization) or a quantized tensor")
        if st.flattened:
            raise A2QError(f"{ctx.where(node)}: adding a flattened layer output '{name}' is not supported")
        finalize_acc(ctx, ctx.where(node), st)
        return ctx.tensors[st.layer.outputs[0]], np.asarray(st.scale, dtype=np.float64), np.asarray(st.offset, dtype=np.float64)
    no_pending_relu(ctx, node, st)
    if st.flattened:
        raise A2QError(f"{ctx.where(node)}: adding a flattened feature map '{name}' is not supported")
    info = ctx.tensors[st.tensor]
    C = info.channels
    return info, np.broadcast_to(np.asarray(info.scale, dtype=np.float64).reshape(-1), (C,)), \
        np.broadcast_to(np.asarray(info.offset, dtype=np.float64).reshape(-1), (C,))


def align_scales(sa: float, sb: float) -> tuple:
    """``(ma, mb, s)``: the least positive integers with ``sa = ma * s`` and ``sb = mb * s`` exactly, for
    two positive float32 scales (dyadic rationals ``m * 2^e``): ``s`` is their common power-of-two grid
    times the common odd factor, ``ma``/``mb`` odd mantissas shifted left by the exponent differences."""
    fa, fb = Fraction(sa), Fraction(sb)
    r = fa / fb
    ma, mb = r.numerator, r.denominator
    return ma, mb, fa / ma


def on_residual_add(ctx: Ctx, node, operands: list) -> None:
    """The sum of two integer tensors (activations or accumulators) at their real values: per channel
    ``v = sa * a + oa + sb * b + ob = s * (ma * a + mb * b) + (oa + ob)`` with integer ``ma``, ``mb``
    (:func:`align_scales`; each scale taken in float32, the precision of the exported graph's tensors).
    The integer sum is an accumulator (:class:`~a2qhls.ir.Add`) whose activation Quant becomes thresholds."""
    (ta, sa, oa), (tb, sb, ob) = operands
    if ta.shape != tb.shape:
        raise A2QError(f"{ctx.where(node)}: adding tensors of shapes {list(ta.shape)} and {list(tb.shape)} is not supported")
    C = ta.channels
    ma, mb, scale = [], [], np.empty(C)
    for j in range(C):
        fa, fb = np.float32(sa[j]), np.float32(sb[j])
        if not (np.isfinite(fa) and np.isfinite(fb) and fa > 0 and fb > 0):
            raise A2QError(f"{ctx.where(node)}: channel {j}'s input scales ({sa[j]:g}, {sb[j]:g}) are not positive float32 "
                           "values; an exact residual add needs positive finite scales")
        m_a, m_b, s = align_scales(float(fa), float(fb))
        if max(m_a, m_b).bit_length() > MAX_ALIGN_BITS:
            raise A2QError(
                f"{ctx.where(node)}: aligning the inputs' scales ({float(fa):.6g}, {float(fb):.6g}) of channel {j} exactly needs "
                f"a {max(m_a, m_b).bit_length()}-bit multiplier, beyond a 64-bit accumulator; quantize both branches with a "
                "shared quantizer (same scale) or scales in a power-of-two ratio"
            )
        ma.append(m_a)
        mb.append(m_b)
        scale[j] = float(s)
        assert Fraction(scale[j]) == s  # a float32 mantissa times a power of two: exact in float64
    uni = lambda m: m[0] if all(v == m[0] for v in m) else tuple(m)  # noqa: E731
    out = node.output[0]
    add = Add(node.name, [ta.name, tb.name], [out], (uni(ma), uni(mb)), tuple(ta.shape),
              source_inputs=(node.input[0], node.input[1]))
    ctx.ops.append(add)
    offset = np.asarray(oa, dtype=np.float64) + np.asarray(ob, dtype=np.float64)
    ctx.tensors[out] = TensorInfo(out, tuple(ta.shape), None, scale.copy(), offset.copy())
    ctx.state[out] = AccState(layer=add, scale=scale, offset=offset)


def on_mul(ctx: Ctx, node) -> None:
    if on_float_input_op(ctx, node):
        return
    a, b = node.input[0], node.input[1]
    if a in ctx.consts and b not in ctx.consts:
        a, b = b, a
    st = ctx.state.get(a)
    c = const_array(ctx, b)
    if isinstance(st, AccState) and c is not None:
        c = channel_values(ctx, node, "constant", np.asarray(c, dtype=np.float64), a, *acc_view(ctx, st))
        if np.any(c == 0) or not np.all(np.isfinite(c)):
            raise A2QError(f"{ctx.where(node)}: only a nonzero per-tensor or per-channel constant Mul on an accumulator is supported")
        if np.any(c < 0) and st.relu:
            raise A2QError(f"{ctx.where(node)}: a negative Mul after a Relu is not supported")
        ctx.state[node.output[0]] = replace(st, scale=st.scale * c, offset=st.offset * c)
        return
    raise A2QError(f"{ctx.where(node)}: only Mul of a layer output by a positive constant is supported")
