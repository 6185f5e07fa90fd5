"""A graph output that the graph flattens (``Flatten``/``Reshape`` to ``[batch, C*H*W]`` after a map) has
QONNX's flat shape in the model (:meth:`~a2qhls.ir.Model.output_onnx_shape`), its values in QONNX's order through
:func:`~a2qhls.sim.onnx_layout`, and a2qhls.json's output port states that shape and where each streamed
(h, w, c) element lands in it; cosim checks QONNX's output shape against the model's. (``Conv -> DepthToSpace
-> Flatten -> Quant`` reported the unflattened map; ``Conv -> Flatten -> Quant -> Gemm`` was refused.)"""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from a2qhls import load_qonnx
from a2qhls.sim import onnx_layout, simulate, to_real

QD = "qonnx.custom_op.general"
H = W = 4


def _q(x, s, y, bits="b4", signed=1):
    return helper.make_node("Quant", [x, s, "z", bits], [y], domain=QD, signed=signed, narrow=0, rounding_mode="ROUND")


def _fl(x, y):
    return helper.make_node("Flatten", [x], [y])


# after Conv 1x1 (8 channels) "acc": nodes to the graph output "y"
TAILS = {
    "d2s_flatten_quant": [helper.make_node("DepthToSpace", ["acc"], ["d"], blocksize=2, mode="CRD"), _fl("d", "f"),
                          _q("f", "s_out", "y")],
    "flatten_quant": [_fl("acc", "f"), _q("f", "s_out", "y")],
    "relu_flatten_quant": [helper.make_node("Relu", ["acc"], ["r"]), _fl("r", "f"), _q("f", "s_out", "y", signed=0)],
    "quant_flatten": [_q("acc", "s_out", "a"), _fl("a", "y")],
    "quant_d2s_flatten": [_q("acc", "s_out", "a"), helper.make_node("DepthToSpace", ["a"], ["d"], blocksize=2, mode="DCR"),
                          _fl("d", "y")],
    "maxpool_flatten_quant": [helper.make_node("MaxPool", ["acc"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                              _fl("p", "f"), _q("f", "s_out", "y")],
    "flatten": [_fl("acc", "y")],
    "reshape_quant": [helper.make_node("Reshape", ["acc", "shape"], ["f"]), _q("f", "s_out", "y")],
    "d2s_quant": [helper.make_node("DepthToSpace", ["acc"], ["d"], blocksize=2, mode="CRD"), _q("d", "s_out", "y")],
    "flatten_quant_gemm": [_fl("acc", "f"), _q("f", "s_out", "fq"), helper.make_node("Gemm", ["fq", "w2q"], ["y"], transB=1)],
}


def _model(tail):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0), ("s_out", 0.25),
        ("w", rng.integers(-7, 8, size=(8, 2, 1, 1)) * 0.5), ("s_w", (np.arange(8) % 3 + 1).reshape(8, 1, 1, 1) * 0.25),
        ("w2", rng.integers(-7, 8, size=(5, 8 * H * W)) * 0.25), ("s_w2", 0.25)]]
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "shape"))
    inits.append(numpy_helper.from_array(np.array([2, -1], np.int64), "shape2"))
    nodes = [_q("x", "s_in", "xq", "b8", signed=0), _q("w", "s_w", "wq"), _q("w2", "s_w2", "w2q"),
             helper.make_node("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1])]
    g = helper.make_graph(nodes + tail, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, H, W])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    shape = ModelWrapper(m).transform(InferShapes()).get_tensor_shape("y")  # the graph declares its output's shape
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, shape))
    return m


