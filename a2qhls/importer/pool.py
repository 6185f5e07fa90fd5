"""``MaxPool``, ``AveragePool``, ``GlobalAveragePool``, ``ReduceMean`` over the spatial axes (the
global average pool of Brevitas's dynamo export) -> :class:`~a2qhls.ir.Pool` (1-D pools on
``[batch, C, L]`` as 2-D pools of height 1), and QONNX ``Trunc``
(v2, after Brevitas's average pool) -> a :class:`~a2qhls.ir.Requant` with a first rounding."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import A2QError
from ..ir import IntType, Pool, Requant, TensorInfo, TruncSpec
from .context import AccState, Ctx, IntState, acc_view, attr, channel_values, const_array, finalize_acc, no_pending_relu
from .conv import feature_map, spatial_attrs
from .quant import ROUNDING_MODES

def pool_geometry(ctx, node, shape: tuple) -> tuple:
    """``(kernel, stride, pads, flattened)`` of a pooling node over an ``[H, W, C]`` map: the whole
    map for GlobalAveragePool/ReduceMean (``flattened``: a ReduceMean with keepdims 0), else the
    node's kernel, strides and pads."""
    flattened = node.op_type == "ReduceMean" and not global_mean_axes(ctx, node)
    if node.op_type in ("GlobalAveragePool", "ReduceMean"):
        return (shape[0], shape[1]), (1, 1), (0, 0, 0, 0), flattened
    kernel, stride, pads = spatial_attrs(ctx, node, attr(node, "kernel_shape"))
    return kernel, stride, pads, flattened


def on_pool(ctx: Ctx, node) -> None:
    st = ctx.state.get(node.input[0])
    if isinstance(st, AccState) and node.op_type == "MaxPool":
        max_pool_of_accumulator(ctx, node, st)
        return
    if isinstance(st, AccState):
        avg_pool_of_accumulator(ctx, node, st)
        return
    if not isinstance(st, IntState):
        raise A2QError(f"{ctx.where(node)}: {node.op_type} of '{node.input[0]}' is not supported; supported: pooling a "
                       "quantized tensor or a layer output")
    no_pending_relu(ctx, node, st)
    x = feature_map(ctx, node, per_channel=True)
    kernel, stride, pads, flattened = pool_geometry(ctx, node, x.shape)
    mode = "max" if node.op_type == "MaxPool" else "avg"
    if mode == "max" and any(pads):
        raise A2QError(f"{ctx.where(node)}: padded MaxPool is not supported")
    if mode == "avg" and any(pads) and int(attr(node, "count_include_pad", 0)) != 1:
        raise A2QError(f"{ctx.where(node)}: padded AveragePool needs count_include_pad=1")
    pool = Pool(node.name, [x.name], [node.output[0]], mode, kernel, stride, pads, tuple(x.shape), source_op=node.op_type)
    ctx.ops.append(pool)
    out = node.output[0]
    C = x.shape[2]
    if mode == "max":
        ctx.tensors[out] = TensorInfo(out, pool.out_shape, x.dtype, x.scale.copy(), x.offset.copy())
        ctx.state[out] = IntState(out)
        return
    scale = np.broadcast_to(np.asarray(x.scale, dtype=np.float64).reshape(-1), (C,)) / pool.K
    ctx.tensors[out] = TensorInfo(out, pool.out_shape, None, scale.copy(), np.zeros(C))
    ctx.state[out] = AccState(layer=pool, scale=scale, offset=np.zeros(C), flattened=flattened)


def global_mean_axes(ctx: Ctx, node) -> bool:
    """Check that a ``ReduceMean`` averages over exactly the spatial axes of ``[batch, C, H, W]``
    (or ``[batch, C, L]``), i.e. is a global average pool; returns its ``keepdims``."""
    rank = len(ctx.shapes.get(node.input[0]) or ()) or 4
    axes = attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        a = const_array(ctx, node.input[1])
        if a is None:
            raise A2QError(f"{ctx.where(node)}: the axes input '{node.input[1]}' is not a constant")
        axes = np.asarray(a).reshape(-1).tolist()
    spatial = set(range(2, rank))
    got = None if axes is None else {int(a) % rank for a in axes}
    if got != spatial:
        raise A2QError(
            f"{ctx.where(node)}: ReduceMean over axes {axes if axes is not None else 'all'} is not supported; "
            f"supported: the mean over the spatial axes {sorted(spatial)} (a global average pool)"
        )
    return bool(int(attr(node, "keepdims", 1)))


