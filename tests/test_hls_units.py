"""Generated HLS units: word widths (AP_INT_MAX_W), loop structure, counted cycles against the summary."""
from __future__ import annotations

import numpy as np
import pytest

import hand_models
from a2qhls import codegen
from a2qhls.cosimulation import compile_csim, run_csim
from a2qhls.passes.folding import apply_folding, default_folding
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
    raises AP_INT_MAX_W before ap_int.h, and the C simulation runs and equals the numpy model
    (every threshold unit there is a binary search: 255 thresholds per channel)."""
    m = hand_models.cnn(seed=3, ch=16, act_type=IntType(8, False), hw=(4, 4))
    compute_thresholds(m)
    apply_folding(m, {"conv1": {"PE": 16, "SIMD": 9}})
    files = codegen.generate(m)
    name, bits = codegen.widest_word(codegen.plan(m))
    assert bits > 1024, (name, bits)
    top_h = files["firmware/a2q_top.h"]
    assert f"#define AP_INT_MAX_W {bits}" in top_h
    assert top_h.index("AP_INT_MAX_W") < top_h.index('#include "ap_int.h"')
    layers_h = files["firmware/a2q_layers.h"]
    assert layers_h.index('#include "a2q_top.h"') < layers_h.index('#include "ap_int.h"')
    # 255 thresholds per channel: a binary search of 8 stages, not 255 comparators
    units = files["firmware/a2q_top.cpp"]  # a small net: its units are in the top's translation unit
    assert "lo += 128;" in units and "_T7[pe][nf][lo >> 1]" in units and "for (int t = 0; t < 255" not in units
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
    apply_folding(m, {"fc0": {"PE": 1, "SIMD": 640}, "fc1": {"PE": 1, "SIMD": 4}})
    with pytest.raises(A2QError, match=r"5120 bits wide, above the 4096-bit limit"):
        codegen.plan(m)


def _counted_cycles(prj, tmp_path, n_in: int, in_type: str, n: int = 3, model=None) -> dict:
    """Build ``prj`` with the cycle counters on, run ``n`` random images; returns process -> count per image.
    With ``model``, the outputs must also equal the numpy model's."""
    import re
    import subprocess

    binary = tmp_path / "csim_count"
    compile_csim(prj, binary, cxxflags="-O1 -DA2Q_COUNT_CYCLES")
    bits = int(re.sub(r"\D", "", in_type))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if in_type.startswith("int") else (0, (1 << bits) - 1)
    x = np.random.default_rng(0).integers(lo, hi + 1, size=(n, n_in))
    inp, outp = tmp_path / "in.txt", tmp_path / "out.txt"
    np.savetxt(inp, x, fmt="%d")
    r = subprocess.run([str(binary), str(inp), str(outp)], capture_output=True, text=True, check=True)
    if model is not None:
        want = BitSim(model).run(x, start=model.ops[0].outputs[0])[model.outputs[0]]
        assert np.array_equal(np.loadtxt(outp, dtype=np.int64, ndmin=2), np.asarray(want).reshape(n, -1))
    counts = {}
    for line in r.stdout.splitlines():
        if line.startswith("a2q_cycles "):
            _, name, c = line.split()
            assert int(c) % n == 0, line
            counts[name] = int(c) // n
    return counts


def _assert_counts_match_summary(summary: dict, counts: dict) -> None:
    stated = {name: c for u in summary["units"] for name, c in u["processes"].items()}
    assert counts == stated  # every process, every pipelined loop iteration
    assert summary["cycles_per_image"] == max(counts.values())
    for u in summary["units"]:
        assert u["cycles_per_image"] == max(counts[name] for name in u["processes"])


