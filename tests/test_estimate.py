"""Resource estimates: the formulas, their agreement with real Yosys synthesis of one PE's
datapath, the build summary's cost fields, and `inspect --cost`."""
import json
import os
import subprocess
import sys

import pytest

from a2qhls import estimate
from a2qhls.cli import main
from a2qhls.errors import A2QError
from a2qhls.synth import PEParams, _tree_nodes, pe_verilog, synth_pe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP = os.path.join(ROOT, "examples", "digits_a2qplus_p12.onnx")


def test_yosys_synthesis_of_one_grid_point_agrees_with_the_estimate():
    """One small point of bench/bench_estimate.py's grid through real Yosys synth_xilinx: the
    estimator's LUTs within 25%, and its carry cells and flip-flops close."""
    p = PEParams(simd=2, wbits=3, abits=3, acc_bits=12, nt=3, tbits=12)
    y = synth_pe(p)
    e = estimate.pe_cost(p.simd, p.wbits, p.abits, p.acc_bits, p.nt, p.tbits, asigned=p.asigned)
    assert y["DSP"] == 0 and y["LUT"] > 0
    assert abs(e.LUT / y["LUT"] - 1) <= 0.25, (e, y)
    assert abs(e.FF / y["FF"] - 1) <= 0.25, (e, y)
    assert abs(e.CARRY - y["CARRY"]) <= max(3, 0.3 * y["CARRY"]), (e, y)


def test_verilog_adder_tree_is_the_estimators_tree():
    for simd, pbits, P in ((1, 8, 16), (5, 8, 32), (16, 16, 12), (7, 4, 6)):
        levels, _, root_bits = _tree_nodes(PEParams(simd, pbits // 2, pbits - pbits // 2, P, 0, P))
        widths = [n["bits"] for level in levels for n in level]
        tree = estimate.adder_tree(simd, pbits, P)
        assert widths == tree and len(tree) == simd - 1
        assert all(b <= P for b in tree)
        assert root_bits == (tree[-1] if tree else min(pbits, P))


def test_pe_verilog_declares_the_accumulator_and_one_comparator_per_threshold():
    v = pe_verilog(PEParams(simd=3, wbits=2, abits=3, acc_bits=13, nt=7, tbits=14))
    assert "reg signed [12:0] acc;" in v
    assert v.count(" >= t") == 7 and "wire [2:0] count" in v


def test_adder_tree_is_capped_at_the_accumulator_width():
    # 64 products of 16 bits: the natural tree grows to 22 bits; modulo 2^12 every adder needs 12
    assert max(estimate.adder_tree(64, 16, 32)) == 22
    assert max(estimate.adder_tree(64, 16, 12)) == 12
    assert sum(estimate.adder_tree(64, 16, 12)) == 63 * 12


def test_pe_luts_grow_with_accumulator_width_and_thresholds():
    luts = [estimate.pe_cost(8, 4, 4, P, 15, P).LUT for P in (10, 12, 16, 24, 32)]
    assert luts == sorted(luts) and luts[0] < luts[-1]
    # per accumulator bit: the accumulator (1) plus 15 comparators (0.67 each)
    slope = (luts[-1] - luts[0]) / 22
    assert 10 < slope < 12
    assert estimate.pe_cost(8, 4, 4, 16, 0, 0).LUT < estimate.pe_cost(8, 4, 4, 16, 3, 16).LUT


def test_bram18_aspect_ratios():
    assert estimate.bram18(36, 512) == 1
    assert estimate.bram18(18, 1024) == 1
    assert estimate.bram18(1, 16384) == 1
    assert estimate.bram18(37, 512) == 2  # two 512x36
    assert estimate.bram18(4, 5000) == 2  # two 4Kx4
    assert estimate.bram18(72, 2048) == 8  # 4 deep x 2 wide of 512x36, or 2 x 4 of 1Kx18


def test_memory_styles():
    assert estimate.memory(4, 1, 10).FF == 40  # depth 1: registers
    assert estimate.memory(4, 1, 10, rom=True).as_dict() == estimate.Cost().as_dict()  # a constant word: in the logic
    assert estimate.memory(4, 64, 2).LUT == 8  # shallow: distributed, one LUT6 per bit
    assert estimate.memory(8, 4096).BRAM18 == 2 and estimate.memory(8, 4096).LUT == 0
    assert estimate.memory(72, 4096, style="ultra").URAM == 1
    with pytest.raises(ValueError):
        estimate.memory(8, 8, style="flipflop")


def test_part_table():
    name, cap = estimate.part_capacity("xczu3eg-sbva484-1-e")
    assert name == "xczu3eg" and cap["LUT"] == 70560 and cap["BRAM18"] == 432
    with pytest.raises(KeyError):
        estimate.part_capacity("xc9999")


def test_build_summary_has_per_layer_and_total_costs_with_the_32_bit_comparison(tmp_path, capsys):
    out = tmp_path / "hls"
    assert main(["build", MLP, "--out", str(out), "--part", "xczu7ev"]) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "a2qhls.json").read_text())
    cost = s["cost"]
    assert cost["part"] == "xczu7ev" and cost["capacity"]["LUT"] == 230400
    unit_sum = sum(u["cost"]["LUT"] for u in s["units"]) + cost["fifos"]["LUT"]
    assert cost["total"]["LUT"] == unit_sum
    assert cost["utilization_percent"]["LUT"] == round(100 * cost["total"]["LUT"] / 230400, 2)
    for ly in s["layers"]:
        assert ly["acc_bits"] < 32
        assert ly["cost_acc32"]["LUT"] > ly["cost"]["LUT"]
        assert ly["lut_ratio_acc32"] == round(ly["cost_acc32"]["LUT"] / ly["cost"]["LUT"], 3)
    assert cost["lut_ratio_acc32"] > 1
    assert f"{s['layers'][0]['cost']['LUT']}" in printed and "with 32-bit accumulators" in printed


