"""Export a Brevitas model to QONNX with the integer weights its layers trained with.

Brevitas 0.13.4's ``export_qonnx`` writes an A2Q/A2Q+ (decoupled, accumulator-aware)
layer as its raw float parameter ``v`` followed by a rounding ``Quant`` with the
post-clipping scale ``s``. That ``Quant`` gives back ``round(v / s)``, not the
integers ``q`` the layer used in training (round-to-zero of the normalized weight),
so the file loses the accumulator guarantee (A2QPLUS.md).

:func:`export_brevitas_qonnx` stores ``s * q`` in place of ``v`` for the duration of
the export (``round(s * q / s) == q``), restores the parameters afterwards, and checks
in the written file that every layer's weight ``Quant`` yields exactly ``q``. It also
records each layer's quantizer kind and target accumulator width in the file's
metadata (:mod:`a2qhls.metadata`), which ``a2qhls inspect`` reports and checks.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import A2QError
from ..metadata import write_layers

__all__ = ["export_brevitas_qonnx"]


def _weight_layers(model: torch.nn.Module) -> list:
    return [m for m in model.modules() if hasattr(m, "quant_weight") and hasattr(m, "weight_quant") and m.weight_quant.is_quant_enabled]


def _target(m) -> tuple:
    """(quantizer kind, target accumulator width) of a Brevitas layer; ("baseline", None) if unconstrained."""
    inj = m.weight_quant.quant_injector
    try:
        bits = int(inj.accumulator_bit_width)
    except Exception:  # not an accumulator-aware quantizer
        return "baseline", None
    zero_centred = "ZeroCenter" in getattr(getattr(inj, "per_channel_pre_norm", None), "__name__", "")
    return ("a2q+" if zero_centred else "a2q"), bits


def _weight_quants(proto) -> list:
    """``(integers, consuming layer node)`` of every Quant on a constant weight in the QONNX graph."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    consumers = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in proto.graph.node:
        if n.op_type == "Quant" and n.input[0] in inits and inits[n.input[0]].ndim >= 2:
            ints = np.round(inits[n.input[0]] / inits[n.input[1]]).astype(np.int64)
            user = (consumers.get(n.output[0]) or [None])[0]
            if user is not None and user.op_type == "Transpose":
                user = (consumers.get(user.output[0]) or [None])[0]
            out.append((ints, user))
    return out


def export_brevitas_qonnx(model: torch.nn.Module, example_input: torch.Tensor, path: str, dynamo: bool = False) -> list:
    """``brevitas.export.export_qonnx`` whose weight Quants reproduce the trained integers exactly.

    Returns the integer weights of every quantized layer (``[out, in, ...]``), as trained.
    """
    from brevitas.export import export_qonnx

    model.eval()
    layers = _weight_layers(model)
    for m in layers:  # A2Q quantizers need their layer's cached input type to quantize outside forward()
        if hasattr(m.weight_quant, "cache_inference_quant_act"):
            m.weight_quant.cache_inference_quant_act = True
    with torch.no_grad():
        model(example_input)
        trained = [m.quant_weight() for m in layers]
        ints = [t.int().detach().cpu().numpy().astype(np.int64) for t in trained]
        saved = [m.weight.detach().clone() for m in layers]
        try:
            for m, t in zip(layers, trained):
                m.weight.copy_(t.value.detach())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_qonnx(model, example_input, path, dynamo=dynamo)
        finally:
            for m, w in zip(layers, saved):
                m.weight.copy_(w)
    import onnx

    proto = onnx.load(path)
    in_file = _weight_quants(proto)
    annotations, unmatched = {}, []
    for m, q in zip(layers, ints):
        hit = next((user for f, user in in_file if f.shape == q.shape and np.array_equal(f, q)), None)
        if hit is None:
            unmatched.append(m)
            continue
        kind, bits = _target(m)
        annotations[hit.name] = {"quant": kind, "target_acc_bits": bits}
    if unmatched:
        names = [n for n, m in model.named_modules() if any(m is u for u in unmatched)]
        raise A2QError(f"{path}: the exported weights of {', '.join(names)} do not give back the trained integers")
    write_layers(proto, annotations)  # target widths for 'a2qhls inspect'
    onnx.save(proto, path)
    return ints
