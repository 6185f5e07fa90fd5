"""``Gemm`` and ``MatMul`` layers -> :class:`~a2qhls.ir.Dense`."""
from __future__ import annotations

import numpy as np

from ..errors import A2QError
from ..ir import Dense, TensorInfo
from .arith import add_bias
from .context import AccState, Ctx, IntState, QConst, attr, const_array, layer_input

def weight_of(ctx: Ctx, node, name: str, layout: str) -> QConst:
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


def make_dense(ctx: Ctx, node, x: TensorInfo, w: QConst, out: str) -> AccState:
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


def on_gemm(ctx: Ctx, node) -> None:
    if int(attr(node, "transA", 0)) != 0:
        raise A2QError(f"{ctx.where(node)}: transA=1 is not supported")
    x = layer_input(ctx, node, node.input[0])
    layout = "CK" if int(attr(node, "transB", 0)) == 1 else "KC"
    w = weight_of(ctx, node, node.input[1], layout)
    alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
    if alpha <= 0:
        raise A2QError(f"{ctx.where(node)}: alpha must be positive, got {alpha}")
    st = make_dense(ctx, node, x, w, node.output[0])
    st.scale = st.scale * alpha
    if len(node.input) > 2 and node.input[2]:
        if beta != 1.0:
            b = const_array(ctx, node.input[2])
            if b is None:
                raise A2QError(f"{ctx.where(node)}: bias '{node.input[2]}' is not a constant")
            ctx.consts[node.input[2] + "__beta"] = np.asarray(b, dtype=np.float64) * beta
            st = add_bias(ctx, node, st, node.input[2] + "__beta", node.output[0])
        else:
            st = add_bias(ctx, node, st, node.input[2], node.output[0])
    ctx.state[node.output[0]] = st


def on_matmul(ctx: Ctx, node) -> None:
    x = layer_input(ctx, node, node.input[0])
    w = weight_of(ctx, node, node.input[1], "KC")
    ctx.state[node.output[0]] = make_dense(ctx, node, x, w, node.output[0])
