"""QONNX -> a2qhls IR.

Loads a QONNX file with onnx/qonnx (shape inference only: node names and the
graph are kept as the exporter wrote them), then lowers it once into the plain
dataclasses of :mod:`a2qhls.ir`. Nothing downstream touches protobuf.

What is accepted (what Brevitas 0.13 ``export_qonnx`` writes for MLPs with both
torch exporters, and what a2qhls's own front end writes):

* one float graph input, optionally ``Flatten``/``Reshape``d, then a ``Quant``;
* layers ``Gemm`` (any ``transB``) or ``MatMul`` whose weight is a constant
  ``Quant`` (optionally behind ``Transpose``), with an optional bias (``Gemm``'s C
  or an ``Add``), given as a float constant or a ``Quant`` of a constant;
* ``[Relu ->] Quant`` activations between layers;
* ``Mul`` by a positive constant on an accumulator (a scale);
* the last layer's float output, or a quantized one.

Integer weights are the weight ``Quant`` folded exactly as QONNX's executor
computes it (float32 ``x / scale + zeropt``, clip, the node's rounding mode),
minus the zero-point.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import A2QError
from .metadata import LAYERS_KEY as METADATA_KEY
from .ir import Add, Conv, Dense, InputQuant, IntType, Model, Pool, Requant, TensorInfo, TruncSpec

SUPPORTED_OPS = (
    "Quant",
    "Trunc",
    "Gemm",
    "MatMul",
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Add",
    "Mul",
    "BatchNormalization",
    "Relu",
    "Transpose",
    "Flatten",
    "Reshape",
    "Identity",
    "Constant",
)
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


# ----------------------------------------------------------------------------- loading


def _read_onnx(path: str):
    import onnx
    from google.protobuf.message import DecodeError

    if not os.path.exists(path):
        raise A2QError(f"{path}: no such file")
    if os.path.isdir(path):
        raise A2QError(f"{path}: is a directory, expected a QONNX (.onnx) file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError) as e:
        raise A2QError(f"{path}: not a valid ONNX file (protobuf parse failed: {str(e).splitlines()[0]})") from e
    except Exception as e:  # onnx raises a variety of types for damaged files
        raise A2QError(f"{path}: not a valid ONNX file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not proto.HasField("graph") or proto.ir_version == 0 or len(proto.graph.node) == 0:
        raise A2QError(f"{path}: not an ONNX model (no graph or no nodes found)")
    base = os.path.dirname(os.path.abspath(path))
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    for t in proto.graph.initializer:
        if uses_external_data(t):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if not os.path.exists(os.path.join(base, loc)):
                raise A2QError(f"{path}: external data file '{loc}' of tensor '{t.name}' not found next to the model")
    try:
        load_external_data_for_model(proto, base)
    except Exception as e:
        raise A2QError(f"{path}: could not load external data ({type(e).__name__}: {e})") from e
    return proto


def _layer_annotations(proto) -> dict:
    """Per-node annotations (quantizer kind, target accumulator width) written by our export."""
    out: dict = {}
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            try:
                data = json.loads(p.value)
            except json.JSONDecodeError as e:
                raise A2QError(f"metadata '{METADATA_KEY}' is not valid JSON: {e}") from e
            if isinstance(data, dict):
                out.update({str(k): v for k, v in data.items() if isinstance(v, dict)})
    for node in proto.graph.node:
        for p in getattr(node, "metadata_props", []):
            if p.key == "a2qhls.target_acc_bits":
                out.setdefault(node.name, {})["target_acc_bits"] = int(p.value)
            elif p.key == "a2qhls.quant":
                out.setdefault(node.name, {})["quant"] = p.value
    return out


# ----------------------------------------------------------------------------- values


@dataclass
class QConst:
    """A constant that went through a ``Quant``: integers (zero-point removed) and their scale."""

    ints: np.ndarray  # q - zero_point
    scale: np.ndarray  # broadcastable to ints
    dtype: IntType
    value: np.ndarray  # the dequantized float value, as qonnx computes it


@dataclass
class IntState:
    """A dynamic tensor that is an integer tensor of our IR.

    ``flattened`` marks an ``[H, W, C]`` tensor that the ONNX graph flattened in
    channels-first order; a layer consuming it permutes its weight columns to our
    channels-last order instead of moving any data.
    """

    tensor: str
    flattened: bool = False
    relu: bool = False  # a Relu applied to it, pending the Quant that must follow


@dataclass
class AccState:
    """A dynamic tensor that is a layer's accumulator, seen through float post-ops."""

    layer: object  # the Dense / Conv / Pool(avg) that owns the accumulator
    scale: np.ndarray  # [channels], float64
    offset: np.ndarray  # [channels], float64
    relu: bool = False


@dataclass
class FloatInput:
    """The float graph input (possibly reshaped)."""

    shape: tuple


