"""Cosim survives its reference (issue 9, section 7): QONNX's float32 sums above 2^24 are not
blamed on a2qhls, and when QONNX cannot run at all, C++ vs model still stands (exit 3)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from onnx import helper

import qonnx_graphs
from a2qhls.cli import main

CASES = Path(__file__).resolve().parent.parent.parent / "shared" / "cases"


def _cosim(capsys, out, *args):
    capsys.readouterr()
    rc = main(["cosim", str(out), *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_wide_accumulator_float32_boundary_no_false_alarm_and_narrow_still_caught(tmp_path, capsys):
    """uint8 x int8, K=1028, 27-bit accumulator, float output: QONNX's float32 Gemm differs from the
    exact sum by up to one step on half the samples; the float64 rerun of the same graph agrees with
    the model, so no mismatch. One bit narrower (wraps) is still a mismatch."""
    src = CASES / "wide_acc_float32_boundary.onnx"
    if not src.is_file():
        pytest.skip(f"{src} not present (../shared/cases)")
    model = shutil.copy(src, tmp_path / "wide.onnx")
    out = tmp_path / "p"
    assert main(["build", str(model), "--out", str(out)]) == 0
    rc, rep = _cosim(capsys, out, "--random", "100", "--adversarial")
    assert rep["acc_bits"] == {"Gemm_0": 27}
    assert rc == 0 and rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0, rep
    assert rep["qonnx_float32_rounding"] > 0  # the differences were there, and explained
    out26 = tmp_path / "p26"
    assert main(["build", str(model), "--out", str(out26), "--acc-bits", "Gemm_0=26"]) == 0
    rc, rep = _cosim(capsys, out26, "--adversarial")
    assert rc == 1 and rep["mismatches_model_vs_qonnx"] >= 1 and rep["qonnx_float32_rounding"] == 0, rep


def test_float32_output_bound_explains_without_the_float64_rerun(tmp_path, capsys, monkeypatch):
    """onnxruntime has no float64 Conv, so on CNNs the float64 rerun cannot run; an unquantized
    output that QONNX sums in float32 is then judged by the float32 dot-product error bound
    ((K + 1) 2^-24 (acc_max - acc_min) scale): the wide fixture's differences stay explained with the
    rerun disabled, and one bit narrower (a wrap, far beyond the bound) is still a mismatch."""
    from a2qhls import cosimulation

    src = CASES / "wide_acc_float32_boundary.onnx"
    if not src.is_file():
        pytest.skip(f"{src} not present (../shared/cases)")
    monkeypatch.setattr(cosimulation, "_reference_agrees", lambda *a, **k: np.zeros(len(a[4]), dtype=bool))
    model = shutil.copy(src, tmp_path / "wide.onnx")
    out = tmp_path / "p"
    assert main(["build", str(model), "--out", str(out)]) == 0
    rc, rep = _cosim(capsys, out, "--random", "100")
    assert rc == 0 and rep["mismatches_model_vs_qonnx"] == 0 and rep["qonnx_float32_rounding"] > 0, rep
    out26 = tmp_path / "p26"
    assert main(["build", str(model), "--out", str(out26), "--acc-bits", "Gemm_0=26"]) == 0
    rc, rep = _cosim(capsys, out26, "--adversarial")
    assert rc == 1 and rep["mismatches_model_vs_qonnx"] >= 1, rep


def test_reference_that_cannot_run_reports_cpp_vs_model_and_exits_3(tmp_path, capsys, monkeypatch):
    """QONNX's executor failing leaves C++ vs model standing: exit 3, one line saying why.

    A model with an attribute onnxruntime rejects is now refused at the door (build runs
    onnx.checker, issue 9 section 4), so the executor's failure, onnxruntime's error for such an
    attribute, is raised where cosim calls qonnx's ``execute_onnx``."""
    m, _, _ = qonnx_graphs.mlp(sizes=(12, 8, 5), bias="int")
    bad = qonnx_graphs.mlp(sizes=(12, 8, 5), bias="int")[0]
    for n in bad.graph.node:
        if n.op_type == "Gemm":
            n.attribute.append(helper.make_attribute("a2qhls_test_unknown", 1))
    assert main(["build", qonnx_graphs.save(bad, tmp_path / "bad.onnx"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "Unrecognized attribute" in err and err.count("\n") == 1 and not (tmp_path / "b").exists()
    path = qonnx_graphs.save(m, tmp_path / "m.onnx")
    out = tmp_path / "p"
    assert main(["build", path, "--out", str(out)]) == 0
    capsys.readouterr()
    import qonnx.core.onnx_exec as onnx_exec

    def execute_onnx(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Unrecognized attribute: a2qhls_test_unknown for operator Gemm")

    monkeypatch.setattr(onnx_exec, "execute_onnx", execute_onnx)
    assert main(["cosim", str(out), "--random", "20"]) == 3
    text = capsys.readouterr().out
    lines = [l for l in text.splitlines() if "QONNX reference could not run" in l]
    assert "Unrecognized attribute" in lines[0] and "C++ vs model 0 mismatches" in text and "total 20 samples" in text
    assert len(lines) == 1 and "PASS (C++ vs model only)" in text


def _reshape_mlp(order: str):
    """A TorchScript-style MLP on a [1, 3, 4] input whose flatten is a Reshape to a fixed [1, -1]
    (so QONNX cannot run a batch), before or after the input Quant."""
    import numpy as np
    from onnx import numpy_helper

    m, _, _ = qonnx_graphs.mlp(sizes=(12, 8, 5), bias="int", flatten_input=(3, 4), batch=1)
    g = m.graph
    fl, q = g.node[0], g.node[1]
    assert fl.op_type == "Flatten" and q.op_type == "Quant"
    fl.op_type = "Reshape"
    del fl.attribute[:]
    g.initializer.append(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape_1_m1"))
    fl.input.append("shape_1_m1")
    if order == "quant_first":
        out = q.output[0]
        q.input[0], q.output[0] = "x", "x_q"
        fl.input[0], fl.output[0] = "x_q", out
        nodes = [onnx_copy(q), onnx_copy(fl)] + [onnx_copy(n) for n in g.node[2:]]
        del g.node[:]
        g.node.extend(nodes)
    return m


def onnx_copy(n):
    import onnx

    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c


@pytest.mark.parametrize("order", ["reshape_first", "quant_first"])
def test_fixed_batch_reshape_runs_per_sample(order, tmp_path, capsys):
    """A Reshape [1, -1] (TorchScript export) before or after the input Quant: the model finds
    its input, and QONNX, which cannot take a batch, runs sample by sample: bit-exact."""
    path = qonnx_graphs.save(_reshape_mlp(order), tmp_path / "m.onnx")
    out = tmp_path / "p"
    assert main(["build", path, "--out", str(out)]) == 0
    rc, rep = _cosim(capsys, out, "--random", "24", "--adversarial")
    assert rc == 0 and rep["qonnx_error"] is None, rep
    assert rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0 and rep["samples"] == 28
