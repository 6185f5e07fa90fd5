"""Exact QONNX export of a quantized model.

The graph is written directly with ``onnx.helper`` (no tracing):

* float graph input ``[batch, features]`` -> ``Quant`` (the input quantizer);
* per weight layer: a float32 weight initializer holding exactly ``q * s`` ->
  ``Quant(scale=s [out,1], zeropt=0, bitwidth=M, signed, narrow, ROUND)`` ->
  ``Gemm(transB=1)`` with the float bias (if any);
* ``QuantReLU`` -> ``Relu`` -> ``Quant``; ``QuantIdentity`` -> ``Quant``;
* the last layer's output is float.

Because the stored weight is ``q * s`` in float32 and the Quant rounds to
nearest, ``round((q*s)/s) = q`` exactly: the file reproduces the integers the
layer was trained with, including the round-toward-zero of A2Q/A2Q+ (storing
the float weight and relying on the Quant's rounding would not).

Each Gemm's quantizer kind and target accumulator width are recorded in the
model-level metadata key ``"a2qhls.layers"`` (JSON keyed by node name), which
``a2qhls inspect`` reads.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ..errors import A2QError
from ..metadata import LAYERS_KEY as METADATA_KEY, write_layers
from .layers import QuantIdentity, QuantLinear, QuantReLU, QuantConv2d
from .quantizers import A2QWeightQuant, ActQuant

__all__ = ["export_qonnx", "flatten_modules", "METADATA_KEY", "QUANT_DOMAIN"]

QUANT_DOMAIN = "qonnx.custom_op.general"
OPSET = 13


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

    def tensor(self, base: str, channels: int) -> str:
        name = self.fresh(base)
        self.vinfo.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [self.batch, channels]))
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


def export_qonnx(model: nn.Module, path: str | None, in_features: int, batch_size: int | None = None,
                 producer: str = "a2qhls") -> onnx.ModelProto:
    """Export ``model`` (an ``nn.Sequential`` of a2qhls layers) to QONNX at ``path``.

    The batch dimension is the symbolic ``"batch"`` unless ``batch_size`` fixes it
    (qonnx's executor wants a concrete one).

    Supported: ``QuantIdentity``, ``QuantLinear``, ``QuantReLU``, ``nn.Flatten``,
    ``nn.Identity``. Returns the ``ModelProto`` (also written when ``path`` is set).
    """
    mods = flatten_modules(model)
    g = _Graph(batch_size if batch_size is not None else "batch")
    g.names.add("global_in")
    cur = "global_in"
    channels = int(in_features)
    act_in: ActQuant | None = None  # quantizer that produced `cur`, None while float
    meta = {}
    n_gemm = 0
    for idx, m in enumerate(mods):
        if isinstance(m, (nn.Flatten, nn.Identity)):
            continue
        if isinstance(m, (QuantIdentity, QuantReLU)):
            q = m.quant
            if isinstance(m, QuantReLU):
                r = g.tensor(f"Relu_{idx}_out", channels)
                g.nodes.append(helper.make_node("Relu", [cur], [r], name=g.fresh(f"Relu_{idx}")))
                cur = r
            out = g.tensor(f"Quant_{idx}_out", channels)
            g.quant(cur, _act_scale(q), q.bits, q.signed, q.narrow, out, f"Quant_{idx}")
            cur, act_in = out, q
            continue
        if isinstance(m, QuantConv2d):
            raise A2QError("QONNX export of QuantConv2d is not supported yet (MLPs only)")
        if not isinstance(m, QuantLinear):
            raise A2QError(f"cannot export module {type(m).__name__} (supported: QuantIdentity, QuantLinear, "
                           "QuantReLU, Flatten)")
        if m.in_features != channels:
            raise A2QError(f"layer {idx} expects {m.in_features} inputs but receives {channels}")
        wq = m.weight_quant
        if wq is None:
            raise A2QError(f"layer {idx} has float weights; only quantized layers can be exported")
        if act_in is None:
            raise A2QError(f"layer {idx} is not fed by an activation quantizer (add QuantIdentity/QuantReLU before it)")
        if isinstance(wq, A2QWeightQuant) and (wq.input_bits != act_in.bits or wq.input_signed != act_in.signed):
            raise A2QError(f"layer {idx} was constrained for {wq.input_bits}-bit "
                           f"{'signed' if wq.input_signed else 'unsigned'} inputs but its input quantizer is "
                           f"{act_in.bits}-bit {'signed' if act_in.signed else 'unsigned'}")
        q = m.int_weight().cpu().numpy().astype(np.float32)  # [out, in]
        s = wq.scale().detach().cpu().numpy().astype(np.float32)  # [out, 1]
        w = (q * s).astype(np.float32)
        if not np.array_equal(np.round(w / s), q):  # cannot happen for |q| < 2^23; guards the invariant
            raise A2QError(f"layer {idx}: weights do not round-trip through their scale")
        name = g.fresh(f"Gemm_{n_gemm}")
        n_gemm += 1
        w_name = g.const(f"{name}_weight", w)
        wq_out = g.fresh(f"{name}_weight_quant")
        g.vinfo.append(helper.make_tensor_value_info(wq_out, TensorProto.FLOAT, list(w.shape)))
        g.quant(w_name, s, wq.bits, True, wq.narrow, wq_out, f"{name}_WeightQuant")
        ins = [cur, wq_out]
        if m.bias is not None:
            ins.append(g.const(f"{name}_bias", m.bias.detach().cpu().numpy()))
        out = g.tensor(f"{name}_out", m.out_features)
        g.nodes.append(helper.make_node("Gemm", ins, [out], name=name, transB=1))
        meta[name] = {
            "quant": wq.kind,
            "target_acc_bits": int(wq.acc_bits) if isinstance(wq, A2QWeightQuant) else None,
            "weight_bits": int(wq.bits),
            "input_bits": int(act_in.bits),
            "input_signed": bool(act_in.signed),
        }
        cur, channels, act_in = out, m.out_features, None
    if n_gemm == 0:
        raise A2QError("model has no QuantLinear layer to export")
    # the last produced tensor is the graph output
    g.vinfo = [v for v in g.vinfo if v.name != cur]
    graph = helper.make_graph(
        g.nodes, "a2qhls_model",
        [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [g.batch, int(in_features)])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [g.batch, channels])],
        initializer=g.inits, value_info=g.vinfo,
    )
    mp = helper.make_model(graph, producer_name=producer,
                           opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QUANT_DOMAIN, 1)])
    write_layers(mp, meta)
    onnx.checker.check_model(mp)
    if path is not None:
        onnx.save(mp, path)
    return mp
