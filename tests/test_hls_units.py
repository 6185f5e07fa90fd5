"""Generated HLS units: word widths (AP_INT_MAX_W), loop structure, counted cycles against the summary."""
from __future__ import annotations

import numpy as np
import pytest

import hand_models
from a2qhls import codegen
from a2qhls.cosim import compile_csim, run_csim
from a2qhls.errors import A2QError
from a2qhls.ir import IntType
from a2qhls.passes.thresholds import compute_thresholds
from a2qhls.sim import BitSim


def _write(files: dict, prj) -> None:
    for rel, text in files.items():
        (prj / rel).parent.mkdir(parents=True, exist_ok=True)
        (prj / rel).write_text(text)


def test_wide_depthwise_word_sets_ap_int_max_w_and_csim_is_exact(tmp_path):
    """16 channels, 8-bit activations, depthwise PE=16 SIMD=9: a 1152-bit window word. The header
    raises AP_INT_MAX_W before ap_int.h, and the C simulation runs and equals the numpy model."""
    m = hand_models.cnn(seed=3, ch=16, act_type=IntType(8, False), hw=(4, 4))
    compute_thresholds(m)
    fold = {"conv1": {"PE": 16, "SIMD": 9}}
    from a2qhls.passes.folding import validate_folding

    fold = validate_folding(m, fold)
    files = codegen.generate(m, fold)
    name, bits = codegen.widest_word(codegen.plan(m, fold))
    assert bits > 1024, (name, bits)
    top_h = files["firmware/a2q_top.h"]
    assert f"#define AP_INT_MAX_W {bits}" in top_h
    assert top_h.index("AP_INT_MAX_W") < top_h.index('#include "ap_int.h"')
    layers_h = files["firmware/a2q_layers.h"]
    assert layers_h.index('#include "a2q_top.h"') < layers_h.index('#include "ap_int.h"')
    prj = tmp_path / "prj"
    _write(files, prj)
    compile_csim(prj, tmp_path / "csim")
    x = np.random.default_rng(0).uniform(-0.2, 1.2, size=(8, 2, 4, 4)).astype(np.float32)
    sim = BitSim(m)
    vals = sim.run(x, keep=True)
    cpp = run_csim(tmp_path / "csim", vals["x_q"].reshape(len(x), -1).astype(np.int64), tmp_path)
    assert np.array_equal(cpp, vals["out"])


def test_word_above_4096_bits_is_a_clear_error():
    m = hand_models.mlp((640, 4, 2), in_type=IntType(8, False))
    compute_thresholds(m)
    fold = {"fc0": {"PE": 1, "SIMD": 640}, "fc1": {"PE": 1, "SIMD": 4}}
    with pytest.raises(A2QError, match=r"5120 bits wide, above the 4096-bit limit"):
        codegen.plan(m, fold)
