"""Convolution, depthwise convolution and pooling: import into channels-last IR and exact sizing."""
import itertools

import numpy as np
import pytest

from a2qhls import bounds, load_qonnx, size_accumulators
from a2qhls.ir import Conv, Dense, InputQuant, Pool, Requant

from qonnx_graphs import GraphBuilder, save


def conv_graph(cin=2, cout=3, H=5, W=4, k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), groups=1,
               in_bits=4, in_signed=False, in_zp=0, seed=0, w_pos=False, pool=None, head=None):
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    x = g.quant("x", 0.25, in_zp, in_bits, in_signed, False, name="inq")
    ints = rng.integers(1 if w_pos else -7, 8, size=(cout, cin // groups, *k))
    ws = rng.uniform(0.01, 0.1, size=(cout, 1, 1, 1)).astype(np.float32)
    w = g.quant(g.const("w", (ints * ws).astype(np.float32)), ws, 0, 4, True, True)
    y = g.node("Conv", [x, w], {"kernel_shape": list(k), "strides": list(stride), "pads": list(pads), "group": groups}, name="conv")
    oh = (H + pads[0] + pads[2] - k[0]) // stride[0] + 1
    ow = (W + pads[1] + pads[3] - k[1]) // stride[1] + 1
    out_shape = [cout, oh, ow]
    hint = None
    if pool or head:
        y = g.quant(g.node("Relu", [y]), 0.5, 0, 4, False, False, name="act")
    if pool == "max":
        y = g.node("MaxPool", [y], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="pool")
        oh, ow = oh // 2, ow // 2
        out_shape = [cout, oh, ow]
    if head:
        y = g.node("Flatten", [y], {"axis": 1})
        hint = rng.integers(-7, 8, size=(head, cout * oh * ow))
        hw = g.quant(g.const("hw", (hint * 0.05).astype(np.float32)), np.float32(0.05), 0, 4, True, True)
        y = g.node("Gemm", [y, hw], {"transB": 1}, name="fc")
        out_shape = [head]
    m = g.model("x", y, [cin, H, W], 0, batch=1)
    m.graph.output[0].type.tensor_type.shape.ClearField("dim")
    return m, ints, hint


def brute_force_range(ints, H, W, stride, pads, xmin, xmax):
    """Max/min of every output position and channel by direct enumeration of window contents."""
    cout, cin_g, kh, kw = ints.shape
    t, l, b, r = pads
    hi = np.full(cout, -10**18)
    lo = np.full(cout, 10**18)
    for oy in range((H + t + b - kh) // stride[0] + 1):
        for ox in range((W + l + r - kw) // stride[1] + 1):
            for j in range(cout):
                top = bot = 0
                for c, dy, dx in itertools.product(range(cin_g), range(kh), range(kw)):
                    iy, ix = oy * stride[0] - t + dy, ox * stride[1] - l + dx
                    q = int(ints[j, c, dy, dx])
                    vals = [xmin, xmax] if 0 <= iy < H and 0 <= ix < W else [0]  # padding: the zero-point
                    top += max(q * v for v in vals)
                    bot += min(q * v for v in vals)
                hi[j], lo[j] = max(hi[j], top), min(lo[j], bot)
    return lo, hi


@pytest.mark.parametrize("case", [
    dict(),
    dict(stride=(2, 2), pads=(0, 1, 2, 0)),
    dict(H=1, W=1),  # every window is mostly padding
    dict(in_zp=-2, w_pos=True),  # values [2, 17]: a padded window reaches the minimum
    dict(cin=4, cout=4, groups=4, k=(3, 2)),  # depthwise
])
def test_conv_sizing_equals_brute_force_over_windows(tmp_path, case):
    proto, ints, _ = conv_graph(**case)
    model = size_accumulators(load_qonnx(save(proto, tmp_path / "c.onnx")))
    conv = model.layers()[0]
    assert isinstance(conv, Conv)
    p = dict(H=5, W=4, stride=(1, 1), pads=(1, 1, 1, 1), in_zp=0) | {k: v for k, v in case.items() if k in ("H", "W", "stride", "pads", "in_zp")}
    in_t = model.tensors[conv.inputs[0]].dtype
    assert (in_t.vmin, in_t.vmax) == (0 - p["in_zp"], 15 - p["in_zp"])
    lo, hi = brute_force_range(ints, p["H"], p["W"], p["stride"], p["pads"], in_t.vmin, in_t.vmax)
    assert conv.acc.per_channel_max.tolist() == hi.tolist()
    assert conv.acc.per_channel_min.tolist() == lo.tolist()
    assert conv.acc.acc_bits == int(bounds.signed_bits_for_range(lo, hi).max())
    # channels-last weights: [C_out, kh, kw, C_in/groups]
    assert np.array_equal(conv.weight, ints.transpose(0, 2, 3, 1))
    if case.get("groups"):
        assert conv.depthwise and conv.K == 6


def test_flatten_after_conv_permutes_the_dense_weights(tmp_path):
    proto, ints, hint = conv_graph(pool="max", head=5, H=4, W=6)
    model = size_accumulators(load_qonnx(save(proto, tmp_path / "c.onnx")))
    assert [type(op) for op in model.ops] == [InputQuant, Conv, Requant, Pool, Dense]
    pool, fc = model.ops[3], model.ops[4]
    assert pool.mode == "max" and pool.out_shape == (2, 3, 3)
    fmap = np.random.default_rng(3).integers(0, 16, size=pool.out_shape)  # [H, W, C] as our streams carry it
    ours = fc.weight @ fmap.reshape(-1)
    onnx_order = hint @ fmap.transpose(2, 0, 1).reshape(-1)  # ONNX flattens [C, H, W]
    assert np.array_equal(ours, onnx_order)


def test_average_pool_is_sized_as_a_window_sum(tmp_path):
    g = GraphBuilder()
    x = g.quant("x", 0.25, 0, 4, False, False)
    y = g.node("AveragePool", [x], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="ap")
    y = g.quant(y, 0.25, 0, 4, False, False)
    w = g.quant(g.const("w", np.ones((3, 2 * 2 * 2), np.float32)), np.float32(1.0), 0, 4, True, True)
    y = g.node("Gemm", [g.node("Flatten", [y], {"axis": 1}), w], {"transB": 1})
    m = g.model("x", y, [2, 4, 4], 3, batch=1)
    model = size_accumulators(load_qonnx(save(m, tmp_path / "ap.onnx")))
    ap = model.ops[1]
    assert isinstance(ap, Pool) and ap.mode == "avg"
    assert (ap.acc.acc_min, ap.acc.acc_max, ap.acc.acc_bits) == (0, 4 * 15, 7)


def test_brevitas_conv_export_imports(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.quant import Int8AccumulatorAwareZeroCenterWeightQuant

    import brevitas_mlp as bm

    torch.manual_seed(0)
    net = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(1, 4, 3, padding=1, weight_bit_width=4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantConv2d(4, 4, 3, padding=1, stride=2, groups=4, bias=False, weight_bit_width=4,
                        weight_quant=Int8AccumulatorAwareZeroCenterWeightQuant, weight_accumulator_bit_width=10),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        qnn.QuantLinear(4 * 2 * 2, 10, weight_bit_width=4),
    )
    net.eval()
    net(torch.randn(4, 1, 8, 8))
    for dynamo in (False, True):
        path = str(tmp_path / f"cnn{dynamo}.onnx")
        from brevitas.export import export_qonnx
        export_qonnx(net, torch.zeros(1, 1, 8, 8), path, dynamo=dynamo)
        model = size_accumulators(load_qonnx(path))
        kinds = [type(op).__name__ for op in model.ops]
        assert kinds == ["InputQuant", "Conv", "Requant", "Conv", "Requant", "Pool", "Dense"]
        c1, dw = model.ops[1], model.ops[3]
        assert not c1.depthwise and dw.depthwise and dw.K == 9
        assert model.tensors[dw.inputs[0]].shape == (8, 8, 4)
        assert np.array_equal(c1.weight, np.round(net[1].quant_weight().value.detach().numpy() /
                                                  net[1].quant_weight().scale.detach().numpy()).astype(int).transpose(0, 2, 3, 1))


def residual_graph(branch_scale=0.5, in_scale=0.25):
    g = GraphBuilder()
    x = g.quant("x", in_scale, 0, 4, False, False, name="inq")
    w = g.quant(g.const("w", np.ones((2, 2, 3, 3), np.float32) * 0.1), np.float32(0.1), 0, 4, True, True)
    y = g.node("Conv", [x, w], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, name="conv")
    y = g.quant(g.node("Relu", [y]), branch_scale, 0, 4, False, False, name="branch")
    s = g.node("Add", [y, x], name="res")  # the input quant's output forks: into the conv and the bypass
    s = g.quant(g.node("Relu", [s]), 0.5, 0, 4, False, False, name="post")
    hw = g.quant(g.const("hw", np.ones((3, 2 * 4 * 4), np.float32)), np.float32(1.0), 0, 4, True, True)
    y = g.node("Gemm", [g.node("Flatten", [s], {"axis": 1}), hw], {"transB": 1}, name="fc")
    return g.model("x", y, [2, 4, 4], 3, batch=1)


def test_residual_add_aligns_scales_and_sizes_from_both_ranges(tmp_path):
    model = size_accumulators(load_qonnx(save(residual_graph(), tmp_path / "res.onnx")))
    kinds = [type(op).__name__ for op in model.ops]
    assert kinds == ["InputQuant", "Conv", "Requant", "Add", "Requant", "Dense"]
    add = model.ops[3]
    assert add.inputs == [model.ops[2].outputs[0], model.ops[0].outputs[0]]
    # branch scale 0.5 = 2 * 0.25: acc = 2 * branch + bypass, in units of 0.25
    assert add.multipliers == (2, 1)
    assert model.tensors[add.outputs[0]].scale[0] == 0.25
    assert (add.acc.acc_min, add.acc.acc_max, add.acc.acc_bits) == (0, 45, 7)


def test_residual_add_with_unrelated_scales_aligns_them_exactly(tmp_path):
    """Scales with no small ratio (0.3, 0.1 as float32) are still dyadic: the multipliers are their
    float32 ratio in lowest terms, and the output scale times each multiplier is the input's scale."""
    from fractions import Fraction

    model = size_accumulators(load_qonnx(save(residual_graph(branch_scale=0.3, in_scale=0.1), tmp_path / "res.onnx")))
    add = model.ops[3]
    r = Fraction(float(np.float32(0.3))) / Fraction(float(np.float32(0.1)))
    assert add.multipliers == (r.numerator, r.denominator) and r.denominator > 2**20
    s = Fraction(float(model.tensors[add.outputs[0]].scale[0]))
    assert s * r.numerator == Fraction(float(np.float32(0.3))) and s * r.denominator == Fraction(float(np.float32(0.1)))


# ---------------------------------------------------------------- sizing properties (IR level)

from hypothesis import given, settings, strategies as st  # noqa: E402

from a2qhls.ir import IntType  # noqa: E402
from a2qhls.passes.accumulator import size_layer  # noqa: E402


@st.composite
def conv_case(draw):
    depthwise = draw(st.booleans())
    cin = draw(st.integers(1, 3))
    cout = cin if depthwise else draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    H = draw(st.integers(1, 5))
    W = draw(st.integers(1, 5))
    if H + pads[0] + pads[2] < kh or W + pads[1] + pads[3] < kw:
        H, W = H + kh, W + kw
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    w = np.array(draw(st.lists(st.integers(-7, 7), min_size=cout * (1 if depthwise else cin) * kh * kw,
                               max_size=cout * (1 if depthwise else cin) * kh * kw)))
    w = w.reshape(cout, 1 if depthwise else cin, kh, kw)
    bits = draw(st.integers(1, 4))
    signed = draw(st.booleans()) if bits > 1 else False
    zp = draw(st.integers(-3, 3))
    return w, (H, W), stride, pads, cin if depthwise else 1, IntType(bits, signed, False, zp)


@settings(max_examples=150, deadline=None)
@given(conv_case())
def test_conv_and_depthwise_sizing_equals_brute_force(case):
    """Any kernel, stride, asymmetric padding, zero-point, groups: the pass's per-channel range equals
    direct enumeration over every window, and the derived width is the least that holds it."""
    w, (H, W), stride, pads, groups, in_t = case
    cout = w.shape[0]
    cin = w.shape[1] * groups
    conv = Conv("c", ["x"], ["y"], np.ascontiguousarray(w.transpose(0, 2, 3, 1)), IntType(4, True, True),
                np.ones(cout), None, w.shape[2:], stride, pads, groups, (H, W, cin))
    rep = size_layer(conv, in_t)
    lo, hi = brute_force_range(w, H, W, stride, pads, in_t.vmin, in_t.vmax)
    assert rep.per_channel_min.tolist() == lo.tolist() and rep.per_channel_max.tolist() == hi.tolist()
    assert rep.acc_bits == int(bounds.signed_bits_for_range(lo, hi).max())
    if groups > 1:
        assert conv.depthwise or cin == 1
