"""A constant that an elementwise ONNX op broadcasts against a tensor (a Quant's scale, zero-point and bit width,
a Mul/Add constant, BatchNormalization's parameters) is read by ONNX broadcasting against that tensor's shape
(importer.context.channel_values): accepted when broadcasting keeps the tensor's shape and the values are equal
within each channel, and then every output equals qonnx's executor's; anything else is refused in one line naming
the node, both shapes and what is supported, and qonnx's executor shows why (another shape, or no broadcast).
(A ``[1, C, 1, 1]`` scale after a Flatten, ``[1, C, 1, K]`` in QONNX, was imported as per-channel over C; a ``[C]``
scale on a ``[N, C, H, W]`` map with ``W == C``, per column in QONNX, as per-channel.)

Also the Relu chains of a layer output or activation through Flatten/Identity: ``Conv -> DepthToSpace/MaxPool ->
Relu -> [Identity ->] Flatten -> Quant`` (was refused calling the reordered accumulator "an activation") and
``Quant -> Relu -> {Identity -> Quant, Quant}`` (raised KeyError) equal qonnx's executor."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from a2qhls import load_qonnx
from a2qhls.errors import A2QError
from a2qhls.sim import onnx_layout, simulate, to_real

QD = "qonnx.custom_op.general"
H = W = 4


def _q(x, s, y, bits="b4", signed=1, z="z"):
    return helper.make_node("Quant", [x, s, z, bits], [y], domain=QD, signed=signed, narrow=0, rounding_mode="ROUND")


def _n(op, ins, outs, **kw):
    return helper.make_node(op, ins, outs, **kw)


def _f(x, y):
    return _n("Flatten", [x], [y])


def _pc(shape, C, per=1):
    """Per-channel values 0.25 * (1 + c % 2) (or 0.25 * (1 + c % 3) when per=2), laid out in ``shape`` with
    channels along the axis of size ``C`` (a flat ``[..., C*H*W]`` shape repeats each over its H*W elements)."""
    v = (np.arange(C) % (2 + per - 1) + 1) * 0.25
    n = int(np.prod(shape))
    return (np.repeat(v, n // C) if n != C else v).reshape(shape).astype(np.float32)


def _model(C, tail, consts, outs=("y",)):
    """Quant(x [1, 2, H, W]) -> Conv 1x1 (C channels, per-channel weight scales) "acc" -> ``tail``."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0), ("s_out", 0.25),
        ("w", rng.integers(-7, 8, size=(C, 2, 1, 1)) * 0.5), ("s_w", (np.arange(C) % 3 + 1).reshape(C, 1, 1, 1) * 0.25),
        *consts.items()]]
    nodes = [_q("x", "s_in", "xq", "b8", signed=0), _q("w", "s_w", "wq"), _n("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1])]
    g = helper.make_graph(nodes + tail, "bc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, H, W])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], initializer=inits)
    for k, n in enumerate(g.node):
        n.name = n.name or f"{n.op_type}_{k}"
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(m).transform(InferShapes())  # the graph declares its outputs' shapes
    for k, o in enumerate(outs):
        m.graph.output[k].CopyFrom(helper.make_tensor_value_info(o, TensorProto.FLOAT, mw.get_tensor_shape(o)))
    return m


def _qonnx(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    return execute_onnx(ModelWrapper(path).transform(InferShapes()), {"x": x})


def _x(seed=1):
    return np.random.default_rng(seed).uniform(-1, 2, size=(1, 2, H, W)).astype(np.float32)


def _assert_equals_qonnx(path):
    m = load_qonnx(path)
    x = _x()
    ref = _qonnx(path, x)
    sim = simulate(m, x)
    for k, name in enumerate(m.output_names):
        t = m.outputs[k]
        got = onnx_layout(m, t, to_real(m, t, np.asarray(sim[t])), output=k)
        assert got.shape == ref[name].shape, name
        np.testing.assert_allclose(got, ref[name], rtol=0, atol=1e-6, err_msg=name)


K = 8 * H * W
# name -> (channels, tail, constants): imported, and equal to qonnx's executor
ACCEPTED = {
    "map_scale_1C11": (8, [_q("acc", "s", "y")], {"s": _pc((1, 8, 1, 1), 8)}),
    "map_scale_C11": (8, [_q("acc", "s", "y")], {"s": _pc((8, 1, 1), 8)}),
    "flat_scale_1K_per_channel": (8, [_f("acc", "f"), _q("f", "s", "y")], {"s": _pc((1, K), 8)}),
    "flat_scale_K_per_channel": (8, [_f("acc", "f"), _q("f", "s", "y")], {"s": _pc((K,), 8)}),
    "relu_flat_scale_1K_per_channel": (8, [_n("Relu", ["acc"], ["r"]), _f("r", "f"), _q("f", "s", "y", signed=0)],
                                       {"s": _pc((1, K), 8)}),
    "flat_mul_1K_per_channel": (8, [_f("acc", "f"), _n("Mul", ["f", "m"], ["fm"]), _q("fm", "s_out", "y")],
                                {"m": _pc((1, K), 8, per=2)}),
    "map_mul_C11": (8, [_n("Mul", ["acc", "m"], ["am"]), _q("am", "s_out", "y")], {"m": _pc((8, 1, 1), 8, per=2)}),
    "map_add_1C11": (8, [_n("Add", ["acc", "b"], ["ab"]), _q("ab", "s_out", "y")], {"b": _pc((1, 8, 1, 1), 8)}),
    "flat_batchnorm_K_per_channel": (8, [_f("acc", "f"), _n("BatchNormalization", ["f", "g", "be", "mu", "var"], ["fb"]),
                                         _q("fb", "s_out", "y")],
                                     {"g": _pc((K,), 8, per=2), "be": _pc((K,), 8), "mu": _pc((K,), 8), "var": np.ones(K)}),
    "gemm_scale_1C": (8, [_q("w2", "s_w2", "w2q"), _f("acc", "f"), _q("f", "s_out", "fq"),
                          _n("Gemm", ["fq", "w2q"], ["g"], transB=1), _q("g", "s", "y")],
                      {"w2": np.random.default_rng(5).integers(-7, 8, size=(5, K)) * 0.25, "s_w2": 0.25, "s": _pc((1, 5), 5)}),
    "gemm_scale_C": (8, [_q("w2", "s_w2", "w2q"), _f("acc", "f"), _q("f", "s_out", "fq"),
                         _n("Gemm", ["fq", "w2q"], ["g"], transB=1), _q("g", "s", "y")],
                     {"w2": np.random.default_rng(5).integers(-7, 8, size=(5, K)) * 0.25, "s_w2": 0.25, "s": _pc((5,), 5)}),
    "act_flat_scale_1K_per_channel": (8, [_q("acc", "s_out", "a"), _f("a", "f"), _q("f", "s", "y")], {"s": _pc((1, K), 8)}),
}
# name -> (channels, tail, constants, words in the one-line error): refused
REFUSED = {
    # QONNX: [1, 8, 1, 128]
    "flat_scale_1C11": (8, [_f("acc", "f"), _q("f", "s", "y")], {"s": _pc((1, 8, 1, 1), 8)},
                        ["scale of shape [1, 8, 1, 1]", "[batch, 128]", "broadcasts to [1, 8, 1, 128]"]),
    # QONNX: per column W of the 4-channel map
    "map_scale_C_equal_to_W": (4, [_q("acc", "s", "y")], {"s": _pc((4,), 4)},
                               ["scale of shape [4]", "[batch, 4, 4, 4]", "varies within a channel"]),
    "map_scale_1C11_1": (8, [_q("acc", "s", "y")], {"s": _pc((1, 1, 8, 1, 1), 8)},
                         ["scale of shape [1, 1, 8, 1, 1]", "broadcasts to [1, 1, 8, 4, 4]"]),
    "map_zero_point_5d": (8, [_q("acc", "s_out", "y", z="z5")], {"z5": np.zeros((1, 1, 1, 1, 1))},
                          ["zero-point of shape [1, 1, 1, 1, 1]"]),
    "map_bit_width_5d": (8, [_q("acc", "s_out", "y", bits="b5")], {"b5": np.full((1, 1, 1, 1, 1), 4.0)},
                         ["bit width of shape [1, 1, 1, 1, 1]"]),
    "flat_scale_per_element": (8, [_f("acc", "f"), _q("f", "s", "y")],
                               {"s": (np.arange(K) % 5 + 1).reshape(1, K).astype(np.float32) * 0.125},
                               ["scale of shape [1, 128]", "varies within a channel", "flattened [8, 4, 4] map"]),
    "act_flat_scale_1C11": (8, [_q("acc", "s_out", "a"), _f("a", "f"), _q("f", "s", "y")], {"s": _pc((1, 8, 1, 1), 8)},
                            ["scale of shape [1, 8, 1, 1]", "broadcasts to [1, 8, 1, 128]"]),
    # QONNX: Mul gives [1, 8, 1, 128]
    "flat_mul_1C11": (8, [_f("acc", "f"), _n("Mul", ["f", "m"], ["fm"]), _q("fm", "s_out", "y")],
                      {"m": _pc((1, 8, 1, 1), 8, per=2)}, ["constant of shape [1, 8, 1, 1]", "[batch, 128]"]),
    # QONNX: Add along W
    "map_add_C_equal_to_W": (4, [_n("Add", ["acc", "b"], ["ab"]), _q("ab", "s_out", "y")], {"b": _pc((4,), 4)},
                             ["bias of shape [4]", "varies within a channel"]),
    # QONNX: BatchNormalization over axis 1 of [1, 128] needs 128 values
    "flat_batchnorm_C": (8, [_f("acc", "f"), _n("BatchNormalization", ["f", "g", "be", "mu", "var"], ["fb"]),
                             _q("fb", "s_out", "y")], {"g": np.ones(8), "be": _pc((8,), 8), "mu": np.zeros(8), "var": np.ones(8)},
                         ["scale has shape [8]", "[batch, 128]", "supported: [128]"]),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_broadcast_keeping_shape_and_per_channel_imports_and_equals_qonnx(tmp_path, case):
    C, tail, consts = ACCEPTED[case]
    path = str(tmp_path / f"{case}.onnx")
    onnx.save(_model(C, tail, consts), path)
    _assert_equals_qonnx(path)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_other_broadcasts_are_refused_in_one_line(tmp_path, capsys, case):
    from a2qhls.cli import main

    C, tail, consts, words = REFUSED[case]
    m = _model(C, tail, consts)
    path = str(tmp_path / f"{case}.onnx")
    onnx.save(m, path)
    node = next(n for n in m.graph.node if any(c in n.input for c in consts))
    # qonnx's executor shows the op is not per channel on its input: another shape, no broadcast at all, or
    # (W == C) other values than the same constant laid out per channel ([1, C, 1, 1]) gives
    try:
        ref = _qonnx(path, _x())["y"]
    except Exception as e:  # noqa: BLE001  (numpy's or onnxruntime's broadcast/shape error)
        ref = None
        assert any(w in str(e).lower() for w in ("broadcast", "shape", "invalid")), e
    if ref is not None and C == W and ref.shape == (1, C, H, W):
        twin = str(tmp_path / "twin.onnx")
        onnx.save(_model(C, tail, {k: np.asarray(v).reshape(1, C, 1, 1) for k, v in consts.items()}), twin)
        assert not np.allclose(ref, _qonnx(twin, _x())["y"])
    elif ref is not None and case != "flat_scale_per_element":  # that one is a per-element quantizer in QONNX too
        assert ref.shape != (1, C * H * W) and ref.shape != (1, C, H, W), ref.shape
    with pytest.raises(A2QError):
        load_qonnx(path)
    assert main(["inspect", path]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"node '{node.name}' ({node.op_type})" in err[0] and "supported:" in err[0], err[0]
    for w in words:
        assert w in err[0], (w, err[0])


RELU_CHAINS = {  # after Conv 1x1 (8 channels) "acc": nodes, graph outputs
    "d2s_relu_flatten_quant": ([_n("DepthToSpace", ["acc"], ["d"], blocksize=2, mode="CRD"), _n("Relu", ["d"], ["r"]),
                                _f("r", "f"), _q("f", "s_out", "y", signed=0)], ["y"]),
    "d2s_relu_identity_flatten_quant": ([_n("DepthToSpace", ["acc"], ["d"], blocksize=2, mode="CRD"),
                                         _n("Relu", ["d"], ["r"]), _n("Identity", ["r"], ["i"]), _f("i", "f"),
                                         _q("f", "s_out", "y", signed=0)], ["y"]),
    "d2s_flatten_relu_quant": ([_n("DepthToSpace", ["acc"], ["d"], blocksize=2, mode="DCR"), _f("d", "f"),
                                _n("Relu", ["f"], ["r"]), _q("r", "s_out", "y", signed=0)], ["y"]),
    "maxpool_relu_flatten_quant": ([_n("MaxPool", ["acc"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                                    _n("Relu", ["p"], ["r"]), _f("r", "f"), _q("f", "s_out", "y", signed=0)], ["y"]),
    "maxpool_identity_relu_flatten_quant": ([_n("MaxPool", ["acc"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                                             _n("Identity", ["p"], ["i"]), _n("Relu", ["i"], ["r"]), _f("r", "f"),
                                             _q("f", "s_out", "y", signed=0)], ["y"]),
    "quant_relu_flatten_quant": ([_q("acc", "s_out", "a"), _n("Relu", ["a"], ["r"]), _f("r", "f"),
                                  _q("f", "s_out", "y", signed=0)], ["y"]),
    "quant_flatten_relu_quant_gemm": ([_q("acc", "s_out", "a"), _f("a", "f"), _n("Relu", ["f"], ["r"]),
                                       _q("r", "s_out", "rq", signed=0), _n("Gemm", ["rq", "w2q"], ["y"], transB=1)], ["y"]),
    "quant_relu_identity_quant+quant": ([_q("acc", "s_out", "a"), _n("Relu", ["a"], ["r"]), _n("Identity", ["r"], ["i"]),
                                         _q("i", "s_out", "y", signed=0), _q("r", "s_out", "y2", "b8", signed=0)], ["y", "y2"]),
    "quant_relu_quant+identity_quant": ([_q("acc", "s_out", "a"), _n("Relu", ["a"], ["r"]),
                                         _q("r", "s_out", "y2", "b8", signed=0), _n("Identity", ["r"], ["i"]),
                                         _q("i", "s_out", "y", signed=0)], ["y", "y2"]),
    "quant_relu_flatten_quant+quant": ([_q("acc", "s_out", "a"), _n("Relu", ["a"], ["r"]), _f("r", "f"),
                                        _q("f", "s_out", "y", signed=0), _q("r", "s_out", "y2", "b8", signed=0)], ["y", "y2"]),
}


@pytest.mark.parametrize("case", sorted(RELU_CHAINS))
def test_relu_chains_through_flatten_and_identity_equal_qonnx(tmp_path, case):
    tail, outs = RELU_CHAINS[case]
    rng = np.random.default_rng(5)
    consts = {"w2": rng.integers(-7, 8, size=(5, K)) * 0.25, "s_w2": 0.25}
    tail = [_q("w2", "s_w2", "w2q")] + tail
    path = str(tmp_path / f"{case}.onnx")
    onnx.save(_model(8, tail, consts, outs=tuple(outs)), path)
    _assert_equals_qonnx(path)


def test_a_pending_relu_as_graph_output_is_named_in_one_line(tmp_path, capsys):
    from a2qhls.cli import main

    path = str(tmp_path / "m.onnx")
    onnx.save(_model(8, [_q("acc", "s_out", "a"), _n("Relu", ["a"], ["y"])], {}), path)
    assert main(["inspect", path]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graph output 'y' is a Relu of a quantized tensor without a Quant" in err[0], err
