"""Exact QONNX export of a quantized model.

The graph is written directly with ``onnx.helper`` (no tracing), walking the
model's modules in order (``nn.Sequential`` containers nest; a
:class:`~a2qhls.frontend.layers.QuantResidual` forks and joins):

* float graph input ``[batch, features]`` (MLP) or ``[batch, C, H, W]`` (CNN) ->
  ``Quant`` (the input quantizer);
* per weight layer: a float32 weight initializer holding exactly ``q * s`` ->
  ``Quant(scale=s, zeropt=0, bitwidth=M, signed, narrow, ROUND)`` with ``s`` of
  shape ``[out, 1]`` (Linear) or ``[out, 1, 1, 1]`` (Conv) -> ``Gemm(transB=1)``
  or ``Conv(kernel_shape, strides, pads, group, dilations=1)`` with the float
  bias (if any);
* ``QuantReLU`` -> ``Relu`` -> ``Quant``; ``QuantIdentity`` -> ``Quant``;
* ``nn.MaxPool2d`` -> ``MaxPool`` (on a quantized tensor; it stays quantized);
  ``nn.AvgPool2d`` -> ``AveragePool`` and ``nn.AdaptiveAvgPool2d(1)`` ->
  ``GlobalAveragePool`` (on a quantized tensor; the mean is a float that the
  next module, a ``QuantIdentity``, must re-quantize before any layer uses it);
* ``nn.PixelShuffle(r)`` -> ``DepthToSpace(blocksize=r, mode="CRD")`` (PyTorch's channel order);
* ``nn.Flatten()`` -> ``Flatten(axis=1)`` (nothing on a tensor that is already flat);
* ``QuantResidual(body, post)`` -> the body's nodes, ``Add(body_out, x)``, then
  ``post``'s ``[Relu ->] Quant``. Both addends must be quantized with scales in
  a small integer ratio (the body's last quantizer shares the input's: ratio 1),
  so the sum is exact on integers;
* the last node's output is the graph output (float logits after a final layer).

Because the stored weight is ``q * s`` in float32 and the Quant rounds to
nearest, ``round((q*s)/s) = q`` exactly: the file reproduces the integers the
layer was trained with, including the round-toward-zero of A2Q/A2Q+ (storing
the float weight and relying on the Quant's rounding would not).

Each Gemm/Conv's quantizer kind and target accumulator width are recorded in
the model-level metadata key ``"a2qhls.layers"`` (JSON keyed by node name),
which ``a2qhls inspect`` reads.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ..errors import A2QError
from ..metadata import LAYERS_KEY as METADATA_KEY, write_layers
from .layers import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, QuantResidual
from .quantizers import A2QWeightQuant, ActQuant

__all__ = ["export_qonnx", "flatten_modules", "METADATA_KEY", "QUANT_DOMAIN", "MAX_ADD_MULTIPLIER"]

QUANT_DOMAIN = "qonnx.custom_op.general"
OPSET = 13
MAX_ADD_MULTIPLIER = 1 << 12  # the largest scale-ratio term our front end lets a residual Add have (cheap adds; the importer aligns any ratio within 64 bits)

_SUPPORTED = ("QuantIdentity, QuantReLU, QuantLinear, QuantConv2d, QuantResidual, nn.MaxPool2d, nn.AvgPool2d, "
              "nn.AdaptiveAvgPool2d(1), nn.PixelShuffle, nn.Flatten, nn.Identity, nn.Dropout, nn.Sequential")


def flatten_modules(model: nn.Module) -> list:
    """The leaf modules of nested ``nn.Sequential`` containers, in order."""
    if isinstance(model, nn.Sequential):
        out = []
        for m in model:
            out.extend(flatten_modules(m))
        return out
    if hasattr(model, "layers") and isinstance(model.layers, nn.Sequential) and not isinstance(model, (QuantLinear,)):
        return flatten_modules(model.layers)
    return [model]


class _Graph:
    def __init__(self, batch):
        self.batch = batch
        self.nodes, self.inits, self.vinfo = [], [], []
        self.names: set = set()

    def fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def const(self, base: str, arr: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def tensor(self, base: str, shape: tuple) -> str:
        name = self.fresh(base)
        self.vinfo.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [self.batch, *shape]))
        return name

    def quant(self, x: str, scale: np.ndarray, bits: int, signed: bool, narrow: bool, out: str, base: str) -> None:
        s = self.const(f"{base}_scale", scale)
        z = self.const(f"{base}_zeropt", np.zeros((), np.float32))
        b = self.const(f"{base}_bitwidth", np.asarray(float(bits), np.float32))
        self.nodes.append(helper.make_node("Quant", [x, s, z, b], [out], name=self.fresh(base), domain=QUANT_DOMAIN,
                                           signed=int(signed), narrow=int(narrow), rounding_mode="ROUND"))


@torch.no_grad()
def _act_scale(q: ActQuant) -> np.ndarray:
    if not bool(q.initialized):
        raise A2QError("an activation quantizer was never calibrated (train or run the model in train mode first)")
    return np.asarray(q.scale().detach().cpu().numpy(), dtype=np.float32)


def _pair(v, what: str, idx: int) -> tuple:
    if isinstance(v, str):
        raise A2QError(f"layer {idx}: {what}='{v}' is not supported; give explicit integers")
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(a, int) and a >= 0 for a in t):
        raise A2QError(f"layer {idx}: {what} must be one or two non-negative integers, got {v!r}")
    return int(t[0]), int(t[1])


def _window_out(shape: tuple, kernel, stride, pads, idx: int) -> tuple:
    C, H, W = shape
    oh = (H + pads[0] + pads[2] - kernel[0]) // stride[0] + 1
    ow = (W + pads[1] + pads[3] - kernel[1]) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise A2QError(f"layer {idx}: a {kernel[0]}x{kernel[1]} window does not fit a {H}x{W} feature map")
    return oh, ow


def _type_str(q: ActQuant) -> str:
    return f"{q.bits}-bit {'signed' if q.signed else 'unsigned'}"


class _Exporter:
    """Walks the module tree and appends nodes; ``cur``/``shape``/``act`` describe the current tensor."""

    def __init__(self, batch, input_shape: tuple):
        self.g = _Graph(batch)
        self.g.names.add("global_in")
        self.cur = "global_in"
        self.shape = tuple(input_shape)  # per sample: (features,) or (C, H, W)
        self.act: ActQuant | None = None  # the quantizer that produced `cur`, None while float
        self.meta: dict = {}
        self.idx = 0  # leaf-module counter (node names)
        self.n_gemm = self.n_conv = self.n_add = 0

    # -- traversal
    def walk(self, m: nn.Module) -> None:
        if isinstance(m, nn.Sequential):
            for child in m:
                self.walk(child)
            return
        if isinstance(m, QuantResidual):
            self.residual(m)
            return
        if hasattr(m, "layers") and isinstance(m.layers, nn.Sequential) and not isinstance(m, QuantLinear):
            self.walk(m.layers)
            return
        idx = self.idx
        self.idx += 1
        self.leaf(m, idx)

    def leaf(self, m: nn.Module, idx: int) -> None:
        g = self.g
        if isinstance(m, (nn.Identity, nn.Dropout)):
            return
        if isinstance(m, nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                raise A2QError(f"layer {idx}: only nn.Flatten() (start_dim=1, end_dim=-1) is supported")
            if len(self.shape) > 1:
                shape = (int(np.prod(self.shape)),)
                out = g.tensor(f"Flatten_{idx}_out", shape)
                g.nodes.append(helper.make_node("Flatten", [self.cur], [out], name=g.fresh(f"Flatten_{idx}"), axis=1))
                self.cur, self.shape = out, shape
            return
        if isinstance(m, (QuantIdentity, QuantReLU)):
            q = m.quant
            if isinstance(m, QuantReLU):
                r = g.tensor(f"Relu_{idx}_out", self.shape)
                g.nodes.append(helper.make_node("Relu", [self.cur], [r], name=g.fresh(f"Relu_{idx}")))
                self.cur = r
            out = g.tensor(f"Quant_{idx}_out", self.shape)
            g.quant(self.cur, _act_scale(q), q.bits, q.signed, q.narrow, out, f"Quant_{idx}")
            self.cur, self.act = out, q
            return
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            self.pool(m, idx)
            return
        if isinstance(m, nn.PixelShuffle):
            self.pixel_shuffle(m, idx)
            return
        if isinstance(m, QuantLinear):
            self.linear(m, idx)
            return
        if isinstance(m, QuantConv2d):
            self.conv(m, idx)
            return
        raise A2QError(f"cannot export module {type(m).__name__} (supported: {_SUPPORTED})")

    # -- weight layers
    def _weights(self, m, idx: int):
        wq = m.weight_quant
        if wq is None:
            raise A2QError(f"layer {idx} has float weights; only quantized layers can be exported")
        if self.act is None:
            raise A2QError(f"layer {idx} is not fed by an activation quantizer (add QuantIdentity/QuantReLU before it)")
        if isinstance(wq, A2QWeightQuant) and (wq.input_bits != self.act.bits or wq.input_signed != self.act.signed):
            raise A2QError(f"layer {idx} was constrained for {wq.input_bits}-bit "
                           f"{'signed' if wq.input_signed else 'unsigned'} inputs but its input quantizer is "
                           f"{_type_str(self.act)}")
        q = m.int_weight().cpu().numpy().astype(np.float32).reshape(m.weight.shape)
        s = wq.scale().detach().cpu().numpy().astype(np.float32).reshape((-1,) + (1,) * (q.ndim - 1))
        w = (q * s).astype(np.float32)
        if not np.array_equal(np.round(w / s), q):  # cannot happen for |q| < 2^23; guards the invariant
            raise A2QError(f"layer {idx}: weights do not round-trip through their scale")
        return wq, w, s

    def _emit_layer(self, m, wq, w, s, op: str, name: str, attrs: dict, out_shape: tuple) -> None:
        g = self.g
        w_name = g.const(f"{name}_weight", w)
        wq_out = g.fresh(f"{name}_weight_quant")
        g.vinfo.append(helper.make_tensor_value_info(wq_out, TensorProto.FLOAT, list(w.shape)))
        g.quant(w_name, s, wq.bits, True, wq.narrow, wq_out, f"{name}_WeightQuant")
        ins = [self.cur, wq_out]
        if m.bias is not None:
            ins.append(g.const(f"{name}_bias", m.bias.detach().cpu().numpy()))
        out = g.tensor(f"{name}_out", out_shape)
        g.nodes.append(helper.make_node(op, ins, [out], name=name, **attrs))
        self.meta[name] = {
            "quant": wq.kind,
            "target_acc_bits": int(wq.acc_bits) if isinstance(wq, A2QWeightQuant) else None,
            "weight_bits": int(wq.bits),
            "input_bits": int(self.act.bits),
            "input_signed": bool(self.act.signed),
        }
        self.cur, self.shape, self.act = out, out_shape, None

    def linear(self, m: QuantLinear, idx: int) -> None:
        if len(self.shape) != 1:
            raise A2QError(f"layer {idx} (QuantLinear) receives a {'x'.join(map(str, self.shape))} feature map; "
                           "add nn.Flatten() before it")
        if m.in_features != self.shape[0]:
            raise A2QError(f"layer {idx} expects {m.in_features} inputs but receives {self.shape[0]}")
        wq, w, s = self._weights(m, idx)
        name = self.g.fresh(f"Gemm_{self.n_gemm}")
        self.n_gemm += 1
        self._emit_layer(m, wq, w, s, "Gemm", name, {"transB": 1}, (m.out_features,))

    def conv(self, m: QuantConv2d, idx: int) -> None:
        if len(self.shape) != 3:
            raise A2QError(f"layer {idx} (QuantConv2d) needs a [C, H, W] feature map, receives {list(self.shape)}")
        if m.in_channels != self.shape[0]:
            raise A2QError(f"layer {idx} expects {m.in_channels} input channels but receives {self.shape[0]}")
        stride = _pair(m.stride, "stride", idx)
        ph, pw = _pair(m.padding, "padding", idx)
        if min(stride) < 1:
            raise A2QError(f"layer {idx}: stride must be >= 1, got {m.stride!r}")
        pads = (ph, pw, ph, pw)
        oh, ow = _window_out(self.shape, m.kernel_size, stride, pads, idx)
        wq, w, s = self._weights(m, idx)
        name = self.g.fresh(f"Conv_{self.n_conv}")
        self.n_conv += 1
        attrs = {"kernel_shape": list(m.kernel_size), "strides": list(stride), "pads": list(pads),
                 "group": int(m.groups), "dilations": [1, 1]}
        self._emit_layer(m, wq, w, s, "Conv", name, attrs, (m.out_channels, oh, ow))

    # -- pooling
    def pool(self, m: nn.Module, idx: int) -> None:
        g = self.g
        what = type(m).__name__
        if len(self.shape) != 3:
            raise A2QError(f"layer {idx} ({what}) needs a [C, H, W] feature map, receives {list(self.shape)}")
        if self.act is None:
            raise A2QError(f"layer {idx} ({what}) must pool a quantized tensor (put it after QuantReLU/QuantIdentity)")
        C = self.shape[0]
        if isinstance(m, nn.AdaptiveAvgPool2d):
            if m.output_size not in (1, (1, 1), [1, 1]):
                raise A2QError(f"layer {idx}: only nn.AdaptiveAvgPool2d(1) (global average pooling) is supported")
            op, attrs, out_shape = "GlobalAveragePool", {}, (C, 1, 1)
        else:
            kernel = _pair(m.kernel_size, "kernel_size", idx)
            stride = _pair(m.stride if m.stride is not None else m.kernel_size, "stride", idx)
            ph, pw = _pair(m.padding, "padding", idx)
            pads = (ph, pw, ph, pw)
            if getattr(m, "ceil_mode", False):
                raise A2QError(f"layer {idx} ({what}): ceil_mode=True is not supported")
            attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": list(pads)}
            if isinstance(m, nn.MaxPool2d):
                if _pair(m.dilation, "dilation", idx) != (1, 1) or m.return_indices:
                    raise A2QError(f"layer {idx} (MaxPool2d): dilation and return_indices are not supported")
                op = "MaxPool"
            else:
                if m.divisor_override is not None:
                    raise A2QError(f"layer {idx} (AvgPool2d): divisor_override is not supported")
                op = "AveragePool"
                attrs["count_include_pad"] = int(bool(m.count_include_pad))
            out_shape = (C, *_window_out(self.shape, kernel, stride, pads, idx))
        out = g.tensor(f"{op}_{idx}_out", out_shape)
        g.nodes.append(helper.make_node(op, [self.cur], [out], name=g.fresh(f"{op}_{idx}"), **attrs))
        self.cur, self.shape = out, out_shape
        if op != "MaxPool":
            self.act = None  # a mean: re-quantize (QuantIdentity) before any layer uses it

    # -- reorder
    def pixel_shuffle(self, m: nn.PixelShuffle, idx: int) -> None:
        """``nn.PixelShuffle(r)`` is ONNX ``DepthToSpace(blocksize=r, mode="CRD")`` (a reorder: the
        tensor keeps its quantizer, or stays float after a layer)."""
        r = int(m.upscale_factor)
        if len(self.shape) != 3:
            raise A2QError(f"layer {idx} (PixelShuffle) needs a [C, H, W] feature map, receives {list(self.shape)}")
        C, H, W = self.shape
        if r < 1 or C % (r * r):
            raise A2QError(f"layer {idx} (PixelShuffle({r})): {C} channels are not divisible by {r * r}")
        out_shape = (C // (r * r), H * r, W * r)
        out = self.g.tensor(f"DepthToSpace_{idx}_out", out_shape)
        self.g.nodes.append(helper.make_node("DepthToSpace", [self.cur], [out], name=self.g.fresh(f"DepthToSpace_{idx}"),
                                             blocksize=r, mode="CRD"))
        self.cur, self.shape = out, out_shape

    # -- residual
    def residual(self, m: QuantResidual) -> None:
        g = self.g
        if self.act is None:
            raise A2QError("a QuantResidual block's input must be quantized (put it after QuantReLU/QuantIdentity)")
        x, x_shape, x_act = self.cur, self.shape, self.act
        self.walk(m.body)
        if self.act is None:
            raise A2QError("a QuantResidual body must end with a QuantReLU/QuantIdentity (best: one sharing the block "
                           "input's quantizer, QuantReLU(quant=prev.quant)) so the sum is exact on integers")
        if self.shape != x_shape:
            raise A2QError(f"a QuantResidual body maps {list(x_shape)} to {list(self.shape)}; it must keep the shape")
        sa, sb = float(_act_scale(self.act)), float(_act_scale(x_act))
        ratio = Fraction(sa) / Fraction(sb)
        if max(ratio.numerator, ratio.denominator) > MAX_ADD_MULTIPLIER:
            raise A2QError(f"a QuantResidual adds tensors with scales {sa:.6g} and {sb:.6g}, which have no small "
                           "integer ratio; end the body with a quantizer shared with the block input "
                           "(QuantReLU(quant=prev.quant))")
        name = g.fresh(f"Add_{self.n_add}")
        self.n_add += 1
        out = g.tensor(f"{name}_out", x_shape)
        g.nodes.append(helper.make_node("Add", [self.cur, x], [out], name=name))
        self.cur, self.act = out, None
        self.walk(m.post)


def export_qonnx(model: nn.Module, path: str | None, in_features, batch_size: int | None = None,
                 producer: str = "a2qhls") -> onnx.ModelProto:
    """Export ``model`` (an ``nn.Sequential`` of a2qhls layers) to QONNX at ``path``.

    ``in_features`` is the per-sample input shape: an int for an MLP's feature
    vector, or ``(C, H, W)`` for a CNN (graph input ``[batch, C, H, W]``). The batch
    dimension is the symbolic ``"batch"`` unless ``batch_size`` fixes it (qonnx's
    executor wants a concrete one).

    Supported modules: see the module docstring. Returns the ``ModelProto`` (also
    written when ``path`` is set).
    """
    shape = (int(in_features),) if isinstance(in_features, (int, np.integer)) else tuple(int(d) for d in in_features)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise A2QError(f"input shape must be (features,) or (C, H, W) with positive sizes, got {list(shape)}")
    ex = _Exporter(batch_size if batch_size is not None else "batch", shape)
    ex.walk(model)
    if ex.n_gemm + ex.n_conv == 0:
        raise A2QError("model has no QuantLinear/QuantConv2d layer to export")
    g = ex.g
    # the last produced tensor is the graph output
    g.vinfo = [v for v in g.vinfo if v.name != ex.cur]
    graph = helper.make_graph(
        g.nodes, "a2qhls_model",
        [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [g.batch, *shape])],
        [helper.make_tensor_value_info(ex.cur, TensorProto.FLOAT, [g.batch, *ex.shape])],
        initializer=g.inits, value_info=g.vinfo,
    )
    mp = helper.make_model(graph, producer_name=producer,
                           opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QUANT_DOMAIN, 1)])
    write_layers(mp, ex.meta)
    onnx.checker.check_model(mp)
    if path is not None:
        onnx.save(mp, path)
    return mp
