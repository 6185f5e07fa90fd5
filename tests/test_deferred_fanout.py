"""An op the importer moves past a layer's activation (a MaxPool or DepthToSpace of the accumulator, which
commutes with the elementwise, monotone activation) when several Quants read the pooled / reordered
accumulator, through Relu, Identity or directly: each Quant gets its own Requant and its own copy of the
op, and every graph output equals qonnx's executor's. When something other than a Quant reads it (a graph
output), a one-line error names the node. (``Conv -> DepthToSpace -> Relu -> {Identity -> Quant, Quant}``
used to raise a KeyError; with a MaxPool the two Quants shared one pool and the model lost an output.)"""
import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from a2qhls import load_qonnx
from a2qhls.errors import A2QError
from a2qhls.ir import DepthToSpace, Pool, Requant
from a2qhls.sim import onnx_layout, simulate, to_real

QD = "qonnx.custom_op.general"
C, H, W = 8, 4, 4


def _quant(x, s, y, bits="b4", signed=0):
    return helper.make_node("Quant", [x, s, "z", bits], [y], domain=QD, signed=signed, narrow=0, rounding_mode="ROUND")


# readers of the deferred op's output "d": (nodes, graph outputs); "s_pc" is a per-channel scale (2 channels
# after DepthToSpace, 8 otherwise)
FANS = {
    "relu_identity_quant+quant": ([helper.make_node("Relu", ["d"], ["r"]), helper.make_node("Identity", ["r"], ["i"]),
                                   _quant("i", "s_out", "y"), _quant("r", "s_pc", "y2", "b8")], ["y", "y2"]),
    "quant+quant": ([_quant("d", "s_out", "y", signed=1), _quant("d", "s_pc", "y2", signed=1)], ["y", "y2"]),
    "relu_quant+quant": ([helper.make_node("Relu", ["d"], ["r"]), _quant("r", "s_out", "y"),
                          _quant("d", "s_out", "y2", "b8", signed=1)], ["y", "y2"]),
    "identity_chain+quant": ([helper.make_node("Identity", ["d"], ["i1"]), helper.make_node("Identity", ["i1"], ["i2"]),
                              _quant("i2", "s_out", "y", signed=1), _quant("i1", "s_pc", "y2", signed=1)], ["y", "y2"]),
    "quant+bipolar": ([_quant("d", "s_out", "y", signed=1),
                       helper.make_node("BipolarQuant", ["d", "s_out"], ["y2"], domain=QD)], ["y", "y2"]),
    # the second output is flattened ([1, C*H*W], "yf" in the name: see _model)
    "quant+flatten_quant": ([_quant("d", "s_out", "y", signed=1), helper.make_node("Flatten", ["d"], ["f"]),
                             _quant("f", "s_out", "yf2", "b8", signed=1)], ["y", "yf2"]),
    "relu_quant+identity_flatten_quant": ([helper.make_node("Relu", ["d"], ["r"]), _quant("r", "s_out", "y"),
                                           helper.make_node("Identity", ["d"], ["i"]), helper.make_node("Flatten", ["i"], ["f"]),
                                           _quant("f", "s_out", "yf2", signed=1)], ["y", "yf2"]),
}


def _model(deferred, readers, outs):
    """Quant(input [1, 2, 4, 4]) -> Conv 1x1 (8 channels, per-channel weight scales) -> ``deferred`` -> readers."""
    rng = np.random.default_rng(0)
    co = {"DepthToSpace": C // 4, "MaxPool": C, None: C}[deferred]
    shape = {"DepthToSpace": [1, co, 2 * H, 2 * W], "MaxPool": [1, co, H // 2, W // 2], None: [1, co, H, W]}[deferred]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0), ("s_out", 0.25),
        ("w", rng.integers(-7, 8, size=(C, 2, 1, 1)) * 0.5), ("s_w", (np.arange(C) % 3 + 1).reshape(C, 1, 1, 1) * 0.25),
        ("s_pc", (np.arange(co) % 2 + 1).reshape(1, co, 1, 1) * 0.25)]]
    nodes = [_quant("x", "s_in", "xq", "b8"),
             helper.make_node("Quant", ["w", "s_w", "z", "b4"], ["wq"], domain=QD, signed=1, narrow=1, rounding_mode="ROUND"),
             helper.make_node("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1])]
    if deferred == "DepthToSpace":
        nodes.append(helper.make_node("DepthToSpace", ["acc"], ["d"], blocksize=2, mode="CRD"))
    elif deferred == "MaxPool":
        nodes.append(helper.make_node("MaxPool", ["acc"], ["d"], kernel_shape=[2, 2], strides=[2, 2]))
    else:
        nodes.append(helper.make_node("Identity", ["acc"], ["d"]))
    out_shape = {o: [1, int(np.prod(shape[1:]))] if "yf" in o else shape for o in outs}  # "yf...": a flattened output
    g = helper.make_graph(nodes + readers, "fanout", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, H, W])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, out_shape[o]) for o in outs], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])


