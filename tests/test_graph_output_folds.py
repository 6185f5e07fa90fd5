"""A tensor the importer folds into what reads it (a Quant into the next Quant's thresholds, an integer
bias into the layer's accumulator, a negative BatchNormalization scale into the layer's weights) is
folded only when it is not also a graph output: its own value must stay computable. Every output equals
qonnx's executor's, or the model is refused in one line. (``Conv -> Quant y1 -> Quant y2`` with both
outputs raised KeyError 'y1'; ``Conv acc -> Add bias -> Quant`` with ``acc`` an output gave ``acc + bias``.)"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from a2qhls import load_qonnx
from a2qhls.errors import A2QError
from a2qhls.sim import onnx_layout, simulate, to_real

QD = "qonnx.custom_op.general"
C, H, W = 8, 4, 4
S_ACC = (1 / 16) * (np.arange(C) % 3 + 1) * 0.25  # the accumulator's scale: input scale times weight scale


def _quant(x, s, y, bits="b4", signed=0):
    return helper.make_node("Quant", [x, s, "z", bits], [y], domain=QD, signed=signed, narrow=0, rounding_mode="ROUND")


def _model(tail, outs):
    """Quant(input [1, 2, 4, 4]) -> Conv 1x1 ``acc`` (8 channels, per-channel weight scales) -> ``tail``."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0), ("s_out", 0.25), ("s_a", 0.5),
        ("w", rng.integers(-7, 8, size=(C, 2, 1, 1)) * 0.5), ("s_w", (np.arange(C) % 3 + 1).reshape(C, 1, 1, 1) * 0.25),
        ("s_pc", (np.arange(C) % 2 + 1).reshape(1, C, 1, 1) * 0.25),
        ("bias", (rng.integers(-20, 20, size=C) * S_ACC).reshape(1, C, 1, 1)), ("s_bias", S_ACC.reshape(1, C, 1, 1)),
        ("bn_g", np.where(np.arange(C) % 2, -1.5, 2.0)), ("bn_b", np.full(C, 0.25)), ("bn_m", np.zeros(C)), ("bn_v", np.ones(C))]]
    nodes = [_quant("x", "s_in", "xq", "b8"),
             helper.make_node("Quant", ["w", "s_w", "z", "b4"], ["wq"], domain=QD, signed=1, narrow=1, rounding_mode="ROUND"),
             helper.make_node("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1])]
    g = helper.make_graph(nodes + tail, "folds", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, H, W])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, C, H, W]) for o in outs], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])


def _check_against_qonnx(path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    m = load_qonnx(path)
    x = np.random.default_rng(1).uniform(-1, 2, size=(1, 2, H, W)).astype(np.float32)
    ref = execute_onnx(ModelWrapper(path).transform(InferShapes()), {"x": x})
    got = simulate(m, x)
    for k, (t, name) in enumerate(zip(m.outputs, m.output_names)):
        np.testing.assert_allclose(onnx_layout(m, t, to_real(m, t, np.asarray(got[t])), output=k), ref[name], rtol=0, atol=1e-6)
    return m


QUANT_CHAINS = {  # Quant y1 -> [Relu/Identity ->] Quant y2
    "quant_quant": [_quant("acc", "s_out", "y1", "b8", 1), _quant("y1", "s_a", "y2", "b4", 1)],
    "quant_relu_quant": [_quant("acc", "s_out", "y1", "b8", 1), helper.make_node("Relu", ["y1"], ["r"]), _quant("r", "s_a", "y2")],
    "quant_identity_quant": [_quant("acc", "s_out", "y1", "b8", 1), helper.make_node("Identity", ["y1"], ["i"]),
                             _quant("i", "s_a", "y2", "b4", 1)],
}


@pytest.mark.parametrize("outs", [["y1", "y2"], ["y2", "y1"], ["y1"]])
@pytest.mark.parametrize("chain", sorted(QUANT_CHAINS))
def test_quant_of_a_quant_that_is_a_graph_output_keeps_it(tmp_path, chain, outs):
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(QUANT_CHAINS[chain], outs), path)
    m = _check_against_qonnx(path)
    assert m.output_names == outs


def test_quant_of_a_per_channel_quant_that_is_a_graph_output_is_one_line_error(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(_model([_quant("acc", "s_pc", "y1", "b8", 1), _quant("y1", "s_a", "y2", "b4", 1)], ["y1", "y2"]), path)
    with pytest.raises(A2QError, match=r"node '\w+' \(Quant\): re-quantizing 'y1', which has per-channel scales, is not supported") as e:
        load_qonnx(path)
    assert "\n" not in str(e.value)


def test_bias_after_an_output_accumulator_is_not_moved_into_the_layer(tmp_path):
    """``Add(acc, Quant(bias))`` in accumulator units feeds the activation: the bias moves into the layer
    only when ``acc`` is not a graph output (which it would change to ``acc + bias``); when it is, the
    accumulator is read with two offsets, which the IR records once per accumulator: refused in one line."""
    tail = [helper.make_node("Quant", ["bias", "s_bias", "z", "b8"], ["bq"], domain=QD, signed=1, narrow=0, rounding_mode="ROUND"),
            helper.make_node("Add", ["acc", "bq"], ["a"]), _quant("a", "s_out", "y", "b8", 1)]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(tail, ["y"]), path)
    conv = next(op for op in _check_against_qonnx(path).ops if type(op).__name__ == "Conv")
    assert conv.bias is not None
    onnx.save(_model(tail, ["y", "acc"]), path)
    with pytest.raises(A2QError, match=r"graph output 'acc': an accumulator consumed with two different scalings is not supported") as e:
        load_qonnx(path)
    assert "\n" not in str(e.value)


def test_negative_batchnorm_scale_on_an_output_accumulator_is_one_line_error(tmp_path):
    """A negative BatchNormalization scale negates the layer's weights, which would negate the ``acc`` output."""
    tail = [helper.make_node("BatchNormalization", ["acc", "bn_g", "bn_b", "bn_m", "bn_v"], ["n"]), _quant("n", "s_out", "y", "b8", 1)]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(tail, ["y"]), path)
    _check_against_qonnx(path)  # without the second output, the weights are negated
    onnx.save(_model(tail, ["y", "acc"]), path)
    with pytest.raises(A2QError, match=r"negative scale is supported only .* not a graph output") as e:
        load_qonnx(path)
    assert "\n" not in str(e.value)
