"""Nearest-neighbour ``Resize``/``Upsample`` by integer factors -> :class:`~a2qhls.ir.Upsample`, and
``Concat`` along channels -> :class:`~a2qhls.ir.Concat` (inputs of one scale, or of scales in
power-of-two ratios brought to the finest one exactly)."""
from __future__ import annotations

import math

import numpy as np

from .. import bounds
from ..errors import A2QError
from ..ir import Concat, IntType, TensorInfo, Upsample
from .context import AccState, Ctx, IntState, attr, const_array, no_pending_relu

NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
COORD_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn")
MAX_CONCAT_SHIFT = 16


def int_input(ctx: Ctx, node, name: str) -> TensorInfo:
    """The quantized integer tensor ``name`` that a reorder-like op reads (after a Quant)."""
    st = ctx.state.get(name)
    if isinstance(st, IntState):
        no_pending_relu(ctx, node, st)
        if st.flattened:
            raise A2QError(f"{ctx.where(node)}: the input '{name}' was flattened; {node.op_type} needs a feature map")
        return ctx.tensors[st.tensor]
    if isinstance(st, AccState):
        raise A2QError(f"{ctx.where(node)}: {node.op_type} of a layer's output before its activation Quant is not supported; "
                       "supported: on a quantized tensor (after a Quant)")
    raise A2QError(f"{ctx.where(node)}: {node.op_type} is supported on a quantized tensor (after a Quant) only")