def on_trunc(ctx: Ctx, node) -> None:
    """QONNX Trunc (v2) on an accumulator, e.g. Brevitas's TruncAvgPool2d after an AveragePool."""
    st = ctx.state.get(node.input[0])
    if not isinstance(st, AccState) or st.deferred is not None:
        raise A2QError(f"{ctx.where(node)}: Trunc is supported on an accumulator (e.g. after AveragePool) only")
    vals = [np.asarray(const_array(ctx, i), dtype=np.float32) for i in node.input[1:]]
    for what, v in zip(("scale", "zero-point", "input bit width", "output scale", "output bit width"), vals):
        channel_values(ctx, node, what, v, node.input[0], *acc_view(ctx, st))  # ONNX broadcasting keeps the input's shape
    if any(v.size != 1 for v in vals):
        raise A2QError(f"{ctx.where(node)}: per-channel Trunc parameters are not supported")
    scale, zp, _in_bits, out_scale, out_bits = (v.reshape(()) for v in vals)
    b = int(out_bits)
    if float(out_bits) != b or not 1 <= b <= 32:
        raise A2QError(f"{ctx.where(node)}: output bit width {float(out_bits):g} is outside the supported range 1..32")
    if not (scale > 0 and out_scale > 0) or float(zp) != round(float(zp)):
        raise A2QError(f"{ctx.where(node)}: Trunc needs positive scales and an integer zero-point")
    ts = float(2 ** np.round(np.log2(out_scale / scale)))  # as qonnx computes it
    out_zp = float(zp) / ts
    if out_zp != round(out_zp):
        raise A2QError(f"{ctx.where(node)}: zero-point {float(zp):g} / truncation scale {ts:g} is not an integer")
    rounding = str(attr(node, "rounding_mode", "FLOOR")).upper()
    if rounding not in ROUNDING_MODES:
        raise A2QError(f"{ctx.where(node)}: rounding mode '{rounding}' is not supported (supported: {', '.join(ROUNDING_MODES)})")
    signed, narrow = bool(attr(node, "signed", 1)), bool(attr(node, "narrow", 0))
    acc_name = st.layer.outputs[0]
    finalize_acc(ctx, ctx.where(node), st)
    shape = ctx.tensors[acc_name].shape
    C = shape[-1]
    out = node.output[0]
    dtype = IntType(b, signed, narrow, int(round(out_zp)))
    ctx.ops.append(Requant(
        name=node.name, inputs=[acc_name], outputs=[out], relu=st.relu,
        scale=np.asarray(out_scale, dtype=np.float32), zero_point=np.asarray(out_zp, dtype=np.float32),
        out_type=dtype, rounding_mode=rounding,
        trunc=TruncSpec(float(scale), float(zp), ts),
    ))
    ctx.tensors[out] = TensorInfo(out, shape, dtype, np.full(C, float(out_scale)), np.zeros(C))
    ctx.state[out] = IntState(out)


def avg_pool_of_accumulator(ctx: Ctx, node, st: AccState) -> None:
    """``Conv -> [BatchNormalization] -> AveragePool -> [Relu ->] Quant``: the window sum of the layer's
    accumulators is an accumulator of its own (a :class:`~a2qhls.ir.Pool` ``avg`` on the accumulator
    tensor); the average of ``v = scale * acc + offset`` over ``K`` taps is ``scale / K * sum(acc) + offset``
    exactly, so the divide goes into the following thresholds. Padding adds the real value 0, which is
    the accumulator 0 only without an offset."""
    if st.deferred is not None or st.relu:
        raise A2QError(f"{ctx.where(node)}: {node.op_type} after a {'MaxPool' if st.deferred is not None else 'Relu'} "
                       "of a layer output without a Quant is not supported; supported: Conv -> [BatchNormalization] -> "
                       "AveragePool -> [Relu ->] Quant")
    if st.flattened:
        raise A2QError(f"{ctx.where(node)}: {node.op_type} of a flattened layer output is not supported")
    info = ctx.tensors[st.layer.outputs[0]]
    if len(info.shape) != 3:
        raise A2QError(f"{ctx.where(node)}: expects a [batch, C, H, W] or [batch, C, L] input")
    kernel, stride, pads, flattened = pool_geometry(ctx, node, info.shape)
    if any(pads) and int(attr(node, "count_include_pad", 0)) != 1:
        raise A2QError(f"{ctx.where(node)}: padded AveragePool needs count_include_pad=1")
    if any(pads) and np.any(st.offset != 0):
        raise A2QError(f"{ctx.where(node)}: a padded AveragePool of a layer output with a float offset (a bias or "
                       "BatchNormalization shift not in the accumulator) is not exact on the accumulator; "
                       "supported: no padding, or no offset")
    finalize_acc(ctx, ctx.where(node), st)
    pool = Pool(node.name, [info.name], [node.output[0]], "avg", kernel, stride, pads, tuple(info.shape),
                source_op=node.op_type, source_inputs=(node.input[0],))
    ctx.ops.append(pool)
    out = node.output[0]
    C = info.shape[2]
    scale, offset = np.asarray(st.scale, dtype=np.float64) / pool.K, np.asarray(st.offset, dtype=np.float64).copy()
    ctx.tensors[out] = TensorInfo(out, pool.out_shape, None, scale.copy(), offset.copy())
    ctx.state[out] = AccState(layer=pool, scale=scale, offset=offset, flattened=flattened)


def max_pool_of_accumulator(ctx: Ctx, node, st: AccState) -> None:
    """``Conv -> MaxPool -> [BatchNormalization/Mul/Add] -> [Relu ->] Quant`` (the LeNet/VGG order).

    The activation (the real-value map ``v = scale * acc + offset`` with ``scale > 0``, Relu, the
    quantizer) is monotone non-decreasing in the accumulator per channel, and so is its integer form
    (``qmin + #{t : acc >= T[t]}``), so the max over a window commutes with it exactly (in QONNX's
    float32 too: multiplying and adding constants is monotone in float). The importer keeps the pool
    pending and places it after the Requant, on the quantized integers."""
    if st.deferred is not None:
        raise A2QError(f"{ctx.where(node)}: two MaxPools before one activation Quant are not supported")
    if np.any(st.scale <= 0):
        raise A2QError(f"{ctx.where(node)}: MaxPool of an accumulator with a negative scale is not supported")
    info = ctx.tensors[st.layer.outputs[0]]
    if len(info.shape) != 3:
        raise A2QError(f"{ctx.where(node)}: MaxPool expects a [batch, C, H, W] or [batch, C, L] input")
    kernel, stride, pads = spatial_attrs(ctx, node, attr(node, "kernel_shape"))
    if any(pads):
        raise A2QError(f"{ctx.where(node)}: padded MaxPool is not supported")
    pool = Pool(node.name, [], [], "max", kernel, stride, pads, tuple(info.shape), source_op=node.op_type)
    ctx.state[node.output[0]] = replace(st, deferred=pool)