@dataclass
class _Ctx:
    path: str
    consts: dict = field(default_factory=dict)  # name -> np.ndarray or QConst
    state: dict = field(default_factory=dict)  # name -> IntState | AccState | FloatInput
    consumers: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    ops: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    finalized: set = field(default_factory=set)  # accumulators whose scale/offset are fixed

    def where(self, node) -> str:
        return f"{self.path}: node '{node.name}' ({node.op_type})"


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


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _const_array(ctx: _Ctx, name: str) -> Optional[np.ndarray]:
    v = ctx.consts.get(name)
    if isinstance(v, QConst):
        return v.value
    return v


def _quant_params(ctx: _Ctx, node):
    """Scale, zero-point, bit width and attributes of a Quant node; all must be constant."""
    names = ("scale", "zero-point", "bit width")
    vals = []
    for nm, inp in zip(names, node.input[1:4]):
        v = _const_array(ctx, inp)
        if v is None:
            raise A2QError(
                f"{ctx.where(node)}: the {nm} input '{inp}' is not a constant; "
                "a2qhls supports Quant nodes with constant scale, zero-point and bit width"
            )
        vals.append(np.asarray(v))
    scale, zp, bits = vals
    if bits.size != 1 or float(bits.reshape(-1)[0]) != int(bits.reshape(-1)[0]):
        raise A2QError(f"{ctx.where(node)}: bit width {bits.reshape(-1).tolist()} is not a single integer")
    b = int(bits.reshape(-1)[0])
    if not 1 <= b <= 32:
        raise A2QError(f"{ctx.where(node)}: bit width {b} is outside the supported range 1..32")
    signed = bool(_attr(node, "signed", 1))
    narrow = bool(_attr(node, "narrow", 0))
    rounding = str(_attr(node, "rounding_mode", "ROUND")).upper()
    if rounding not in ROUNDING_MODES:
        raise A2QError(f"{ctx.where(node)}: rounding mode '{rounding}' is not supported (supported: {', '.join(ROUNDING_MODES)})")
    if b == 1 and signed:
        raise A2QError(f"{ctx.where(node)}: signed 1-bit (bipolar) Quant is not supported; use 1-bit unsigned or >= 2 bits")
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        raise A2QError(f"{ctx.where(node)}: scale must be finite and positive")
    if np.any(zp != np.round(zp)):
        raise A2QError(f"{ctx.where(node)}: non-integer zero-point is not supported")
    return scale, zp, b, signed, narrow, rounding


def _single_zero_point(ctx, node, zp) -> int:
    flat = np.unique(np.asarray(zp).reshape(-1))
    if flat.size != 1:
        raise A2QError(f"{ctx.where(node)}: per-channel zero-points are not supported; use a per-tensor zero-point")
    return int(flat[0])


# ----------------------------------------------------------------------------- node handlers


def _on_quant(ctx: _Ctx, node) -> None:
    scale, zp, bits, signed, narrow, rounding = _quant_params(ctx, node)
    src = node.input[0]
    out = node.output[0]
    if src in ctx.consts:
        x = _const_array(ctx, src)
        zpi = _single_zero_point(ctx, node, zp)
        q = quant_ints(x, scale, zp, bits, signed, narrow, rounding)
        ints = np.round(q).astype(np.int64) - zpi
        value = (q - zp) * scale
        ctx.consts[out] = QConst(ints=ints, scale=np.asarray(scale), dtype=IntType(bits, signed, narrow, zpi), value=value)
        return
    st = ctx.state.get(src)
    zpi = _single_zero_point(ctx, node, zp)
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
        ctx.tensors[out] = TensorInfo(out, shape, dtype, _scale_vec(scale, shape[-1]), np.zeros(shape[-1]))
        ctx.state[out] = IntState(out)
        return
    if isinstance(st, AccState):
        acc_name = st.layer.outputs[0]
        _finalize_acc(ctx, ctx.where(node), st)
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
        ctx.tensors[out] = TensorInfo(out, acc_shape, dtype, _scale_vec(scale, C), np.zeros(C))
        ctx.state[out] = IntState(out)
        return
    if isinstance(st, IntState):
        _on_requant_of_activation(ctx, node, st, scale, zp, dtype, rounding)
        return
    raise A2QError(f"{ctx.where(node)}: input '{src}' comes from an unsupported producer")


def _on_requant_of_activation(ctx: _Ctx, node, st: IntState, scale, zp, dtype: IntType, rounding: str) -> None:
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
    op = Requant(
        name=node.name, inputs=list(first.inputs), outputs=[out], relu=st.relu,
        scale=s.reshape(-1) if s.size > 1 else s.reshape(()), zero_point=np.asarray(zp, dtype=np.float32).reshape(()),
        out_type=dtype, rounding_mode=rounding, pre=first,
    )
    ctx.ops.append(op)
    ctx.tensors[out] = TensorInfo(out, info.shape, dtype, _scale_vec(scale, C), np.zeros(C))
    ctx.state[out] = IntState(out)