@pytest.mark.parametrize("bus", [None, 32])
def test_counted_cycles_equal_the_summary_mlp(tmp_path, capsys, bus):
    """The bundled digits MLP (natural bus, and a 32-bit bus repacked inside): each process's loop
    iterations per image, counted in C simulation, equal the cycles a2qhls.json states, and the
    dataflow interval is their maximum."""
    import json
    from pathlib import Path

    from a2qhls.cli import main

    onnx = Path(__file__).parent.parent / "examples" / "digits_a2qplus_p12.onnx"
    prj = tmp_path / "prj"
    assert main(["build", str(onnx), "--out", str(prj)] + (["--bus-bits", str(bus)] if bus else [])) == 0
    summary = json.loads((prj / "a2qhls.json").read_text())
    if bus:
        assert summary["interface"]["input"]["bus_bits"] == summary["interface"]["output"]["bus_bits"] == bus
    ly0 = summary["layers"][0]
    counts = _counted_cycles(prj, tmp_path, int(np.prod(ly0["input_shape"])), ly0["input_type"])
    _assert_counts_match_summary(summary, counts)


def test_counted_cycles_equal_the_summary_depthwise_residual_cnn(tmp_path):
    """Hand-built CNN with stride, padding, depthwise, max pool (kernel != stride), fork + residual add,
    padded overlapping average pool and
    dense head (three foldings: row-buffer window generators; the default; one-loop window
    generators, SIMD dividing C_in and depthwise SIMD 1): counted iterations per image equal the
    summary's cycles, and the outputs equal the numpy model's."""
    m = hand_models.cnn(seed=1, in_type=IntType(4, False, False, 2), dw={"stride": (2, 1), "pads": (1, 0, 1, 2)},
                        pool={"kernel": (2, 3), "stride": (1, 2)}, add_ratio=0.5,
                        avg={"kernel": (2, 2), "stride": (1, 1), "pads": (1, 1, 0, 0)})
    compute_thresholds(m)
    folds = [
        {"conv0": {"PE": 2, "SIMD": 6}, "conv1": {"PE": 2, "SIMD": 3}, "conv2": {"PE": 4, "SIMD": 2}, "fc": {"PE": 5, "SIMD": 2}},
        default_folding(m),
        {"conv0": {"PE": 2, "SIMD": 2}, "conv1": {"PE": 2, "SIMD": 1}, "conv2": {"PE": 2, "SIMD": 4}, "fc": {"PE": 5, "SIMD": 4}},
    ]
    for k, fold in enumerate(folds):
        prj = tmp_path / f"prj{k}"
        apply_folding(m, fold)
        _write(codegen.generate(m), prj)
        summary = codegen.summary(m)
        ly0 = summary["layers"][0]
        counts = _counted_cycles(prj, tmp_path, int(np.prod(ly0["input_shape"])), ly0["input_type"], n=6, model=m)
        _assert_counts_match_summary(summary, counts)
        streaming = [u.swg_streaming for u in codegen.plan(m) if u.kind in ("conv", "dw")]
        assert streaming == ([False, False, True] if k == 0 else [True, True, True] if k == 2 else streaming)
        # both pools (kernel != stride, overlapping, padded) are one-loop streaming units
        assert [u.swg_streaming for u in codegen.plan(m) if u.kind in ("maxpool", "avgpool")] == [True, True]


def test_counted_cycles_equal_the_summary_digits_cnn(tmp_path, capsys):
    """The digits CNN of `a2qhls train --arch cnn:c8,dw,p,r,a` (one epoch: the weights do not matter)."""
    pytest.importorskip("torch")
    import contextlib
    import io
    import json

    from a2qhls.cli import main

    onnx = tmp_path / "cnn.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--dataset", "digits", "--arch", "cnn:c8,dw,p,r,a", "--quant", "a2q+", "--weight-bits", "4",
                     "--act-bits", "4", "--acc-bits", "12", "--epochs", "1", "--seed", "0", "--device", "cpu",
                     "--out", str(onnx)]) == 0
    prj = tmp_path / "prj"
    assert main(["build", str(onnx), "--out", str(prj)]) == 0
    summary = json.loads((prj / "a2qhls.json").read_text())
    ly0 = summary["layers"][0]
    counts = _counted_cycles(prj, tmp_path, int(np.prod(ly0["input_shape"])), ly0["input_type"])
    _assert_counts_match_summary(summary, counts)


