"""QONNX graphs with several graph outputs (for the multi-output build and cosim tests)."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

QD = "qonnx.custom_op.general"
H = W = 4


def _q(x, s, y, bits="b4", signed=1, narrow=0):
    return helper.make_node("Quant", [x, s, "z", bits], [y], domain=QD, signed=signed, narrow=narrow, rounding_mode="ROUND")


def _model(nodes, outputs, name):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0), ("s_a", 0.25), ("s_y", 0.5),
        ("w", rng.integers(-7, 8, size=(8, 2, 1, 1)) * 0.5), ("s_w", 0.5),
        ("w1", rng.integers(-7, 8, size=(5, 8 * H * W)) * 0.25), ("w2", rng.integers(-7, 8, size=(3, 8 * H * W)) * 0.25),
        ("s_w1", 0.25)]]
    pre = [_q("x", "s_in", "xq", "b8", signed=0), _q("w", "s_w", "wq", narrow=1), _q("w1", "s_w1", "w1q", narrow=1),
           _q("w2", "s_w1", "w2q", narrow=1), helper.make_node("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1]),
           helper.make_node("Relu", ["acc"], ["r"]), _q("r", "s_a", "a", signed=0)]
    g = helper.make_graph(pre + nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, H, W])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(m).transform(InferShapes())
    for i, o in enumerate(outputs):
        m.graph.output[i].CopyFrom(helper.make_tensor_value_info(o, TensorProto.FLOAT, mw.get_tensor_shape(o)))
    return m


def two_heads():
    """a = act(conv(x)); y1 = Quant(fc1(flatten(a))), y2 = fc2(flatten(a)) (an unquantized accumulator)."""
    nodes = [helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "w1q"], ["g1"], transB=1), _q("g1", "s_y", "y1", "b8"),
             helper.make_node("Gemm", ["f", "w2q"], ["y2"], transB=1)]
    return _model(nodes, ["y1", "y2"], "two_heads")


def tap(order=("a", "y")):
    """a = act(conv(x)) is a graph output and is read by y = Quant(fc1(flatten(a))); outputs in ``order``."""
    nodes = [helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "w1q"], ["g1"], transB=1), _q("g1", "s_y", "y", "b8")]
    return _model(nodes, list(order), "tap")