def _scale_vec(scale, C: int) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    return np.broadcast_to(s, (C,)).copy() if s.size in (1, C) else s


def _finalize_acc(ctx: _Ctx, where: str, st: AccState) -> None:
    """Record the accumulator's real-value mapping on its tensor (once per accumulator)."""
    name = st.layer.outputs[0]
    info = ctx.tensors[name]
    if name in ctx.finalized:
        if not (np.array_equal(info.scale, st.scale) and np.array_equal(info.offset, st.offset)):
            raise A2QError(f"{where}: an accumulator consumed with two different scalings is not supported")
        return
    info.scale = st.scale.copy()
    info.offset = st.offset.copy()
    ctx.finalized.add(name)


def _weight_of(ctx: _Ctx, node, name: str, layout: str) -> QConst:
    """The constant, quantized weight of a layer as [channels, K] integers."""
    w = ctx.consts.get(name)
    if w is None:
        raise A2QError(f"{ctx.where(node)}: the weight '{name}' is not a constant; supported: a constant weight behind a Quant")
    if not isinstance(w, QConst):
        raise A2QError(
            f"{ctx.where(node)}: float weights '{name}' reach the layer without a Quant node; "
            "quantize the weights (a Quant on the weight initializer) before a2qhls can size the accumulator"
        )
    if w.ints.ndim != 2:
        raise A2QError(f"{ctx.where(node)}: weight '{name}' has shape {list(w.ints.shape)}; only 2-D weights are supported")
    scale = np.broadcast_to(np.asarray(w.scale, dtype=np.float64), w.ints.shape)
    if layout == "KC":  # [K, C] as MatMul / Gemm(transB=0) store it
        ints, scale = w.ints.T, scale.T
    else:
        ints = w.ints
    # per output channel scale: constant along K
    if not np.all(scale == scale[:, :1]):
        raise A2QError(f"{ctx.where(node)}: the weight scale varies along the input dimension; only per-tensor or per-output-channel weight scales are supported")
    return QConst(ints=np.ascontiguousarray(ints), scale=scale[:, 0].copy(), dtype=w.dtype, value=w.value)


def _no_pending_relu(ctx: _Ctx, node, *states) -> None:
    if any(isinstance(st, IntState) and st.relu for st in states):
        raise A2QError(f"{ctx.where(node)}: a Relu of an activation must be followed by a Quant before {node.op_type}")


def _layer_input(ctx: _Ctx, node, name: str) -> TensorInfo:
    st = ctx.state.get(name)
    if isinstance(st, IntState) and st.relu:
        raise A2QError(f"{ctx.where(node)}: the input '{name}' is a Relu of an activation without a Quant after it")
    if isinstance(st, IntState):
        info = ctx.tensors[st.tensor]
        if np.unique(info.scale).size != 1:
            raise A2QError(f"{ctx.where(node)}: the input '{name}' has per-channel scales; a layer input needs a per-tensor scale")
        return info
    if name in ctx.consts:
        raise A2QError(f"{ctx.where(node)}: the data input '{name}' is a constant; supported: a quantized activation")
    raise A2QError(
        f"{ctx.where(node)}: the input '{name}' is not quantized; "
        "insert a Quant node (e.g. a QuantIdentity or QuantReLU) before every MatMul/Gemm"
    )


def _make_dense(ctx: _Ctx, node, x: TensorInfo, w: QConst, out: str) -> AccState:
    C, K = w.ints.shape
    size = int(np.prod(x.shape))
    if size != K:
        raise A2QError(f"{ctx.where(node)}: input has {size} features but the weight expects {K}")
    st = ctx.state.get(node.input[0])
    if len(x.shape) == 3:
        if not (isinstance(st, IntState) and st.flattened):
            raise A2QError(f"{ctx.where(node)}: a layer on a feature map needs a Flatten before it")
        H, W, Cin = x.shape
        perm = np.arange(K).reshape(Cin, H, W).transpose(1, 2, 0).reshape(-1)  # ours (h, w, c) -> ONNX (c, h, w)
        w = QConst(np.ascontiguousarray(w.ints[:, perm]), w.scale, w.dtype, w.value)
    ann = ctx.annotations.get(node.name, {})
    tgt = ann.get("target_acc_bits")
    dense = Dense(
        name=node.name,
        inputs=[x.name],
        outputs=[out],
        weight=w.ints,
        weight_type=w.dtype,
        weight_scale=w.scale,
        bias=None,
        source_op=node.op_type,
        target_acc_bits=int(tgt) if tgt is not None else None,
        quant_kind=ann.get("quant"),
    )
    ctx.ops.append(dense)
    s_in = float(x.scale.reshape(-1)[0])
    acc_scale = s_in * w.scale.astype(np.float64)
    ctx.tensors[out] = TensorInfo(out, (C,), None, acc_scale.copy(), np.zeros(C))
    return AccState(layer=dense, scale=acc_scale, offset=np.zeros(C))


