"""``Quant`` (QONNX): folded into integer constants, the input quantizer, or a Requant of an
accumulator or of another activation; and ``Relu`` before a Quant."""
from __future__ import annotations

import numpy as np

from ..errors import A2QError
from ..ir import InputQuant, IntType, Requant, TensorInfo
from .context import AccState, Ctx, FloatInput, IntState, QConst, attr, const_array, finalize_acc, scale_vec

ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


def quant_ints(x: np.ndarray, scale, zeropt, bits: int, signed: bool, narrow: bool, rounding: str) -> np.ndarray:
    """The integers ``q`` a QONNX ``Quant`` produces, computed in the dtype qonnx uses."""
    from qonnx.custom_op.general.quant import max_int, min_int, resolve_rounding_mode

    y = x / scale
    y = y + zeropt
    lo, hi = min_int(signed, narrow, bits), max_int(signed, narrow, bits)
    y = np.where(y > hi, np.asarray(hi).astype(y.dtype), y)
    y = np.where(y < lo, np.asarray(lo).astype(y.dtype), y)
    y = resolve_rounding_mode(rounding)(y)
    return y


def quant_params(ctx: Ctx, node):
    """Scale, zero-point, bit width and attributes of a Quant node; all must be constant."""
    names = ("scale", "zero-point", "bit width")
    vals = []
    for nm, inp in zip(names, node.input[1:4]):
        v = const_array(ctx, inp)
        if v is None:
            raise A2QError(
                f"{ctx.where(node)}: the {nm} input '{inp}' is not a constant; "
                "a2qhls supports Quant nodes with constant scale, zero-point and bit width"
            )
        vals.append(np.asarray(v))
    scale, zp, bits = vals
    flat = bits.reshape(-1)
    if bits.size != 1 or not np.isfinite(flat[0]) or float(flat[0]) != round(float(flat[0])):
        raise A2QError(f"{ctx.where(node)}: bit width {flat[:4].tolist()} is not a single integer")
    b = int(flat[0])
    if not 1 <= b <= 32:
        raise A2QError(f"{ctx.where(node)}: bit width {b} is outside the supported range 1..32")
    for what, v in (("scale", scale), ("zero-point", zp)):
        if v.size == 0:
            raise A2QError(f"{ctx.where(node)}: {what} is empty (shape {list(v.shape)})")
        if v.dtype.kind not in "fiub":
            raise A2QError(f"{ctx.where(node)}: {what} has element type {v.dtype}; expected float")
        if np.any(~np.isfinite(v)):
            raise A2QError(f"{ctx.where(node)}: {what} {v.reshape(-1)[~np.isfinite(v.reshape(-1))][0]} is not finite")
    if np.any(np.abs(zp) > 2.0**b):
        raise A2QError(f"{ctx.where(node)}: zero-point {float(np.max(np.abs(zp))):g} is outside the {b}-bit range")
    signed = bool(attr(node, "signed", 1))
    narrow = bool(attr(node, "narrow", 0))
    rounding = str(attr(node, "rounding_mode", "ROUND")).upper()
    if rounding not in ROUNDING_MODES:
        raise A2QError(f"{ctx.where(node)}: rounding mode '{rounding}' is not supported (supported: {', '.join(ROUNDING_MODES)})")
    if b == 1 and signed:
        raise A2QError(f"{ctx.where(node)}: signed 1-bit (bipolar) Quant is not supported; use 1-bit unsigned or >= 2 bits")
    if np.any(scale <= 0) or np.any(scale < np.finfo(np.float32).tiny):
        raise A2QError(f"{ctx.where(node)}: scale {float(np.min(scale)):g} is not positive (scales must be positive normal float32 values)")
    if np.any(zp != np.round(zp)):
        raise A2QError(f"{ctx.where(node)}: non-integer zero-point is not supported")
    return scale, zp, b, signed, narrow, rounding


def single_zero_point(ctx, node, zp) -> int:
    flat = np.unique(np.asarray(zp).reshape(-1))
    if flat.size != 1:
        raise A2QError(f"{ctx.where(node)}: per-channel zero-points are not supported; use a per-tensor zero-point")
    return int(flat[0])


