"""Models with several graph outputs: one AXI-stream output port each (``out0``, ``out1``, ... in graph-output
order), a graph output that a later layer also reads duplicated into its reader and its port, a2qhls.json listing
every port, the testbench and ``a2qhls cosim`` checking every output bit for bit (C++ vs the numpy model) and
against QONNX, naming the output that differs. Single-output projects are unchanged (the golden tests)."""
import json

import numpy as np
import onnx
import pytest

import multi_output_models as mm
from cosim_run import assert_exact, build_and_cosim


def _build(tmp_path, capsys, model, name):
    from a2qhls.cli import main

    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    out = tmp_path / name
    assert main(["build", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    return path, out


def test_ports_follow_graph_output_order_and_a_read_output_is_duplicated(tmp_path, capsys):
    """Outputs ``(y, a)`` with ``y = Quant(fc(flatten(a)))``: ``a`` is made before ``y`` and is read by the fc, so a
    dup copies it into the fc and into port out1; out0 carries ``y``. a2qhls.json lists both ports with their
    tensors, names, shapes (QONNX's too) and adapters; the testbench's expected lines hold y then a."""
    from a2qhls import codegen
    from a2qhls.cosimulation import load_project

    _, out = _build(tmp_path, capsys, mm.tap(("y", "a")), "tap")
    top = (out / "firmware" / "a2q_top.cpp").read_text()
    assert "void a2q_top(hls::stream<a2q_axis_in> &in, hls::stream<a2q_axis_out0> &out0, hls::stream<a2q_axis_out1> &out1)" in top
    s = json.loads((out / "a2qhls.json").read_text())
    assert "output" not in s and "output" not in s["interface"]
    assert [(o["port"], o["tensor"], o["name"]) for o in s["outputs"]] == [("out0", "y", "y"), ("out1", "a", "a")]
    ports = s["interface"]["outputs"]
    assert [(p["port"], p["elements"], p["shape"], p["onnx_shape"]) for p in ports] == [
        ("out0", 5, [5], [5]), ("out1", 128, [4, 4, 8], [8, 4, 4])]
    assert [(u["cname"], u["output"]) for u in s["units"] if u["kind"] == "axis_out"] == [
        ("a2q_out0_adapter", "y"), ("a2q_out1_adapter", "a")]
    assert all(u["cost"]["LUT"] > 0 for u in s["units"] if u["kind"] == "axis_out")
    # the netlist: a's dup feeds the fc (one copy) and port out1 (its last copy); the fc writes out0's stream
    project = load_project(out)
    calls = dict(codegen.netlist(codegen.plan(project.model))[1])
    dup = next(fn for fn in calls if fn.startswith("dup"))
    assert calls["a2q_out1_adapter"] == [calls[dup][2], "out1"] and calls["a2q_out0_adapter"] == ["sout0", "out0"]
    assert calls[dup][1] in calls["layer1"]
    # the testbench's expected lines: y's 5 values then a's 128 (channels last), as the numpy model computes them
    q = np.loadtxt(out / "tb_data" / "inputs.txt", dtype=np.int64)
    rows = np.loadtxt(out / "tb_data" / "expected.txt", dtype=np.int64)
    vals = project.sim.run(q, start=project.model.ops[0].outputs[0])
    assert rows.shape == (len(q), 5 + 128)
    np.testing.assert_array_equal(rows[:, :5], np.asarray(vals["y"]).reshape(len(q), -1))
    np.testing.assert_array_equal(rows[:, 5:], np.asarray(vals["a"]).reshape(len(q), -1))


def test_two_heads_cosim_exact_on_every_output(tmp_path, capsys):
    """Two heads on one feature map (y1 quantized, y2 an accumulator): g++ C simulation, the numpy model and
    QONNX agree bit for bit on both outputs, random and adversarial; the report counts each output."""
    path = tmp_path / "two_heads.onnx"
    onnx.save(mm.two_heads(), str(path))
    rc, rep = build_and_cosim(path, tmp_path / "prj", capsys, "--random", "20", "--adversarial")
    assert_exact(rc, rep)
    net = [g for g in rep["groups"] if "outputs" in g]
    assert {g["group"] for g in net} >= {"random"}
    for g in net:
        assert [(o["port"], o["name"]) for o in g["outputs"]] == [("out0", "y1"), ("out1", "y2")]
        assert all(o["mismatches_cpp_vs_model"] == 0 and o["output_mismatches_model_vs_qonnx"] == 0 for o in g["outputs"])


def test_cosim_names_the_output_that_differs(tmp_path, capsys):
    """The output that is also read (``a``, port out1) through g++: exact; then the generated C++ of port out1's
    adapter flips bit 0 of each beat: cosim fails and counts the mismatches on out1 only."""
    from a2qhls.cli import main

    _, out = _build(tmp_path, capsys, mm.tap(("y", "a")), "tap")
    assert main(["cosim", str(out), "--random", "6", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert_exact(0, rep)
    top = out / "firmware" / "a2q_top.cpp"
    text = top.read_text()
    fn = text.index("static void a2q_out1_adapter(")
    i = text.index("        out.write(v);", fn)
    top.write_text(text[:i] + "        v.data ^= 1;\n" + text[i:])
    assert main(["cosim", str(out), "--random", "6", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    (g,) = rep["groups"]
    assert rep["mismatches_cpp_vs_model"] == 6
    assert [(o["port"], o["mismatches_cpp_vs_model"]) for o in g["outputs"]] == [("out0", 0), ("out1", 6)]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_brevitas_two_output_net_build_and_cosim(tmp_path, capsys, exporter):
    """A Brevitas net returning ``(logits, feature map)``, the map also read by the head: each exporter's file
    builds with two ports in that order and cosim is exact on both outputs."""
    import torch
    from brevitas_two_outputs import make_two_output_net
    from cnn_patterns import export_both

    path = export_both(make_two_output_net(), torch.zeros(1, 1, 8, 8), tmp_path, "two", exporters=(exporter,))[exporter]
    rc, rep = build_and_cosim(path, tmp_path / "prj", capsys, "--random", "10")
    assert_exact(rc, rep)
    s = json.loads((tmp_path / "prj" / "a2qhls.json").read_text())
    assert [p["elements"] for p in s["interface"]["outputs"]] == [10, 4 * 8 * 8]
    (g,) = rep["groups"]
    assert [o["port"] for o in g["outputs"]] == ["out0", "out1"]
