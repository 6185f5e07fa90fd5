"""`a2qhls inspect`: output, JSON schema, and clean one-line errors for bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from a2qhls.cli import main
from qonnx_graphs import GraphBuilder, mlp, save

REQUIRED = {"name", "op", "K", "channels", "acc_bits", "acc_min", "acc_max", "acc_bits_datatype", "acc_bits_a2q",
            "acc_bits_a2qplus", "acc_bits_per_channel", "target_acc_bits"}


@pytest.fixture
def good(tmp_path):
    proto, ints, biases = mlp(bias="int")
    return save(proto, tmp_path / "good.onnx"), ints, biases


def run_cli(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_has_every_layer_in_order_with_required_fields(capsys, good):
    path, ints, biases = good
    rc, out, err = run_cli(capsys, "inspect", path, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["model"] == os.path.abspath(path)
    assert [l["name"] for l in doc["layers"]] == ["layer0", "layer1"]
    for layer, w in zip(doc["layers"], ints):
        assert REQUIRED <= set(layer)
        assert (layer["K"], layer["channels"]) == (w.shape[1], w.shape[0])
        assert layer["acc_bits"] == max(layer["acc_bits_per_channel"])
        assert layer["target_acc_bits"] is None
        assert "acc_min_per_channel" not in layer


def test_per_channel_json_and_text(capsys, good):
    path, ints, biases = good
    rc, out, _ = run_cli(capsys, "inspect", path, "--json", "--per-channel")
    layer = json.loads(out)["layers"][0]
    assert len(layer["acc_min_per_channel"]) == ints[0].shape[0]
    assert min(layer["acc_min_per_channel"]) == layer["acc_min"]
    rc, out, _ = run_cli(capsys, "inspect", path, "--per-channel")
    assert rc == 0
    assert "layer0: per-channel exact range" in out
    header = out.splitlines()[3]
    for col in ("layer", "op", "K", "in", "weight", "dtype", "a2q", "a2q+", "exact", "target", "worst ch"):
        assert col in header


def test_exceeding_target_is_flagged_with_exit_code_1(capsys, tmp_path):
    meta = {"a2qhls.layers": json.dumps({"layer1": {"target_acc_bits": 4, "quant": "a2q+"}})}
    proto, _, _ = mlp(metadata=meta)
    rc, out, _ = run_cli(capsys, "inspect", save(proto, tmp_path / "m.onnx"))
    assert rc == 1
    assert "exceeds the model's target" in out and "layer1" in out.splitlines()[-1]


def test_inspect_does_not_import_torch_and_runs_as_a_command(good):
    """Nor onnxruntime (qonnx's op package imports it): inspect stays a quick command."""
    path, _, _ = good
    code = ("import sys; from a2qhls.cli import main; rc = main(['inspect', sys.argv[1], '--json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "assert 'onnxruntime' not in sys.modules, 'onnxruntime was imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["layers"][0]["name"] == "layer0"


# ---------------------------------------------------------------- bad input


def assert_clean_error(capsys, args, *expect):
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2
    assert out == ""  # no partial output
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("a2qhls: error: ")
    assert "Traceback" not in err
    for e in expect:
        assert e in lines[0], lines[0]
    return lines[0]


def test_missing_path(capsys, tmp_path):
    assert_clean_error(capsys, ["inspect", str(tmp_path / "nope.onnx")], "nope.onnx", "no such file")


def test_not_an_onnx_file(capsys, tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a model\n" * 20)
    assert_clean_error(capsys, ["inspect", str(p)], "notes.onnx", "not")


def test_truncated_protobuf(capsys, good, tmp_path):
    path, _, _ = good
    data = open(path, "rb").read()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    assert_clean_error(capsys, ["inspect", str(p)], "cut.onnx")


def test_external_data_missing(capsys, tmp_path):
    proto, _, _ = mlp(sizes=(64, 32, 10))
    p = tmp_path / "ext.onnx"
    onnx.save(proto, str(p), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data", size_threshold=16)
    os.remove(tmp_path / "ext.data")
    assert_clean_error(capsys, ["inspect", str(p)], "ext.onnx", "ext.data", "not found")


def test_float_model_without_quant(capsys, tmp_path):
    g = GraphBuilder()
    w = g.const("w", np.ones((4, 3)))
    y = g.node("MatMul", ["x", w])
    p = save(g.model("x", y, [4], 3), tmp_path / "float.onnx")
    assert_clean_error(capsys, ["inspect", p], "float.onnx", "no Quant nodes")


def test_matmul_input_not_quantized(capsys, tmp_path):
    g = GraphBuilder()
    w = g.quant(g.const("w", np.ones((4, 3))), 0.5, 0, 4, True, True)
    y = g.node("MatMul", ["x", w], name="fc")
    p = save(g.model("x", y, [4], 3), tmp_path / "m.onnx")
    assert_clean_error(capsys, ["inspect", p], "'fc'", "MatMul", "not quantized")


def test_unsupported_op_is_named_with_the_supported_list(capsys, tmp_path):
    g = GraphBuilder()
    x = g.quant("x", 0.1, 0, 8, True, False)
    w = g.quant(g.const("w", np.ones((3, 4))), 0.5, 0, 4, True, True)
    y = g.node("Gemm", [x, w], {"transB": 1})
    y = g.node("Sigmoid", [y], name="sig")
    p = save(g.model("x", y, [4], 3), tmp_path / "m.onnx")
    line = assert_clean_error(capsys, ["inspect", p], "'sig'", "Sigmoid", "supported ops:")
    assert "Gemm" in line and "Quant" in line


def test_quant_scale_not_constant(capsys, tmp_path):
    g = GraphBuilder()
    z = g.const("z", 0)
    b = g.const("b", 8)
    x = g.node("Quant", ["x", "s", z, b], {"signed": 1, "narrow": 0, "rounding_mode": "ROUND"}, "qonnx.custom_op.general", "inq")
    w = g.quant(g.const("w", np.ones((3, 4))), 0.5, 0, 4, True, True)
    y = g.node("Gemm", [x, w], {"transB": 1})
    m = g.model("x", y, [4], 3)
    m.graph.input.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, []))
    p = save(m, tmp_path / "m.onnx")
    assert_clean_error(capsys, ["inspect", p], "'inq'", "scale", "not a constant")


def test_float_weights_without_quant(capsys, tmp_path):
    g = GraphBuilder()
    x = g.quant("x", 0.1, 0, 8, True, False)
    y = g.node("Gemm", [x, g.const("w", np.ones((3, 4)))], {"transB": 1}, name="fc")
    p = save(g.model("x", y, [4], 3), tmp_path / "m.onnx")
    assert_clean_error(capsys, ["inspect", p], "'fc'", "float weights", "without a Quant")


@pytest.mark.parametrize("bits", [0, 33])
def test_bit_width_out_of_range(capsys, tmp_path, bits):
    g = GraphBuilder()
    x = g.quant("x", 0.1, 0, 8, True, False)
    w = g.quant(g.const("w", np.ones((3, 4))), 0.5, 0, bits, True, True, name="wq")
    y = g.node("Gemm", [x, w], {"transB": 1})
    p = save(g.model("x", y, [4], 3), tmp_path / "m.onnx")
    assert_clean_error(capsys, ["inspect", p], "'wq'", f"bit width {bits}", "1..32")


def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "a2qhls", "--debug", "inspect", str(tmp_path / "nope.onnx")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_error_exit_code_from_the_real_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "a2qhls", "inspect", str(tmp_path / "nope.onnx")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