def on_quant(ctx: Ctx, node) -> None:
    scale, zp, bits, signed, narrow, rounding = quant_params(ctx, node)
    src = node.input[0]
    out = node.output[0]
    if src in ctx.consts:
        x = np.asarray(const_array(ctx, src))
        for what, v in (("scale", scale), ("zero-point", zp)):
            try:
                fits = np.broadcast_shapes(x.shape, v.shape) == x.shape
            except ValueError:
                fits = False
            if not fits:
                raise A2QError(f"{ctx.where(node)}: {what} of shape {list(v.shape)} does not match the input '{src}' of shape {list(x.shape)}")
        zpi = single_zero_point(ctx, node, zp)
        q = quant_ints(x, scale, zp, bits, signed, narrow, rounding)
        ints = np.round(q).astype(np.int64) - zpi
        value = (q - zp) * scale
        ctx.consts[out] = QConst(ints=ints, scale=np.asarray(scale), dtype=IntType(bits, signed, narrow, zpi), value=value)
        return
    st = ctx.state.get(src)
    zpi = single_zero_point(ctx, node, zp)
    dtype = IntType(bits, signed, narrow, zpi)
    if isinstance(st, FloatInput):
        if np.asarray(scale).size != 1:
            raise A2QError(f"{ctx.where(node)}: per-channel input quantization is not supported; use a per-tensor scale")
        op = InputQuant(
            name=node.name,
            inputs=[src],
            outputs=[out],
            scale=np.asarray(scale, dtype=np.float32).reshape(()),
            zero_point=np.asarray(zp, dtype=np.float32).reshape(()),
            out_type=dtype,
            rounding_mode=rounding,
        )
        ctx.ops.append(op)
        shape = st.shape if len(st.shape) == 1 else (*st.shape[1:], st.shape[0])  # CHW -> HWC
        ctx.tensors[out] = TensorInfo(out, shape, dtype, scale_vec(scale, shape[-1]), np.zeros(shape[-1]))
        ctx.state[out] = IntState(out)
        return
    if isinstance(st, AccState):
        acc_name = st.layer.outputs[0]
        finalize_acc(ctx, ctx.where(node), st)
        acc_shape = ctx.tensors[acc_name].shape
        C = acc_shape[-1]
        op = Requant(
            name=node.name,
            inputs=[acc_name],
            outputs=[out],
            relu=st.relu,
            scale=np.asarray(scale, dtype=np.float32).reshape(-1) if np.asarray(scale).size > 1 else np.asarray(scale, dtype=np.float32).reshape(()),
            zero_point=np.asarray(zp, dtype=np.float32).reshape(()),
            out_type=dtype,
            rounding_mode=rounding,
        )
        if op.scale.ndim == 1 and op.scale.size != C:
            raise A2QError(f"{ctx.where(node)}: scale has {op.scale.size} values for {C} channels")
        ctx.ops.append(op)
        ctx.tensors[out] = TensorInfo(out, acc_shape, dtype, scale_vec(scale, C), np.zeros(C))
        ctx.state[out] = IntState(out)
        return
    if isinstance(st, IntState):
        on_requant_of_activation(ctx, node, st, scale, zp, dtype, rounding)
        return
    raise A2QError(f"{ctx.where(node)}: input '{src}' comes from an unsupported producer")


def on_requant_of_activation(ctx: Ctx, node, st: IntState, scale, zp, dtype: IntType, rounding: str) -> None:
    """A Quant right after another activation Quant (e.g. QuantReLU -> QuantIdentity, or a layer's
    input quantizer): folded into the first one's thresholds when nothing else reads the first."""
    src = node.input[0]
    first = next((op for op in ctx.ops if isinstance(op, Requant) and op.outputs[0] == st.tensor), None)
    onnx_src = st.tensor  # the first Quant's output (a Relu may stand between)
    if first is None or len(ctx.consumers.get(onnx_src, [])) != 1 or (not st.relu and src != onnx_src) \
            or (st.relu and len(ctx.consumers.get(src, [])) != 1):
        raise A2QError(
            f"{ctx.where(node)}: re-quantizing '{src}' is supported only right after a layer's activation Quant "
            "that nothing else reads; a2qhls supports Quant on the graph input and on a layer's output ([Relu ->] Quant)"
        )
    info = ctx.tensors.pop(first.outputs[0])
    ctx.ops.remove(first)
    out = node.output[0]
    C = info.shape[-1]
    s = np.asarray(scale, dtype=np.float32)
    if s.size not in (1, C):
        raise A2QError(f"{ctx.where(node)}: scale has {s.size} values for {C} channels")
    op = Requant(
        name=node.name, inputs=list(first.inputs), outputs=[out], relu=st.relu,
        scale=s.reshape(-1) if s.size > 1 else s.reshape(()), zero_point=np.asarray(zp, dtype=np.float32).reshape(()),
        out_type=dtype, rounding_mode=rounding, pre=first,
    )
    ctx.ops.append(op)
    ctx.tensors[out] = TensorInfo(out, info.shape, dtype, scale_vec(scale, C), np.zeros(C))
    ctx.state[out] = IntState(out)


def on_relu(ctx: Ctx, node) -> None:
    st = ctx.state.get(node.input[0])
    if isinstance(st, AccState):
        ctx.state[node.output[0]] = AccState(st.layer, st.scale, st.offset, True)
        return
    if isinstance(st, IntState) and not st.flattened:  # e.g. QuantIdentity -> QuantReLU: folds into the next Quant
        ctx.state[node.output[0]] = IntState(st.tensor, relu=True)
        return
    raise A2QError(f"{ctx.where(node)}: Relu is supported on a layer output or an activation, followed by a Quant")
