"""``Conv`` (2-D, groups 1 or depthwise) -> :class:`~a2qhls.ir.Conv`."""
from __future__ import annotations

import numpy as np

from ..errors import A2QError
from ..ir import Conv, TensorInfo
from .arith import add_bias
from .context import AccState, Ctx, QConst, attr, layer_input
from .dense import weight_of

def spatial_attrs(ctx: Ctx, node, kernel) -> tuple:
    """``(kernel, stride, pads)`` of a 2-D window, as ``((kh, kw), (sh, sw), (top, left, bottom, right))``.

    A 1-D window (kernel ``[k]``, strides ``[s]``, pads ``[begin, end]``, on ``[batch, C, L]``)
    is the 2-D window ``(1, k)`` on a map of height 1 (``H = 1``, ``W = L``)."""
    if str(attr(node, "auto_pad", "NOTSET")) not in ("NOTSET", ""):
        raise A2QError(f"{ctx.where(node)}: auto_pad is not supported; give explicit pads")
    kernel = [int(k) for k in kernel]
    nd = len(kernel)
    if nd not in (1, 2):
        raise A2QError(f"{ctx.where(node)}: {nd}-D kernels are not supported; supported: 1-D and 2-D")
    if any(int(d) != 1 for d in (attr(node, "dilations", None) or [1] * nd)):
        raise A2QError(f"{ctx.where(node)}: dilation other than 1 is not supported")
    if int(attr(node, "ceil_mode", 0)) != 0:
        raise A2QError(f"{ctx.where(node)}: ceil_mode=1 is not supported")
    stride = [int(v) for v in (attr(node, "strides", None) or [1] * nd)]
    p = [int(v) for v in (attr(node, "pads", None) or [0] * (2 * nd))]
    if len(stride) != nd or len(p) != 2 * nd:
        raise A2QError(f"{ctx.where(node)}: strides/pads do not match the {nd}-D kernel")
    if nd == 1:  # a 1-D window is a 2-D window of height 1
        kernel, stride, p = [1, kernel[0]], [1, stride[0]], [0, p[0], 0, p[1]]
    return tuple(kernel), tuple(stride), (p[0], p[1], p[2], p[3])


def onnx_shape(shape) -> list:
    """A channels-last per-sample shape ``(H, W, C)`` / ``(C,)`` as ONNX writes it (``[C, H, W]``)."""
    shape = list(shape)
    return shape if len(shape) < 2 else [shape[-1], *shape[:-1]]


def feature_map(ctx: Ctx, node, per_channel: bool = False) -> TensorInfo:
    x = layer_input(ctx, node, node.input[0], per_channel)
    if len(x.shape) != 3:
        raise A2QError(
            f"{ctx.where(node)}: expects a [batch, C, H, W] or [batch, C, L] input, "
            f"got a per-sample shape of {onnx_shape(x.shape)}"
        )
    return x


def _expand_scale(scale, ndim: int) -> np.ndarray:
    s = np.asarray(scale)
    return s.reshape(s.shape[:2] + (1,) + s.shape[2:]) if s.ndim == ndim else s


def on_conv(ctx: Ctx, node) -> None:
    groups = int(attr(node, "group", 1))
    x = feature_map(ctx, node, per_channel=groups > 1)  # a depthwise conv takes per-channel input scales
    w = ctx.consts.get(node.input[1])
    if not isinstance(w, QConst):
        weight_of(ctx, node, node.input[1], "CK")  # raises the matching error
    if w.ints.ndim == 3:  # a 1-D convolution: [C_out, C_in, k] -> [C_out, C_in, 1, k]
        w = QConst(w.ints[:, :, None, :], _expand_scale(w.scale, w.ints.ndim), w.dtype, w.value)
    if w.ints.ndim != 4:
        raise A2QError(f"{ctx.where(node)}: only 1-D and 2-D convolutions (3-D or 4-D weights) are supported")
    kernel, stride, pads = spatial_attrs(ctx, node, attr(node, "kernel_shape", None) or w.ints.shape[2:])
    cout, cin_g = w.ints.shape[:2]
    if x.shape[2] != cin_g * groups:
        raise A2QError(f"{ctx.where(node)}: input has {x.shape[2]} channels, weight expects {cin_g * groups}")
    if groups != 1 and not (cin_g == 1 and cout == groups):
        raise A2QError(f"{ctx.where(node)}: grouped convolution with groups={groups} is supported only as depthwise (groups = channels)")
    scale = np.broadcast_to(np.asarray(w.scale, dtype=np.float64), w.ints.shape).reshape(cout, -1)
    if not np.all(scale == scale[:, :1]):
        raise A2QError(f"{ctx.where(node)}: only per-tensor or per-output-channel weight scales are supported")
    add_conv(ctx, node, x, np.ascontiguousarray(w.ints.transpose(0, 2, 3, 1)), w.dtype, scale[:, 0].copy(),
             kernel, stride, pads, groups)