def nearest_source(out_len: int, in_len: int, scale: float, coord: str, nearest: str) -> np.ndarray:
    """The input index ONNX ``Resize`` (mode nearest) reads for each output index along one axis
    (ONNX operator spec: coordinate_transformation_mode, then nearest_mode, then clamped)."""
    y = np.arange(out_len, dtype=np.float64)
    if coord == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (y + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(y)
    elif coord == "align_corners":
        x = y * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(y)
    elif coord == "asymmetric":
        x = y / scale
    else:  # tf_half_pixel_for_nn
        x = (y + 0.5) / scale
    if nearest == "floor":
        i = np.floor(x)
    elif nearest == "ceil":
        i = np.ceil(x)
    elif nearest == "round_prefer_floor":
        i = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    else:
        i = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    return np.clip(i, 0, in_len - 1).astype(np.int64)


def _factors(ctx: Ctx, node, x: TensorInfo) -> tuple:
    """Integer ``(sy, sx)`` from a Resize/Upsample node's scales (input or attribute) or sizes."""
    H, W, C = x.shape
    scales = sizes = None
    if node.op_type == "Upsample":
        scales = attr(node, "scales", None)
        if scales is None and len(node.input) > 1:
            scales = const_array(ctx, node.input[1])
    else:
        if attr(node, "axes", None) is not None:
            raise A2QError(f"{ctx.where(node)}: the axes attribute is not supported; give scales for all 4 axes")
        names = list(node.input) + [""] * 4
        # opset 10: (X, scales); opset 11+: (X, roi, scales, sizes)
        sc_name, sz_name = (names[1], "") if len(node.input) == 2 else (names[2], names[3])
        if sc_name:
            scales = const_array(ctx, sc_name)
            if scales is None:
                raise A2QError(f"{ctx.where(node)}: the scales input '{sc_name}' is not a constant")
        if (scales is None or np.asarray(scales).size == 0) and sz_name:
            sizes = const_array(ctx, sz_name)
            if sizes is None:
                raise A2QError(f"{ctx.where(node)}: the sizes input '{sz_name}' is not a constant")
            scales = None
    if scales is not None and np.asarray(scales).size:
        s = np.asarray(scales, dtype=np.float64).reshape(-1)
        if s.size != 4 or s[0] != 1 or s[1] != 1:
            raise A2QError(f"{ctx.where(node)}: scales {s.tolist()} are not supported; supported: [1, 1, sy, sx] (spatial only)")
        fy, fx = float(s[2]), float(s[3])
    elif sizes is not None:
        z = np.asarray(sizes, dtype=np.int64).reshape(-1)
        if z.size != 4 or z[1] != C or z[2] % H or z[3] % W:
            raise A2QError(f"{ctx.where(node)}: sizes {z.tolist()} are not an integer spatial upsampling of [{C}, {H}, {W}]")
        fy, fx = float(z[2] // H), float(z[3] // W)
    else:
        raise A2QError(f"{ctx.where(node)}: neither scales nor sizes given")
    if not (fy == int(fy) and fx == int(fx) and fy >= 1 and fx >= 1):
        raise A2QError(f"{ctx.where(node)}: scale factors ({fy:g}, {fx:g}) are not supported; supported: integer factors >= 1")
    return int(fy), int(fx)


def on_resize(ctx: Ctx, node) -> None:
    x = int_input(ctx, node, node.input[0])
    if len(x.shape) != 3:
        raise A2QError(f"{ctx.where(node)}: {node.op_type} needs a [batch, C, H, W] feature map")
    mode = str(attr(node, "mode", "nearest")).lower()
    if mode != "nearest":
        raise A2QError(f"{ctx.where(node)}: mode '{mode}' is not supported; supported: nearest with integer scale factors")
    sy, sx = _factors(ctx, node, x)
    if node.op_type == "Resize":
        coord = str(attr(node, "coordinate_transformation_mode", "half_pixel"))
        nearest = str(attr(node, "nearest_mode", "round_prefer_floor"))
        if coord not in COORD_MODES or nearest not in NEAREST_MODES:
            raise A2QError(f"{ctx.where(node)}: coordinate_transformation_mode '{coord}' / nearest_mode '{nearest}' is not supported "
                           f"(supported: {', '.join(COORD_MODES)} / {', '.join(NEAREST_MODES)})")
        if int(attr(node, "exclude_outside", 0)) or str(attr(node, "keep_aspect_ratio_policy", "stretch")) != "stretch":
            raise A2QError(f"{ctx.where(node)}: exclude_outside / keep_aspect_ratio_policy other than the defaults are not supported")
        H, W = x.shape[:2]
        for n_in, f in ((H, sy), (W, sx)):
            src = nearest_source(n_in * f, n_in, float(f), coord, nearest)
            if not np.array_equal(src, np.arange(n_in * f) // f):
                raise A2QError(f"{ctx.where(node)}: coordinate_transformation_mode '{coord}' with nearest_mode '{nearest}' does not "
                               f"repeat each pixel {f} times; supported: modes that do (e.g. asymmetric + floor, half_pixel + round_prefer_floor)")
    op = Upsample(node.name, [x.name], [node.output[0]], (sy, sx), tuple(x.shape), source_op=node.op_type)
    ctx.ops.append(op)
    out = node.output[0]
    ctx.tensors[out] = TensorInfo(out, op.out_shape, x.dtype, np.asarray(x.scale).copy(), np.asarray(x.offset).copy())
    ctx.state[out] = IntState(out)


def on_concat(ctx: Ctx, node) -> None:
    if len(node.input) != 2:
        raise A2QError(f"{ctx.where(node)}: Concat of {len(node.input)} tensors is not supported; supported: 2 (chain Concats for more)")
    ts = [int_input(ctx, node, n) for n in node.input]
    rank = len(ts[0].shape) + 1
    axis = int(attr(node, "axis", 1))
    if axis % rank != 1 or any(len(t.shape) != rank - 1 for t in ts):
        raise A2QError(f"{ctx.where(node)}: Concat along axis {axis} is not supported; supported: the channel axis (1) of tensors of one rank")
    if any(t.shape[:-1] != ts[0].shape[:-1] for t in ts):
        raise A2QError(f"{ctx.where(node)}: Concat of shapes {[list(t.shape) for t in ts]}: the spatial sizes differ")
    if any(t.dtype.bipolar for t in ts) and ts[0].dtype != ts[1].dtype:
        raise A2QError(f"{ctx.where(node)}: Concat of a bipolar tensor with a {'bipolar' if not ts[0].dtype.bipolar else 'non-bipolar'} "
                       "tensor of another type is not supported; supported: both bipolar with one scale, or neither bipolar")
    scales = []
    for n, t in zip(node.input, ts):
        s = np.unique(np.asarray(t.scale, dtype=np.float64))
        if s.size != 1 or np.any(np.asarray(t.offset) != 0):
            raise A2QError(f"{ctx.where(node)}: the input '{n}' has per-channel scales or an offset; Concat needs per-tensor scales")
        scales.append(float(s[0]))
    fine = min(scales)
    shifts = []
    for s in scales:
        k = math.log2(s / fine)
        if k != round(k) or k > MAX_CONCAT_SHIFT:
            raise A2QError(f"{ctx.where(node)}: the inputs' scales ({scales[0]:.6g}, {scales[1]:.6g}) are not in a power-of-two ratio; "
                           "quantize both with one shared quantizer (same scale) or scales 2^k apart")
        shifts.append(int(round(k)))
    if ts[0].dtype.bipolar and any(shifts):
        raise A2QError(f"{ctx.where(node)}: Concat of bipolar tensors at different scales is not supported; "
                       "supported: both bipolar with one scale (one shared quantizer)")
    if all(k == 0 for k in shifts) and ts[0].dtype == ts[1].dtype:
        dtype = ts[0].dtype  # the stored integers pass unchanged
    else:
        lo = min(t.dtype.vmin << k for t, k in zip(ts, shifts))
        hi = max(t.dtype.vmax << k for t, k in zip(ts, shifts))
        if lo >= 0:
            dtype = IntType(max(1, int(hi).bit_length()), False)
        else:
            b = int(bounds.signed_bits_for_range(lo, hi))
            dtype = IntType(b, True, narrow=lo > -(1 << (b - 1)))
    shape = (*ts[0].shape[:-1], ts[0].shape[-1] + ts[1].shape[-1])
    out = node.output[0]
    op = Concat(node.name, [t.name for t in ts], [out], tuple(shifts), shape)
    ctx.ops.append(op)
    C = shape[-1]
    ctx.tensors[out] = TensorInfo(out, shape, dtype, np.full(C, fine), np.zeros(C))
    ctx.state[out] = IntState(out)