def test_a_narrower_accumulator_costs_fewer_luts(tmp_path, capsys):
    wide, narrow = tmp_path / "wide", tmp_path / "narrow"
    assert main(["build", MLP, "--out", str(wide), "--acc-bits", "0=20"]) == 0
    assert main(["build", MLP, "--out", str(narrow)]) == 0
    capsys.readouterr()
    lw = json.loads((wide / "a2qhls.json").read_text())["layers"][0]["cost"]["LUT"]
    ln = json.loads((narrow / "a2qhls.json").read_text())["layers"][0]["cost"]["LUT"]
    assert ln < lw


def test_unknown_part_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "hls"
    assert main(["build", MLP, "--out", str(out), "--part", "xc9999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "xc9999" in err[0] and "xczu3eg" in err[0]
    assert not out.exists()


def test_inspect_cost_writes_nothing_and_imports_no_torch(tmp_path):
    code = ("import sys; from a2qhls.cli import main; rc = main(['inspect', sys.argv[1], '--cost', '--json', '--part', 'xc7z020']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, MLP], capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["cost"]["part"] == "xc7z020"
    assert [c["name"] for c in doc["cost_layers"]] == [ly["name"] for ly in doc["layers"]]
    assert all(c["cost_acc32"]["LUT"] > c["cost"]["LUT"] for c in doc["cost_layers"])
    assert list(tmp_path.iterdir()) == []


def test_inspect_part_without_cost_is_an_error(capsys):
    assert main(["inspect", MLP, "--part", "xc7z020"]) == 2
    assert "--cost" in capsys.readouterr().err


# ---------------------------------------------------------------- folding to a target


def _mlp_model():
    from a2qhls.importer import load_qonnx
    from a2qhls.passes.accumulator import size_accumulators
    from a2qhls.passes.thresholds import compute_thresholds

    m = size_accumulators(load_qonnx(MLP))
    compute_thresholds(m)
    return m


def _hand_cnn():
    import hand_models
    from a2qhls.passes.accumulator import size_accumulators
    from a2qhls.passes.thresholds import compute_thresholds

    m = size_accumulators(hand_models.cnn(seed=0, hw=(6, 6), cin=2, ch=4))
    compute_thresholds(m)
    return m


def _plan(model, folding):
    from a2qhls import codegen
    from a2qhls.passes.folding import apply_folding

    apply_folding(model, folding)
    return codegen.plan(model)


def _brute_cheapest(model, name, target):
    """Enumerate every legal folding of one layer (others at the default) through the code generator's plan."""
    from a2qhls.passes.folding import default_folding, divisors

    base = default_folding(model)
    best = None
    lp0 = next(u for u in _plan(model, base) if u.has_weights and u.dense.name == name)
    for pe in divisors(lp0.MH):
        for simd in divisors(lp0.MW):
            f = dict(base, **{name: {"PE": pe, "SIMD": simd}})
            u = next(u for u in _plan(model, f) if u.has_weights and u.dense.name == name)
            if u.stage_cycles <= target:  # its exact cycles (window generator schedule included)
                c = estimate.unit_cost(u)
                key = (c.LUT, c.BRAM18, c.DSP, c.FF, -simd)
                best = min(best, (key, pe, simd)) if best else (key, pe, simd)
    return best


@pytest.mark.parametrize("make", [_mlp_model, _hand_cnn])
def test_fold_to_cycles_meets_the_target_with_the_cheapest_legal_folding(make):
    from a2qhls.passes.folding import fold_to_cycles

    m = make()
    units = _plan(m, fold_to_cycles(m, 10**9))
    slowest = max(u.stage_cycles for u in units)
    for target in (slowest, slowest // 3, slowest // 20):
        try:
            f = fold_to_cycles(m, target)
        except A2QError as e:  # the top input stream bounds a CNN: the error names what cannot reach it
            assert "cannot reach" in str(e)
            continue
        assert max(u.stage_cycles for u in _plan(m, f)) <= target
        for name, pf in f.items():
            _, pe, simd = _brute_cheapest(m, name, target)
            assert (pf["PE"], pf["SIMD"]) == (pe, simd), name


def test_fold_to_cycles_has_no_parallelism_cap():
    from a2qhls.passes.folding import MAX_PAR, fold_to_cycles

    f = fold_to_cycles(_mlp_model(), 1)
    assert f["/1/Gemm"] == {"PE": 32, "SIMD": 64} and 64 > MAX_PAR


def test_fold_to_budget_is_the_fastest_that_fits():
    from a2qhls import codegen
    from a2qhls.passes.folding import fold_to_budget, fold_to_cycles

    m = _mlp_model()
    f, tot = fold_to_budget(m, {"LUT": 5000})
    assert tot["LUT"] <= 5000
    cyc = max(u.stage_cycles for u in _plan(m, f))
    # one cycle level faster does not fit
    faster = fold_to_cycles(m, cyc - 1)
    units = _plan(m, faster)
    assert codegen.design_estimate(units)["total"]["LUT"] > 5000


def test_build_target_fps_and_budget_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "hls"
    assert main(["build", MLP, "--out", str(out), "--target-fps", "20e6", "--clock-mhz", "250"]) == 0
    s = json.loads((out / "a2qhls.json").read_text())
    assert s["cycles_per_image"] <= 12  # 250e6 / 20e6
    assert "-period 4.0 " in (out / "vitis_hls.tcl").read_text()
    out2 = tmp_path / "hls2"
    assert main(["build", MLP, "--out", str(out2), "--lut-budget", "3000"]) == 0
    assert json.loads((out2 / "a2qhls.json").read_text())["cost"]["total"]["LUT"] <= 3000
    capsys.readouterr()


@pytest.mark.parametrize("args, expect", [
    (["--target-fps", "3e8"], ["layer '/1/Gemm' cannot reach", "images/s"]),
    (["--lut-budget", "100"], ["no folding fits LUT <= 100", "layer0"]),
    (["--target-fps", "1e6", "--folding", "f.json"], ["--folding cannot be combined"]),
])
def test_infeasible_target_is_one_line_and_writes_nothing(tmp_path, capsys, args, expect):
    out = tmp_path / "hls"
    assert main(["build", MLP, "--out", str(out)] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for e in expect:
        assert e in err[0], err[0]
    assert not out.exists()


def test_standalone_thresholds_cost_the_fused_comparators():
    """A threshold unit's comparators cost what the same comparators cost inside a PE."""
    nt, P = 15, 14
    fused = estimate.pe_cost(4, 4, 4, P, nt, P).LUT - estimate.pe_cost(4, 4, 4, P, 0, 0).LUT
    alone = estimate.thresholds_cost(64, 1, P, nt, P).LUT - estimate.CONTROL_LUT - estimate.memory(P, 64, nt, rom=True).LUT
    assert abs(alone - fused) <= 2


def test_python_api_estimate_cost_and_build_with_a_target(tmp_path):
    import a2qhls

    s = a2qhls.estimate_cost(MLP, target_fps=1e6, clock_mhz=100)
    assert s["cycles_per_image"] <= 100
    assert not list(tmp_path.iterdir())
    b = a2qhls.build(MLP, tmp_path / "hls", budget={"LUT": 4000})
    assert b["cost"]["total"]["LUT"] <= 4000


@pytest.mark.parametrize("kw, needle", [
    ({"clock_mhz": float("inf"), "target_fps": 1e6}, "--clock-mhz inf: expected a clock between 1 and 2000 MHz"),
    ({"part": ""}, "--part: empty value"),
    ({"stream_weights": "layer0,,layer1"}, "--stream-weights: empty layer name"),
])
def test_python_api_estimate_cost_checks_options_as_build_does(kw, needle):
    """estimate_cost refuses the option values build refuses, with the same one-line error (it had
    raised OverflowError for an infinite clock and ignored an empty part or layer name)."""
    import a2qhls

    with pytest.raises(A2QError, match=needle):
        a2qhls.estimate_cost(MLP, **kw)


def test_folding_to_a_target_gives_a_design_that_simulates_bit_exact(tmp_path):
    """The hand CNN folded to a throughput target (uneven PE x SIMD such as 1 x 9): the generated
    C++ equals the bit-accurate model, and its cycles per image meet the target."""
    import numpy as np

    from a2qhls import codegen
    from a2qhls.cosimulation import compile_csim, run_csim
    from a2qhls.passes.folding import fold_to_cycles
    from a2qhls.sim import BitSim

    m = _hand_cnn()
    target = 300
    f = fold_to_cycles(m, target)
    assert any(v["PE"] * v["SIMD"] not in (1, 2, 4, 8, 16, 32, 64) for v in f.values()), f
    assert max(u.stage_cycles for u in codegen.plan(m)) <= target
    prj = tmp_path / "prj"
    for rel, text in codegen.generate(m).items():
        (prj / rel).parent.mkdir(parents=True, exist_ok=True)
        (prj / rel).write_text(text)
    compile_csim(prj, tmp_path / "csim")
    x = np.random.default_rng(0).uniform(-0.5, 1.5, size=(40, 2, 6, 6)).astype(np.float32)
    vals = BitSim(m).run(x, keep=True)
    cpp = run_csim(tmp_path / "csim", vals["x_q"].reshape(len(x), -1).astype(np.int64), tmp_path)
    assert np.array_equal(cpp, vals["out"])


def test_binary_search_thresholds_window_generator_and_adapters_are_estimated():
    """The units that were not estimated: the binary-search threshold unit costs K = bitlength(NT)
    comparators, far fewer LUTs than NT linear ones at 8-bit activations and growing with the
    accumulator; the one-loop window generator's line buffer is kh + sh rows of packed words, and
    it needs no per-value row multiplexer; an AXI adapter that repacks costs more than one that does
    not; no unit of a build summary is left unestimated."""
    lin = estimate.pe_cost(4, 4, 8, 16, 255, 16)
    srch = estimate.pe_cost(4, 4, 8, 16, 255, 16, thr_search=True) + estimate.threshold_search_cost(1, 4, 255, 17)
    assert srch.LUT < lin.LUT / 5
    assert estimate.threshold_search_cost(1, 4, 255, 25).LUT > estimate.threshold_search_cost(1, 4, 255, 17).LUT
    assert estimate.threshold_search_cost(2, 4, 255, 17).LUT == 2 * estimate.threshold_search_cost(1, 4, 255, 17).LUT
    st = estimate.swg_stream_cost(32, 32, 64, 3, 3, 1, 4, 16)
    rb = estimate.swg_cost(32, 32, 64, 3, 3, 4, 16, 16)
    assert st.BRAM18 == estimate.bram18(16 * 4, 4 * 32 * 4) and st.LUT < rb.LUT
    same = estimate.axis_adapter_cost("in", 32, 4, 4, 4)
    repack = estimate.axis_adapter_cost("in", 32, 4, 4, 16)
    assert 0 < same.LUT < repack.LUT and repack.FF >= 20 * 4
    import hand_models
    from a2qhls import codegen
    from a2qhls.passes.folding import apply_folding
    from a2qhls.passes.thresholds import compute_thresholds

    m = hand_models.cnn(seed=1)
    compute_thresholds(m)
    apply_folding(m)
    s = codegen.summary(m)
    assert all("not_estimated" not in u and u["cost"]["LUT"] > 0 for u in s["units"])


def test_fold_to_cycles_reaches_what_the_default_folding_reaches_on_a_cnn():
    """A digits-like CNN (1 input channel, 8x8, depthwise and pools): the default folding's cycles per
    image are reachable by --target-fps (the window generators' exact schedules are checked and a
    producer's PE is raised when its consumer must read its words faster), at no more LUTs."""
    import hand_models
    from a2qhls import codegen
    from a2qhls.passes.folding import apply_folding, default_folding, fold_to_cycles
    from a2qhls.passes.thresholds import compute_thresholds

    m = hand_models.cnn(seed=3, hw=(8, 8), cin=1, ch=8)
    compute_thresholds(m)
    units = _plan(m, default_folding(m))
    target = max(u.stage_cycles for u in units)
    lut_default = codegen.design_estimate(units)["total"]["LUT"]
    f = fold_to_cycles(m, target)
    units = _plan(m, f)
    assert max(u.stage_cycles for u in units) <= target
    assert codegen.design_estimate(units)["total"]["LUT"] <= lut_default
    apply_folding(m, f)


def test_streaming_pool_logic_does_not_grow_with_the_window():
    """The one-loop pool folds one tap per cycle into a register: its logic is one compare (max) or
    one adder (avg) per channel whatever the window, while the line buffer grows with kh + stride."""
    from a2qhls.estimate import pool_cost, pool_stream_cost, swg_stream_cost
    for mode in ("max", "avg"):
        small = pool_stream_cost(8, 8, 16, 2, 2, 1, 4, 4, mode, acc_bits=8)
        big = pool_stream_cost(8, 8, 16, 5, 5, 1, 4, 4, mode, acc_bits=8)
        logic = lambda c, kh: c.LUT - swg_stream_cost(8, 8, 16, kh, kh, 1, 4, 4).LUT
        assert logic(small, 2) == logic(big, 5) > 0
        assert big.BRAM18 >= small.BRAM18
        # the old read-then-emit unit's k*k - 1 stage tree costs more logic at 5x5
        assert pool_cost(8, 8, 16, 5, 5, 4, 4, mode, 8).LUT > big.LUT - swg_stream_cost(8, 8, 16, 5, 5, 1, 4, 4).LUT


def test_add_and_avgpool_thresholds_priced_as_the_plan_builds_them():
    """An add or average pool with binary-search thresholds is priced as log2 comparators (not nt),
    like the matrix unit; its threshold ROMs bound to BRAM count BRAM18."""
    lin = estimate.add_cost(64, 1, 8, 8, (1, 1), 12, nt=255, tbits=12)
    srch = estimate.add_cost(64, 1, 8, 8, (1, 1), 12, nt=255, tbits=12, thr_search=True)
    base = estimate.add_cost(64, 1, 8, 8, (1, 1), 12)
    assert srch.LUT - base.LUT < (lin.LUT - base.LUT) / 10
    assert srch.LUT - base.LUT >= estimate.threshold_search_cost(1, 64, 255, 13).LUT
    bram = estimate.add_cost(64, 1, 8, 8, (1, 1), 12, nt=255, tbits=12, thr_search=True, thr_styles=["block"] * 8)
    assert bram.BRAM18 >= 1 and srch.BRAM18 <= bram.BRAM18
    plin = estimate.pool_cost(8, 8, 64, 2, 2, 8, 1, "avg", 12, 255, 12)
    psrch = estimate.pool_cost(8, 8, 64, 2, 2, 8, 1, "avg", 12, 255, 12, thr_search=True)
    assert psrch.LUT < plin.LUT
    s1 = estimate.pool_stream_cost(8, 8, 64, 2, 2, 2, 8, 1, "avg", 12, 255, 12)
    s2 = estimate.pool_stream_cost(8, 8, 64, 2, 2, 2, 8, 1, "avg", 12, 255, 12, thr_search=True)
    assert s2.LUT < s1.LUT


def _wide_mlp(tmp_path) -> str:
    """784 4-bit inputs (MNIST-sized): a first layer folded wider than 512 inputs a word has an input port
    (each element in a whole byte) above the AXI-stream limit of 4096 bits with the default bus, though its
    packed word (4 bits an input) is not, so its fastest foldings cannot be built."""
    import qonnx_graphs

    m, _, _ = qonnx_graphs.mlp(sizes=(784, 16, 10), in_bits=4)
    return qonnx_graphs.save(m, tmp_path / "mlp784.onnx")


def test_budget_skips_foldings_that_cannot_be_built(tmp_path, capsys):
    """A budget every level fits: the fastest folding that can be built (an input port of at most 4096
    bits), not an error about --bus-bits, which the user did not give."""
    model = _wide_mlp(tmp_path)
    out = tmp_path / "hls"
    assert main(["build", model, "--out", str(out), "--lut-budget", str(10**9)]) == 0, capsys.readouterr().err
    s = json.loads((out / "a2qhls.json").read_text())
    assert s["interface"]["input"]["bus_bits"] <= 4096
    assert s["folding"]["layer0"]["SIMD"] < 512 and s["cycles_per_image"] < 784 // 4  # faster than one tile a cycle less
    # with a bus given, the input adapter repacks 4-bit elements: the whole row a word can be built
    out2 = tmp_path / "hls2"
    assert main(["build", model, "--out", str(out2), "--lut-budget", str(10**9), "--bus-bits", "512"]) == 0
    assert json.loads((out2 / "a2qhls.json").read_text())["folding"]["layer0"]["SIMD"] == 784
    capsys.readouterr()


@pytest.mark.parametrize("args, expect", [
    (["--lut-budget", "100"], "the budget cannot be met: no folding fits LUT <= 100; the cheapest that can be built"),
    (["--folding", "wide.json"], "the AXI-stream input port would carry 784 4-bit elements a beat in whole bytes (6272 bits)"),
])
def test_unbuildable_design_names_the_cause_not_an_option_not_given(tmp_path, capsys, args, expect):
    model = _wide_mlp(tmp_path)
    (tmp_path / "wide.json").write_text(json.dumps({"layer0": {"PE": 1, "SIMD": 784}}))
    args = [str(tmp_path / a) if a.endswith(".json") else a for a in args]
    out = tmp_path / "hls"
    assert main(["build", model, "--out", str(out)] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and "--bus-bits 6272" not in err[0], err
    assert not out.exists()


def _mlp784_8bit(tmp_path) -> str:
    """784 8-bit inputs: any folding of the first layer with more than 512 inputs a word has a stream word
    (and a default-bus input port) above 4096 bits."""
    import qonnx_graphs

    m, _, _ = qonnx_graphs.mlp(sizes=(784, 16, 10), in_bits=8)
    return qonnx_graphs.save(m, tmp_path / "mlp784_8b.onnx")


def _fastest_buildable_cycles() -> int:
    """The fewest cycles per image of the 784-16-10 MLP with 8-bit inputs whose words fit 4096 bits: the
    first layer at PE=16 and the largest SIMD dividing 784 with SIMD * 8 <= 4096 (layer1 is faster)."""
    from a2qhls.passes.folding import divisors

    return 784 // max(s for s in divisors(784) if s * 8 <= 4096)


def test_budget_picks_the_fastest_buildable_folding(tmp_path, capsys):
    """A budget every level fits: fold_to_budget's search sees only buildable levels, so it returns the
    fastest buildable folding (it returned 28 cycles when levels 8..20 could not be built)."""
    model = _mlp784_8bit(tmp_path)
    out = tmp_path / "hls"
    assert main(["build", model, "--out", str(out), "--lut-budget", str(10**9)]) == 0, capsys.readouterr().err
    s = json.loads((out / "a2qhls.json").read_text())
    assert s["cycles_per_image"] == _fastest_buildable_cycles() == 2
    assert s["interface"]["input"]["bus_bits"] <= 4096 and s["folding"]["layer0"]["SIMD"] * 8 <= 4096


def test_every_folding_level_can_be_built(tmp_path):
    """fold_to_cycles at each cycle count the layers' candidates take gives a design code generation
    accepts (the premise of fold_to_budget's binary search)."""
    from a2qhls import codegen, flow
    from a2qhls.passes import folding as F

    st = flow.BuildState(source=_mlp784_8bit(tmp_path), config=flow.BuildConfig())
    flow.run_steps(st, [s for s in flow.BUILD_STEPS if s[0] in ("import", "size", "acc_bits", "thresholds")])
    cands = F._layer_candidates(F._plan(st.model, F.default_folding(st.model)))
    floor = max(min(c[0] for c in cs) for _, cs in cands.values())
    levels = sorted({c[0] for _, cs in cands.values() for c in cs if c[0] >= floor})
    assert levels[0] == _fastest_buildable_cycles()
    for t in levels:
        _, units = F._fold_to_cycles(st.model, t, None, cands)
        codegen.design_estimate(units, None)  # raises A2QError when a word or port is above 4096 bits
        assert max(u.stage_cycles for u in units if u.has_weights) <= t


@pytest.mark.parametrize("fps", ["1e8", "1e9"])
def test_target_fps_names_no_option_not_given(tmp_path, capsys, fps):
    """--target-fps builds at the fastest buildable folding when the target allows it, else fails in one
    line that names no option the user did not give (it advised --folding)."""
    model = _mlp784_8bit(tmp_path)
    out = tmp_path / "hls"
    rc = main(["build", model, "--out", str(out), "--target-fps", fps])
    err = capsys.readouterr().err.strip().splitlines()
    if fps == "1e8":  # 2 cycles per image at 200 MHz: reachable
        assert rc == 0, err
        assert json.loads((out / "a2qhls.json").read_text())["cycles_per_image"] <= 200e6 / 1e8
    else:
        assert rc == 2 and len(err) == 1 and "cannot reach" in err[0], err
        assert not any(o in err[0] for o in ("--folding", "--bus-bits", "budget")), err
        assert not out.exists()


@pytest.mark.parametrize("bus, expect", [
    ("12", "--bus-bits 12: the AXI-stream width must be a multiple of 8 from 8 to 4096"),
    ("5000", "--bus-bits 5000: the AXI-stream width must be a multiple of 8 from 8 to 4096"),
    ("8", "--bus-bits 8: the AXI-stream width must be a multiple of 8 from 16 (one 11-bit output element"),
])
def test_bad_bus_bits_under_a_budget_is_the_options_own_error(tmp_path, capsys, bus, expect):
    model = _mlp784_8bit(tmp_path)
    out = tmp_path / "hls"
    assert main(["build", model, "--out", str(out), "--lut-budget", str(10**9), "--bus-bits", bus]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and "budget" not in err[0], err
    assert not out.exists()
