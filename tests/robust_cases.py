"""Hostile inputs shared by the robustness tests: a valid small QONNX MLP and named mutations of it.

``MODEL_CASES``: name -> (mutation of the ModelProto, a word the one-line error must contain).
Each mutation is one of the classes of issue 9 (sections 4, 5): invalid ONNX, numbers that are
not finite or do not fit, malformed metadata.
"""
from __future__ import annotations

import io
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import qonnx_graphs as qg

from a2qhls.cli import main


def valid_model(**kw) -> onnx.ModelProto:
    m, _, _ = qg.mlp(sizes=(12, 8, 5), **kw)
    return m


def run_cli(argv) -> tuple:
    """``a2qhls ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    so, se = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        rc = e.code if isinstance(e.code, int) else 2
    finally:
        sys.stdout, sys.stderr = so, se
    return rc, out.getvalue(), err.getvalue()


def listing(root) -> list:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, ds, fs in os.walk(root) for f in fs + ds)


def _init(m, name):
    return next(t for t in m.graph.initializer if t.name == name)


def _set(m, name, value, dtype=np.float32):
    t = _init(m, name)
    t.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))


def _node(m, name):
    return next(n for n in m.graph.node if n.name == name)


def _attr(node, key, value):
    keep = [a for a in node.attribute if a.name != key]
    del node.attribute[:]
    node.attribute.extend(keep)
    if value is not None:
        node.attribute.append(helper.make_attribute(key, value))


def _quant_inputs(m, qname):
    n = _node(m, qname)
    return n.input[1], n.input[2], n.input[3]


def _dup_initializer(m):
    m.graph.initializer.append(m.graph.initializer[0])


def _dup_output(m):
    nodes = [n for n in m.graph.node if n.op_type == "Relu"]
    nodes[0].output[0] = m.graph.node[0].output[0]


def _domain(op, dom):
    def f(m):
        n = next(n for n in m.graph.node if n.op_type == op)
        n.domain = dom
        m.opset_import.append(helper.make_opsetid(dom, 1)) if dom and dom not in [o.domain for o in m.opset_import] else None
    return f


def _opset(v):
    def f(m):
        for o in m.opset_import:
            if o.domain == "":
                o.version = v
    return f


def _int64_bias(m):
    a = numpy_helper.to_array(_init(m, "b0"))
    _set(m, "b0", np.round(a * 10), np.int64)


def _metadata(value):
    def f(m):
        m.metadata_props.add(key="a2qhls.layers", value=value)
    return f


def _no_output_node(m):
    n = next(n for n in m.graph.node if n.op_type == "Relu")
    del n.output[:]


def _no_graph_output(m):
    del m.graph.output[:]


def _rank3_weights(m):
    a = numpy_helper.to_array(_init(m, "w0"))
    _set(m, "w0", a.reshape(a.shape[0], a.shape[1], 1))
    _set(m, _quant_inputs(m, "w0_quant")[0], numpy_helper.to_array(_init(m, _quant_inputs(m, "w0_quant")[0])).reshape(-1, 1, 1))


def _huge_input(m):
    d = m.graph.input[0].type.tensor_type.shape.dim
    d[1].dim_value = 2**40


def _act_bits(b):
    def f(m):
        _set(m, _quant_inputs(m, "act0_quant")[2], b)
    return f


def _per_channel_wrong_length(m):
    _set(m, _quant_inputs(m, "w0_quant")[0], np.full((3, 1), 0.05))


def _gemm_attr(key, v):
    def f(m):
        _attr(_node(m, "layer0"), key, v)
    return f


def _quant_param(qname, k, v):
    def f(m):
        _set(m, _quant_inputs(m, qname)[k], v)
    return f


def _weight_value(name, v):
    def f(m):
        a = numpy_helper.to_array(_init(m, name)).copy()
        a.reshape(-1)[1] = v
        _set(m, name, a)
    return f


def _quant_attr(key, v):
    def f(m):
        _attr(_node(m, "w0_quant"), key, v)
    return f


def _cycle(m):
    r = next(n for n in m.graph.node if n.op_type == "Relu")
    r.input[0] = r.output[0]


def _deep_json(m):
    m.metadata_props.add(key="a2qhls.layers", value="[" * 100000 + "]" * 100000)


MODEL_CASES = {
    # section 4: invalid ONNX
    "duplicate_initializer": (_dup_initializer, "defined twice"),
    "duplicate_node_output": (_dup_output, "defined twice"),
    "quant_unknown_domain": (_domain("Quant", "evil.domain"), "domain 'evil.domain'"),
    "relu_unknown_domain": (_domain("Relu", "custom.ops"), "domain 'custom.ops'"),
    "opset_1": (_opset(1), "opset 1 "),
    "opset_99": (_opset(99), "opset 99"),
    "signed_missing": (_quant_attr("signed", None), "'signed' is missing"),
    "signed_yes": (_quant_attr("signed", "yes"), "signed='yes'"),
    "narrow_half": (_quant_attr("narrow", 0.5), "narrow=0.5"),
    "narrow_2": (_quant_attr("narrow", 2), "narrow=2"),
    "int64_bias": (_int64_bias, "INT64"),
    "cycle": (_cycle, "cycle"),
    # section 5: numbers and sizes
    "bits_nan": (_quant_param("w0_quant", 2, np.nan), "nan"),
    "bits_inf": (_quant_param("input_quant", 2, np.inf), "inf"),
    "bits_huge": (_quant_param("input_quant", 2, 1e30), "bit width"),
    "scale_nan": (_quant_param("w0_quant", 0, np.full((8, 1), np.nan)), "nan"),
    "scale_zero": (_quant_param("input_quant", 0, 0.0), "not positive"),
    "zeropoint_inf": (_quant_param("act0_quant", 1, -np.inf), "inf"),
    "zeropoint_1e30": (_quant_param("input_quant", 1, 1e30), "zero-point 1e+30"),
    "weight_nan": (_weight_value("w0", np.nan), "nan"),
    "weight_inf": (_weight_value("w1", -np.inf), "inf"),
    "bias_nan": (_weight_value("b0", np.nan), "nan"),
    "bias_inf": (_weight_value("b1", np.inf), "inf"),
    "gemm_alpha_nan": (_gemm_attr("alpha", float("nan")), "alpha=nan"),
    "gemm_beta_inf": (_gemm_attr("beta", float("inf")), "beta=inf"),
    "per_channel_scale_wrong_length": (_per_channel_wrong_length, "does not match"),
    "weights_rank3": (_rank3_weights, "only 2-D weights"),
    "node_without_outputs": (_no_output_node, "has no output"),
    "graph_without_output": (_no_graph_output, "no output"),
    "metadata_target_string": (_metadata('{"layer0": {"target_acc_bits": "12"}}'), "target_acc_bits '12'"),
    "metadata_target_inf": (_metadata('{"layer0": {"target_acc_bits": Infinity}}'), "Infinity"),
    "metadata_target_nan": (_metadata('{"layer0": {"target_acc_bits": NaN}}'), "NaN"),
    "metadata_target_list": (_metadata('{"layer0": {"target_acc_bits": [12]}}'), "[12]"),
    "metadata_target_float": (_metadata('{"layer0": {"target_acc_bits": 12.5}}'), "12.5"),
    "metadata_malformed": (_metadata('{"layer0": {"target_acc_bits": 12'), "not valid JSON"),
    "metadata_deep": (_deep_json, "nested deeper"),
    "input_2_40_features": (_huge_input, "above the limit"),
    "activation_32_bits": (_act_bits(32), "thresholds"),
}

# cases only ``build`` refuses (``inspect`` only sizes accumulators: it needs no threshold table)
BUILD_ONLY = {"activation_32_bits"}