def _add_bias(ctx: _Ctx, node, st: AccState, bname: str, out: str) -> AccState:
    C = st.layer.channels
    b = ctx.consts.get(bname)
    if b is None:
        raise A2QError(f"{ctx.where(node)}: adding a non-constant tensor '{bname}' to an accumulator is not supported")
    if isinstance(b, QConst):
        ints = np.broadcast_to(b.ints.reshape(-1), (C,)) if b.ints.size in (1, C) else None
        bscale = np.broadcast_to(np.asarray(b.scale, dtype=np.float64).reshape(-1), (C,))
        same_scale = np.allclose(bscale, st.scale, rtol=1e-6, atol=0)
        sole_use = len(ctx.consumers.get(st.layer.outputs[0], [])) <= 1
        if ints is not None and same_scale and isinstance(st.layer, (Dense, Conv)) and st.layer.bias is None and not st.relu and sole_use and np.all(st.offset == 0):
            # an integer bias in accumulator units: it becomes part of the accumulator
            st.layer.bias = np.asarray(ints, dtype=np.int64).copy()
            return AccState(st.layer, st.scale, st.offset, st.relu)
        val = b.value
    else:
        val = b
    val = np.asarray(val, dtype=np.float64).reshape(-1)
    if val.size not in (1, C):
        raise A2QError(f"{ctx.where(node)}: bias of {val.size} values for {C} channels")
    if st.relu:
        raise A2QError(f"{ctx.where(node)}: Add after Relu is not supported")
    return AccState(st.layer, st.scale, st.offset + np.broadcast_to(val, (C,)), st.relu)


def _on_gemm(ctx: _Ctx, node) -> None:
    if int(_attr(node, "transA", 0)) != 0:
        raise A2QError(f"{ctx.where(node)}: transA=1 is not supported")
    x = _layer_input(ctx, node, node.input[0])
    layout = "CK" if int(_attr(node, "transB", 0)) == 1 else "KC"
    w = _weight_of(ctx, node, node.input[1], layout)
    alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
    if alpha <= 0:
        raise A2QError(f"{ctx.where(node)}: alpha must be positive, got {alpha}")
    st = _make_dense(ctx, node, x, w, node.output[0])
    st.scale = st.scale * alpha
    if len(node.input) > 2 and node.input[2]:
        if beta != 1.0:
            b = _const_array(ctx, node.input[2])
            if b is None:
                raise A2QError(f"{ctx.where(node)}: bias '{node.input[2]}' is not a constant")
            ctx.consts[node.input[2] + "__beta"] = np.asarray(b, dtype=np.float64) * beta
            st = _add_bias(ctx, node, st, node.input[2] + "__beta", node.output[0])
        else:
            st = _add_bias(ctx, node, st, node.input[2], node.output[0])
    ctx.state[node.output[0]] = st


def _on_matmul(ctx: _Ctx, node) -> None:
    x = _layer_input(ctx, node, node.input[0])
    w = _weight_of(ctx, node, node.input[1], "KC")
    ctx.state[node.output[0]] = _make_dense(ctx, node, x, w, node.output[0])


MAX_ADD_MULTIPLIER = 1 << 12


def _on_add(ctx: _Ctx, node) -> None:
    a, b = node.input[0], node.input[1]
    if a in ctx.consts and b not in ctx.consts:
        a, b = b, a
    st = ctx.state.get(a)
    if isinstance(st, AccState):
        ctx.state[node.output[0]] = _add_bias(ctx, node, st, b, node.output[0])
        return
    if isinstance(st, IntState) and isinstance(ctx.state.get(b), IntState):
        _no_pending_relu(ctx, node, st, ctx.state.get(b))
        _on_residual_add(ctx, node, ctx.tensors[st.tensor], ctx.tensors[ctx.state[b].tensor])
        return
    raise A2QError(
        f"{ctx.where(node)}: supported Adds are a constant bias on a layer output and the sum of two quantized tensors"
    )


def _on_residual_add(ctx: _Ctx, node, ta: TensorInfo, tb: TensorInfo) -> None:
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


def _on_mul(ctx: _Ctx, node) -> None:
    a, b = node.input[0], node.input[1]
    if a in ctx.consts and b not in ctx.consts:
        a, b = b, a
    st = ctx.state.get(a)
    c = _const_array(ctx, b)
    if isinstance(st, AccState) and c is not None:
        C = st.layer.channels
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        if c.size not in (1, C) or np.any(c <= 0):
            raise A2QError(f"{ctx.where(node)}: only a positive per-tensor or per-channel constant Mul on an accumulator is supported")
        ctx.state[node.output[0]] = AccState(st.layer, st.scale * c, st.offset * c, st.relu)
        return
    raise A2QError(f"{ctx.where(node)}: only Mul of a layer output by a positive constant is supported")


