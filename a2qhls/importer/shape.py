"""Shape-only ops: ``Flatten``/``Reshape`` of the input or into a dense head, and ``Transpose``,
``Reshape``, ``Flatten``, ``Identity`` evaluated on constants."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import A2QError
from .context import AccState, Ctx, FloatInput, IntState, QConst, attr, const_array, int_shape

def on_reshape(ctx: Ctx, node) -> None:
    src, out = node.input[0], node.output[0]
    if src in ctx.consts:
        fold_const(ctx, node)
        return
    st = ctx.state.get(src)
    out_shape = ctx.shapes.get(out)
    if isinstance(st, FloatInput):
        feat = int(np.prod(st.shape))
        if out_shape is None or len(out_shape) != 2 or out_shape[1] != feat:
            raise A2QError(f"{ctx.where(node)}: only flattening the input to [batch, features] is supported "
                           f"(input of {feat} features per sample, output shape {list(out_shape) if out_shape else None})")
        ctx.state[out] = FloatInput((feat,), st.pre, True, st.pre_shape or st.shape)
        return
    if isinstance(st, IntState) and _keeps_batch(out_shape, ctx.shapes.get(src)):
        shape = int_shape(ctx, st.tensor)  # a DepthToSpace moved after its Quants has no tensor of its own
        # a pending Relu (elementwise) commutes with the flatten: the Quant after it applies it
        ctx.state[out] = IntState(st.tensor, flattened=len(shape) == 3 or st.flattened, relu=st.relu)
        return
    if isinstance(st, AccState) and _keeps_batch(out_shape, ctx.shapes.get(src)):
        # flattened as an IntState is
        ctx.state[out] = replace(st, flattened=len(ctx.tensors[st.layer.outputs[0]].shape) == 3 or st.flattened)
        return
    raise A2QError(f"{ctx.where(node)}: only a Flatten/Reshape to [batch, features] (every value of a sample in one "
                   f"row) is supported; output shape {list(out_shape) if out_shape is not None else None}")


def _keeps_batch(out_shape, in_shape) -> bool:
    """A Flatten/Reshape output ``[batch, features]`` holding each sample whole: ``features`` is the size of
    an input sample ``in_shape[1:]``, where the graph states both (not ``Flatten(axis=2)`` or
    ``Reshape([2, -1])``, which split samples)."""
    if out_shape is None:
        return True
    if len(out_shape) != 2:
        return False
    dims = [out_shape[1], *(in_shape[1:] if in_shape is not None else [None])]
    if not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
        return True  # a symbolic or unknown size: nothing to compare
    return int(out_shape[1]) == int(np.prod(dims[1:]))


# ops evaluated when all their inputs are constants: shape ops (keeping Quant'ed integers) and the
# float arithmetic exporters leave on constants (e.g. TensorNorm's sqrt(var + eps) as Add/Pow)
CONST_FOLDABLE = ("Transpose", "Reshape", "Flatten", "Identity", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt")
_ELEMENTWISE = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power, "Sqrt": np.sqrt}


def fold_const(ctx: Ctx, node) -> None:
    """Evaluate a shape-only op on constants (keeps Quant'ed integers), or an elementwise float op on
    float constants (in the inputs' float dtype, as ONNX computes it)."""
    src = ctx.consts[node.input[0]]
    out = node.output[0]
    if node.op_type in _ELEMENTWISE:
        args = [ctx.consts[i] for i in node.input]
        if any(isinstance(a, QConst) for a in args):
            raise A2QError(f"{ctx.where(node)}: {node.op_type} of quantized constants is not supported")
        args = [np.asarray(a) for a in args]
        if any(a.dtype.kind not in "fiu" for a in args) or any(a.size > 1 << 16 for a in args):
            raise A2QError(f"{ctx.where(node)}: {node.op_type} on constants is supported on small numeric constants only")
        with np.errstate(all="ignore"):
            try:
                r = _ELEMENTWISE[node.op_type](*args)
            except ValueError:
                raise A2QError(f"{ctx.where(node)}: the constants' shapes {[list(a.shape) for a in args]} do not broadcast") from None
        ctx.consts[out] = np.asarray(r).astype(args[0].dtype) if args[0].dtype.kind == "f" else np.asarray(r)
        return
    if node.op_type == "Identity":
        ctx.consts[out] = src
        return
    if node.op_type == "Transpose":
        perm = attr(node, "perm")
        ndim = (src.ints if isinstance(src, QConst) else np.asarray(src)).ndim
        if perm is not None and sorted(int(p) for p in perm) != list(range(ndim)):
            raise A2QError(f"{ctx.where(node)}: perm={list(perm)} is not a permutation of the {ndim} axes of '{node.input[0]}'")
        if isinstance(src, QConst):
            s = np.broadcast_to(np.asarray(src.scale), src.ints.shape)
            ctx.consts[out] = QConst(np.transpose(src.ints, perm), np.transpose(s, perm), src.dtype, np.transpose(src.value, perm))
        else:
            ctx.consts[out] = np.transpose(src, perm)
        return
    if node.op_type in ("Reshape", "Flatten"):
        if node.op_type == "Reshape":
            shape = const_array(ctx, node.input[1])
            if shape is None:
                raise A2QError(f"{ctx.where(node)}: non-constant shape")
            tgt = [int(d) for d in np.asarray(shape).reshape(-1)]
        else:
            axis = int(attr(node, "axis", 1))
            shp = (src.ints if isinstance(src, QConst) else np.asarray(src)).shape
            if not -len(shp) <= axis <= len(shp):
                raise A2QError(f"{ctx.where(node)}: axis={axis} is outside the {len(shp)} axes of '{node.input[0]}'")
            tgt = [int(np.prod(shp[:axis])), -1]
        try:
            if isinstance(src, QConst):
                s = np.broadcast_to(np.asarray(src.scale), src.ints.shape)
                ctx.consts[out] = QConst(src.ints.reshape(tgt), s.reshape(tgt), src.dtype, src.value.reshape(tgt))
            else:
                ctx.consts[out] = np.asarray(src).reshape(tgt)
        except ValueError:
            shp = (src.ints if isinstance(src, QConst) else np.asarray(src)).shape
            raise A2QError(f"{ctx.where(node)}: cannot reshape '{node.input[0]}' of shape {list(shp)} to {tgt}") from None
        return
    raise A2QError(f"{ctx.where(node)}: cannot fold this op on constants")
