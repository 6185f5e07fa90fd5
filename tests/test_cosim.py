"""Real g++ C simulation of generated projects, against the bit-accurate model and QONNX.

Kept few and small (each g++ build takes a few seconds).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import brevitas_calibrated as brevitas_mlp
import hand_models
from a2qhls import codegen
from a2qhls.cli import main
from a2qhls.cosimulation import compile_csim, run_csim
from a2qhls.errors import A2QError
from a2qhls.headers import find_headers
from a2qhls.ir import IntType
from a2qhls.passes.folding import default_folding
from a2qhls.sim import BitSim
from a2qhls.passes.folding import apply_folding
from a2qhls.passes.acc_bits import apply_acc_bits


def _write(files: dict, d: Path) -> None:
    for rel, text in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_csim_bit_exact_with_model_including_wraparound(tmp_path):
    """Hand-built 3-layer model (input zero-point, signed activations, float bias, folded PE/SIMD,
    a middle layer 2 bits too narrow): C++ and the numpy model agree on every output integer,
    from the network input and from each layer's input (--start)."""
    m = hand_models.mlp(
        (12, 8, 6, 4), seed=5, in_type=IntType(4, False, False, 3), act_type=IntType(3, True), float_bias=True,
        act_rounding="HALF_UP",
    )
    narrow = {"fc1": m.layers()[1].acc.acc_bits - 2}
    sim = BitSim(apply_acc_bits(m, narrow))
    fold = {"fc0": {"PE": 2, "SIMD": 3}, "fc1": {"PE": 3, "SIMD": 2}, "fc2": {"PE": 2, "SIMD": 6}}
    _write(codegen.generate(apply_folding(m, fold)), tmp_path / "prj")
    binary = tmp_path / "csim"
    compile_csim(tmp_path / "prj", binary)
    rng = np.random.default_rng(0)
    for start, tensor in enumerate(["x_q", "act0", "act1"]):
        t = m.tensors[tensor].dtype
        q = rng.integers(t.qmin, t.qmax + 1, size=(300, m.tensors[tensor].channels))
        q[0], q[1] = t.qmin, t.qmax
        d = m.layers()[start]
        q[2], q[3] = d.acc.adversarial_max + t.zero_point, d.acc.adversarial_min + t.zero_point
        vals = sim.run(q, start=tensor, keep=True)
        cpp = run_csim(binary, q, tmp_path, start=start, tag=f"s{start}")
        assert np.array_equal(cpp, vals["acc2"])
        if start == 1:  # the narrow layer really wrapped on its adversarial inputs
            exact = sim.dense(sim.stages["fc1"], vals[m.layers()[1].inputs[0]], exact=True)
            assert np.any(exact != vals["acc1"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    a2qp = d / "a2qplus.onnx"
    base = d / "baseline.onnx"
    brevitas_mlp.export_mlp(a2qp, (24, 16, 16, 10), a2qplus=True, acc_bits=12, w_bits=4, a_bits=4, seed=1)
    brevitas_mlp.export_mlp(base, (24, 16, 10), a2qplus=False, w_bits=8, a_bits=4, seed=2)
    return {"a2qplus": a2qp, "baseline": base}


def _cosim_json(capsys, argv) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(argv + ["--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_e2e_a2qplus_exact_then_overflow_at_width_minus_one(exported, tmp_path, capsys):
    out = tmp_path / "a2qp"
    assert main(["build", str(exported["a2qplus"]), "--out", str(out)]) == 0
    summary = json.loads((out / "a2qhls.json").read_text())
    layers_h = (out / "firmware" / "a2q_layers.h").read_text()
    for ly in summary["layers"]:
        assert ly["acc_bits"] == ly["safe_acc_bits"] <= 12
        assert f"typedef ap_int<{ly['acc_bits']}> {ly['cname']}_acc_t;" in layers_h
    rc, rep = _cosim_json(capsys, ["cosim", str(out), "--random", "300", "--adversarial"])
    assert rc == 0, rep
    assert rep["samples"] == 300 + 2 * len(summary["layers"])
    assert rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0
    assert [g["group"] for g in rep["groups"]][1:] == [f"adversarial_{ly['name']}" for ly in summary["layers"]]

    # 1 bit too narrow on the first layer: C++ and the model still agree, QONNX does not.
    narrow = tmp_path / "narrow"
    P = summary["layers"][0]["acc_bits"]
    capsys.readouterr()
    assert main(["build", str(exported["a2qplus"]), "--out", str(narrow), "--acc-bits", f"layer0={P - 1}"]) == 0
    assert "below its safe width" in capsys.readouterr().err
    rc, rep = _cosim_json(capsys, ["cosim", str(narrow), "--random", "50", "--adversarial"])
    assert rc == 1
    assert rep["mismatches_cpp_vs_model"] == 0
    assert rep["mismatches_model_vs_qonnx"] > 0
    adv0 = rep["groups"][1]
    assert adv0["layers"][0]["samples_overflowing"] >= 1 and adv0["mismatches_model_vs_qonnx"] >= 1


BUNDLED = Path(__file__).resolve().parents[1] / "examples" / "digits_a2qplus_p12.onnx"


def test_e2e_trained_brevitas_a2qplus_at_12_bits(tmp_path, capsys):
    """The bundled model: trained by Brevitas with A2Q+ at a 12-bit target, exported with its trained
    integers (a2qhls.frontend.brevitas). Its MVUs get the derived widths (<= 12), cosim is exact on
    random and adversarial inputs, and one bit less on the 12-bit layer is caught."""
    out = tmp_path / "hls"
    assert main(["build", str(BUNDLED), "--out", str(out)]) == 0
    summary = json.loads((out / "a2qhls.json").read_text())
    layers_h = (out / "firmware" / "a2q_layers.h").read_text()
    widths = [ly["acc_bits"] for ly in summary["layers"]]
    assert max(widths) == 12 and all(w <= 12 for w in widths)
    for ly in summary["layers"]:
        assert f"typedef ap_int<{ly['acc_bits']}> {ly['cname']}_acc_t;" in layers_h
    rc, rep = _cosim_json(capsys, ["cosim", str(out), "--random", "300", "--adversarial"])
    assert rc == 0 and rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0
    i12 = widths.index(12)
    narrow = tmp_path / "narrow"
    assert main(["build", str(BUNDLED), "--out", str(narrow), "--acc-bits", f"layer{i12}=11"]) == 0
    rc, rep = _cosim_json(capsys, ["cosim", str(narrow), "--random", "50", "--adversarial"])
    assert rc == 1 and rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] > 0


def test_e2e_baseline_mlp_exact(exported, tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["build", str(exported["baseline"]), "--out", str(out)]) == 0
    x = np.random.default_rng(3).normal(0, 2, size=(40, 24)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc, rep = _cosim_json(capsys, ["cosim", str(out), "--random", "200", "--adversarial", "--inputs", str(tmp_path / "x.npy")])
    assert rc == 0, rep
    assert rep["samples"] == 40 + 200 + 4
    assert rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0


# ----------------------------------------------------------------------------- clean failures (no g++ run)


def _err(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("a2qhls: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_build_refuses_bad_inputs_and_leaves_nothing(exported, tmp_path, capsys):
    assert "no such file" in _err(capsys, ["build", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "o1")])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    _err(capsys, ["build", str(junk), "--out", str(tmp_path / "o2")])
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert "not empty" in _err(capsys, ["build", str(exported["a2qplus"]), "--out", str(full)])
    assert (full / "keep.txt").read_text() == "x"
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"node_linear": {"PE": 5}}))
    assert "valid PE values: 1, 2, 4, 8, 16" in _err(capsys, ["build", str(exported["a2qplus"]), "--out", str(tmp_path / "o3"), "--folding", str(fold)])
    assert "unknown layer" in _err(capsys, ["build", str(exported["a2qplus"]), "--out", str(tmp_path / "o4"), "--acc-bits", "nope=8"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold.json", "full", "junk.onnx"]


def test_build_is_byte_identical_and_force_replaces(exported, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["build", str(exported["a2qplus"]), "--out", str(a)]) == 0
    assert main(["build", str(exported["a2qplus"]), "--out", str(b)]) == 0
    fa = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b): p.read_bytes() for p in b.rglob("*") if p.is_file()}
    assert fa == fb and Path("a2qhls.json") in fa and Path("model.onnx") in fa
    (a / "firmware" / "stale.h").write_text("old")  # a file of an older build: replaced
    assert main(["build", str(exported["a2qplus"]), "--out", str(a), "--force"]) == 0
    assert not (a / "firmware" / "stale.h").exists()
    (a / "notes.txt").write_text("mine")  # a file build did not write: --force refuses
    assert main(["build", str(exported["a2qplus"]), "--out", str(a), "--force"]) == 2
    assert (a / "notes.txt").read_text() == "mine"
    (a / "notes.txt").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_cosim_clean_errors(exported, tmp_path, capsys, monkeypatch):
    assert "a2qhls.json" in _err(capsys, ["cosim", str(tmp_path)])
    out = tmp_path / "prj"
    assert main(["build", str(exported["baseline"]), "--out", str(out)]) == 0
    assert "nothing to simulate" in _err(capsys, ["cosim", str(out)])
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), dtype=np.float32))
    assert "do not match the model input" in _err(capsys, ["cosim", str(out), "--inputs", str(tmp_path / "bad.npy")])
    monkeypatch.setenv("CXX", "definitely-not-a-compiler")
    assert "not found on PATH" in _err(capsys, ["cosim", str(out), "--random", "2"])
    monkeypatch.delenv("CXX")
    monkeypatch.setenv("XILINX_HLS", str(tmp_path / "no-vitis"))
    assert "XILINX_HLS" in _err(capsys, ["cosim", str(out), "--random", "2"])