def _on_batchnorm(ctx: _Ctx, node) -> None:
    """Inference BatchNormalization on a layer's accumulator: a per-channel positive affine map,
    absorbed into the accumulator's real-value scale and offset (and so into the thresholds)."""
    st = ctx.state.get(node.input[0])
    if not isinstance(st, AccState) or st.relu:
        raise A2QError(f"{ctx.where(node)}: BatchNormalization is supported directly after a Conv/Gemm/MatMul (before Relu/Quant)")
    params = []
    for what, name in zip(("scale", "bias", "mean", "var"), node.input[1:5]):
        v = _const_array(ctx, name)
        if v is None:
            raise A2QError(f"{ctx.where(node)}: the {what} input '{name}' is not a constant")
        params.append(np.asarray(v, dtype=np.float64).reshape(-1))
    gamma, beta, mean, var = params
    C = st.layer.channels
    if any(p.size not in (1, C) for p in params):
        raise A2QError(f"{ctx.where(node)}: parameters do not match the layer's {C} channels")
    a = np.broadcast_to(gamma / np.sqrt(var + float(_attr(node, "epsilon", 1e-5))), (C,)).copy()
    if np.any(~np.isfinite(a)) or np.any(a == 0):
        j = int(np.argmax(~np.isfinite(a) | (a == 0)))
        raise A2QError(f"{ctx.where(node)}: channel {j} has a zero or non-finite scale gamma/sqrt(var+eps)")
    b = beta - mean * a
    scale, offset = st.scale * a, st.offset * a + b
    neg = np.flatnonzero(scale < 0)
    if neg.size:
        # v = scale_j * acc + offset_j with scale_j < 0: negate channel j's weights and bias, so that the
        # accumulator -acc grows with v and the thresholds stay ">= T" (the sizing pass sizes what is computed)
        layer = st.layer
        sole_use = len(ctx.consumers.get(layer.outputs[0], [])) <= 1
        if not isinstance(layer, (Dense, Conv)) or not sole_use or layer.negated_channels:
            raise A2QError(
                f"{ctx.where(node)}: a negative scale is supported only directly after a Conv/Gemm/MatMul "
                "whose output feeds this BatchNormalization alone"
            )
        layer.weight = layer.weight.copy()
        layer.weight[neg] *= -1
        if layer.bias is not None:
            layer.bias = layer.bias.copy()
            layer.bias[neg] *= -1
        layer.negated_channels = tuple(int(j) for j in neg)
        scale = np.abs(scale)
    ctx.state[node.output[0]] = AccState(st.layer, scale, offset, False)


def _on_relu(ctx: _Ctx, node) -> None:
    st = ctx.state.get(node.input[0])
    if isinstance(st, AccState):
        ctx.state[node.output[0]] = AccState(st.layer, st.scale, st.offset, True)
        return
    if isinstance(st, IntState) and not st.flattened:  # e.g. QuantIdentity -> QuantReLU: folds into the next Quant
        ctx.state[node.output[0]] = IntState(st.tensor, relu=True)
        return
    raise A2QError(f"{ctx.where(node)}: Relu is supported on a layer output or an activation, followed by a Quant")


def _on_reshape(ctx: _Ctx, node) -> None:
    src, out = node.input[0], node.output[0]
    if src in ctx.consts:
        _fold_const(ctx, node)
        return
    st = ctx.state.get(src)
    out_shape = ctx.shapes.get(out)
    if isinstance(st, FloatInput):
        if out_shape is None or len(out_shape) != 2:
            raise A2QError(f"{ctx.where(node)}: only flattening the input to [batch, features] is supported")
        ctx.state[out] = FloatInput((int(out_shape[1]),))
        return
    if isinstance(st, IntState) and (out_shape is None or len(out_shape) == 2):
        _no_pending_relu(ctx, node, st)
        shape = ctx.tensors[st.tensor].shape
        ctx.state[out] = IntState(st.tensor, flattened=len(shape) == 3 or st.flattened)
        return
    if isinstance(st, AccState) and (out_shape is None or len(out_shape) == 2):
        ctx.state[out] = st
        return
    raise A2QError(f"{ctx.where(node)}: only a Flatten/Reshape that keeps [batch, features] is supported")


def _fold_const(ctx: _Ctx, node) -> None:
    """Evaluate a shape-only op on constants (keeps Quant'ed integers)."""
    src = ctx.consts[node.input[0]]
    out = node.output[0]
    if node.op_type == "Identity":
        ctx.consts[out] = src
        return
    if node.op_type == "Transpose":
        perm = _attr(node, "perm")
        if isinstance(src, QConst):
            s = np.broadcast_to(np.asarray(src.scale), src.ints.shape)
            ctx.consts[out] = QConst(np.transpose(src.ints, perm), np.transpose(s, perm), src.dtype, np.transpose(src.value, perm))
        else:
            ctx.consts[out] = np.transpose(src, perm)
        return
    if node.op_type in ("Reshape", "Flatten"):
        if node.op_type == "Reshape":
            shape = _const_array(ctx, node.input[1])
            if shape is None:
                raise A2QError(f"{ctx.where(node)}: non-constant shape")
            tgt = [int(d) for d in np.asarray(shape).reshape(-1)]
        else:
            axis = int(_attr(node, "axis", 1))
            shp = (src.ints if isinstance(src, QConst) else np.asarray(src)).shape
            tgt = [int(np.prod(shp[:axis])), -1]
        if isinstance(src, QConst):
            s = np.broadcast_to(np.asarray(src.scale), src.ints.shape)
            ctx.consts[out] = QConst(src.ints.reshape(tgt), s.reshape(tgt), src.dtype, src.value.reshape(tgt))
        else:
            ctx.consts[out] = np.asarray(src).reshape(tgt)
        return
    raise A2QError(f"{ctx.where(node)}: cannot fold this op on constants")


