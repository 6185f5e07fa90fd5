"""The importer's state while it walks a graph: what each ONNX tensor is (a constant, a quantized
constant, an integer activation of the IR, an accumulator seen through float post-ops, or the float
graph input), and helpers the op handlers share."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import A2QError
from ..ir import IntType, TensorInfo, channels_first

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
    flattened: bool = False  # an [H, W, C] accumulator the graph sees as [batch, C*H*W] (see IntState)
    # an op between the accumulator and its activation that commutes with the activation, so that
    # requant_of_acc places it after the Requant, on the quantized integers: a MaxPool (Conv -> MaxPool ->
    # Relu -> Quant, the max commutes with the monotone non-decreasing activation; see importer.pool), or a
    # DepthToSpace that only the Quant reads (set by on_quant; see importer.quant.requant_before_depth_to_space)
    deferred: Optional[object] = None


@dataclass
class FloatInput:
    """The float graph input (possibly reshaped), after any float preprocessing ``pre``
    (see :class:`~a2qhls.ir.InputQuant`), which the input quantizer absorbs."""

    shape: tuple
    pre: tuple = ()
    reshaped: bool = False
    pre_shape: tuple = ()  # the shape ``pre`` applies in (before any reshape)


@dataclass
class Ctx:
    path: str
    consts: dict = field(default_factory=dict)  # name -> np.ndarray or QConst
    state: dict = field(default_factory=dict)  # name -> IntState | AccState | FloatInput
    consumers: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    ops: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    finalized: set = field(default_factory=set)  # accumulators whose scale/offset are fixed
    input_name: str = ""  # the float graph input
    graph_outputs: set = field(default_factory=set)  # the graph's output names
    # DepthToSpace outputs whose reorder of an accumulator moved after the Quants reading them -> the op
    # (see importer.quant.requant_before_depth_to_space)
    moved_d2s: dict = field(default_factory=dict)

    def where(self, node) -> str:
        return f"{self.path}: node '{node.name}' ({node.op_type})"


def attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                try:
                    return v.decode()
                except UnicodeDecodeError:
                    raise A2QError(f"node '{node.name}' ({node.op_type}): attribute {name}={v[:40]!r} is not UTF-8 text") from None
            return v
    return default


def const_array(ctx: Ctx, name: str) -> Optional[np.ndarray]:
    v = ctx.consts.get(name)
    if isinstance(v, QConst):
        return v.value
    return v


def scale_vec(scale, C: int) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    return np.broadcast_to(s, (C,)).copy() if s.size in (1, C) else s


def finalize_acc(ctx: Ctx, where: str, st: AccState, graph_output: bool = False) -> None:
    """Record the accumulator's real-value mapping on its tensor (once per accumulator). A negative
    scale (a float affine with a negative factor, e.g. a TensorNorm weight) is allowed only on an
    accumulator that leaves the graph (``graph_output``); an activation Quant needs positive scales."""
    name = st.layer.outputs[0]
    info = ctx.tensors[name]
    if not graph_output and np.all(np.isfinite(st.scale)) and np.any(st.scale < 0):
        raise A2QError(f"{where}: a negative float scale on the accumulator of '{st.layer.name}' before an activation Quant "
                       "is not supported; supported: positive scales (a negative scale only at the graph output)")
    if not (np.all(np.isfinite(st.scale)) and np.all(st.scale != 0) and np.all(np.isfinite(st.offset))):
        raise A2QError(f"{where}: the float scale or offset applied to the accumulator of '{st.layer.name}' overflows "
                       f"(scale {float(np.max(np.abs(st.scale))):g}, offset {float(np.max(np.abs(st.offset))):g})")
    if name in ctx.finalized:
        if not (np.array_equal(info.scale, st.scale) and np.array_equal(info.offset, st.offset)):
            raise A2QError(f"{where}: an accumulator consumed with two different scalings is not supported")
        return
    info.scale = st.scale.copy()
    info.offset = st.offset.copy()
    ctx.finalized.add(name)


def sole_reader(ctx: Ctx, name: str) -> bool:
    """Whether one node alone reads the tensor ``name`` and it is not a graph output: only then may the
    importer fold it into what reads it (a bias into the layer, one Quant into the next), since its own
    value is needed nowhere else."""
    return len(ctx.consumers.get(name, [])) <= 1 and name not in ctx.graph_outputs


def int_shape(ctx: Ctx, name: str) -> tuple:
    """The IR shape of the integer tensor ``name``; for a DepthToSpace output whose reorder moved after the
    Quants reading it (:func:`~a2qhls.importer.quant.requant_before_depth_to_space`), the reorder's output shape."""
    moved = ctx.moved_d2s.get(name)
    return tuple(moved.out_shape) if moved is not None else tuple(ctx.tensors[name].shape)


