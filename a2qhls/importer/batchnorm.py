"""Inference ``BatchNormalization`` on an accumulator."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import A2QError
from ..ir import Conv, Dense
from .context import AccState, Ctx, acc_view, attr, axis1_values, const_array, sole_reader

def on_batchnorm(ctx: Ctx, node) -> None:
    """Inference BatchNormalization on a layer's accumulator: a per-channel positive affine map,
    absorbed into the accumulator's real-value scale and offset (and so into the thresholds)."""
    st = ctx.state.get(node.input[0])
    if not isinstance(st, AccState) or st.relu:
        raise A2QError(f"{ctx.where(node)}: BatchNormalization is supported directly after a Conv/Gemm/MatMul (before Relu/Quant)")
    params = []
    for what, name in zip(("scale", "bias", "mean", "var"), node.input[1:5]):
        v = const_array(ctx, name)
        if v is None:
            raise A2QError(f"{ctx.where(node)}: the {what} input '{name}' is not a constant")
        # one value per index of axis 1 (ONNX: shape [C]); on a flattened map [batch, C*H*W] each channel's run
        params.append(axis1_values(ctx, node, what, np.asarray(v, dtype=np.float64), node.input[0], *acc_view(ctx, st)))
    gamma, beta, mean, var = params
    C = st.layer.channels
    a = np.broadcast_to(gamma / np.sqrt(var + float(attr(node, "epsilon", 1e-5))), (C,)).copy()
    if np.any(~np.isfinite(a)) or np.any(a == 0):
        j = int(np.argmax(~np.isfinite(a) | (a == 0)))
        raise A2QError(f"{ctx.where(node)}: channel {j} has a zero or non-finite scale gamma/sqrt(var+eps)")
    b = beta - mean * a
    scale, offset = st.scale * a, st.offset * a + b
    neg = np.flatnonzero(scale < 0)
    if neg.size and st.deferred is not None:
        raise A2QError(
            f"{ctx.where(node)}: a negative scale after the MaxPool '{st.deferred.name}' turns the max into a min, "
            "which a2qhls cannot build exactly; put the BatchNormalization before the MaxPool"
        )
    if neg.size:
        # v = scale_j * acc + offset_j with scale_j < 0: negate channel j's weights and bias, so that the
        # accumulator -acc grows with v and the thresholds stay ">= T" (the sizing pass sizes what is computed)
        layer = st.layer
        sole_use = sole_reader(ctx, layer.outputs[0])
        if not isinstance(layer, (Dense, Conv)) or not sole_use or layer.negated_channels:
            raise A2QError(
                f"{ctx.where(node)}: a negative scale is supported only directly after a Conv/Gemm/MatMul "
                "whose output feeds this BatchNormalization alone (and is not a graph output)"
            )
        layer.weight = layer.weight.copy()
        layer.weight[neg] *= -1
        if layer.bias is not None:
            layer.bias = layer.bias.copy()
            layer.bias[neg] *= -1
        layer.negated_channels = tuple(int(j) for j in neg)
        scale = np.abs(scale)
    ctx.state[node.output[0]] = replace(st, scale=scale, offset=offset, relu=False)