@pytest.mark.parametrize("bus", [24])
def test_axi_stream_ports_tlast_sign_extension_and_bus_width(tmp_path, bus):
    """Signed 11-bit-ish outputs and an input with a zero-point through a fixed bus: the testbench
    packs whole-byte elements into beats and checks TLAST, zero padding and sign extension;
    csim equals the numpy model. With TLAST removed from the design the testbench fails."""
    import subprocess

    m = hand_models.cnn(seed=2, in_type=IntType(4, False, False, 2), n_out=5)
    compute_thresholds(m)
    apply_folding(m, {"fc": {"PE": 5, "SIMD": 1}})
    files = codegen.generate(m, bus_bits=bus)
    s = codegen.summary(m, bus_bits=bus)
    out = s["interface"]["output"]
    assert out["extension"] == "sign" and out["element_bytes"] * 8 >= int(out["element_type"][3:])
    assert out["beats_per_image"] == -(-5 // out["elements_per_beat"])
    assert "#pragma HLS INTERFACE ap_ctrl_none port=return" in files["firmware/a2q_top.cpp"]
    prj = tmp_path / "prj"
    _write(files, prj)
    compile_csim(prj, tmp_path / "csim")
    x = np.random.default_rng(1).uniform(-0.5, 1.5, size=(20, 2, 6, 6)).astype(np.float32)
    vals = BitSim(m).run(x, keep=True)
    q = vals["x_q"].reshape(len(x), -1).astype(np.int64)
    cpp = run_csim(tmp_path / "csim", q, tmp_path)
    assert np.array_equal(cpp, vals["out"]) and (cpp < 0).any()
    broken = files["firmware/a2q_top.cpp"].replace("v.last = (beats ==", "v.last = 0 * (beats ==")
    assert broken != files["firmware/a2q_top.cpp"]
    (prj / "firmware/a2q_top.cpp").write_text(broken)
    compile_csim(prj, tmp_path / "csim_broken")
    np.savetxt(tmp_path / "in.txt", q, fmt="%d")
    r = subprocess.run([str(tmp_path / "csim_broken"), str(tmp_path / "in.txt"), str(tmp_path / "o.txt")], capture_output=True, text=True)
    assert r.returncode != 0 and "TLAST is 0 on output beat" in r.stderr


@pytest.mark.parametrize("dw_pe", [4, 2])
def test_running_max_pool_and_single_loop_add_are_exact(tmp_path, dw_pe):
    """2x2/2 max pool over a 7x7 map (last row and column dropped) as a running max, with one
    (PE=4) or two (PE=2) channel groups per pixel, and the residual add with a width converter on
    one input: the whole network and each of these units alone equal the numpy model."""
    m = hand_models.cnn(seed=4, hw=(7, 7), in_type=IntType(4, False, False, 1), add_ratio=2.0)
    compute_thresholds(m)
    apply_folding(m, {"conv1": {"PE": dw_pe, "SIMD": 1}, "conv2": {"PE": 4 // dw_pe, "SIMD": 1}})
    units = codegen.plan(m)
    pool = next(u for u in units if u.kind == "maxpool")
    assert pool.running_max and pool.cycles == pool.in_elems // pool.PE
    assert any(u.kind == "dwc" for u in units)  # conv2's PE differs from the pooled words
    prj = tmp_path / "prj"
    _write(codegen.generate(m), prj)
    compile_csim(prj, tmp_path / "csim")
    x = np.random.default_rng(5).uniform(-0.5, 1.5, size=(16, 2, 7, 7)).astype(np.float32)
    vals = BitSim(m).run(x, keep=True)
    n = len(x)
    assert np.array_equal(run_csim(tmp_path / "csim", vals["x_q"].reshape(n, -1).astype(np.int64), tmp_path), vals["out"])
    for u in units:
        if u.kind in ("maxpool", "add", "dwc"):
            q = np.concatenate([np.asarray(vals[t]).reshape(n, -1) for t in u.inputs], axis=1).astype(np.int64)
            got = run_csim(tmp_path / "csim", q, tmp_path, unit=u.index, tag=u.cname)
            assert np.array_equal(got, np.asarray(vals[u.out_tensor]).reshape(n, -1)), u.cname


def test_streamed_weights_conv_and_dense_are_exact_and_counted(tmp_path):
    """conv0 (a convolution: its weights re-streamed for every output pixel), conv2 (on the residual
    branch) and fc stream their weights from extra AXI-stream ports: no ROM in their units, the
    testbench feeds the beats from the weights files, and the whole network, each streamed unit
    alone and the counted cycles all agree with the numpy model and the summary; a2qhls.json
    documents each port's beats."""
    from a2qhls.passes.memories import apply_stream_weights

    m = hand_models.cnn(seed=5, in_type=IntType(4, False, False, 1))
    compute_thresholds(m)
    apply_folding(m, {"conv0": {"PE": 2, "SIMD": 2}, "conv2": {"PE": 2, "SIMD": 4}, "fc": {"PE": 5, "SIMD": 2}})
    assert apply_stream_weights(m, "layer0,conv2,fc") == ["conv0", "conv2", "fc"]
    with pytest.raises(A2QError, match="conv1' is depthwise"):
        apply_stream_weights(m, "conv1")
    apply_stream_weights(m, ["conv0", "conv2", "fc"])
    files = codegen.generate(m)
    s = codegen.summary(m)
    assert s["stream_weights"] == ["conv0", "conv2", "fc"]
    ports = {w["layer"]: w for w in s["interface"]["weights"]}
    units = {u.dense.name: u for u in codegen.plan(m) if u.has_weights}
    for name in ("conv0", "conv2", "fc"):
        u, w = units[name], ports[name]
        assert w["beats_per_image"] == u.pixels * u.NF * u.SF == u.cycles
        assert w["bus_bits"] == 8 * -(-(u.PE * u.SIMD * u.w_t.bits) // 8)
        assert f"hls::stream<{u.cname}_w_beat> &{u.cname}_weights" in files["firmware/a2q_top.cpp"]
        assert u.w_impl is None and "W" not in u.bank_accesses
    top = files["firmware/a2q_top.cpp"]
    assert "_W0[pe][tile]" in top  # conv1 (depthwise) keeps its ROM
    assert top.count("ws.read().data") == 3
    prj = tmp_path / "prj"
    _write(files, prj)
    counts = _counted_cycles(prj, tmp_path, int(np.prod(s["layers"][0]["input_shape"])), s["layers"][0]["input_type"], n=4, model=m)
    _assert_counts_match_summary(s, counts)
    # each streamed unit alone (--unit): fed its input and its weight beats
    import subprocess

    compile_csim(prj, tmp_path / "csim")
    x = np.random.default_rng(2).uniform(-0.2, 1.2, size=(4, 2, 6, 6)).astype(np.float32)
    vals = BitSim(m).run(x, keep=True)
    for name in ("conv0", "fc"):
        u = units[name]
        q = np.asarray(vals[u.inputs[0]]).reshape(len(x), -1).astype(np.int64)
        got = run_csim(tmp_path / "csim", q, tmp_path, unit=u.index)
        assert np.array_equal(got, np.asarray(vals[u.out_tensor]).reshape(len(x), -1)), name
    # a wrong weight beat order would be seen: the design with tiles fed in reverse differs
    tb = files["tb/a2q_tb.cpp"]
    fc = units["fc"]
    head, tail = tb.split(f"static void feed_weights_{fc.cname}(", 1)
    broken = head + f"static void feed_weights_{fc.cname}(" + tail.replace("_W0[pe][t];", f"_W0[pe][{fc.NF * fc.SF - 1} - t];", 1)
    assert broken != tb
    (prj / "tb/a2q_tb.cpp").write_text(broken)
    compile_csim(prj, tmp_path / "csim_broken")
    np.savetxt(tmp_path / "in.txt", vals["x_q"].reshape(len(x), -1).astype(np.int64), fmt="%d")
    np.savetxt(tmp_path / "want.txt", np.asarray(vals["out"]).reshape(len(x), -1), fmt="%d")
    r = subprocess.run([str(tmp_path / "csim_broken"), str(tmp_path / "in.txt"), str(tmp_path / "o.txt"), "--expect",
                        str(tmp_path / "want.txt")], capture_output=True, text=True)
    assert r.returncode == 1 and "mismatches" in r.stdout


def test_stream_weights_auto_streams_the_largest_layer_when_the_brams_do_not_fit():
    """A 4096x512 dense layer at PE=SIMD=16 needs more BRAM18 than an xczu3eg has (432): auto streams
    it (and only it); the estimate then fits."""
    from a2qhls.passes.memories import apply_stream_weights

    m = hand_models.mlp((4096, 512, 10), in_type=IntType(4, False))
    compute_thresholds(m)
    apply_folding(m, {"fc0": {"PE": 16, "SIMD": 16}})
    before = codegen.design_estimate(codegen.plan(m))["total"]["BRAM18"]
    assert before > 432
    assert apply_stream_weights(m, "auto", "xczu3eg") == ["fc0"]
    after = codegen.design_estimate(codegen.plan(m))["total"]["BRAM18"]
    assert after <= 432 < before
    assert apply_stream_weights(m, "auto", "xcu250") == []  # fits there: nothing streamed


def test_axilite_control_and_old_project_format(tmp_path, capsys):
    """--control axilite puts the block control on an AXI4-Lite slave (and says so in the Tcl and
    a2qhls.json); cosim refuses a project of an older a2qhls.json format with one line."""
    import json
    from pathlib import Path

    from a2qhls.cli import main

    onnx = Path(__file__).parent.parent / "examples" / "digits_a2qplus_p12.onnx"
    prj = tmp_path / "prj"
    assert main(["build", str(onnx), "--out", str(prj), "--control", "axilite"]) == 0
    top = (prj / "firmware/a2q_top.cpp").read_text()
    assert "#pragma HLS INTERFACE s_axilite port=return bundle=control" in top and "ap_ctrl_none" not in top
    assert "auto_restart" in (prj / "vitis_hls.tcl").read_text()
    s = json.loads((prj / "a2qhls.json").read_text())
    assert s["control"] == "axilite" and s["interface"]["control"] == "axilite"
    s["format"] = 1
    (prj / "a2qhls.json").write_text(json.dumps(s))
    capsys.readouterr()
    assert main(["cosim", str(prj)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "project format 1" in err[0] and "rebuild" in err[0]


@pytest.mark.parametrize("conv2", [{"kernel": (1, 3), "pads": (0, 1, 0, 1)}, {"kernel": (3, 3), "pads": (1, 1, 1, 1)}])
def test_fork_fifo_depth_covers_the_branch_lead_of_the_cycle_model(conv2):
    """The bypass FIFO of a residual fork is at least what the window generator on the other branch
    reads ahead of its output in its schedule (codegen.swg_max_lead, in the fork's words), and the
    generated top states how the depth was reasoned."""
    m = hand_models.cnn(seed=6, hw=(8, 8), conv2=conv2 | {"stride": (1, 1)})
    compute_thresholds(m)
    for fold in ({"conv2": {"PE": 4, "SIMD": 4}}, {"conv2": {"PE": 2, "SIMD": 1}}):
        apply_folding(m, fold)
        units = codegen.plan(m)
        depths = codegen.fork_depths(units)
        dup = next(u for u in units if u.kind == "dup")
        branch = next(u for u in units if u.kind == "conv" and u.dense.name == "conv2")
        assert branch.swg_streaming
        lead_fork_words = -(-codegen.swg_max_lead(branch) * branch.swg_V // dup.PE)
        bypass = max(depths[(dup.index, k)] for k in range(dup.n_out))
        assert bypass >= lead_fork_words + 2, (bypass, lead_fork_words)
        top = codegen.generate(m)["firmware/a2q_top.cpp"]
        assert f"depth {bypass}: other branch ({branch.cname}" in top and "read-ahead" in top


def test_default_folding_prefers_conv_simd_dividing_input_channels():
    """conv2 (1x3 over 4 channels, K = 12): its cheapest folding within the bottleneck's cycles would be
    SIMD 6 or 12 (straddling pixels); the default takes a SIMD dividing C_in = 4, so its window
    generator is the one-loop kind; the bottleneck's cycles do not change."""
    from a2qhls.passes.folding import layer_cycles

    m = hand_models.cnn(seed=6, hw=(8, 8))
    compute_thresholds(m)
    f = default_folding(m)
    conv2 = next(d for d in m.layers() if d.name == "conv2")
    assert conv2.in_shape[2] % f["conv2"]["SIMD"] == 0
    apply_folding(m, f)
    units = codegen.plan(m)
    assert next(u for u in units if u.has_weights and u.dense.name == "conv2").swg_streaming
    target = max(layer_cycles(d, f[d.name]["PE"], f[d.name]["SIMD"]) for d in m.layers())
    assert layer_cycles(conv2, f["conv2"]["PE"], f["conv2"]["SIMD"]) <= target


def test_fallback_window_generator_is_registers_and_refused_above_the_limit():
    """Conv0 over 16 channels with SIMD 9 (not dividing C_in) takes the row-buffer generator: its
    line buffer is completely partitioned (registers, stated in the comment and in the plan's bank
    accesses) and priced as FFs, no BRAM; a map wide enough to need more than
    SWG_REGISTER_BITS_MAX bits is refused in one line naming the layer and the fix, and the default
    folding of that model never needs the fallback."""
    from a2qhls import estimate
    from a2qhls.passes.folding import SWG_REGISTER_BITS_MAX, one_loop_swg

    m = hand_models.cnn(seed=3, hw=(4, 8), cin=16)
    compute_thresholds(m)
    conv0 = m.layers()[0].name
    apply_folding(m, {conv0: {"PE": 4, "SIMD": 9}})
    u = next(u for u in codegen.plan(m) if u.has_weights and u.dense.name == conv0)
    assert not u.swg_streaming and u.swg_bank_accesses == {"lb": codegen.REGISTERS}
    assert u.swg_buffer_bits == 3 * 8 * 16 * u.win_t.bits
    top = codegen.generate(m)["firmware/a2q_top.cpp"]
    body = top[top.index(f"{u.cname}_swg: sliding"):]
    body = body[:body.index("\n}\n")]
    assert "#pragma HLS ARRAY_PARTITION variable=lb complete\n" in body
    assert "lb: registers (complete partition), any number of reads per cycle" in body
    c = estimate.unit_cost(u)
    assert c.BRAM18 == 0 and c.FF >= u.swg_buffer_bits
    wide = hand_models.cnn(seed=3, hw=(4, 96), cin=16)
    compute_thresholds(wide)
    apply_folding(wide, {conv0: {"PE": 4, "SIMD": 9}})
    with pytest.raises(A2QError) as e:
        codegen.plan(wide)
    msg = str(e.value)
    assert "\n" not in msg and f"layer '{conv0}'" in msg and str(SWG_REGISTER_BITS_MAX) in msg
    assert "a SIMD dividing its 16 input channels" in msg
    f = default_folding(wide)
    apply_folding(wide, f)
    units = codegen.plan(wide)  # no refusal
    for d in wide.layers():
        if hasattr(d, "kernel"):
            assert one_loop_swg(d, f[d.name]["SIMD"]), (d.name, f[d.name])


def test_default_folding_gives_depthwise_simd_1_when_it_reaches_the_bottleneck():
    """A depthwise layer whose SIMD=1 folding (PE over channels) meets the bottleneck's cycles gets it,
    so its window generator is the one-loop kind (no register buffer)."""
    m = hand_models.cnn(seed=6, hw=(8, 8), cin=16)  # conv0 (K = 144) sets the bottleneck: 576 cycles
    compute_thresholds(m)
    f = default_folding(m)
    dw = next(d for d in m.layers() if getattr(d, "depthwise", False))
    assert f[dw.name]["SIMD"] == 1, f
    apply_folding(m, f)
    assert next(u for u in codegen.plan(m) if u.has_weights and u.dense.name == dw.name).swg_streaming