def one_d(ctx: Ctx) -> bool:
    """Whether the graph's float input is ``[batch, C, L]``: its maps are then 1-D (``[batch, C, L]``), which the IR
    holds as ``(1, L, C)`` maps of height 1."""
    st = ctx.state.get(ctx.input_name)
    return isinstance(st, FloatInput) and len(st.pre_shape or st.shape) == 2


def acc_view(ctx: Ctx, st: AccState) -> tuple:
    """``(shape, flattened)`` of the tensor an :class:`AccState` stands for in the ONNX graph: the IR shape of the
    accumulator or, with an op deferred past the activation (a MaxPool, a DepthToSpace), of that op's output."""
    shape = st.deferred.out_shape if st.deferred is not None else ctx.tensors[st.layer.outputs[0]].shape
    return tuple(shape), st.flattened


def onnx_dims(ctx: Ctx, shape: tuple, flattened: bool) -> tuple:
    """The ONNX shape ``[1, ...]`` (batch 1) of a tensor of channels-last IR shape ``shape`` (``flattened``: the
    graph sees the map as ``[batch, C*H*W]``, see :class:`IntState`)."""
    if flattened:
        return (1, int(np.prod(shape)))
    return (1, *channels_first(shape, one_d=len(shape) == 3 and one_d(ctx)))


def _dims_text(dims: tuple) -> str:
    return "[" + ", ".join(["batch", *(str(d) for d in dims[1:])]) + "]"


def channel_values(ctx: Ctx, node, what: str, value, src: str, shape: tuple, flattened: bool = False) -> np.ndarray:
    """A constant operand of an elementwise ONNX op (a Quant's scale or zero-point, a Mul/Add/Sub/Div constant, a
    bias) as the IR takes it: one value (shape ``()``) or one per channel ``[C]`` of the other input ``src``, a tensor
    of IR shape ``shape`` (``(C,)`` or ``(H, W, C)``; ``flattened`` as in :class:`IntState`).

    The op broadcasts ``value`` against ``src`` by ONNX multidirectional (numpy) broadcasting (ONNX's
    Broadcasting.md). Accepted only when that leaves the ONNX shape of ``src`` (:func:`onnx_dims`) unchanged and
    the broadcast values are the same across each channel: on ``[batch, C, H, W]`` (or ``[batch, C, L]``) they
    vary along axis 1 only (``[1, C, 1, 1]``, ``[C, 1, 1]``); on a vector ``[batch, C]`` (``[1, C]``, ``[C]``)
    each element is a channel; on a flattened map ``[batch, C*H*W]`` (``[1, C*H*W]``) each run of ``H*W``
    elements of one channel holds one value. (``[1, C, 1, 1]`` against ``[batch, C*H*W]`` broadcasts to
    ``[1, C, batch, C*H*W]``: another tensor, refused.)

    Raises :class:`~a2qhls.errors.A2QError` (one line: node, shapes, what is supported) otherwise."""
    v = np.asarray(value)
    dims = onnx_dims(ctx, shape, flattened)
    map_note, C = "", int(shape[-1])
    if flattened and len(shape) == 3:
        hw = int(np.prod(shape[:-1]))
        map_note = f" (a flattened [{', '.join(str(d) for d in channels_first(shape, one_d=one_d(ctx)))}] map)"
        supported = (f"one value, or one per channel of the map, repeated over its {hw} elements in the flat vector "
                     f"([1, {dims[1]}] or [{dims[1]}])")
    elif len(dims) == 2:
        supported = f"one value, or one per element ([1, {dims[1]}] or [{dims[1]}])"
    else:
        ones = ", 1" * (len(dims) - 2)
        supported = f"one value, or one per channel along axis 1 ([1, {dims[1]}{ones}] or [{dims[1]}{ones}])"
    try:
        fits = np.broadcast_shapes(v.shape, dims) == dims
    except ValueError:
        fits = False
    if not fits:
        try:
            gives = f"broadcasts to {list(np.broadcast_shapes(v.shape, dims))} for a batch of 1"
        except ValueError:
            gives = "does not broadcast against it"
        raise A2QError(f"{ctx.where(node)}: the {what} of shape {list(v.shape)} against the tensor '{src}' of shape "
                       f"{_dims_text(dims)}{map_note} {gives} (ONNX broadcasting); supported: {supported}")
    if v.size == 1:
        return v.reshape(())
    per = np.broadcast_to(v, dims).reshape(C, -1)  # ONNX order: the channel is the outermost axis of a sample
    if not np.all(per == per[:, :1]):
        raise A2QError(f"{ctx.where(node)}: the {what} of shape {list(v.shape)} varies within a channel of the tensor '{src}' "
                       f"of shape {_dims_text(dims)}{map_note}; supported: {supported}")
    return per[:, 0].copy()


