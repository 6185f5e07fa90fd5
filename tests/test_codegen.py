"""Code generation: golden text of a tiny model, determinism, folding rules, types in the C++."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import hand_models
from golden_files import assert_matches_golden
from a2qhls import codegen
from a2qhls.errors import A2QError
from a2qhls.ir import IntType
from a2qhls.passes.folding import default_folding, divisors, validate_folding
from a2qhls.passes.thresholds import compute_thresholds
from a2qhls.passes.folding import apply_folding
from a2qhls.passes.acc_bits import apply_acc_bits



def _tiny():
    m = hand_models.mlp((4, 4, 2), seed=0, in_type=IntType(3, True), act_type=IntType(2, False), float_bias=True, name="tiny")
    compute_thresholds(m)
    fold = {"fc0": {"PE": 2, "SIMD": 2}, "fc1": {"PE": 1, "SIMD": 2}}
    return m, fold


def test_golden_tiny_project():
    """Every rendered file of a 4-4-2 model equals tests/golden/tiny/ (A2QHLS_REGEN_GOLDEN=1 rewrites)."""
    m, fold = _tiny()
    assert_matches_golden(codegen.generate(apply_folding(m, fold)), "tiny")


def test_generate_is_deterministic_and_uses_derived_widths():
    m, fold = _tiny()
    a, b = codegen.generate(apply_folding(m, fold)), codegen.generate(m)
    assert a == b
    layers = a["firmware/a2q_layers.h"]
    for i, d in enumerate(m.layers()):
        assert f"typedef ap_int<{d.acc.acc_bits}> layer{i}_acc_t;" in layers
    assert "#pragma HLS DATAFLOW" in a["firmware/a2q_top.cpp"]
    assert "#pragma HLS INTERFACE axis port=in" in a["firmware/a2q_top.cpp"]
    assert "#pragma HLS PIPELINE II=1" in a["firmware/a2q_top.cpp"]
    for step in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert step in a["vitis_hls.tcl"]


def test_override_changes_accumulator_type_and_thresholds():
    m, fold = _tiny()
    P = m.layers()[0].acc.acc_bits
    compute_thresholds(apply_acc_bits(m, {"fc0": P - 1}))
    files = codegen.generate(apply_folding(m, fold))
    assert f"typedef ap_int<{P - 1}> layer0_acc_t;" in files["firmware/a2q_layers.h"]
    assert "NARROWER THAN SAFE" in files["firmware/a2q_layers.h"]


def test_weights_are_folded_pe_major():
    """W[pe][nf*SF + sf][s] = weight[nf*PE + pe][sf*SIMD + s]."""
    m, fold = _tiny()
    lp = codegen.plan(apply_folding(m, fold))[0]
    W = codegen._weights_folded(lp)
    w = m.layers()[0].weight
    for pe in range(lp.PE):
        for nf in range(lp.NF):
            for sf in range(lp.SF):
                for s in range(lp.SIMD):
                    assert W[pe][nf * lp.SF + sf][s] == w[nf * lp.PE + pe, sf * lp.SIMD + s]


def test_default_folding_is_valid_and_balanced():
    m = hand_models.mlp((784, 64, 64, 10))
    f = default_folding(m)
    cyc = []
    for d in m.layers():
        pe, simd = f[d.name]["PE"], f[d.name]["SIMD"]
        assert d.channels % pe == 0 and d.K % simd == 0
        cyc.append((d.channels // pe) * (d.K // simd))
    assert f["fc0"] == {"PE": 16, "SIMD": 16}
    assert max(cyc) == cyc[0]  # the widest layer sets the pace, the others are not faster than needed


def test_invalid_folding_lists_valid_values():
    m = hand_models.mlp((12, 6, 4))
    with pytest.raises(A2QError, match=r"PE=4 must divide its 6 output channels.*valid PE values: 1, 2, 3, 6"):
        validate_folding(m, {"fc0": {"PE": 4}})
    with pytest.raises(A2QError, match=r"SIMD=5 .*valid SIMD values: 1, 2, 3, 4, 6, 12"):
        validate_folding(m, {"fc0": {"SIMD": 5}})
    with pytest.raises(A2QError, match="unknown layer 'nope'"):
        validate_folding(m, {"nope": {"PE": 1}})
    assert validate_folding(m, {"fc1": {"PE": 2, "SIMD": 3}})["fc1"] == {"PE": 2, "SIMD": 3}
    assert divisors(12) == [1, 2, 3, 4, 6, 12]


def test_templates_are_found():
    d = codegen.template_dir()
    assert (d / "layers.h.j2").is_file()


def test_no_cpp_in_python_sources():
    """C++ lives in templates only: no pragma/stream text in the Python code generator."""
    src = Path(codegen.__file__).read_text()
    code = re.sub(r'""".*?"""', "", src, flags=re.S)
    assert "#pragma" not in code and "hls::stream" not in code