def add_conv(ctx: Ctx, node, x: TensorInfo, weight, wtype, wscale, kernel, stride, pads, groups,
             zero_insert=(1, 1), source_op: str = "Conv") -> Conv:
    """Append the :class:`~a2qhls.ir.Conv` of ``node`` reading ``x`` (``weight``: ``[C_out, kh, kw, C_in/groups]``
    integers) and its accumulator state (with the node's bias, input 2, if any)."""
    cout = weight.shape[0]
    ann = ctx.annotations.get(node.name, {})
    conv = Conv(
        name=node.name,
        inputs=[x.name],
        outputs=[node.output[0]],
        weight=weight,
        weight_type=wtype,
        weight_scale=wscale,
        bias=None,
        kernel=kernel,
        stride=stride,
        pads=pads,
        groups=groups,
        in_shape=tuple(x.shape),
        source_op=source_op,
        target_acc_bits=int(ann["target_acc_bits"]) if ann.get("target_acc_bits") is not None else None,
        quant_kind=ann.get("quant"),
        zero_insert=tuple(zero_insert),
    )
    ctx.ops.append(conv)
    if not conv.depthwise and np.unique(x.scale).size != 1:
        raise A2QError(
            f"{ctx.where(node)}: the input has per-channel scales, which a convolution over channels cannot take "
            "exactly; use a per-tensor activation scale here (per-channel scales are supported into depthwise convolutions)"
        )
    # per output channel j: input scale (per channel for a depthwise conv: channel j's) times weight scale
    s_in = np.asarray(x.scale, dtype=np.float64).reshape(-1)
    acc_scale = (s_in if conv.depthwise else np.full(cout, s_in[0])) * conv.weight_scale
    ctx.tensors[node.output[0]] = TensorInfo(node.output[0], conv.out_shape, None, acc_scale.copy(), np.zeros(cout))
    st = AccState(layer=conv, scale=acc_scale, offset=np.zeros(cout))
    if len(node.input) > 2 and node.input[2]:
        st = add_bias(ctx, node, st, node.input[2], node.output[0], axis1=True)  # ONNX: B is [C_out], along axis 1
    ctx.state[node.output[0]] = st
    return conv


def on_conv_transpose(ctx: Ctx, node) -> None:
    """``ConvTranspose`` (2-D, group 1) -> a :class:`~a2qhls.ir.ZeroInsert` of factor ``strides`` (when
    above 1) and a stride-1 :class:`~a2qhls.ir.Conv` with the flipped, transposed kernel and pads
    ``k - 1 - pad`` (plus ``output_padding`` at the bottom/right): the textbook identity
    ``conv_transpose(x, w, s, p) = conv(zero_insert(x, s), flip(w)^T, 1, k - 1 - p)``
    (Dumoulin and Visin, "A guide to convolution arithmetic for deep learning", 2016, section 4)."""
    from ..ir import ZeroInsert

    x = feature_map(ctx, node)
    w = ctx.consts.get(node.input[1])
    if not isinstance(w, QConst):
        weight_of(ctx, node, node.input[1], "CK")  # raises the matching error
    if w.ints.ndim != 4:
        raise A2QError(f"{ctx.where(node)}: only 2-D transposed convolutions (4-D weights) are supported")
    if int(attr(node, "group", 1)) != 1:
        raise A2QError(f"{ctx.where(node)}: grouped ConvTranspose is not supported; supported: group 1")
    if attr(node, "output_shape", None) is not None:
        raise A2QError(f"{ctx.where(node)}: the output_shape attribute is not supported; give pads and output_padding")
    cin, cout, kh, kw = w.ints.shape
    if x.shape[2] != cin:
        raise A2QError(f"{ctx.where(node)}: input has {x.shape[2]} channels, weight expects {cin}")
    kernel, stride, pads = spatial_attrs(ctx, node, attr(node, "kernel_shape", None) or (kh, kw))
    if tuple(kernel) != (kh, kw):
        raise A2QError(f"{ctx.where(node)}: kernel_shape {list(kernel)} does not match the weight's {[kh, kw]}")
    op_y, op_x = (int(v) for v in (attr(node, "output_padding", None) or [0, 0]))
    cpads = (kh - 1 - pads[0], kw - 1 - pads[1], kh - 1 - pads[2] + op_y, kw - 1 - pads[3] + op_x)
    if min(cpads) < 0 or op_y >= stride[0] or op_x >= stride[1]:
        raise A2QError(f"{ctx.where(node)}: pads {list(pads)} / output_padding {[op_y, op_x]} are not supported; "
                       "supported: pads up to kernel - 1 and output_padding below the stride")
    scale = np.broadcast_to(np.asarray(w.scale, dtype=np.float64), w.ints.shape).transpose(1, 0, 2, 3).reshape(cout, -1)
    if not np.all(scale == scale[:, :1]):
        raise A2QError(f"{ctx.where(node)}: only per-tensor or per-output-channel weight scales are supported")
    weight = np.ascontiguousarray(w.ints[:, :, ::-1, ::-1].transpose(1, 2, 3, 0))  # [C_out, kh, kw, C_in], flipped
    if stride != (1, 1):
        if x.dtype.bipolar:
            raise A2QError(f"{ctx.where(node)}: a strided ConvTranspose of a bipolar input is not supported: the inserted "
                           "zeros have no bipolar code (+-1 only); quantize its input to a signed or unsigned integer type")
        zi = ZeroInsert(f"{node.name}__zero_insert", [x.name], [f"{node.output[0]}__zero_insert"], tuple(stride), tuple(x.shape))
        ctx.ops.append(zi)
        z = zi.outputs[0]
        ctx.tensors[z] = TensorInfo(z, zi.out_shape, x.dtype, np.asarray(x.scale).copy(), np.asarray(x.offset).copy())
        x = ctx.tensors[z]
    add_conv(ctx, node, x, weight, w.dtype, scale[:, 0].copy(), tuple(kernel), (1, 1), cpads, 1,
             zero_insert=tuple(stride), source_op="ConvTranspose")
