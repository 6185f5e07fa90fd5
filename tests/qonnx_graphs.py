"""Small QONNX graphs built with onnx.helper, the way Brevitas and our front end lay them out."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QDOMAIN = "qonnx.custom_op.general"


class GraphBuilder:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, value, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op, inputs, attrs=None, domain="", name=None):
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or f"{op}_{self.n}", domain=domain, **(attrs or {})))
        return out

    def quant(self, x, scale, zp, bits, signed, narrow, rounding="ROUND", name=None):
        k = self.n + 1
        s = self.const(f"q{k}_scale", scale)
        z = self.const(f"q{k}_zp", zp)
        b = self.const(f"q{k}_bits", bits)
        return self.node("Quant", [x, s, z, b], {"signed": int(signed), "narrow": int(narrow), "rounding_mode": rounding}, QDOMAIN, name)

    def model(self, inp, out, in_shape, out_dim, batch="batch", metadata=None):
        x = helper.make_tensor_value_info(inp, TensorProto.FLOAT, [batch, *in_shape])
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, out_dim])
        g = helper.make_graph(self.nodes, "test_mlp", [x], [y], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOMAIN, 1)])
        for k, v in (metadata or {}).items():
            m.metadata_props.add(key=k, value=v)
        return m


def mlp(
    sizes=(12, 8, 5),
    style="gemm",  # gemm (transB=1) | gemm_nt (transB=0) | matmul_transpose | matmul
    bias="float",  # none | float | int
    per_channel=True,
    in_bits=8,
    in_signed=True,
    in_narrow=False,
    in_zp=0,
    act_bits=4,
    act_signed=False,
    act_narrow=False,
    w_bits=4,
    seed=0,
    batch="batch",
    flatten_input=None,  # e.g. (3, 4): input [batch, 3, 4] flattened to 12
    metadata=None,
):
    """Returns (onnx ModelProto, list of per-layer integer weights [C, K], list of integer biases or None)."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    wmax = (1 << (w_bits - 1)) - 1
    in_scale = 0.05
    x = "x"
    if flatten_input is not None:
        x = g.node("Flatten", [x], {"axis": 1})
    x = g.quant(x, in_scale, in_zp, in_bits, in_signed, in_narrow, name="input_quant")
    s_in = in_scale
    ints_all, bias_all = [], []
    for li, (k, c) in enumerate(zip(sizes[:-1], sizes[1:])):
        ints = rng.integers(-wmax, wmax + 1, size=(c, k))
        ws = rng.uniform(0.01, 0.1, size=(c, 1)) if per_channel else np.full((1, 1), 0.05)
        ws = ws.astype(np.float32)
        # float weights that round (half to even) back to exactly these integers
        wf = ((ints + rng.uniform(-0.4, 0.4, size=ints.shape)) * ws).astype(np.float32)
        wname = g.const(f"w{li}", wf)
        scale = ws if per_channel else ws.reshape(())
        wq = g.quant(wname, scale, 0, w_bits, True, True, name=f"w{li}_quant")
        bint = None
        bname = None
        if bias == "float":
            bname = g.const(f"b{li}", rng.uniform(-0.5, 0.5, size=c))
        elif bias == "int":
            bint = rng.integers(-300, 300, size=c)
            bscale = (s_in * ws.reshape(-1)).astype(np.float32) if per_channel else np.float32(s_in * float(ws.reshape(-1)[0]))
            braw = g.const(f"b{li}", bint * np.broadcast_to(bscale, (c,)))
            bname = g.quant(braw, bscale, 0, 24, True, False, name=f"b{li}_quant")
        lname = f"layer{li}"
        if style == "gemm":
            ins = [x, wq] + ([bname] if bname else [])
            y = g.node("Gemm", ins, {"transB": 1}, name=lname)
        elif style == "gemm_nt":
            wt = g.node("Transpose", [wq], {"perm": [1, 0]})
            ins = [x, wt] + ([bname] if bname else [])
            y = g.node("Gemm", ins, {"transB": 0}, name=lname)
        else:
            wt = g.node("Transpose", [wq], {"perm": [1, 0]})
            y = g.node("MatMul", [x, wt], name=lname)
            if bname:
                y = g.node("Add", [y, bname])
        ints_all.append(ints)
        bias_all.append(bint)
        if li < len(sizes) - 2:
            y = g.node("Relu", [y])
            a_scale = 0.1
            y = g.quant(y, a_scale, 0, act_bits, act_signed, act_narrow, name=f"act{li}_quant")
            s_in = a_scale
        x = y
    in_shape = list(flatten_input) if flatten_input is not None else [sizes[0]]
    return g.model("x", x, in_shape, sizes[-1], batch=batch, metadata=metadata), ints_all, bias_all


def save(model, path) -> str:
    onnx.save(model, str(path))
    return str(path)
