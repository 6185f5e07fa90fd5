"""QCDQ graphs (``QuantizeLinear`` -> [``Clip``] -> ``DequantizeLinear``, as Brevitas's
``export_onnx_qcdq`` writes them) -> QONNX ``Quant`` nodes, with qonnx's own ``QCDQToQuant``.

The rewrite keeps every tensor name (a fused ``Quant`` writes the ``DequantizeLinear``'s output),
so the original file stays the reference that co-simulation executes. What the transformation
cannot fuse (a lone ``QuantizeLinear``, non-constant scales or clip bounds) is refused in one line
that names the export that writes QONNX directly.
"""
from __future__ import annotations

from ..errors import A2QError

QCDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def has_qcdq(proto) -> bool:
    return any(n.op_type in QCDQ_OPS for n in proto.graph.node)


def qcdq_to_quant(proto, path: str):
    """Return ``proto`` with its QuantizeLinear/Clip/DequantizeLinear chains fused into ``Quant`` nodes.

    Raises :class:`A2QError` when a QCDQ node is left over after qonnx's ``QCDQToQuant``.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant

    hint = "export the model with brevitas.export.export_qonnx (QONNX Quant nodes) instead of export_onnx_qcdq"
    try:
        proto = proto.__deepcopy__()
        fuse_constant_clip_dq(proto)
        mw = ModelWrapper(proto)
        mw = mw.transform(InferShapes()).transform(QCDQToQuant())
    except Exception as e:
        raise A2QError(f"{path}: could not convert QuantizeLinear/DequantizeLinear to Quant nodes ({type(e).__name__}: {e}); {hint}") from None
    left = [n for n in mw.graph.node if n.op_type in QCDQ_OPS]
    if left:
        n = left[0]
        raise A2QError(f"{path}: node '{n.name}' ({n.op_type}) is not part of a QuantizeLinear -> [Clip ->] DequantizeLinear chain "
                       f"with constant scale and zero-point that qonnx's QCDQToQuant can fuse; {hint}")
    return mw.model


def fuse_constant_clip_dq(proto) -> None:
    """``int initializer -> Clip(const, const) -> DequantizeLinear`` (TorchScript's QCDQ weights, the
    QuantizeLinear already folded) -> one ``Quant`` of the dequantized float weight, in place.

    The Quant's bit width, signedness and narrowness come from the clip range (as qonnx's
    ``QCDQToQuant`` derives them), so ``Quant`` gives back exactly the clipped integers."""
    import numpy as np
    from onnx import helper, numpy_helper
    from qonnx.transformation.qcdq_to_qonnx import extract_elem_type

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        clip = producer.get(dq.input[0])
        if clip is None or clip.op_type != "Clip" or len(clip.input) != 3 or not all(i in inits for i in clip.input):
            continue
        if len(dq.input) < 3 or not all(i in inits for i in dq.input[1:3]) or any(a.name == "axis" for a in dq.attribute):
            continue
        q, lo, hi = (numpy_helper.to_array(inits[i]) for i in clip.input)
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
        zp = numpy_helper.to_array(inits[dq.input[2]])
        bits, signed, narrow = extract_elem_type(inits[clip.input[0]].data_type, (lo, hi))
        ints = np.clip(q, lo, hi).astype(np.int64)
        value = ((ints - zp.astype(np.int64)) * scale).astype(np.float32)
        base = dq.output[0]
        names = [f"{base}__a2qhls_{k}" for k in ("w", "scale", "zp", "bits")]
        for nm, arr in zip(names, (value, scale, zp.astype(np.float32), np.asarray(bits, dtype=np.float32))):
            g.initializer.append(numpy_helper.from_array(np.asarray(arr), nm))
        quant = helper.make_node("Quant", names, [base], name=dq.name, domain="qonnx.custom_op.general",
                                 signed=int(signed), narrow=int(narrow), rounding_mode="ROUND")
        idx = list(g.node).index(dq)
        g.node.insert(idx, quant)
        g.node.remove(dq)
        if not any(clip.output[0] in n.input for n in g.node):
            g.node.remove(clip)