def test_headers_come_from_hls4ml_wheel(monkeypatch):
    monkeypatch.delenv("XILINX_HLS", raising=False)
    d = find_headers()
    assert (d / "ap_int.h").is_file() and "hls4ml" in str(d) and "site-packages" in d.parts
    # never copied into this repo: no Xilinx header is tracked
    import subprocess

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    if r.returncode == 0:
        assert not [f for f in r.stdout.split() if Path(f).name in ("ap_int.h", "hls_stream.h", "ap_int_base.h")]


def test_qonnx_reference_on_a_subset_says_how_many(exported, tmp_path, capsys, monkeypatch):
    """A large net's QONNX reference runs on the first samples of each group that fit the MAC budget
    (or --ref-samples); C++ vs model still covers every sample, and the output says how many QONNX ran."""
    from a2qhls import cosimulation
    from a2qhls.cosimulation import macs_per_sample

    out = tmp_path / "p"
    assert main(["build", str(exported["a2qplus"]), "--out", str(out)]) == 0
    n_layers = len(json.loads((out / "a2qhls.json").read_text())["layers"])
    rc, rep = _cosim_json(capsys, ["cosim", str(out), "--random", "10", "--adversarial", "--ref-samples", "3"])
    assert rc == 0 and rep["samples"] == 10 + 2 * n_layers
    assert [g["qonnx_samples"] for g in rep["groups"]] == [3] + [2] * n_layers
    assert rep["qonnx_samples"] == 3 + 2 * n_layers
    # the default: as many as fit the budget (here set to 4 samples' worth)
    from a2qhls import load_qonnx

    macs = macs_per_sample(load_qonnx(str(out / "model.onnx")))
    assert macs == 24 * 16 + 16 * 16 + 16 * 10
    monkeypatch.setattr(cosimulation, "REF_MAC_BUDGET", 4 * macs)
    capsys.readouterr()
    assert main(["cosim", str(out), "--random", "10"]) == 0
    text = capsys.readouterr().out
    assert "model vs QONNX (on 4)" in text and "QONNX run on 4 of 10 samples" in text
