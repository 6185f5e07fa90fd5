"""``--input-quant TYPE:SCALE[:ZERO_POINT]``: declare the integer type of a graph input that the file
feeds to a layer without a quantizer (Brevitas's CIFAR ResNet18 assumes 8-bit images).

The declaration becomes a QONNX ``Quant`` node on the graph input (rounding half to even, not
narrow), inserted into the in-memory graph before import, so the importer, the sizing pass and
co-simulation's QONNX reference all see the same input quantizer. The build records the
declaration in its summary (``input_quant``) and ``cosim`` re-applies it to the project's copy.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import A2QError

QDOMAIN = "qonnx.custom_op.general"
_SPEC = re.compile(r"^(u?)int(\d+):([^:]+)(?::([+-]?\d+))?$")


def parse_input_quant(spec: str) -> tuple:
    """``"uint8:0.00392"`` -> ``(bits, signed, scale, zero_point)``; raises :class:`A2QError` when malformed."""
    m = _SPEC.match(str(spec).strip())
    if not m:
        raise A2QError(f"--input-quant '{spec}': expected TYPE:SCALE[:ZERO_POINT] with TYPE intN or uintN, e.g. uint8:0.00392")
    bits = int(m.group(2))
    signed = m.group(1) != "u"
    try:
        scale = float(m.group(3))
    except ValueError:
        raise A2QError(f"--input-quant '{spec}': SCALE '{m.group(3)}' is not a number") from None
    if not 1 <= bits <= 24 or (signed and bits < 2):
        raise A2QError(f"--input-quant '{spec}': supported types are uint1..uint24 and int2..int24")
    if not np.isfinite(scale) or scale <= 0 or not np.isfinite(np.float32(scale)) or np.float32(scale) <= 0:
        raise A2QError(f"--input-quant '{spec}': SCALE must be a positive finite float32 number")
    return bits, signed, float(np.float32(scale)), int(m.group(4) or 0)


def insert_input_quant(proto, spec: str, path: str):
    """A copy of ``proto`` with a ``Quant`` (the declared type) on its one dynamic graph input."""
    from onnx import helper, numpy_helper

    bits, signed, scale, zp = parse_input_quant(spec)
    p = proto.__deepcopy__()
    g = p.graph
    inits = {t.name for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise A2QError(f"{path}: --input-quant needs exactly one graph input, found {len(inputs)}")
    x = inputs[0]
    readers = [n for n in g.node if x in n.input]
    if any(n.op_type in ("Quant", "QuantizeLinear") for n in readers):
        raise A2QError(f"{path}: the input '{x}' already has a quantizer; --input-quant is for an input that feeds a layer without one")
    q = f"{x}__a2qhls_input_quant"
    names = [f"{q}_{k}" for k in ("scale", "zeropt", "bitwidth")]
    for nm, v in zip(names, (scale, zp, bits)):
        g.initializer.append(numpy_helper.from_array(np.asarray(v, dtype=np.float32), nm))
    for n in readers:
        for i, name in enumerate(n.input):
            if name == x:
                n.input[i] = q
    g.node.insert(0, helper.make_node("Quant", [x, *names], [q], name="a2qhls_input_quant", domain=QDOMAIN,
                                      signed=int(signed), narrow=0, rounding_mode="ROUND"))
    if not any(o.domain == QDOMAIN for o in p.opset_import):
        p.opset_import.append(helper.make_opsetid(QDOMAIN, 1))
    return p
