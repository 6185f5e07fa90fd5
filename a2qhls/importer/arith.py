"""``Add``, ``Sub``, ``Mul``, ``Div``: float preprocessing of the graph input, a bias or scale on an
accumulator (a negative scale only where the accumulator leaves the graph, e.g. BNN-PYNQ's
``TensorNorm``), and the residual add of two quantized tensors (:class:`~a2qhls.ir.Add`)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import A2QError
from ..ir import Add, Conv, Dense, TensorInfo
from .context import AccState, Ctx, FloatInput, IntState, QConst, const_array, no_pending_relu

MAX_ADD_MULTIPLIER = 1 << 12


def add_bias(ctx: Ctx, node, st: AccState, bname: str, out: str) -> AccState:
    C = st.layer.channels
    b = ctx.consts.get(bname)
    if b is None:
        raise A2QError(
            f"{ctx.where(node)}: adding the tensor '{bname}' to a layer's accumulator before its activation Quant is not "
            "supported; quantize both branches before the Add (e.g. one shared QuantReLU, as brevitas_examples' "
            "QuantBasicBlock does)"
        )
    if isinstance(b, QConst):
        ints = np.broadcast_to(b.ints.reshape(-1), (C,)) if b.ints.size in (1, C) else None
        bscale = np.broadcast_to(np.asarray(b.scale, dtype=np.float64).reshape(-1), (C,))
        same_scale = np.allclose(bscale, st.scale, rtol=1e-6, atol=0)
        sole_use = len(ctx.consumers.get(st.layer.outputs[0], [])) <= 1
        if ints is not None and same_scale and isinstance(st.layer, (Dense, Conv)) and st.layer.bias is None and not st.relu and sole_use and np.all(st.offset == 0):
            # an integer bias in accumulator units: it becomes part of the accumulator
            st.layer.bias = np.asarray(ints, dtype=np.int64).copy()
            return replace(st)
        val = b.value
    else:
        val = b
    val = np.asarray(val, dtype=np.float64).reshape(-1)
    if val.size not in (1, C):
        raise A2QError(f"{ctx.where(node)}: bias of {val.size} values for {C} channels")
    if st.relu:
        raise A2QError(f"{ctx.where(node)}: Add after Relu is not supported")
    return replace(st, offset=st.offset + np.broadcast_to(val, (C,)))


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
        C = st.layer.channels
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        if c.size not in (1, C) or not np.all(np.isfinite(c)):
            raise A2QError(f"{ctx.where(node)}: {node.op_type} of a layer output by a constant of {c.size} values for {C} channels")
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
    if isinstance(st, AccState):
        ctx.state[node.output[0]] = add_bias(ctx, node, st, b, node.output[0])
        return
    if isinstance(st, IntState) and isinstance(ctx.state.get(b), IntState):
        no_pending_relu(ctx, node, st, ctx.state.get(b))
        on_residual_add(ctx, node, ctx.tensors[st.tensor], ctx.tensors[ctx.state[b].tensor])
        return
    raise A2QError(
        f"{ctx.where(node)}: supported Adds are a constant bias on a layer output and the sum of two quantized tensors"
    )


def on_residual_add(ctx: Ctx, node, ta: TensorInfo, tb: TensorInfo) -> None:
    from fractions import Fraction

    if ta.shape != tb.shape:
        raise A2QError(f"{ctx.where(node)}: adding tensors of shapes {list(ta.shape)} and {list(tb.shape)} is not supported")
    sa, sb = np.unique(ta.scale), np.unique(tb.scale)
    if sa.size != 1 or sb.size != 1:
        raise A2QError(f"{ctx.where(node)}: residual add needs per-tensor scales on both inputs")
    ratio = Fraction(float(sa[0])) / Fraction(float(sb[0]))
    ma, mb = ratio.numerator, ratio.denominator
    if max(ma, mb) > MAX_ADD_MULTIPLIER:
        raise A2QError(
            f"{ctx.where(node)}: the two inputs' scales ({sa[0]:.6g}, {sb[0]:.6g}) have no small integer ratio; "
            "quantize both branches with a shared quantizer (same scale) or scales in a power-of-two ratio"
        )
    out = node.output[0]
    add = Add(node.name, [ta.name, tb.name], [out], (ma, mb), tuple(ta.shape))
    ctx.ops.append(add)
    C = ta.shape[-1]
    scale = np.full(C, float(sa[0]) / ma)
    ctx.tensors[out] = TensorInfo(out, tuple(ta.shape), None, scale.copy(), np.zeros(C))
    ctx.state[out] = AccState(layer=add, scale=scale, offset=np.zeros(C))


def on_mul(ctx: Ctx, node) -> None:
    if on_float_input_op(ctx, node):
        return
    a, b = node.input[0], node.input[1]
    if a in ctx.consts and b not in ctx.consts:
        a, b = b, a
    st = ctx.state.get(a)
    c = const_array(ctx, b)
    if isinstance(st, AccState) and c is not None:
        C = st.layer.channels
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        if c.size not in (1, C) or np.any(c == 0) or not np.all(np.isfinite(c)):
            raise A2QError(f"{ctx.where(node)}: only a nonzero per-tensor or per-channel constant Mul on an accumulator is supported")
        if np.any(c < 0) and st.relu:
            raise A2QError(f"{ctx.where(node)}: a negative Mul after a Relu is not supported")
        ctx.state[node.output[0]] = replace(st, scale=st.scale * c, offset=st.offset * c)
        return
    raise A2QError(f"{ctx.where(node)}: only Mul of a layer output by a positive constant is supported")
