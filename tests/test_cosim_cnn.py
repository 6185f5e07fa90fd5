"""g++ C simulation of generated CNN projects against the bit-accurate model and QONNX's executor.

Kept few and small (each g++ build takes a few seconds).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hand_models
from a2qhls import codegen
from a2qhls.cli import main
from a2qhls.cosimulation import compile_csim, run_csim
from a2qhls.ir import IntType
from a2qhls.sim import BitSim
from a2qhls.passes.folding import apply_folding
from a2qhls.passes.acc_bits import apply_acc_bits


def test_csim_cnn_bit_exact_with_model_including_wraparound(tmp_path):
    """Hand-built CNN (input zero-point, padding, stride, depthwise, max pool, fork + residual add
    with multipliers, average pool, dense head), every accumulator 2 bits narrower than safe:
    C++ equals the numpy model on the whole network and on every unit fed alone."""
    m = hand_models.cnn(seed=1, in_type=IntType(4, False, False, 2), dw={"stride": (2, 1), "pads": (1, 0, 1, 2)},
                        pool={"kernel": (2, 3), "stride": (1, 2)}, add_ratio=0.5, act_rounding="HALF_UP")
    narrow = {op.name: op.acc.acc_bits - 2 for op in m.accumulating_ops()}
    sim = BitSim(apply_acc_bits(m, narrow))
    fold = {"conv0": {"PE": 2, "SIMD": 6}, "conv1": {"PE": 2, "SIMD": 3}, "conv2": {"PE": 4, "SIMD": 2}, "fc": {"PE": 5, "SIMD": 2}}
    prj = tmp_path / "prj"
    for rel, text in codegen.generate(apply_folding(m, fold)).items():
        (prj / rel).parent.mkdir(parents=True, exist_ok=True)
        (prj / rel).write_text(text)
    compile_csim(prj, tmp_path / "csim")
    x = np.random.default_rng(0).uniform(-0.5, 1.5, size=(60, 2, 6, 6)).astype(np.float32)
    vals = sim.run(x, keep=True)
    n = len(x)
    cpp = run_csim(tmp_path / "csim", vals["x_q"].reshape(n, -1).astype(np.int64), tmp_path)
    assert np.array_equal(cpp, vals["out"])
    wrapped = 0
    for u in codegen.plan(m):
        if u.kind == "dup":
            continue
        q = np.concatenate([np.asarray(vals[t]).reshape(n, -1) for t in u.inputs], axis=1).astype(np.int64)
        got = run_csim(tmp_path / "csim", q, tmp_path, unit=u.index, tag=u.cname)
        assert np.array_equal(got, np.asarray(vals[u.out_tensor]).reshape(n, -1)), u.cname
        if u.has_acc:
            exact = sim.accumulate(u.dense, [vals[t] for t in u.inputs], exact=True)
            wrapped += int(np.any(exact != vals[u.dense.outputs[0]]))
    assert wrapped >= 3  # the narrow widths really wrapped


@pytest.fixture(scope="module")
def brevitas_cnn_onnx(tmp_path_factory):
    pytest.importorskip("brevitas")
    import brevitas_cnn

    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    brevitas_cnn.export_cnn(path)
    return path


def _cosim_json(capsys, argv) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(argv + ["--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_e2e_brevitas_a2qplus_cnn_exact_then_caught_one_bit_narrower(brevitas_cnn_onnx, tmp_path, capsys):
    """Brevitas 0.13.4 CNN (conv, A2Q+ depthwise, max pool, residual add, average pool, dense):
    build + cosim with digits and adversarial inputs: 0 mismatches at the derived widths;
    the depthwise layer one bit narrower: C++ still equals the model, QONNX does not."""
    import brevitas_cnn

    out = tmp_path / "prj"
    assert main(["build", str(brevitas_cnn_onnx), "--out", str(out)]) == 0
    summary = json.loads((out / "a2qhls.json").read_text())
    kinds = [ly["kind"] for ly in summary["layers"]]
    assert kinds == ["conv", "dw", "conv", "add", "avgpool", "mvu"]
    dw = summary["layers"][1]
    assert dw["acc_bits"] == dw["safe_acc_bits"] <= 12  # the A2Q+ target of the depthwise layer
    np.save(tmp_path / "digits.npy", brevitas_cnn.digits(100))
    rc, rep = _cosim_json(capsys, ["cosim", str(out), "--inputs", str(tmp_path / "digits.npy"), "--random", "100", "--adversarial"])
    assert rc == 0, rep
    assert rep["samples"] == 200 + 2 * len(kinds)
    assert rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0
    seen = {ly["layer"] for g in rep["groups"] for ly in g["layers"] if "skipped" not in ly}
    assert seen == {ly["name"] for ly in summary["layers"]}  # pools and adds are in the per-layer details

    narrow = tmp_path / "narrow"
    assert main(["build", str(brevitas_cnn_onnx), "--out", str(narrow), "--acc-bits", f"layer1={dw['acc_bits'] - 1}"]) == 0
    rc, rep = _cosim_json(capsys, ["cosim", str(narrow), "--random", "20", "--adversarial"])
    assert rc == 1
    assert rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] > 0
    adv = next(g for g in rep["groups"] if g["group"] == f"adversarial_{dw['name']}")
    assert adv["layers"][1]["samples_overflowing"] >= 1 and adv["mismatches_model_vs_qonnx"] >= 1