def _qonnx(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    return execute_onnx(ModelWrapper(path).transform(InferShapes()), {"x": x})["y"]


@pytest.mark.parametrize("tail", sorted(TAILS))
def test_output_shape_and_values_are_qonnx(tmp_path, tail):
    path = str(tmp_path / f"{tail}.onnx")
    onnx.save(_model(TAILS[tail]), path)
    m = load_qonnx(path)
    x = np.random.default_rng(1).uniform(0, 2, size=(3, 2, H, W)).astype(np.float32)
    ref = np.concatenate([_qonnx(path, x[i:i + 1]) for i in range(len(x))])
    t = m.outputs[0]
    assert m.output_onnx_shape(0) == ref.shape[1:]
    got = onnx_layout(m, t, to_real(m, t, np.asarray(simulate(m, x)[t])), output=0)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_built_output_port_states_the_flat_shape_and_element_map(tmp_path, capsys):
    """Conv -> DepthToSpace -> Flatten -> Quant: the port streams the 8x8x2 map channels last; a2qhls.json
    says QONNX's output is [128] and which element each streamed one is; the numpy model's output put in
    that order is QONNX's."""
    from a2qhls.cli import main

    path = str(tmp_path / "m.onnx")
    onnx.save(_model(TAILS["d2s_flatten_quant"]), path)
    out = tmp_path / "prj"
    assert main(["build", path, "--out", str(out)]) == 0
    capsys.readouterr()
    port = json.loads((out / "a2qhls.json").read_text())["interface"]["output"]
    assert port["shape"] == [8, 8, 2] and port["onnx_shape"] == [128]
    assert "streamed element (h, w, c) is element c*64 + h*8 + w of QONNX's [128] output" in port["layout_note"]
    m = load_qonnx(path)
    x = np.random.default_rng(2).uniform(0, 2, size=(1, 2, H, W)).astype(np.float32)
    t = m.outputs[0]
    stream = to_real(m, t, np.asarray(simulate(m, x)[t])).reshape(-1)  # the port's element order (h, w, c)
    flat = np.empty(128)
    for e, (h, w, c) in enumerate(np.ndindex(8, 8, 2)):
        flat[c * 64 + h * 8 + w] = stream[e]
    np.testing.assert_allclose(flat, _qonnx(path, x).reshape(-1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tail", ["d2s_flatten_quant", "quant_flatten"])
def test_cosim_of_a_flattened_output_matches_qonnx(tmp_path, capsys, tail):
    """g++ C simulation, the numpy model and QONNX's executor agree on Conv -> DepthToSpace -> Flatten -> Quant
    and on Conv -> Quant -> Flatten (Brevitas's ``torch.flatten(act(conv(x)), 1)``, whose per-layer check reads
    the Quant's own map): QONNX's [128] output checked against the model's shape, then element by element."""
    from cosim_run import assert_exact, build_and_cosim

    path = str(tmp_path / "m.onnx")
    onnx.save(_model(TAILS[tail]), path)
    rc, rep = build_and_cosim(path, tmp_path / "prj", capsys, "--random", "20")
    assert_exact(rc, rep)


def test_two_outputs_of_one_tensor_each_have_their_own_shape(tmp_path):
    """Outputs ``y = Flatten(a)`` and ``a`` itself (one IR tensor, two graph outputs): each has QONNX's shape
    for it ([128] and [8, 4, 4]), and the model's values in each layout are QONNX's."""
    m = _model(TAILS["quant_flatten"])
    m.graph.output.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 8, H, W]))
    path = str(tmp_path / "two.onnx")
    onnx.save(m, path)
    model = load_qonnx(path)
    assert model.output_names == ["y", "a"] and model.outputs[0] == model.outputs[1]
    assert [model.output_onnx_shape(k) for k in range(2)] == [(8 * H * W,), (8, H, W)]
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    x = np.random.default_rng(3).uniform(0, 2, size=(1, 2, H, W)).astype(np.float32)
    ref = execute_onnx(ModelWrapper(path).transform(InferShapes()), {"x": x})
    t = model.outputs[0]
    real = to_real(model, t, np.asarray(simulate(model, x)[t]))
    for k, name in enumerate(model.output_names):
        np.testing.assert_allclose(onnx_layout(model, t, real, output=k), ref[name], rtol=0, atol=1e-6)


SPLITTING = {  # a Flatten/Reshape whose rows are not whole samples (QONNX: [8, 16], [2, 64] for one sample)
    "flatten_axis2_quant": [helper.make_node("Flatten", ["acc"], ["f"], axis=2), _q("f", "s_out", "y")],
    "quant_flatten_axis2": [_q("acc", "s_out", "a"), helper.make_node("Flatten", ["a"], ["y"], axis=2)],
    "reshape_2_rows_quant": [helper.make_node("Reshape", ["acc", "shape2"], ["f"]), _q("f", "s_out", "y")],
}


@pytest.mark.parametrize("tail", sorted(SPLITTING))
def test_flatten_or_reshape_splitting_a_sample_is_refused_in_one_line(tmp_path, capsys, tail):
    """A Flatten (axis 2) or Reshape that does not keep each sample in one row of [batch, features] is refused
    at import, naming the node and what is supported (it was taken as [batch, C*H*W])."""
    from a2qhls.cli import main

    path = str(tmp_path / "m.onnx")
    onnx.save(_model(SPLITTING[tail]), path)
    assert main(["inspect", path]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Flatten/Reshape to [batch, features]" in err[0] and "Traceback" not in err[0], err
