"""CNN code generation: golden text of a tiny model with every unit kind, folding rules, FIFO depths."""
from __future__ import annotations


import pytest

import hand_models
from golden_files import assert_matches_golden
from a2qhls import codegen
from a2qhls.errors import A2QError
from a2qhls.ir import IntType
from a2qhls.passes.folding import default_folding, layer_cycles, validate_folding
from a2qhls.passes.thresholds import compute_thresholds
from a2qhls.passes.folding import apply_folding



def _tiny():
    m = hand_models.cnn(seed=2, hw=(4, 4), cin=1, ch=2, n_out=2, in_type=IntType(3, False, False, 1),
                        act_type=IntType(2, False), name="tiny_cnn")
    compute_thresholds(m)
    fold = {"conv0": {"PE": 2, "SIMD": 3}, "conv1": {"PE": 1, "SIMD": 3}, "conv2": {"PE": 2, "SIMD": 2}, "fc": {"PE": 1, "SIMD": 2}}
    return m, fold


def test_golden_tiny_cnn_project():
    """conv (window generator + MVU), depthwise (+ VVU), max pool, fork, residual add, average pool,
    dense head: every rendered file equals tests/golden/tiny_cnn/ (A2QHLS_REGEN_GOLDEN=1 rewrites)."""
    m, fold = _tiny()
    assert_matches_golden(codegen.generate(apply_folding(m, fold)), "tiny_cnn")


def test_units_streams_and_fifo_depth_on_the_bypass():
    m, fold = _tiny()
    units = codegen.plan(apply_folding(m, fold))
    # width converters: the pooled 1-channel words to conv2's SIMD=2 (its one-loop window generator
    # stores SIMD-channel words), conv2's 2-channel words to the add's 1 (the bypass's), and the
    # pool's 1-element words into the dense layer's SIMD=2 words
    assert [u.kind for u in units] == ["conv", "dw", "maxpool", "dup", "dwc", "conv", "dwc", "add", "avgpool", "dwc", "mvu"]
    assert [u.swg_streaming for u in units if u.kind in ("conv", "dw")] == [False, False, True]
    files = codegen.generate(m)
    top = files["firmware/a2q_top.cpp"]
    assert "a2q_in_adapter(in, sin);" in top and "layer0_swg(sin, s0w);" in top and "dup0(s2, s3_0, s3_1);" in top and "dwc1(s5, s6);" in top and "add0(s3_1, s6, s7);" in top
    depths = codegen.fork_depths(units)
    # the bypass (copy 1, straight into the add) buffers the conv branch's window rows; the other needs nothing
    assert depths[(3, 0)] == 2 and depths[(3, 1)] > 2
    assert f"#pragma HLS STREAM variable=s3_1 depth={depths[(3, 1)]}" in top
    layers_h = files["firmware/a2q_layers.h"]
    for u in units:
        if u.has_acc:
            assert f"typedef ap_int<{u.P}> {u.cname}_acc_t;" in layers_h
    s = codegen.summary(m)
    assert [ly["kind"] for ly in s["layers"]] == ["conv", "dw", "conv", "add", "avgpool", "mvu"]
    assert s["cycles_per_image"] == max(u["cycles_per_image"] for u in s["units"])


def test_conv_folding_rules():
    m = hand_models.cnn(seed=0, hw=(6, 6), cin=2, ch=4)
    conv0, dw = m.layers()[0], m.layers()[1]
    assert conv0.K == 18 and dw.K == 9 and dw.depthwise
    with pytest.raises(A2QError, match=r"conv1.*SIMD=2 must divide its 9 kernel taps"):
        validate_folding(m, {"conv1": {"SIMD": 2}})
    with pytest.raises(A2QError, match=r"conv0.*PE=3 must divide its 4 output channels"):
        validate_folding(m, {"conv0": {"PE": 3}})
    f = default_folding(m)
    target = max(layer_cycles(d, f[d.name]["PE"], f[d.name]["SIMD"]) for d in m.layers())
    assert layer_cycles(conv0, 1, 1) == 36 * 4 * 18
    for d in m.layers():
        assert d.channels % f[d.name]["PE"] == 0 and d.K % f[d.name]["SIMD"] == 0
        assert layer_cycles(d, f[d.name]["PE"], f[d.name]["SIMD"]) <= target


def test_unsupported_graph_is_a_clean_error():
    m, fold = _tiny()
    m.outputs = ["act3"]  # the graph output is not the end of the dataflow
    with pytest.raises(A2QError, match="graph output 'act3'"):
        codegen.generate(apply_folding(m, fold))