def _spatial_attrs(ctx: _Ctx, node, kernel) -> tuple:
    if str(_attr(node, "auto_pad", "NOTSET")) not in ("NOTSET", ""):
        raise A2QError(f"{ctx.where(node)}: auto_pad is not supported; give explicit pads")
    if any(int(d) != 1 for d in (_attr(node, "dilations", None) or [1, 1])):
        raise A2QError(f"{ctx.where(node)}: dilation other than 1 is not supported")
    if int(_attr(node, "ceil_mode", 0)) != 0:
        raise A2QError(f"{ctx.where(node)}: ceil_mode=1 is not supported")
    stride = tuple(int(v) for v in (_attr(node, "strides", None) or [1, 1]))
    p = [int(v) for v in (_attr(node, "pads", None) or [0, 0, 0, 0])]
    if len(kernel) != 2 or len(stride) != 2 or len(p) != 4:
        raise A2QError(f"{ctx.where(node)}: only 2-D kernels are supported")
    return tuple(int(k) for k in kernel), stride, (p[0], p[1], p[2], p[3])


def _feature_map(ctx: _Ctx, node) -> TensorInfo:
    x = _layer_input(ctx, node, node.input[0])
    if len(x.shape) != 3:
        raise A2QError(f"{ctx.where(node)}: expects a [batch, C, H, W] input, got a per-sample shape of {list(x.shape)}")
    return x


def _on_conv(ctx: _Ctx, node) -> None:
    x = _feature_map(ctx, node)
    w = ctx.consts.get(node.input[1])
    if not isinstance(w, QConst):
        _weight_of(ctx, node, node.input[1], "CK")  # raises the matching error
    if w.ints.ndim != 4:
        raise A2QError(f"{ctx.where(node)}: only 2-D convolutions (4-D weights) are supported")
    kernel, stride, pads = _spatial_attrs(ctx, node, _attr(node, "kernel_shape", None) or w.ints.shape[2:])
    groups = int(_attr(node, "group", 1))
    cout, cin_g = w.ints.shape[:2]
    if x.shape[2] != cin_g * groups:
        raise A2QError(f"{ctx.where(node)}: input has {x.shape[2]} channels, weight expects {cin_g * groups}")
    if groups != 1 and not (cin_g == 1 and cout == groups):
        raise A2QError(f"{ctx.where(node)}: grouped convolution with groups={groups} is supported only as depthwise (groups = channels)")
    scale = np.broadcast_to(np.asarray(w.scale, dtype=np.float64), w.ints.shape).reshape(cout, -1)
    if not np.all(scale == scale[:, :1]):
        raise A2QError(f"{ctx.where(node)}: only per-tensor or per-output-channel weight scales are supported")
    ann = ctx.annotations.get(node.name, {})
    conv = Conv(
        name=node.name,
        inputs=[x.name],
        outputs=[node.output[0]],
        weight=np.ascontiguousarray(w.ints.transpose(0, 2, 3, 1)),
        weight_type=w.dtype,
        weight_scale=scale[:, 0].copy(),
        bias=None,
        kernel=kernel,
        stride=stride,
        pads=pads,
        groups=groups,
        in_shape=tuple(x.shape),
        target_acc_bits=int(ann["target_acc_bits"]) if ann.get("target_acc_bits") is not None else None,
        quant_kind=ann.get("quant"),
    )
    ctx.ops.append(conv)
    acc_scale = float(x.scale.reshape(-1)[0]) * conv.weight_scale
    ctx.tensors[node.output[0]] = TensorInfo(node.output[0], conv.out_shape, None, acc_scale.copy(), np.zeros(cout))
    st = AccState(layer=conv, scale=acc_scale, offset=np.zeros(cout))
    if len(node.input) > 2 and node.input[2]:
        st = _add_bias(ctx, node, st, node.input[2], node.output[0])
    ctx.state[node.output[0]] = st


