"""DepthToSpace (DCR and CRD) in the importer, the IR, the numpy model and the generated HLS: the reorder
against ONNX's reference implementation, a whole exported ESPCN (DepthToSpace on the last layer's
accumulator, per-channel scales) simulated against qonnx's execution, and the streaming unit in g++ C
simulation bit-exact against the numpy model (DepthToSpace last, on an activation or an accumulator,
and in the middle before a convolution), its counted cycles equal to the stated ones."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from a2qhls import codegen, load_qonnx
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


def _graph(mode: str, r: int = 2, C: int = 8, relu_quant: bool = True, H: int = 3, W: int = 3):
    """Quant(input) -> Conv 1x1 (C channels) [-> Relu -> Quant] -> DepthToSpace -> output."""
    rng = np.random.default_rng(0)
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


def _mid_graph(mode: str, r: int = 2, C: int = 8, H: int = 3, W: int = 4):
    """Quant(input) -> Conv 1x1 (C ch) -> Relu -> Quant -> DepthToSpace -> Conv 3x3 pad 1 (C/r^2 -> 3 ch)
    -> Relu -> Quant -> output: DepthToSpace in the middle, feeding a sliding window."""
    rng = np.random.default_rng(1)
    co = C // (r * r)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in [
        ("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0), ("b3", 3.0),
        ("w", rng.integers(-7, 8, size=(C, 2, 1, 1)) * 0.5), ("w2", rng.integers(-7, 8, size=(3, co, 3, 3)) * 0.25),
        ("s_w", 0.5), ("s_w2", 0.25), ("s_a", 0.25), ("s_o", 0.5)]]
    nodes = [helper.make_node("Quant", ["x", "s_in", "z", "b8"], ["xq"], domain=QD, signed=0, narrow=0, rounding_mode="ROUND"),
             helper.make_node("Quant", ["w", "s_w", "z", "b4"], ["wq"], domain=QD, signed=1, narrow=1, rounding_mode="ROUND"),
             helper.make_node("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["acc"], ["r"]),
             helper.make_node("Quant", ["r", "s_a", "z", "b3"], ["aq"], domain=QD, signed=0, narrow=0, rounding_mode="ROUND"),
             helper.make_node("DepthToSpace", ["aq"], ["d"], blocksize=r, mode=mode),
             helper.make_node("Quant", ["w2", "s_w2", "z", "b4"], ["w2q"], domain=QD, signed=1, narrow=1, rounding_mode="ROUND"),
             helper.make_node("Conv", ["d", "w2q"], ["acc2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["acc2"], ["r2"]),
             helper.make_node("Quant", ["r2", "s_o", "z", "b4"], ["y"], domain=QD, signed=0, narrow=0, rounding_mode="ROUND")]
    g = helper.make_graph(nodes, "d2s_mid", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, H, W])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, H * r, W * r])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])


def _csim_counts(prj, tmp_path, m, n: int = 3) -> dict:
    """Compile ``prj`` with the cycle counters, run ``n`` random images of ``m``'s input integers; the
    outputs must equal the numpy model's. Returns process -> iterations per image."""
    import subprocess

    from a2qhls.cosimulation import compile_csim

    binary = tmp_path / "csim_count"
    compile_csim(prj, binary, cxxflags="-O1 -DA2Q_COUNT_CYCLES")
    t = m.tensors[m.ops[0].outputs[0]]
    x = np.random.default_rng(0).integers(t.dtype.vmin, t.dtype.vmax + 1, size=(n, int(np.prod(t.shape))))
    inp, outp = tmp_path / "in.txt", tmp_path / "out.txt"
    np.savetxt(inp, x, fmt="%d")
    r = subprocess.run([str(binary), str(inp), str(outp)], capture_output=True, text=True, check=True)
    # the testbench takes the input integers channels last; the numpy model starts from the same tensor
    want = simulate(m, x.reshape(n, *t.shape), start=m.ops[0].outputs[0])[m.outputs[0]]
    np.testing.assert_array_equal(np.loadtxt(outp, dtype=np.int64, ndmin=2), np.asarray(want).reshape(n, -1))
    counts = {}
    for line in r.stdout.splitlines():
        if line.startswith("a2q_cycles "):
            _, name, c = line.split()
            counts[name] = int(c) // n
    return counts


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("where", ["last_activation", "last_accumulator", "middle", "middle_pe8"])
def test_csim_bit_exact_and_counted_cycles(tmp_path, capsys, mode, where):
    """build -> g++ C simulation equals the numpy model (which equals qonnx, above) for DepthToSpace as
    the last op (on a Quant's output, and on a layer's accumulator) and before a 3x3 convolution; every
    process's counted loop iterations equal a2qhls.json's; the output port's layout states the
    DepthToSpace output's shape."""
    import json

    from a2qhls.cli import main

    extra = []
    if where.startswith("middle"):
        model, r, C, H, W = _mid_graph(mode), 2, 8, 3, 4
        if where == "middle_pe8":  # 8 channels a word into the reorder: 2 (DCR) or 1 (CRD, coprime to r=2) out
            (tmp_path / "fold.json").write_text(json.dumps({"Conv_2": {"PE": 8, "SIMD": 2}, "Conv_7": {"PE": 3, "SIMD": 2}}))
            extra = ["--folding", str(tmp_path / "fold.json")]
    else:
        model, r, C, H, W = _graph(mode, r=2, C=12, relu_quant=(where == "last_activation"), H=3, W=4), 2, 12, 3, 4
    path = tmp_path / "d2s.onnx"
    onnx.save(model, str(path))
    prj = tmp_path / "prj"
    assert main(["build", str(path), "--out", str(prj), *extra]) == 0
    capsys.readouterr()
    summary = json.loads((prj / "a2qhls.json").read_text())
    d2s = [u for u in summary["units"] if u["kind"] == "d2s"]
    assert len(d2s) == 1
    m = _built(path, extra[1] if extra else None)
    counts = _csim_counts(prj, tmp_path, m)
    stated = {name: c for u in summary["units"] for name, c in u["processes"].items()}
    assert counts == stated
    V = next(u for u in codegen.plan(m) if u.kind == "d2s").PE
    assert V == {"middle": 1, "middle_pe8": 2 if mode == "DCR" else 1}.get(where, 3)
    assert counts[d2s[0]["cname"]] == (H + 1) * W * C // V  # H rows read, the last row's r output rows after them
    if not where.startswith("middle"):
        out = summary["interface"]["output"]
        assert out["shape"] == [H * r, W * r, C // (r * r)] and out["elements"] == H * r * W * r * C // (r * r)


def _built(path, folding=None):
    """The IR as ``build`` leaves it before code generation (widths, thresholds, folding)."""
    from a2qhls.flow import BUILD_STEPS, BuildConfig, BuildState, run_steps

    steps = [s for s in BUILD_STEPS if s[0] in ("import", "size", "acc_bits", "thresholds", "folding")]
    return run_steps(BuildState(source=str(path), config=BuildConfig(folding=folding)), steps).model


@pytest.mark.parametrize("mode,epw_in,co,r,want", [("DCR", 12, 3, 2, 3), ("CRD", 12, 3, 2, 3), ("CRD", 8, 2, 2, 1),
                                                   ("DCR", 8, 2, 2, 2), ("CRD", 18, 2, 3, 2), ("DCR", 1, 4, 2, 1)])
def test_d2s_word_keeps_every_bank_to_one_access(mode, epw_in, co, r, want):
    """Elements per word: divides the producer's word and C'; in CRD coprime to r, so the r^2-strided
    channels of an output word fall in distinct banks (checked for every output word)."""
    V = codegen.d2s_word(mode, r, co, epw_in)
    assert V == want
    src = depth_to_space_sources(co * r * r, r, mode)  # [i, j, c]
    for i in range(r):
        for j in range(r):
            for c0 in range(0, co, V):
                assert len({int(src[i, j, c0 + e]) % V for e in range(V)}) == V


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_golden_depth_to_space_project(tmp_path, mode):
    """conv (8 channels a word) -> width converter -> DepthToSpace -> 3x3 conv: every rendered file equals
    tests/golden/d2s_<mode>/ (A2QHLS_REGEN_GOLDEN=1 rewrites); the unit's comment states its buffer, its
    accesses per bank and its cycles."""
    from golden_files import assert_matches_golden

    path = tmp_path / "d2s.onnx"
    onnx.save(_mid_graph(mode), str(path))
    fold = tmp_path / "fold.json"
    fold.write_text('{"Conv_2": {"PE": 8, "SIMD": 2}, "Conv_7": {"PE": 3, "SIMD": 2}}')
    m = _built(path, str(fold))
    m.name = f"d2s_{mode}"
    files = codegen.generate(m)
    assert_matches_golden(files, f"d2s_{mode.lower()}")
    u = next(u for u in codegen.plan(m) if u.kind == "d2s")
    top = files["firmware/a2q_top.cpp"]
    assert f"two input rows of {4 * 8} elements (ping-pong, {2 * 4 * 8} in all)" in top
    assert f"{u.cycles} cycles per image at II=1" in top and "accesses per memory bank per iteration: buf 2" in top


def test_d2s_estimate_buffer_and_multiplexers():
    """The estimate's buffer is the unit's two rows (2*W*C elements in per-word banks, dual-port), and
    only CRD with several elements a word pays a bank multiplexer (DCR reads bank e for element e)."""
    from a2qhls import estimate

    small, big = estimate.d2s_cost(8, 4, 8, 1, 2, "CRD"), estimate.d2s_cost(512, 64, 8, 1, 2, "CRD")
    assert small.BRAM18 == 0 and big.BRAM18 == estimate.bram18(8, 2 * 512 * 64)
    dcr, crd = estimate.d2s_cost(16, 27, 4, 3, 3, "DCR"), estimate.d2s_cost(16, 27, 4, 3, 3, "CRD")
    assert crd.LUT - dcr.LUT == 3 * 4 * 1  # 3 elements of 4 bits, a 3-to-1 multiplexer each (one LUT6)
    with pytest.raises(ValueError):
        estimate.d2s_cost(4, 6, 4, 4, 2, "DCR")


def test_quant_of_reordered_accumulator_read_elsewhere_is_one_line_error(tmp_path):
    """layer -> DepthToSpace, whose output is both a graph output and quantized: the activation cannot
    move before the reorder (the unquantized tensor is needed too); a clear error, not a crash."""
    m = _graph("CRD", relu_quant=False)
    g = m.graph
    g.node.extend([helper.make_node("Quant", ["y", "s_out", "z", "b4"], ["yq"], domain=QD, signed=1, narrow=0,
                                    rounding_mode="ROUND")])
    g.output.extend([helper.make_tensor_value_info("yq", TensorProto.FLOAT, [1, 2, 6, 6])])
    path = str(tmp_path / "two.onnx")
    onnx.save(m, path)
    with pytest.raises(A2QError, match="a reordered layer output that is also read elsewhere") as e:
        load_qonnx(path)
    assert "\n" not in str(e.value)


def test_depth_to_space_of_a_max_pooled_accumulator_is_one_line_error(tmp_path):
    """layer -> MaxPool -> DepthToSpace: the pool of an accumulator waits for its activation Quant, which
    the reorder would come before; refused in one line (it used to be dropped, the output unpooled)."""
    m = _graph("CRD", relu_quant=False, H=4, W=4)
    g = m.graph
    d2s = next(n for n in g.node if n.op_type == "DepthToSpace")
    d2s.input[0] = "mp"
    g.node.insert(len(g.node) - 1, helper.make_node("MaxPool", ["acc"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]))
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])])
    path = str(tmp_path / "pool_d2s.onnx")
    onnx.save(m, path)
    with pytest.raises(A2QError, match="DepthToSpace of the MaxPool .* is not supported") as e:
        load_qonnx(path)
    assert "\n" not in str(e.value)
