"""``DepthToSpace`` (DCR and CRD; PyTorch's ``PixelShuffle`` exports as CRD) ->
:class:`~a2qhls.ir.DepthToSpace`, a pure reorder of an integer tensor or of a layer's accumulator."""
from __future__ import annotations

import numpy as np

from ..errors import A2QError
from ..ir import DEPTH_TO_SPACE_MODES, DepthToSpace, TensorInfo
from .context import AccState, Ctx, IntState, attr, finalize_acc, no_pending_relu


def on_depth_to_space(ctx: Ctx, node) -> None:
    src = node.input[0]
    st = ctx.state.get(src)
    if isinstance(st, AccState):
        if st.relu:
            raise A2QError(f"{ctx.where(node)}: a Relu of an accumulator must be followed by a Quant before DepthToSpace")
        if st.deferred is not None:  # the MaxPool waits for the Requant, which the reorder would come before
            raise A2QError(f"{ctx.where(node)}: DepthToSpace of the MaxPool '{st.deferred.name}' of a layer output is not "
                           "supported; supported: an activation Quant between the MaxPool and the DepthToSpace")
        finalize_acc(ctx, ctx.where(node), st)
        x = ctx.tensors[st.layer.outputs[0]]
    elif isinstance(st, IntState):
        no_pending_relu(ctx, node, st)
        x = ctx.tensors[st.tensor]
    else:
        raise A2QError(f"{ctx.where(node)}: DepthToSpace is supported on a quantized tensor or a layer output only")
    if len(x.shape) != 3 or st.flattened:
        raise A2QError(f"{ctx.where(node)}: DepthToSpace needs a [C, H, W] feature map, got {list(x.shape)}")
    r = int(attr(node, "blocksize", 0))
    mode = str(attr(node, "mode", "DCR")).upper()
    if mode not in DEPTH_TO_SPACE_MODES:
        raise A2QError(f"{ctx.where(node)}: mode '{mode}' is not supported (supported: DCR, CRD)")
    H, W, C = x.shape
    if r < 1 or C % (r * r):
        raise A2QError(f"{ctx.where(node)}: blocksize {r} does not divide the {C} channels into blocks of {r}x{r}")
    op = DepthToSpace(node.name, [x.name], [node.output[0]], r, mode, tuple(x.shape))
    src_ch = op.sources()  # [r, r, C']
    scale = np.broadcast_to(np.asarray(x.scale, dtype=np.float64).reshape(-1), (C,))
    offset = np.broadcast_to(np.asarray(x.offset, dtype=np.float64).reshape(-1), (C,))
    s, o = scale[src_ch], offset[src_ch]
    if (s == s[:1, :1]).all() and (o == o[:1, :1]).all():
        out_scale, out_offset = s[0, 0].copy(), o[0, 0].copy()  # per channel, as every tensor
    else:
        # the r*r channels that meet in one output channel have different scales (per-channel
        # weight scales of the layer before): the real value's mapping has the tensor's full shape
        shape = (H * r, W * r, C // (r * r))
        out_scale = np.tile(s[None, :, None], (H, 1, W, 1, 1)).reshape(shape)
        out_offset = np.tile(o[None, :, None], (H, 1, W, 1, 1)).reshape(shape)
    out = node.output[0]
    ctx.ops.append(op)
    ctx.tensors[out] = TensorInfo(out, op.out_shape, x.dtype, out_scale, out_offset)
    ctx.state[out] = IntState(out)