def _on_pool(ctx: _Ctx, node) -> None:
    st = ctx.state.get(node.input[0])
    if not isinstance(st, IntState):
        raise A2QError(f"{ctx.where(node)}: pooling is supported on a quantized tensor only (put it after a Quant)")
    _no_pending_relu(ctx, node, st)
    x = _feature_map(ctx, node)
    if node.op_type == "GlobalAveragePool":
        kernel, stride, pads = (x.shape[0], x.shape[1]), (1, 1), (0, 0, 0, 0)
    else:
        kernel, stride, pads = _spatial_attrs(ctx, node, _attr(node, "kernel_shape"))
    mode = "max" if node.op_type == "MaxPool" else "avg"
    if mode == "max" and any(pads):
        raise A2QError(f"{ctx.where(node)}: padded MaxPool is not supported")
    if mode == "avg" and any(pads) and int(_attr(node, "count_include_pad", 0)) != 1:
        raise A2QError(f"{ctx.where(node)}: padded AveragePool needs count_include_pad=1")
    pool = Pool(node.name, [x.name], [node.output[0]], mode, kernel, stride, pads, tuple(x.shape), source_op=node.op_type)
    ctx.ops.append(pool)
    out = node.output[0]
    C = x.shape[2]
    if mode == "max":
        ctx.tensors[out] = TensorInfo(out, pool.out_shape, x.dtype, x.scale.copy(), x.offset.copy())
        ctx.state[out] = IntState(out)
        return
    scale = np.full(C, float(x.scale.reshape(-1)[0]) / pool.K)
    ctx.tensors[out] = TensorInfo(out, pool.out_shape, None, scale.copy(), np.zeros(C))
    ctx.state[out] = AccState(layer=pool, scale=scale, offset=np.zeros(C))


def _on_trunc(ctx: _Ctx, node) -> None:
    """QONNX Trunc (v2) on an accumulator, e.g. Brevitas's TruncAvgPool2d after an AveragePool."""
    st = ctx.state.get(node.input[0])
    if not isinstance(st, AccState):
        raise A2QError(f"{ctx.where(node)}: Trunc is supported on an accumulator (e.g. after AveragePool) only")
    vals = [np.asarray(_const_array(ctx, i), dtype=np.float32) for i in node.input[1:]]
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
    rounding = str(_attr(node, "rounding_mode", "FLOOR")).upper()
    if rounding not in ROUNDING_MODES:
        raise A2QError(f"{ctx.where(node)}: rounding mode '{rounding}' is not supported (supported: {', '.join(ROUNDING_MODES)})")
    signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
    acc_name = st.layer.outputs[0]
    _finalize_acc(ctx, ctx.where(node), st)
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


HANDLERS = {
    "Trunc": _on_trunc,
    "Conv": _on_conv,
    "MaxPool": _on_pool,
    "AveragePool": _on_pool,
    "GlobalAveragePool": _on_pool,
    "Quant": _on_quant,
    "Gemm": _on_gemm,
    "MatMul": _on_matmul,
    "Add": _on_add,
    "Mul": _on_mul,
    "BatchNormalization": _on_batchnorm,
    "Relu": _on_relu,
    "Flatten": _on_reshape,
    "Reshape": _on_reshape,
}


# ----------------------------------------------------------------------------- main entry


