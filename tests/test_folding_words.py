"""--target-fps and --lut-budget choose only foldings code generation accepts, also where a word is set by
more than one layer's folding or by a word the layer's own candidates do not show: a width converter between
two layers (its intermediate word: the least common multiple of their PE and SIMD), a pool whose words carry
a convolution's PE at its own (wider) output type, a streamed-weight beat (PE * SIMD weights). Each model
below is one where the per-layer cheapest folding at some level is refused by code generation (the search
returned it before: --target-fps failed, --lut-budget treated the level as over budget or failed)."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2qhls import codegen, flow
from a2qhls.cli import main
from a2qhls.errors import A2QError
from a2qhls.passes import folding as F


def _dwc_mlp(path) -> str:
    """64-600-600-10 with 8-bit activations (graph builder): layers of PE p feeding one of SIMD s, neither
    dividing the other, get width converters through lcm(p, s) <= 600 elements, up to 4800 bits."""
    import qonnx_graphs

    m, _, _ = qonnx_graphs.mlp(sizes=(64, 600, 600, 10), in_bits=8, act_bits=8)
    return qonnx_graphs.save(m, path)


def _pool_cnn(path) -> str:
    """Brevitas (exported with export_qonnx): 8-bit 12x12 input -> QuantConv2d(1, 1024, 3, stride 3) ->
    2-bit QuantReLU -> AvgPool2d(2) -> 8-bit QuantIdentity -> QuantLinear(4096, 10). The conv's output words
    are PE * 2 bits, the pool's PE * 8 bits: PE = 1024 makes an 8192-bit pool word."""
    import torch
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(1, 1024, 3, stride=3, padding=1, weight_bit_width=4, bias=False)
            self.act = qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
            self.pool = nn.AvgPool2d(2)
            self.q = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(1024 * 2 * 2, 10, weight_bit_width=4, bias=False)

        def forward(self, x):
            x = self.q(self.pool(self.act(self.conv(self.inp(x)))))
            return self.fc(torch.flatten(x, 1))

    net = Net()
    net.train()
    with torch.no_grad():
        for _ in range(3):  # calibrate the activation scales
            net(torch.rand(16, 1, 12, 12))
    net.eval()
    export_qonnx(net, torch.zeros(1, 1, 12, 12), export_path=str(path))
    return str(path)


def _add_cnn(path) -> str:
    """Brevitas: 8-bit 12x12 input -> QuantConv2d(1, 1024, 3, stride 3) -> 2-bit QuantReLU a -> depthwise
    QuantConv2d 3x3 -> the same QuantReLU b (one scale for both addends) -> b + a -> 8-bit QuantReLU ->
    QuantLinear(16384, 10). The add reads words of the depthwise layer's PE and writes them at 8 bits:
    PE = 1024 (the depthwise layer's fastest) makes an 8192-bit add word."""
    import torch
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(1, 1024, 3, stride=3, padding=1, weight_bit_width=4, bias=False)
            self.act = qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
            self.dw = qnn.QuantConv2d(1024, 1024, 3, padding=1, groups=1024, weight_bit_width=4, bias=False)
            self.out = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(1024 * 4 * 4, 10, weight_bit_width=4, bias=False)

        def forward(self, x):
            a = self.act(self.conv(self.inp(x)))
            b = self.act(self.dw(a))
            return self.fc(torch.flatten(self.out(b + a), 1))

    net = Net()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(16, 1, 12, 12))
    net.eval()
    export_qonnx(net, torch.zeros(1, 1, 12, 12), export_path=str(path))
    return str(path)