def axis1_values(ctx: Ctx, node, what: str, value, src: str, shape: tuple, flattened: bool = False) -> np.ndarray:
    """A 1-D operand that an ONNX op applies along axis 1 of ``src`` (BatchNormalization's scale, B, mean and var;
    Conv's bias B): its ONNX shape must be ``[D]`` with ``D`` the size of axis 1 of ``src`` (``C``, or ``C*H*W`` when
    the map is flattened); returned as :func:`channel_values` returns it."""
    v = np.asarray(value)
    dims = onnx_dims(ctx, shape, flattened)
    if v.ndim != 1 or v.size != dims[1]:
        raise A2QError(f"{ctx.where(node)}: the {what} has shape {list(v.shape)} for the tensor '{src}' of shape "
                       f"{_dims_text(dims)}; supported: [{dims[1]}], one value per index of axis 1")
    return channel_values(ctx, node, what, v.reshape((1, v.size) + (1,) * (len(dims) - 2)), src, shape, flattened)


def no_pending_relu(ctx: Ctx, node, *states) -> None:
    if any(isinstance(st, IntState) and st.relu for st in states):
        raise A2QError(f"{ctx.where(node)}: a Relu of an activation must be followed by a Quant before {node.op_type}")


def layer_input(ctx: Ctx, node, name: str, per_channel: bool = False) -> TensorInfo:
    """The integer tensor a layer reads. ``per_channel``: the op works channel by channel (a depthwise
    convolution, a pool), so a per-channel activation scale moves past it to its output (as FINN
    streamlines MobileNet); an op that sums over channels needs one scale for all of them."""
    st = ctx.state.get(name)
    if isinstance(st, IntState) and st.relu:
        raise A2QError(f"{ctx.where(node)}: the input '{name}' is a Relu of an activation without a Quant after it")
    if isinstance(st, IntState):
        info = ctx.tensors[st.tensor]
        if np.unique(info.scale).size != 1 and not per_channel:
            raise A2QError(
                f"{ctx.where(node)}: the input '{name}' has per-channel scales, which a layer summing over channels cannot "
                "take exactly; use a per-tensor activation scale here (per-channel scales are supported into depthwise "
                "convolutions and pools)"
            )
        return info
    if name in ctx.consts:
        raise A2QError(f"{ctx.where(node)}: the data input '{name}' is a constant; supported: a quantized activation")
    if isinstance(st, FloatInput):
        raise A2QError(
            f"{ctx.where(node)}: the graph input '{name}' is not quantized; quantize it in the model "
            "(e.g. a QuantIdentity) or declare its integer type with --input-quant TYPE:SCALE (e.g. uint8:0.00392)"
        )
    raise A2QError(
        f"{ctx.where(node)}: the input '{name}' is not quantized; "
        "insert a Quant node (e.g. a QuantIdentity or QuantReLU) before every MatMul/Gemm"
    )
