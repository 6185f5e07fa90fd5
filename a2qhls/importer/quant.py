"""``Quant`` (QONNX): folded into integer constants, the input quantizer, or a Requant of an
accumulator or of another activation; and ``Relu`` before a Quant."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from ..errors import A2QError
from ..bounds import int_range
from ..ir import InputQuant, IntType, Requant, TensorInfo, round_like_qonnx
from .context import (AccState, Ctx, FloatInput, IntState, QConst, acc_view, attr, channel_values, const_array, finalize_acc,
                      int_shape, scale_vec)

ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


def add_input_quant(ctx: Ctx, node, st: FloatInput, scale, zp, dtype: IntType, rounding: str) -> None:
    """The graph's input quantizer ``node`` (a Quant or BipolarQuant of the float input ``st``): an
    :class:`InputQuant` reading the graph input itself (reshapes and float preprocessing folded in
    as ``pre``), per-tensor ``scale`` and zero-point ``zp``, stored type ``dtype``."""
    out = node.output[0]
    ctx.ops.append(InputQuant(
        name=node.name,
        inputs=[ctx.input_name or node.input[0]],  # the graph input itself: reshapes and preprocessing are folded in
        outputs=[out],
        scale=np.asarray(scale, dtype=np.float32).reshape(()),
        zero_point=np.asarray(zp, dtype=np.float32).reshape(()),
        out_type=dtype,
        rounding_mode=rounding,
        pre=tuple(st.pre),
        pre_shape=tuple(st.pre_shape or st.shape),
    ))
    shape = input_layout(st.shape)
    ctx.tensors[out] = TensorInfo(out, shape, dtype, scale_vec(scale, shape[-1]), np.zeros(shape[-1]))
    ctx.state[out] = IntState(out)


def quant_ints(x: np.ndarray, scale, zeropt, bits: int, signed: bool, narrow: bool, rounding: str) -> np.ndarray:
    """The integers ``q`` a QONNX ``Quant`` produces, computed in the dtype qonnx uses (its
    ``quant``: divide, add the zero-point, clip to the type's range, round)."""
    y = x / scale
    y = y + zeropt
    lo, hi = int_range(bits, signed, narrow)
    y = np.where(y > hi, np.asarray(hi).astype(y.dtype), y)
    y = np.where(y < lo, np.asarray(lo).astype(y.dtype), y)
    return round_like_qonnx(y, rounding)


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


def input_layout(shape: tuple) -> tuple:
    """The channels-last IR shape of a per-sample graph input shape: ``(F,)`` stays, ``[C, H, W]``
    becomes ``(H, W, C)`` and a 1-D sequence ``[C, L]`` the map ``(1, L, C)`` of height 1."""
    if len(shape) == 1:
        return tuple(shape)
    if len(shape) == 2:
        return (1, shape[1], shape[0])
    return (*shape[1:], shape[0])


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
    scale, zp = per_channel_params(ctx, node, st, scale=scale, **{"zero-point": zp, "bit width": const_array(ctx, node.input[3])})[:2]
    zpi = single_zero_point(ctx, node, zp)
    dtype = IntType(bits, signed, narrow, zpi)
    if isinstance(st, FloatInput):
        if np.asarray(scale).size != 1:
            raise A2QError(f"{ctx.where(node)}: per-channel input quantization is not supported; use a per-tensor scale")
        add_input_quant(ctx, node, st, scale, zp, dtype, rounding)
        return
    if isinstance(st, AccState):
        requant_of_acc(ctx, node, st, scale, zp, dtype, rounding)
        return
    if isinstance(st, IntState):
        d2s = _d2s_of_accumulator(ctx, st)
        if d2s is not None:
            requant_before_depth_to_space(ctx, node, st, d2s, scale, zp, dtype, rounding)
            return
        on_requant_of_activation(ctx, node, st, scale, zp, dtype, rounding)
        return
    raise A2QError(f"{ctx.where(node)}: input '{src}' comes from an unsupported producer")


def per_channel_params(ctx: Ctx, node, st, **params) -> list:
    """The parameters ``params`` (name -> constant) of a quantizer ``node`` reading the dynamic tensor of state
    ``st``, each as one value or one per channel of the quantizer's output (:func:`~.context.channel_values`:
    ONNX broadcasting of each against the input must keep the input's shape, and per-channel values vary along
    its channel axis only); a one-line error otherwise, or when the input comes from an unsupported producer."""
    src = node.input[0]
    if isinstance(st, FloatInput):
        shape, flattened = input_layout(st.shape), False
    elif isinstance(st, AccState):
        shape, flattened = acc_view(ctx, st)
    elif isinstance(st, IntState):
        d2s = _d2s_of_accumulator(ctx, st)
        shape, flattened = (tuple(d2s.out_shape) if d2s is not None else int_shape(ctx, st.tensor)), st.flattened
    else:
        raise A2QError(f"{ctx.where(node)}: input '{src}' comes from an unsupported producer")
    return [channel_values(ctx, node, what, v, src, shape, flattened) for what, v in params.items()]


def _d2s_of_accumulator(ctx: Ctx, st: IntState):
    """The :class:`~a2qhls.ir.DepthToSpace` that produced ``st`` from a layer's accumulator, when the
    accumulator is read by it alone and its output only by activation Quants (through any Relu, Identity
    and Flatten nodes, e.g. ``Relu -> {Identity -> Quant, Quant}``): then each Quant becomes a Requant of the
    accumulator followed by its own copy of the reorder (:func:`requant_before_depth_to_space`). Else None."""
    from ..ir import DepthToSpace

    d2s = ctx.moved_d2s.get(st.tensor) or next(
        (op for op in ctx.ops if isinstance(op, DepthToSpace) and op.outputs[0] == st.tensor), None)
    if d2s is None or ctx.tensors[d2s.inputs[0]].dtype is not None:
        return None
    acc = d2s.inputs[0]
    if len(ctx.consumers.get(acc, [])) != 1 or acc in ctx.graph_outputs or not _read_by_quants_only(ctx, st.tensor):
        return None
    return d2s


def _read_by_quants_only(ctx: Ctx, tensor: str) -> bool:
    """Whether every reader of ``tensor``, followed through Relu, Identity and Flatten/Reshape nodes, is the data input of
    a Quant or BipolarQuant (and none of these tensors is a graph output)."""
    todo, seen = [tensor], set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in ctx.graph_outputs or not ctx.consumers.get(t):
            return False
        for n in ctx.consumers[t]:
            if n.op_type in ("Relu", "Identity", "Flatten", "Reshape"):  # the importer checks a Flatten's shape
                todo.append(n.output[0])
            elif n.op_type not in ("Quant", "BipolarQuant") or t in n.input[1:]:
                return False
    return True


def requant_before_depth_to_space(ctx: Ctx, node, st: IntState, d2s, scale, zp, dtype: IntType, rounding: str) -> None:
    """``layer -> DepthToSpace -> [Relu ->] Quant`` (Brevitas's ESPCN: ``QuantReLU(pixel_shuffle(conv4(x)))``)
    as ``layer -> Requant -> DepthToSpace``: the activation is elementwise and its scale per output channel
    ``c`` of DepthToSpace, which reads each input channel into exactly one output channel
    (``src[i, j, c]``, :func:`~a2qhls.ir.depth_to_space_sources`), so applying it before the reorder,
    with the scale of input channel ``src[i, j, c]`` set to that of ``c``, gives the same integers.
    The layer's unit then thresholds its accumulator and the reorder moves activations, not accumulators:
    the DepthToSpace already placed on the accumulator is taken back and deferred, as a MaxPool is, to
    :func:`requant_of_acc`, which places it after the Requant. Several Quants may read the reorder (see
    :func:`_d2s_of_accumulator`): the first takes the op back, and each gets its own Requant and copy."""
    acc_name = d2s.inputs[0]
    acc = ctx.tensors[acc_name]
    layer = next(op for op in ctx.ops if acc_name in op.outputs)
    C = acc.channels
    acc_scale = np.broadcast_to(np.asarray(acc.scale, dtype=np.float64).reshape(-1), (C,))
    acc_offset = np.broadcast_to(np.asarray(acc.offset, dtype=np.float64).reshape(-1), (C,))
    if st.tensor not in ctx.moved_d2s:  # the first Quant reading it: the reorder of the accumulator is taken back
        ctx.ops.remove(d2s)
        del ctx.tensors[st.tensor]
        ctx.moved_d2s[st.tensor] = d2s
    requant_of_acc(ctx, node, AccState(layer=layer, scale=acc_scale.copy(), offset=acc_offset.copy(), relu=st.relu,
                                       flattened=st.flattened, deferred=d2s), scale, zp, dtype, rounding)


def _scale_before_depth_to_space(ctx: Ctx, node, d2s, scale):
    """The scale ``[co]`` (or one value) of a Quant after ``d2s`` as the scale of the Requant before it:
    input channel ``src[i, j, c]`` takes the scale of output channel ``c``."""
    co = d2s.out_shape[-1]
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    if s.size not in (1, co):
        raise A2QError(f"{ctx.where(node)}: scale has {s.size} values for {co} channels")
    if s.size == 1:
        return s.reshape(())
    src_scale = np.empty(d2s.in_shape[-1])
    src_scale[d2s.sources()] = s[None, None, :]  # source channel src[i, j, c] <- scale[c]
    return src_scale


def requant_of_acc(ctx: Ctx, node, st: AccState, scale, zp, dtype: IntType, rounding: str) -> None:
    """A Quant (after an optional Relu) on an accumulator: a :class:`~a2qhls.ir.Requant`, followed by
    the op ``st.deferred`` (a MaxPool or DepthToSpace that commutes with the activation) when there is one."""
    from ..ir import DepthToSpace

    out = node.output[0]
    acc_name = st.layer.outputs[0]
    finalize_acc(ctx, ctx.where(node), st)
    acc_shape = ctx.tensors[acc_name].shape
    C = acc_shape[-1]
    later = None if st.deferred is None else _own_copy(ctx, st.deferred, node)
    out_scale = scale  # per channel of ``out``: of the deferred op's output
    if isinstance(later, DepthToSpace):
        scale = _scale_before_depth_to_space(ctx, node, later, scale)
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
    if later is not None:  # the activation commutes with it (see AccState.deferred): on the Requant's output
        pre = f"{out}__a2qhls_{'pre_d2s' if isinstance(later, DepthToSpace) else 'prepool'}"
        op.outputs = [pre]
        ctx.tensors[pre] = TensorInfo(pre, acc_shape, dtype, scale_vec(scale, C), np.zeros(C))
        later.inputs, later.outputs = [pre], [out]
        ctx.ops.append(later)
        acc_shape = later.out_shape
    C = acc_shape[-1]
    ctx.tensors[out] = TensorInfo(out, acc_shape, dtype, scale_vec(out_scale, C), np.zeros(C))
    ctx.state[out] = IntState(out, flattened=st.flattened)


def _own_copy(ctx: Ctx, op, node):
    """A copy of the deferred op ``op`` for the Quant ``node``: an accumulator may reach several Quants
    through it (``Conv -> MaxPool -> Relu -> {Quant, Quant}``), and each gets its own pool or reorder
    after its own Requant; the first keeps the ONNX node's name, later ones add the Quant's name."""
    own = copy.copy(op)
    if any(o.name == op.name for o in ctx.ops):
        own.name = f"{op.name}__{node.name}"
    return own


def on_requant_of_activation(ctx: Ctx, node, st: IntState, scale, zp, dtype: IntType, rounding: str) -> None:
    """A Quant right after another activation Quant (e.g. QuantReLU -> QuantIdentity, or a layer's
    input quantizer): folded into the first one's thresholds when nothing else reads the first and it is
    not a graph output (else the first keeps its output and this Quant re-quantizes it,
    :func:`requant_through_identity`)."""
    src = node.input[0]
    first = next((op for op in ctx.ops if isinstance(op, Requant) and op.outputs[0] == st.tensor), None)
    onnx_src = st.tensor  # the first Quant's output (a Relu may stand between)
    if first is None or not _sole_path(ctx, onnx_src, node) or (not st.relu and src != onnx_src):
        requant_through_identity(ctx, node, st, scale, zp, dtype, rounding)
        return
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
    ctx.state[out] = IntState(out, flattened=st.flattened)


def _sole_path(ctx: Ctx, tensor: str, node) -> bool:
    """Whether ``node`` alone reads ``tensor``, through a chain of Relu, Identity and Flatten/Reshape nodes that
    each have one reader, none of these tensors a graph output: only then may the Quant that wrote ``tensor`` fold
    into ``node`` (``QuantIdentity -> Relu -> {Identity -> Quant, Quant}`` keeps it for the other reader)."""
    t = tensor
    while t not in ctx.graph_outputs and len(ctx.consumers.get(t, [])) == 1:
        n = ctx.consumers[t][0]
        if n is node:
            return True
        if n.op_type not in ("Relu", "Identity", "Flatten", "Reshape"):
            return False
        t = n.output[0]
    return False


def on_relu(ctx: Ctx, node) -> None:
    st = ctx.state.get(node.input[0])
    if isinstance(st, FloatInput):  # e.g. ESPCN's relu(inp): folded into the input quantizer
        ctx.state[node.output[0]] = preprocess(ctx, node, st, "Relu", None)
        return
    if isinstance(st, AccState):
        ctx.state[node.output[0]] = replace(st, relu=True)
        return
    if isinstance(st, IntState):  # e.g. QuantIdentity -> QuantReLU: folds into the next Quant
        ctx.state[node.output[0]] = IntState(st.tensor, flattened=st.flattened, relu=True)
        return
    raise A2QError(f"{ctx.where(node)}: Relu of '{node.input[0]}' is not supported; supported: Relu of the float graph input, "
                   "of a layer output or of an activation, followed by a Quant")


def preprocess(ctx: Ctx, node, st: FloatInput, op: str, const) -> FloatInput:
    """The float graph input after one more elementwise float op, which the input quantizer absorbs."""
    if st.reshaped and const is not None and np.asarray(const).size != 1:
        raise A2QError(f"{ctx.where(node)}: float preprocessing by a non-scalar constant after a Reshape/Flatten of the input "
                       "is not supported; apply it to the graph input before reshaping (a scalar, e.g. BNN-PYNQ's 2 * x - 1, is)")
    if const is not None:
        c = np.asarray(const, dtype=np.float32)
        full = (1, *st.shape)
        try:
            if np.broadcast_shapes(c.shape, full) != full:
                raise ValueError
        except ValueError:
            raise A2QError(f"{ctx.where(node)}: the constant of shape {list(c.shape)} does not broadcast over the input "
                           f"[batch, {', '.join(str(d) for d in st.shape)}] elementwise") from None
        if not np.all(np.isfinite(c)) or (op == "Div" and np.any(c == 0)):
            raise A2QError(f"{ctx.where(node)}: the constant must be finite (and nonzero for Div)")
        const = c
    if st.reshaped:  # an elementwise op by a scalar commutes with the reshape: applied in the input's own layout
        return FloatInput(st.shape, (*st.pre, (op, None if const is None else const.reshape(()))), True, st.pre_shape)
    return FloatInput(st.shape, (*st.pre, (op, const)), pre_shape=st.shape)


def requant_through_identity(ctx: Ctx, node, st: IntState, scale, zp, dtype: IntType, rounding: str) -> None:
    """Re-quantize an activation that something else also reads (e.g. both branches of a residual
    add through one shared QuantIdentity): an identity layer (a depthwise 1x1 convolution of weight 1
    on a feature map, an identity matrix on a vector) whose accumulator is the activation's value
    ``q - zp`` exactly, followed by the threshold unit of this Quant."""
    from ..ir import Conv, Dense

    info = ctx.tensors[st.tensor]
    if info.dtype is None:  # an accumulator reordered (DepthToSpace) that something else also reads
        raise A2QError(f"{ctx.where(node)}: a Quant of '{node.input[0]}', a reordered layer output that is also read "
                       "elsewhere, is not supported; supported: layer -> DepthToSpace -> [Relu ->] Quant with only Quants "
                       "(through Relu/Identity/Flatten) reading the DepthToSpace output")
    if np.unique(info.scale).size != 1 or np.any(info.offset != 0):
        raise A2QError(f"{ctx.where(node)}: re-quantizing '{node.input[0]}', which has per-channel scales, is not supported")
    C = info.channels
    wtype = IntType(2, True, True)
    name = f"{node.name}__identity"
    acc = f"{node.name}__identity_acc"
    if len(info.shape) == 3:
        layer = Conv(name=name, inputs=[info.name], outputs=[acc], weight=np.ones((C, 1, 1, 1), dtype=np.int64),
                     weight_type=wtype, weight_scale=np.ones(C), bias=None, kernel=(1, 1), stride=(1, 1),
                     pads=(0, 0, 0, 0), groups=C, in_shape=tuple(info.shape), source_op="Quant")
        shape = layer.out_shape
    else:
        layer = Dense(name=name, inputs=[info.name], outputs=[acc], weight=np.eye(C, dtype=np.int64),
                      weight_type=wtype, weight_scale=np.ones(C), bias=None, source_op="Quant")
        shape = (C,)
    ctx.ops.append(layer)
    s_in = np.full(C, float(info.scale.reshape(-1)[0]))
    ctx.tensors[acc] = TensorInfo(acc, shape, None, s_in.copy(), np.zeros(C))
    acc_state = AccState(layer=layer, scale=s_in, offset=np.zeros(C), relu=st.relu, flattened=st.flattened)
    requant_of_acc(ctx, node, acc_state, scale, zp, dtype, rounding)


def on_bipolar_quant(ctx: Ctx, node) -> None:
    """QONNX ``BipolarQuant``: ``y = scale * (+1 if x / scale >= 0 else -1)`` (qonnx's ``binary_quant``).

    On a constant weight (BNN-PYNQ's binary weights): the integers {-1, +1} times the scale, in a
    2-bit narrow signed weight type (the exact sizing uses the integers themselves). On an
    activation: the 1-bit bipolar type (:meth:`~a2qhls.ir.IntType.bipolar_type`, stored bit ``q``,
    value ``2q - 1``): on the float graph input an :class:`~a2qhls.ir.InputQuant`, on an accumulator
    a :class:`~a2qhls.ir.Requant` with one threshold (the sign), on another activation a
    requantization like ``Quant``'s. Its scale must be one positive value (per-channel on weights)."""
    src, out = node.input[0], node.output[0]
    scale = const_array(ctx, node.input[1])
    if scale is None or np.any(~np.isfinite(scale)) or np.any(np.asarray(scale) <= 0):
        raise A2QError(f"{ctx.where(node)}: scale must be a finite, positive constant")
    if src not in ctx.consts:
        scale = per_channel_params(ctx, node, ctx.state.get(src), scale=scale)[0]
        if np.asarray(scale).size != 1:
            raise A2QError(f"{ctx.where(node)}: BipolarQuant of an activation with {np.asarray(scale).size} scales is not "
                           "supported; supported: one per-tensor scale")
        st = ctx.state.get(src)
        dtype = IntType.bipolar_type()
        zp = np.zeros(())
        if isinstance(st, FloatInput):
            add_input_quant(ctx, node, st, scale, zp, dtype, "ROUND")
            return
        if isinstance(st, AccState):
            requant_of_acc(ctx, node, st, scale, zp, dtype, "ROUND")
            return
        if isinstance(st, IntState):
            d2s = _d2s_of_accumulator(ctx, st)
            if d2s is not None:
                requant_before_depth_to_space(ctx, node, st, d2s, scale, zp, dtype, "ROUND")
                return
            on_requant_of_activation(ctx, node, st, scale, zp, dtype, "ROUND")
            return
        raise A2QError(f"{ctx.where(node)}: input '{src}' comes from an unsupported producer")
    x = np.asarray(const_array(ctx, src), dtype=np.float32)
    try:
        fits = np.broadcast_shapes(x.shape, np.shape(scale)) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise A2QError(f"{ctx.where(node)}: scale of shape {list(np.shape(scale))} does not match the input '{src}' of shape {list(x.shape)}")
    ints = np.where(x / np.asarray(scale, dtype=np.float32) >= 0, 1, -1).astype(np.int64)
    value = (ints * np.asarray(scale, dtype=np.float32)).astype(np.float32)
    # {-1, +1} inside a 2-bit narrow signed type (the exact sizing uses the integers themselves)
    ctx.consts[out] = QConst(ints=ints, scale=np.asarray(scale), dtype=IntType(2, True, True), value=value)
