"""DepthToSpace (DCR and CRD) in the importer, the IR and the numpy model: the reorder against ONNX's
reference implementation, and a whole exported ESPCN (DepthToSpace on the last layer's accumulator,
per-channel scales) simulated against qonnx's execution."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from a2qhls import load_qonnx
from a2qhls.errors import A2QError
from a2qhls.ir import DepthToSpace, depth_to_space_sources
from a2qhls.sim import depth_to_space, simulate, to_real

QD = "qonnx.custom_op.general"


def _reference(x_nchw: np.ndarray, r: int, mode: str) -> np.ndarray:
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=r, mode=mode)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT64, None)],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    return ReferenceEvaluator(m).run(None, {"x": x_nchw})[0]


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("r,C", [(2, 4), (2, 12), (3, 18)])
def test_reorder_matches_onnx_reference(mode, r, C):
    rng = np.random.default_rng(r * C)
    q = rng.integers(-1000, 1000, size=(2, 5, 3, C)).astype(np.int64)  # [B, H, W, C] channels last
    op = DepthToSpace("d", ["a"], ["b"], r, mode, (5, 3, C))
    got = depth_to_space(op, q)
    ref = _reference(q.transpose(0, 3, 1, 2), r, mode).transpose(0, 2, 3, 1)
    assert got.shape == (2, 5 * r, 3 * r, C // (r * r)) == (2, *op.out_shape)
    np.testing.assert_array_equal(got, ref)
    # every input element lands exactly once
    assert sorted(depth_to_space_sources(C, r, mode).reshape(-1).tolist()) == list(range(C))


def _graph(mode: str, r: int = 2, C: int = 8, relu_quant: bool = True):
    """Quant(input) -> Conv 1x1 (C channels) [-> Relu -> Quant] -> DepthToSpace -> output."""
    rng = np.random.default_rng(0)
    H = W = 3
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0),
        ("w", rng.integers(-7, 8, size=(C, 2, 1, 1)) * 0.5), ("s_w", 0.5), ("s_out", 0.25)]]
    nodes = [helper.make_node("Quant", ["x", "s_in", "z", "b8"], ["xq"], domain=QD, signed=0, narrow=0,
                              rounding_mode="ROUND"),
             helper.make_node("Quant", ["w", "s_w", "z", "b4"], ["wq"], domain=QD, signed=1, narrow=1,
                              rounding_mode="ROUND"),
             helper.make_node("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1])]
    last = "acc"
    if relu_quant:
        nodes += [helper.make_node("Relu", ["acc"], ["r"]),
                  helper.make_node("Quant", ["r", "s_out", "z", "b4"], ["aq"], domain=QD, signed=0, narrow=0,
                                   rounding_mode="ROUND")]
        last = "aq"
    nodes.append(helper.make_node("DepthToSpace", [last], ["y"], blocksize=r, mode=mode))
    g = helper.make_graph(nodes, "d2s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, H, W])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C // (r * r), H * r, W * r])],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("relu_quant", [True, False])
def test_imported_graph_simulates_like_qonnx(tmp_path, mode, relu_quant):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    path = str(tmp_path / "d2s.onnx")
    onnx.save(_graph(mode, relu_quant=relu_quant), path)
    m = load_qonnx(path)
    op = next(o for o in m.ops if isinstance(o, DepthToSpace))
    assert (op.mode, op.blocksize, op.in_shape) == (mode, 2, (3, 3, 8))
    x = np.random.default_rng(1).uniform(0, 1, size=(1, 2, 3, 3)).astype(np.float32)
    t = m.outputs[0]
    got = to_real(m, t, simulate(m, x)[t]).transpose(0, 3, 1, 2)
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(path).transform(InferShapes())
    ref = execute_onnx(mw, {"x": x})["y"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_bad_depth_to_space_is_one_line_error(tmp_path):
    m = _graph("DCR")
    d2s = m.graph.node[-1]
    for a in d2s.attribute:
        if a.name == "mode":
            a.s = b"XYZ"
    path = str(tmp_path / "bad.onnx")
    onnx.save(m, path)
    with pytest.raises(A2QError, match="mode 'XYZ' is not supported"):
        load_qonnx(path)


def test_exported_espcn_simulates_like_qonnx(tmp_path):
    """Our ESPCN export: the last convolution's accumulator (per-channel scales) through DepthToSpace CRD."""
    torch = pytest.importorskip("torch")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from a2qhls.frontend.export import export_qonnx
    from a2qhls.frontend.superres import build_espcn

    torch.manual_seed(0)
    model = build_espcn("espcn:4,4,4", 2, "a2q+", 4, 4, 13, "inner")
    x = torch.rand(2, 1, 6, 5)
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    path = str(tmp_path / "espcn.onnx")
    export_qonnx(model, path, (1, 6, 5), batch_size=2)
    m = load_qonnx(path)
    assert [o.op for o in m.ops][-1] == "DepthToSpace"
    t = m.outputs[0]
    got = to_real(m, t, simulate(m, x.numpy())[t]).transpose(0, 3, 1, 2)
    mw = ModelWrapper(path)
    ref = execute_onnx(mw, {mw.graph.input[0].name: x.numpy()})[mw.graph.output[0].name]
    assert got.shape == ref.shape == (2, 1, 12, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * float(np.abs(ref).max()))


def test_build_refuses_depth_to_space_with_one_line(tmp_path, capsys):
    from a2qhls.cli import main

    path = str(tmp_path / "d2s.onnx")
    onnx.save(_graph("CRD"), path)
    out = tmp_path / "out"
    assert main(["build", path, "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "does not support DepthToSpace yet" in err and err.count("\n") == 1, err
    assert not out.exists() or not any(out.iterdir())