def _stream_mlp(path) -> str:
    """256-64-10, 4-bit weights (graph builder): with layer0's weights streamed, PE * SIMD * 4 bits a beat."""
    import qonnx_graphs

    m, _, _ = qonnx_graphs.mlp(sizes=(256, 64, 10), in_bits=4, act_bits=4)
    return qonnx_graphs.save(m, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("fold_words")
    return {"dwc": _dwc_mlp(d / "dwc.onnx"), "pool": _pool_cnn(d / "pool.onnx"), "add": _add_cnn(d / "add.onnx"),
            "stream": _stream_mlp(d / "stream.onnx")}


def _state(path):
    st = flow.BuildState(source=path, config=flow.BuildConfig())
    return flow.run_steps(st, [s for s in flow.BUILD_STEPS if s[0] in ("import", "size", "acc_bits", "thresholds")])


def _levels(model) -> tuple[dict, list]:
    cands = F._layer_candidates(F._plan(model, F.default_folding(model)))
    floor = max(min(c[0] for c in cs) for _, cs in cands.values())
    return cands, sorted({c[0] for _, cs in cands.values() for c in cs if c[0] >= floor})


def _refused_choice(model, cands, levels, word) -> dict:
    """A choice of each layer's candidates code generation refuses for a word named ``word``: every layer
    at its fastest, or at its cheapest within one of ``levels`` (the search's first choice there)."""
    choices = [{n: min(cs, key=lambda c: (c[0], F._cost_key(c[1]))) for n, (_, cs) in cands.items()}]
    choices += [{n: min((c for c in cs if c[0] <= t), key=lambda c: (F._cost_key(c[1]), -c[3], c[0]))
                 for n, (_, cs) in cands.items()} for t in levels]
    for ch in choices:
        f = {n: {"PE": c[2], "SIMD": c[3]} for n, c in ch.items()}
        try:
            F._plan(model, f)
        except A2QError as e:
            if word in str(e):
                return f
    raise AssertionError(f"no choice of the candidates is refused for {word}")


def _reached(model, levels, n) -> list:
    """The first ``n`` levels fold_to_cycles reaches; every other one fails in one line."""
    out = []
    for t in levels:
        try:
            F.fold_to_cycles(model, t)
        except A2QError as e:
            assert "cannot reach" in str(e) and "\n" not in str(e), e
            continue
        out.append(t)
        if len(out) == n:
            return out
    return out


def _build(args, tmp_path, capsys, name="hls") -> tuple:
    out = tmp_path / name
    rc = main(["build", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line or "Traceback" in line]
    return rc, (json.loads((out / "a2qhls.json").read_text()) if rc == 0 else None), errors, out


WORDS = [("dwc", "dwc"), ("pool", "pool0_out_word")]


@pytest.mark.parametrize("kind, word", WORDS + [("add", "add0_out_word")])
def test_every_level_folds_to_a_design_code_generation_accepts(models, kind, word):
    """The layers' own candidates admit foldings code generation refuses (every layer at its fastest, or
    at its cheapest for a level: a width converter's word, a pool's or an add's word above 4096 bits); at
    every level fold_to_cycles returns one it accepts, within the level, or fails in one line (it returned
    the refused one: code generation failed)."""
    st = _state(models[kind])
    m = st.model
    cands, levels = _levels(m)
    refused = _refused_choice(m, cands, levels[:10], word)
    with pytest.raises(A2QError, match=word):
        F._plan(m, refused)
    for t in levels[:10]:
        try:
            f = F.fold_to_cycles(m, t)
        except A2QError as e:
            assert "cannot reach" in str(e) and "\n" not in str(e), e
            continue
        units = codegen.plan(m)  # raises when a word is above 4096 bits
        assert F.folding_of(m) == f and max(u.stage_cycles for u in units) <= t
        assert max(b for _, b in codegen.word_widths(units)) <= codegen.AP_INT_LIMIT_W


@pytest.mark.parametrize("kind, word", WORDS)
def test_target_fps_at_the_fastest_levels_builds(models, kind, word, tmp_path, capsys):
    """--target-fps at each of the two fastest levels fold_to_cycles reaches (at 200 MHz) builds within it
    (one of them failed in code generation: an 8192-bit pool word, a 4800-bit width converter word)."""
    st = _state(models[kind])
    _, levels = _levels(st.model)
    for t in _reached(st.model, levels, 2):
        rc, s, errors, _ = _build([models[kind], "--target-fps", repr(200e6 / t)], tmp_path, capsys, f"hls{t}")
        assert rc == 0, errors
        assert s["cycles_per_image"] <= t


@pytest.mark.parametrize("kind, word", WORDS)
def test_lut_budget_reaches_the_fastest_buildable_level(models, kind, word, tmp_path, capsys):
    """--lut-budget without a binding limit: the fastest level fold_to_cycles reaches (a level whose first
    choice code generation refused counted as over budget: 192 and 6 cycles where 160 and 4 build)."""
    st = _state(models[kind])
    _, levels = _levels(st.model)
    fastest = _reached(st.model, levels, 1)[0]
    rc, s, errors, _ = _build([models[kind], "--lut-budget", str(10**9)], tmp_path, capsys)
    assert rc == 0, errors
    assert s["cycles_per_image"] <= fastest


def test_a_level_only_a_refused_folding_reaches_is_one_line(models, tmp_path, capsys):
    """--target-fps at the fastest level of the add model the layers' candidates allow (the input stream's):
    only the depthwise layer's PE = 1024 reaches it, whose add word code generation refuses: one line in
    the folding step naming the layer and the word (it failed in code generation, advising --folding)."""
    st = _state(models["add"])
    cands, levels = _levels(st.model)
    t = levels[0]
    rc, _, errors, out = _build([models["add"], "--target-fps", repr(200e6 / t)], tmp_path, capsys)
    assert rc == 2 and len(errors) == 1, errors
    assert "cannot reach" in errors[0] and "add0_out_word" in errors[0] and "--folding" not in errors[0], errors
    assert not out.exists()


def test_streamed_weights_beat_is_a_word_the_search_counts(models, tmp_path, capsys):
    """--stream-weights layer0: the folding's beat (PE * SIMD 4-bit weights) fits 4096 bits under a budget
    (the fastest level's 64x256 beat failed code generation) and at the fastest target it reaches; a faster
    target is one line naming the streamed beat, nothing written."""
    path = models["stream"]
    rc, s, errors, _ = _build([path, "--stream-weights", "layer0", "--lut-budget", str(10**9)], tmp_path, capsys)
    assert rc == 0, errors
    w = s["interface"]["weights"][0]
    assert w["layer"] == "layer0" and w["bus_bits"] <= 4096 and w["PE"] * w["SIMD"] * 4 <= 4096
    cyc = s["cycles_per_image"]
    # on chip, the same budget builds faster: the beat is what slowed it
    rc, s2, errors, _ = _build([path, "--lut-budget", str(10**9)], tmp_path, capsys, "on_chip")
    assert rc == 0 and s2["cycles_per_image"] < cyc and s2["folding"]["layer0"]["PE"] * s2["folding"]["layer0"]["SIMD"] * 4 > 4096
    rc, s, errors, _ = _build([path, "--stream-weights", "layer0", "--target-fps", repr(200e6 / cyc)], tmp_path, capsys, "fps")
    assert rc == 0, errors
    assert s["cycles_per_image"] <= cyc and s["interface"]["weights"][0]["bus_bits"] <= 4096
    rc, s, errors, out = _build([path, "--stream-weights", "layer0", "--target-fps", repr(200e6 / (cyc - 1))], tmp_path, capsys,
                                "too_fast")
    assert rc == 2 and len(errors) == 1 and "streamed" in errors[0] and "cannot reach" in errors[0], errors
    assert "--folding" not in errors[0] and not out.exists()


def test_stream_weights_auto_folds_again_counting_the_beat(tmp_path, capsys):
    """--stream-weights auto on a part too small for a 1024x1024 layer's weights: when auto would stream a
    layer whose beat code generation refuses at the folding found, the search runs again counting it, and
    when no folding counting it is fast enough, faster foldings keeping the weights on chip are tried
    (at 2e5 images/s it reported "cannot reach" although a faster folding builds with nothing streamed);
    so the build either streams within 4096 bits or keeps the weights on chip, or fails in one line in
    the folding step (code generation failed on the 8192-bit beat)."""
    import qonnx_graphs

    m, _, _ = qonnx_graphs.mlp(sizes=(1024, 1024, 10), in_bits=4, act_bits=4)
    path = qonnx_graphs.save(m, tmp_path / "big.onnx")
    common = [path, "--stream-weights", "auto", "--part", "xc7z020"]
    rc, s, errors, _ = _build(common + ["--target-fps", "2e5"], tmp_path, capsys)
    assert rc == 0, errors
    assert s["cycles_per_image"] <= 1000 and s["stream_weights"] == [], s["stream_weights"]
    assert s["cost"]["total"]["BRAM18"] <= s["cost"]["capacity"]["BRAM18"]  # auto had nothing to stream
    rc, s, errors, _ = _build(common + ["--target-fps", "1e5"], tmp_path, capsys, "slower")
    assert rc == 0, errors
    assert s["stream_weights"] == ["layer0"] and s["interface"]["weights"][0]["bus_bits"] <= 4096
    rc, s, errors, out = _build(common + ["--target-fps", "2e8"], tmp_path, capsys, "too_fast")
    assert rc == 2 and len(errors) == 1 and "cannot reach" in errors[0], errors
    assert "code generation" not in errors[0] and not out.exists()


def test_bus_bits_is_checked_with_the_candidates_before_the_target(models, tmp_path, capsys):
    """A --bus-bits narrower than one output element is its own one-line error under --target-fps too
    (not prefixed by the target, which did not cause it)."""
    rc, _, errors, out = _build([models["dwc"], "--target-fps", "1e6", "--bus-bits", "8"], tmp_path, capsys)
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("a2qhls: error: --bus-bits 8:"), errors
    assert "--target-fps" not in errors[0] and not out.exists()


def _level_estimates(model, levels) -> dict:
    """Level -> the whole-design estimate (totals) of fold_to_cycles's folding there, None where no folding
    reaching it can be built."""
    cands = F._layer_candidates(F._base_plan(model))
    out = {}
    for t in levels:
        try:
            _, units = F._fold_to_cycles(model, t, None, cands)
            out[t] = codegen.design_estimate(units)["total"]
        except A2QError:
            out[t] = None
    return out


def _assert_fastest_that_fits(model, budget: dict) -> int:
    """fold_to_budget returns a folding within ``budget`` and every level faster than its cycles per image
    is over budget or cannot be built; returns those cycles."""
    f, tot = F.fold_to_budget(model, budget)
    cyc = max(u.stage_cycles for u in codegen.plan(model))
    assert all(tot[k] <= v for k, v in budget.items()), (tot, budget)
    _, levels = _levels(model)
    for t, est in _level_estimates(model, [t for t in levels if t < cyc]).items():
        assert est is None or any(est[k] > v for k, v in budget.items()), (t, est, budget, cyc)
    return cyc


def test_lut_budget_takes_the_fastest_level_that_fits_where_cost_is_not_monotone(models):
    """On the pool CNN a slower level can cost more LUTs than a faster one (the conv's cheaper folding
    widens the pool's work: 288 cycles estimates more than 192); a budget of each level's LUTs gets that
    level or a faster one (the binary search over the levels gave 384 cycles for the 192-cycle design's)."""
    m = _state(models["pool"]).model
    _, levels = _levels(m)
    est = _level_estimates(m, levels[:8])
    built = [t for t, e in est.items() if e is not None]
    assert any(est[a]["LUT"] < est[b]["LUT"] for a in built for b in built if a < b)  # the model shows it
    for t in built:
        assert _assert_fastest_that_fits(m, {"LUT": est[t]["LUT"]}) <= t


_settings = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(sizes=st.lists(st.integers(2, 40), min_size=2, max_size=4), seed=st.integers(0, 100), pick=st.floats(0, 1))
def test_budget_folding_is_the_fastest_that_fits_on_random_mlps(sizes, seed, pick):
    """Random small MLPs (hand-built IR), a LUT budget of one level's design: no faster level fits it."""
    import hand_models

    m = _state(hand_models.mlp(tuple(sizes), seed=seed)).model
    _, levels = _levels(m)
    est = [e for e in _level_estimates(m, levels).values() if e is not None]
    _assert_fastest_that_fits(m, {"LUT": est[int(pick * (len(est) - 1))]["LUT"]})


@_settings
@given(ch=st.sampled_from([2, 4, 6]), cin=st.integers(1, 3), seed=st.integers(0, 100), pick=st.floats(0, 1),
       res=st.sampled_from(["LUT", "BRAM18"]))
def test_budget_folding_is_the_fastest_that_fits_on_random_cnns(ch, cin, seed, pick, res):
    """Random small CNNs (hand-built IR: conv, depthwise, pools, add, dense), a LUT or BRAM18 budget of one
    level's design: no faster level fits it."""
    import hand_models

    m = _state(hand_models.cnn(ch=ch, cin=cin, seed=seed)).model
    _, levels = _levels(m)
    est = [e for e in _level_estimates(m, levels).values() if e is not None]
    _assert_fastest_that_fits(m, {res: est[int(pick * (len(est) - 1))][res]})


def test_cannot_reach_names_the_fastest_level_that_builds(models, tmp_path, capsys):
    """--target-fps faster than the pool CNN's conv can go: the one-line error's "its fastest folding needs
    N" names the fewest cycles a design can be built at (it named the conv's 144 cycles, whose 8192-bit
    pool word code generation refuses): --target-fps at N builds at N, one cycle less does not."""
    import re

    st = _state(models["pool"])
    _, levels = _levels(st.model)
    fastest = _reached(st.model, levels, 1)[0]
    assert fastest > levels[0]  # the layers' fastest level is refused
    rc, _, errors, out = _build([models["pool"], "--target-fps", repr(200e6 / (levels[0] // 2))], tmp_path, capsys)
    assert rc == 2 and len(errors) == 1 and "cannot reach" in errors[0] and not out.exists(), errors
    n = int(re.search(r"its fastest folding needs (\d+) \(", errors[0]).group(1))
    assert levels[0] < n <= fastest, errors
    rc, s, errors, _ = _build([models["pool"], "--target-fps", repr(200e6 / n)], tmp_path, capsys, "at_n")
    assert rc == 0 and s["cycles_per_image"] == n, errors
    with pytest.raises(A2QError, match="cannot reach"):  # nothing faster builds
        F.fold_to_cycles(st.model, n - 1)