def load_qonnx(path: str) -> Model:
    """Read a QONNX model file into an a2qhls :class:`~a2qhls.ir.Model`."""
    path = str(path)
    proto = _read_onnx(path)
    from onnx import numpy_helper

    graph = proto.graph
    for i, n in enumerate(graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    ctx = _Ctx(path=path)
    ctx.annotations = _layer_annotations(proto)

    quant_types = {"Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear", "Trunc"}
    if not any(n.op_type in quant_types for n in graph.node):
        raise A2QError(
            f"{path}: a float model with no Quant nodes; a2qhls needs a quantized QONNX model "
            "(e.g. exported with brevitas.export.export_qonnx or 'a2qhls train')"
        )
    unsupported = [n for n in graph.node if n.op_type not in SUPPORTED_OPS]
    if unsupported:
        n = unsupported[0]
        raise A2QError(
            f"{path}: node '{n.name}' has unsupported op {n.op_type}; supported ops: {', '.join(SUPPORTED_OPS)}"
        )

    for t in graph.initializer:
        ctx.consts[t.name] = numpy_helper.to_array(t)
    for n in graph.node:
        if n.op_type == "Constant":
            from onnx import helper

            for a in n.attribute:
                if a.name == "value":
                    ctx.consts[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    ctx.consts[n.output[0]] = np.asarray(helper.get_attribute_value(a))
    for n in graph.node:
        for i in n.input:
            ctx.consumers.setdefault(i, []).append(n)

    _check_quant_params_constant(graph, ctx)
    _infer_shapes(proto, ctx)

    dyn_inputs = [i for i in graph.input if i.name not in ctx.consts]
    if len(dyn_inputs) != 1:
        raise A2QError(f"{path}: expected exactly one graph input, found {len(dyn_inputs)} ({', '.join(i.name for i in dyn_inputs)})")
    inp = dyn_inputs[0]
    in_shape = ctx.shapes.get(inp.name)
    if in_shape is None:
        dims = inp.type.tensor_type.shape.dim
        in_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    in_shape = tuple(in_shape)
    if len(in_shape) < 2 or any(d is None or d <= 0 for d in in_shape[1:]):
        raise A2QError(f"{path}: input '{inp.name}' must be [batch, features...] with fixed feature dimensions, got {list(in_shape)}")
    per_sample = tuple(int(d) for d in in_shape[1:])
    ctx.state[inp.name] = FloatInput(per_sample)

    for node in _toposort(graph, ctx):
        if node.op_type == "Constant":
            continue
        if node.op_type != "Quant" and all((x in ctx.consts) or x == "" for x in node.input):
            if node.op_type in ("Transpose", "Reshape", "Flatten", "Identity"):
                _fold_const(ctx, node)
                continue
            raise A2QError(f"{ctx.where(node)}: {node.op_type} on constants only is not supported; supported on constants: Quant, Transpose, Reshape, Flatten, Identity")
        if node.op_type == "Identity":
            src = node.input[0]
            if src in ctx.state:
                ctx.state[node.output[0]] = ctx.state[src]
            continue
        if node.op_type == "Transpose":
            raise A2QError(f"{ctx.where(node)}: Transpose of an activation is not supported (only of constant weights)")
        HANDLERS[node.op_type](ctx, node)

    outputs, out_names = [], []
    for o in graph.output:
        st = ctx.state.get(o.name)
        if isinstance(st, AccState):
            if st.relu:
                raise A2QError(f"{path}: graph output '{o.name}' is a Relu without a Quant; supported: a layer output or a Quant")
            _finalize_acc(ctx, f"{path}: graph output '{o.name}'", st)
            outputs.append(st.layer.outputs[0])
        elif isinstance(st, IntState) and not st.relu:
            outputs.append(st.tensor)
        else:
            raise A2QError(f"{path}: graph output '{o.name}' is not produced by a layer or a Quant")
        out_names.append(o.name)

    if not any(isinstance(op, (Dense, Conv)) for op in ctx.ops):
        raise A2QError(f"{path}: no MatMul/Gemm/Conv layer found; a2qhls compiles models with at least one layer")
    name = proto.graph.name or os.path.splitext(os.path.basename(path))[0]
    return Model(
        name=name,
        input_name=inp.name,
        input_shape=per_sample,
        ops=ctx.ops,
        tensors=ctx.tensors,
        outputs=outputs,
        output_names=out_names,
        source=os.path.abspath(path),
    )


def _check_quant_params_constant(graph, ctx: _Ctx) -> None:
    """Every Quant's scale, zero-point and bit width must be computable from constants alone."""
    const = set(ctx.consts)
    for n in _toposort(graph, ctx):
        if n.op_type != "Quant" and n.input and all(i in const or i == "" for i in n.input):
            const.update(n.output)
    params = {
        "Quant": ("scale", "zero-point", "bit width"),
        "Trunc": ("scale", "zero-point", "input bit width", "output scale", "output bit width"),
    }
    for n in graph.node:
        if n.op_type not in params:
            continue
        if n.op_type == "Quant" and len(n.input) < 4:
            raise A2QError(f"{ctx.where(n)}: expected 4 inputs (x, scale, zeropt, bitwidth), found {len(n.input)}")
        if n.op_type == "Trunc" and len(n.input) != 6:
            raise A2QError(
                f"{ctx.where(n)}: Trunc with {len(n.input)} inputs (version 1) is not supported; supported: Trunc v2 "
                "(x, scale, zeropt, input_bit_width, output_scale, output_bit_width) as Brevitas 0.13 exports it"
            )
        for what, name in zip(params[n.op_type], n.input[1:]):
            if name not in const:
                raise A2QError(
                    f"{ctx.where(n)}: the {what} input '{name}' is not a constant; "
                    f"a2qhls supports {n.op_type} nodes whose parameters are constants"
                )


def _infer_shapes(proto, ctx: _Ctx) -> None:
    """Shapes of value infos (after qonnx's shape inference when it succeeds)."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.infer_shapes import InferShapes

        mw = ModelWrapper(proto.__deepcopy__() if hasattr(proto, "__deepcopy__") else proto)
        mw = mw.transform(InferShapes())
        g = mw.model.graph
    except Exception:
        g = proto.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            ctx.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _toposort(graph, ctx: _Ctx) -> list:
    """Nodes in topological order (exporters usually write them so already)."""
    produced = set(ctx.consts) | {i.name for i in graph.input} | {""}
    pending = list(graph.node)
    order = []
    while pending:
        progress = False
        rest = []
        for n in pending:
            if all(i in produced for i in n.input):
                order.append(n)
                produced.update(n.output)
                progress = True
            else:
                rest.append(n)
        pending = rest
        if not progress:
            n = pending[0]
            missing = [i for i in n.input if i not in produced]
            raise A2QError(f"{ctx.path}: node '{n.name}' ({n.op_type}) reads '{missing[0]}', which nothing produces")
    return order
