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
    """``(integers, Quant node, consuming layer node)`` of every ``Quant`` or ``BipolarQuant`` (binary
    weights, integers in {-1, +1}) on a constant weight in the QONNX graph, in graph order."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    consumers = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in proto.graph.node:
        if n.op_type in ("Quant", "BipolarQuant") and n.input[0] in inits and inits[n.input[0]].ndim >= 2:
            if n.op_type == "Quant":
                ints = np.round(inits[n.input[0]] / inits[n.input[1]]).astype(np.int64)
            else:  # binary weights (BNN-PYNQ): qonnx's binary_quant, sign with sign(0) = +1
                ints = np.where(inits[n.input[0]] / inits[n.input[1]] >= 0, 1, -1).astype(np.int64)
            user = (consumers.get(n.output[0]) or [None])[0]
            if user is not None and user.op_type == "Transpose":
                user = (consumers.get(user.output[0]) or [None])[0]
            out.append((ints, n, user))
    return out


def _names_in(node) -> list:
    return [node.name, *node.input, *node.output]


def _match_layers(names: list, order: list, in_file: list) -> list:
    """For each layer (by module name), the index into ``in_file`` of its weight Quant.

    By name first: the exporters name a weight Quant's tensors after the module (``conv1.weight_quant...``
    with dynamo, ``/conv1/weight_quant/...`` with TorchScript). Layers left over are matched by
    structure: the k-th of them in forward-call order to the k-th unclaimed weight Quant in graph order
    (exporters write nodes in the order the forward pass runs them). Never by equal weight arrays,
    which identical (e.g. all-zero) tensors of several layers share."""
    hit = [None] * len(names)
    claimed = set()
    texts = [_names_in(q) for _, q, _ in in_file]
    for k, nm in enumerate(names):
        keys = (f"{nm}.weight_quant", "/" + nm.replace(".", "/") + "/weight_quant/")
        found = [i for i, t in enumerate(texts) if i not in claimed and any(n.startswith(key) for n in t for key in keys)]
        if len(found) == 1:
            hit[k] = found[0]
            claimed.add(found[0])
    rest_layers = [k for k in order if hit[k] is None]
    rest_quants = [i for i in range(len(in_file)) if i not in claimed]
    for k, i in zip(rest_layers, rest_quants):
        hit[k] = i
    return hit


def _reset_export_state(model: torch.nn.Module) -> None:
    """Undo what an earlier, failed Brevitas export left on ``model`` (export mode on its proxies,
    QuantTensor creation switched off by the dynamo exporter, overridden activation caching), so a
    model object on which ``export_qonnx(..., dynamo=True)`` raised can be exported again."""
    from brevitas.export.manager import _restore_act_caching_mode, _set_proxy_export_mode, _set_recurrent_layer_export_mode

    if hasattr(model, "_brevitas_return_quant_tensor_state"):
        from brevitas.export.onnx.qonnx.manager import QONNXDynamoManager

        QONNXDynamoManager.set_export_mode(model, enabled=False)
    else:
        _set_proxy_export_mode(model, False)
        _set_recurrent_layer_export_mode(model, False)
    model.apply(_restore_act_caching_mode)


def export_brevitas_qonnx(model: torch.nn.Module, example_input: torch.Tensor, path: str, dynamo: bool = False) -> list:
    """``brevitas.export.export_qonnx`` whose weight Quants reproduce the trained integers exactly.

    Returns the integer weights of every quantized layer (``[out, in, ...]``), as trained, in
    ``model.modules()`` order. Each layer is found in the file by its name, or else by its place
    in the forward pass (see :func:`_match_layers`), and gets its quantizer kind and target width
    as metadata. Raises :class:`A2QError` when a layer's weight Quant does not give back its
    trained integers; the file is written only when every check passes (nothing is left at
    ``path`` otherwise). Works on a model on which an earlier Brevitas export failed.
    """
    import os
    import tempfile

    import onnx
    from brevitas.export import export_qonnx

    _reset_export_state(model)
    model.eval()
    named = [(n, m) for n, m in model.named_modules() if m in set(_weight_layers(model))]
    names = [n for n, _ in named]
    layers = [m for _, m in named]
    for m in layers:  # A2Q quantizers need their layer's cached input type to quantize outside forward()
        if hasattr(m.weight_quant, "cache_inference_quant_act"):
            m.weight_quant.cache_inference_quant_act = True
    calls = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp, k=k: calls.append(k)) for k, m in enumerate(layers)]
    d = os.path.dirname(os.path.abspath(str(path)))
    fd, tmp = tempfile.mkstemp(prefix=".a2qhls-export-", suffix=".onnx", dir=d)
    os.close(fd)
    try:
        with torch.no_grad():
            try:
                model(example_input)
            finally:
                for h in hooks:
                    h.remove()
            trained = [m.quant_weight() for m in layers]
            ints = [t.int().detach().cpu().numpy().astype(np.int64) for t in trained]
            saved = [m.weight.detach().clone() for m in layers]
            try:
                for m, t in zip(layers, trained):
                    m.weight.copy_(t.value.detach())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        export_qonnx(model, example_input, tmp, dynamo=dynamo)
                    except BaseException:
                        _reset_export_state(model)
                        raise
            finally:
                for m, w in zip(layers, saved):
                    m.weight.copy_(w)
        order = list(dict.fromkeys(calls)) + [k for k in range(len(layers)) if k not in calls]
        proto = onnx.load(tmp)  # external data (if any) loaded into the proto: the file saved below is self-contained
        in_file = _weight_quants(proto)
        hit = _match_layers(names, order, in_file)
        annotations, unmatched = {}, []
        for k, (m, q) in enumerate(zip(layers, ints)):
            i = hit[k]
            f, _, user = in_file[i] if i is not None else (None, None, None)
            if f is None or user is None or f.shape != q.shape or not np.array_equal(f, q):
                unmatched.append(names[k])
                continue
            kind, bits = _target(m)
            annotations[user.name] = {"quant": kind, "target_acc_bits": bits}
        if unmatched:
            raise A2QError(f"{path}: the exported weights of {', '.join(unmatched)} do not give back the trained integers")
        write_layers(proto, annotations)  # target widths for 'a2qhls inspect'
        onnx.save(proto, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is 0600; the export gets the permissions of a plain save
        os.replace(tmp, str(path))
    finally:  # the temporary file, and the external-data file the dynamo exporter may write beside it
        for junk in (tmp, tmp + ".data"):
            if os.path.exists(junk):
                os.remove(junk)
    return ints