def _qonnx(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    return execute_onnx(ModelWrapper(path).transform(InferShapes()), {"x": x})


@pytest.mark.parametrize("fan", sorted(FANS))
@pytest.mark.parametrize("deferred", ["DepthToSpace", "MaxPool", None])
def test_quants_reading_a_deferred_op_each_get_their_own(tmp_path, deferred, fan):
    readers, outs = FANS[fan]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(deferred, readers, outs), path)
    m = load_qonnx(path)
    names = [op.name for op in m.ops]
    assert len(names) == len(set(names))
    kind = {"DepthToSpace": DepthToSpace, "MaxPool": Pool, None: type(None)}[deferred]
    requants = [op for op in m.ops if isinstance(op, Requant)]
    assert len(requants) == 2 and all(op.inputs == ["acc"] for op in requants)
    if deferred is not None:  # each Requant feeds its own copy of the pool / reorder, which writes that output
        moved = [op for op in m.ops if isinstance(op, kind)]
        assert len(moved) == 2
        assert sorted(op.inputs[0] for op in moved) == sorted(op.outputs[0] for op in requants)
        assert sorted(op.outputs[0] for op in moved) == sorted(outs)
    x = np.random.default_rng(1).uniform(0, 2, size=(1, 2, H, W)).astype(np.float32)
    ref = _qonnx(path, x)
    got = simulate(m, x)
    assert m.output_names == outs
    for k, (t, name) in enumerate(zip(m.outputs, m.output_names)):
        real = onnx_layout(m, t, to_real(m, t, np.asarray(got[t])), output=k)
        np.testing.assert_allclose(real, ref[name], rtol=0, atol=1e-6)


def _orders(nodes):
    """Every order of ``nodes`` in which each node comes after the nodes writing its inputs (a sorted graph)."""
    for perm in itertools.permutations(nodes):
        written = set()
        ok = True
        for n in perm:
            ok = ok and all(i in written for i in n.input if any(i in o.output for o in nodes))
            written.update(n.output)
        if ok:
            yield list(perm)


@pytest.mark.parametrize("fan", sorted(FANS))
@pytest.mark.parametrize("deferred", ["DepthToSpace", "MaxPool"])
def test_every_order_of_the_readers_imports_the_same(tmp_path, deferred, fan):
    """The readers of the deferred op's output listed in every sorted order (e.g. the plain Quant before
    ``Flatten -> Quant``, which raised KeyError 'd': the first Quant takes the reorder back and the Flatten
    read its tensor): the same ops, and every output equals qonnx's executor's."""
    readers, outs = FANS[fan]
    x = np.random.default_rng(1).uniform(0, 2, size=(1, 2, H, W)).astype(np.float32)
    kinds = None
    for i, order in enumerate(_orders(readers)):
        path = str(tmp_path / f"m{i}.onnx")
        onnx.save(_model(deferred, order, outs), path)
        m = load_qonnx(path)
        assert kinds is None or sorted(type(op).__name__ for op in m.ops) == kinds
        kinds = sorted(type(op).__name__ for op in m.ops)
        assert kinds.count("Requant") == 2 and kinds.count({"DepthToSpace": "DepthToSpace", "MaxPool": "Pool"}[deferred]) == 2
        ref = _qonnx(path, x)
        got = simulate(m, x)
        for k, (t, name) in enumerate(zip(m.outputs, m.output_names)):
            np.testing.assert_allclose(onnx_layout(m, t, to_real(m, t, np.asarray(got[t])), output=k), ref[name], rtol=0, atol=1e-6)
    assert kinds is not None


@pytest.mark.parametrize("deferred", ["DepthToSpace", "MaxPool"])
@pytest.mark.parametrize("read", ["d", "r"])
def test_deferred_op_also_read_as_graph_output_is_one_line_error(tmp_path, deferred, read):
    """The pooled / reordered accumulator (or its Relu) is also a graph output: the unquantized tensor is
    needed too, so the op cannot move after the activation; refused in one line naming the node."""
    readers = [helper.make_node("Relu", ["d"], ["r"]), _quant("r", "s_out", "y")]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(deferred, readers, ["y", read]), path)
    with pytest.raises(A2QError, match=r"node '\w+' \(Quant\): .* not supported|graph output '[dr]' is a MaxPool of a layer output") as e:
        load_qonnx(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("deferred", ["DepthToSpace", "MaxPool"])
def test_build_of_two_activations_of_one_accumulator_is_one_line_error(tmp_path, capsys, deferred):
    """The two activations merged again (Concat): the importer takes the graph (above), code generation
    has one threshold unit per layer and refuses it in one line, writing nothing."""
    from a2qhls.cli import main

    readers = [helper.make_node("Relu", ["d"], ["r"]), helper.make_node("Identity", ["r"], ["i"]),
               _quant("i", "s_out", "y1"), _quant("r", "s_out", "y2"), helper.make_node("Concat", ["y1", "y2"], ["y"], axis=1)]
    m = _model(deferred, readers, ["y"])
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value *= 2
    path = str(tmp_path / "m.onnx")
    onnx.save(m, path)
    load_qonnx(path)
    out = tmp_path / "prj"
    assert main(["build", path, "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Conv_2': an accumulator used by more than its activation is not supported" in err, err
    assert "Traceback" not in err and not out.exists()
