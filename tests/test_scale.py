"""Scale of the generated project: weights packed into hex words, units split over translation units."""
from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

import hand_models
from a2qhls import codegen
from a2qhls.cosimulation import compile_csim, run_csim
from a2qhls.headers import find_headers
from a2qhls.ir import IntType
from a2qhls.passes.folding import apply_folding, default_folding
from a2qhls.passes.thresholds import compute_thresholds
from a2qhls.sim import BitSim


@pytest.mark.parametrize("w_bits,simd", [(2, 48), (3, 48), (4, 16), (5, 24), (8, 12)])
def test_packed_weight_words_unpack_to_the_folded_weights(w_bits, simd):
    """Word k of (pe, tile) holds weights s = k*(64//B) + j at bits [j*B, j*B+B-1] as B-bit two's
    complement; unpacking every word gives back W[pe][tile][s] (several words when SIMD*B > 64)."""
    m = hand_models.mlp((48, 6, 4), seed=w_bits, w_bits=w_bits)
    compute_thresholds(m)
    apply_folding(m, {"fc0": {"PE": 2, "SIMD": simd}, "fc1": {"PE": 1, "SIMD": 6}})
    lp = codegen.plan(m)[0]
    W = codegen._weights_folded(lp)
    assert (W < 0).any()
    words = codegen.weight_words(lp)
    assert len(words) == -(-simd // (64 // w_bits))
    got = np.zeros_like(W)
    for s0, n, bits, word in words:
        assert bits == n * w_bits <= 64 and word.dtype == np.uint64
        for j in range(n):
            f = ((word >> np.uint64(j * w_bits)) & np.uint64((1 << w_bits) - 1)).astype(np.int64)
            got[:, :, s0 + j] = np.where(f >= 1 << (w_bits - 1), f - (1 << w_bits), f)
    assert np.array_equal(got, W)
    text = codegen.generate(m)[f"firmware/weights/{lp.cname}_w.h"]
    assert all(f"{lp.cname}_W{k}[2][{lp.NF * lp.SF}]" in text for k in range(len(words)))
    assert "0x" in text


def test_units_split_over_translation_units_are_bit_exact(tmp_path, monkeypatch):
    """With a small budget every unit is its own translation unit (firmware/layers/part<g>.cpp);
    every weight and threshold header is included by exactly one; cosim's compiler calls and
    build_csim.sh both build it, and the C simulation equals the numpy model bit for bit."""
    monkeypatch.setattr(codegen, "TU_BUDGET", 1)
    m = hand_models.cnn(seed=5)
    compute_thresholds(m)
    apply_folding(m, default_folding(m))
    files = codegen.generate(m)
    units = codegen.plan(m)
    parts = sorted(f for f in files if f.startswith("firmware/layers/"))
    assert len(parts) == len(units) - 1  # unit 0 with the top
    cpp = {f: t for f, t in files.items() if f.endswith(".cpp") and f.startswith("firmware/")}
    for h in (f for f in files if f.startswith("firmware/weights/")):
        inc = f'#include "{h.removeprefix("firmware/")}"'
        assert sum(inc in t for t in cpp.values()) == 1, h
    prj = tmp_path / "prj"
    for rel, text in files.items():
        (prj / rel).parent.mkdir(parents=True, exist_ok=True)
        (prj / rel).write_text(text)
    cmds = codegen.csim_commands(prj, include="INC", obj="OBJ")
    assert len(cmds) == len(parts) + 3  # top, testbench, the parts, link
    compile_csim(prj, tmp_path / "csim")
    x = np.random.default_rng(2).uniform(-0.5, 1.5, size=(6, 2, 6, 6)).astype(np.float32)
    vals = BitSim(m).run(x, keep=True)
    q = vals["x_q"].reshape(len(x), -1).astype(np.int64)
    assert np.array_equal(run_csim(tmp_path / "csim", q, tmp_path), vals["out"])
    env = dict(os.environ, AP_INCLUDE=str(find_headers()), CSIM_BIN=str(tmp_path / "csim_sh"), JOBS="2")
    env.pop("CXXFLAGS", None)
    r = subprocess.run(["bash", str(prj / "build_csim.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(run_csim(tmp_path / "csim_sh", q, tmp_path), vals["out"])
    tcl = files["vitis_hls.tcl"]
    assert all(f'add_files "$root/{p}"' in tcl for p in parts)


def test_large_layers_get_their_own_translation_unit(monkeypatch):
    """A layer whose weights exceed the budget closes its group: no translation unit holds two of them."""
    monkeypatch.setattr(codegen, "TU_BUDGET", 1 << 20)  # 1M weights: each 1024x1024 layer reaches it
    m = hand_models.mlp((1024, 1024, 1024, 10), seed=0)
    compute_thresholds(m)
    apply_folding(m, default_folding(m))
    groups = codegen.unit_groups(codegen.plan(m))
    names = [[u.cname for u in g] for g in groups]
    assert names[:2] == [["layer0"], ["layer1"]] and len(names) == 3 and "layer2" in names[2]
    assert [u.cname for g in groups for u in g] == [u.cname for u in codegen.plan(m)]


def _project(m, tmp_path, name):
    prj = tmp_path / name
    for rel, text in codegen.generate(m).items():
        (prj / rel).parent.mkdir(parents=True, exist_ok=True)
        (prj / rel).write_text(text)
    return prj


@pytest.mark.parametrize("kind", ["mlp_wrapping", "cnn_wrapping"])
def test_native_csim_path_equals_the_ap_int_path_bit_for_bit(kind, tmp_path):
    """The C simulation's native-integer sums (the default) and the ap_int path that synthesis
    compiles (forced in C simulation with -DA2Q_CSIM_AP_INT) give the same outputs on accumulators
    narrowed below their safe width (so they wrap), and both equal the numpy model."""
    from a2qhls.passes.acc_bits import apply_acc_bits

    if kind == "mlp_wrapping":
        m = hand_models.mlp((40, 12, 6), seed=7, in_type=IntType(8, False), w_bits=5)
        apply_acc_bits(m, {"fc0": m.layers()[0].acc.acc_bits - 4, "fc1": m.layers()[1].acc.acc_bits - 3})
        x = np.random.default_rng(3).uniform(-1, 20, size=(24, 40)).astype(np.float32)
    else:
        # every accumulating op narrowed (layers, the residual add, the average pool), so they wrap
        m = hand_models.cnn(seed=9, w_bits=6, in_type=IntType(4, False, False, 3))
        apply_acc_bits(m, {d.name: d.acc.acc_bits - 3 for d in m.accumulating_ops()})
        x = np.random.default_rng(3).uniform(-0.5, 1.5, size=(12, 2, 6, 6)).astype(np.float32)
    compute_thresholds(m)
    # the CNN folded so its first convolution's window generator streams (SIMD = C_in, input zero-point 3)
    apply_folding(m, {"layer0": {"PE": 4, "SIMD": 2}, "layer1": {"PE": 4, "SIMD": 1}} if kind == "cnn_wrapping" else default_folding(m))
    plan = codegen.plan(m)
    units = [u for u in plan if u.has_weights]
    assert units and all(u.native_csim and u.P < u.safe_bits for u in units)
    if kind == "cnn_wrapping":  # the native add and window paths are exercised too
        assert [u for u in plan if u.native_add and u.P < u.safe_bits]
        assert [u for u in plan if u.kind == "conv" and u.swg_streaming and u.zp] and [u for u in plan if u.kind == "dw" and u.swg_streaming]
    prj = _project(m, tmp_path, "prj")
    assert "#if !defined(__SYNTHESIS__) && !defined(A2Q_CSIM_AP_INT)" in (prj / "firmware/a2q_top.cpp").read_text()
    compile_csim(prj, tmp_path / "native")
    compile_csim(prj, tmp_path / "ap", cxxflags="-O1 -DA2Q_CSIM_AP_INT")
    vals = BitSim(m).run(x, keep=True)
    q = vals["x_q"].reshape(len(x), -1).astype(np.int64)
    native = run_csim(tmp_path / "native", q, tmp_path, tag="n")
    ap = run_csim(tmp_path / "ap", q, tmp_path, tag="a")
    want = vals[m.outputs[0]].reshape(len(x), -1)
    assert np.array_equal(native, ap) and np.array_equal(native, want)
    assert len(np.unique(native)) > 1
