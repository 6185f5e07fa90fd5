"""Issue 10, the rest: residual adds of a layer's accumulator and a shortcut (``out = bn2(conv2(x));
out += shortcut(x); relu(out) -> Quant``, the shortcut the quantized block input or a 1x1 downsample
conv + BN), adds of per-channel-scaled activations, and ``Conv -> BN -> AveragePool -> QuantReLU``.

Each from a small Brevitas 0.13.4 model built here, exported by both QONNX exporters: inspect equals
an independent reference (the Brevitas modules' integer weights and quantizer scales, Python
integers and fractions: no a2qhls code) of every exact accumulator range, the add's per channel;
build; cosim random + adversarial 0 mismatches; every accumulator one bit narrower caught."""
from __future__ import annotations

from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")

import numpy as np  # noqa: E402

from cnn_patterns import (  # noqa: E402
    check_exact_then_narrower, conv_range, dense_range, export_both, int_range, int_weight, quant_type,
)

EXPORTERS = ("dynamo", "torchscript")


def _calibrate(m, shape, bns=()):
    with torch.no_grad():
        for bn in bns:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    m.train()
    for bn in bns:
        bn.eval()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, *shape))
    m.eval()
    return m


def _block(down: bool, seed: int):
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(seed)
    cout = 6 if down else 4

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=5, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn1 = nn.BatchNorm2d(4)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(4, cout, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn2 = nn.BatchNorm2d(cout)
            if down:
                self.cd = qnn.QuantConv2d(4, cout, 1, stride=2, bias=False, weight_bit_width=4)
                self.bnd = nn.BatchNorm2d(cout)
                self.c2.stride = (2, 2)
            self.r2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(cout * (4 if down else 16), 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.q(x)
            out = self.bn2(self.c2(self.r1(self.bn1(self.c1(x)))))  # float ResNet: BN output + shortcut, then the activation
            out = out + (self.bnd(self.cd(x)) if down else x)
            return self.fc(torch.flatten(self.r2(out), 1))

    m = Block()
    return _calibrate(m, (4, 4, 4), [m.bn1, m.bn2] + ([m.bnd] if down else []))


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    d = tmp_path_factory.mktemp("resalign")
    out = {}
    for down in (False, True):
        m = _block(down, 11 + down)
        out[down] = (m, export_both(m, torch.randn(1, 4, 4, 4), d, f"block{int(down)}"))
    return out


# ----------------------------------------------------------------------------- the independent reference


def _act_scale(act, x) -> float:
    with torch.no_grad():
        return float(act(x).scale.reshape(-1)[0])


def _acc_scales(conv, bn, s_in: float) -> np.ndarray:
    """Per output channel the real-value scale of ``bn(conv(.))`` on the integer accumulator, in float64
    (input scale x weight scale x gamma / sqrt(var + eps), BatchNorm's epsilon as the float32 ONNX stores)."""
    with torch.no_grad():
        sw = conv.quant_weight().scale.detach().double().numpy().reshape(-1)
    g, v = bn.weight.detach().double().numpy(), bn.running_var.detach().double().numpy()
    a = g / np.sqrt(v + float(np.float32(bn.eps)))
    return (s_in * np.broadcast_to(sw, a.shape)) * a


def _conv_ranges(conv, in_hw, xlo, xhi) -> list:
    w = int_weight(conv)
    pads = (conv.padding[0], conv.padding[1]) * 2
    return [conv_range(w[j:j + 1], in_hw, tuple(conv.stride), pads, xlo, xhi) for j in range(w.shape[0])]


def _aligned(sa, sb, ra, rb) -> list:
    """Per channel ``(lo, hi)`` of ``ma * a + mb * b`` with ``sa / sb = ma / mb`` in lowest terms (float32 scales)."""
    out = []
    for j in range(len(ra)):
        r = Fraction(float(np.float32(sa[j]))) / Fraction(float(np.float32(sb[j])))
        ma, mb = r.numerator, r.denominator
        out.append((ma * ra[j][0] + mb * rb[j][0], ma * ra[j][1] + mb * rb[j][1]))
    return out


def _sbits(lo: int, hi: int) -> int:
    p = 1
    while not (-(2 ** (p - 1)) <= lo and hi <= 2 ** (p - 1) - 1):
        p += 1
    return p


def _block_reference(m, down: bool) -> tuple:
    x = torch.randn(1, 4, 4, 4)
    s_x = _act_scale(m.q, x)
    with torch.no_grad():
        s_r1 = float(m.r1(m.bn1(m.c1(m.q(x)))).scale.reshape(-1)[0])
    xlo, xhi = int_range(*quant_type(m.q))
    r1lo, r1hi = int_range(*quant_type(m.r1))
    c1 = _conv_ranges(m.c1, (4, 4), xlo, xhi)
    c2 = _conv_ranges(m.c2, (4, 4), r1lo, r1hi)
    s2 = _acc_scales(m.c2, m.bn2, s_r1)
    if down:
        cd = _conv_ranges(m.cd, (4, 4), xlo, xhi)
        add = _aligned(s2, _acc_scales(m.cd, m.bnd, s_x), c2, cd)
    else:
        add = _aligned(s2, np.full(len(c2), s_x), c2, [(xlo, xhi)] * len(c2))
    span = lambda rs: (min(r[0] for r in rs), max(r[1] for r in rs))  # noqa: E731
    fc = dense_range(int_weight(m.fc), *int_range(*quant_type(m.r2)))
    ref = [span(c1), span(c2)] + ([span(cd)] if down else []) + [span(add), fc]
    return ref, add


@pytest.mark.parametrize("down", [False, True], ids=["identity_shortcut", "downsample_shortcut"])
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_accumulator_plus_shortcut_aligned_exactly(blocks, down, exporter, tmp_path, capsys):
    """``bn2(conv2(x)) + shortcut`` before the activation: both scales aligned per channel on a common
    grid, the combined accumulator sized exactly (multipliers included), thresholds on it, bit-exact."""
    import a2qhls

    m, paths = blocks[down]
    path = paths[exporter]
    ref, add_ref = _block_reference(m, down)
    rep = a2qhls.inspect(str(path), per_channel=True)
    add = next(r for r in rep["layers"] if r["op"] == "Add")
    assert list(zip(add["acc_min_per_channel"], add["acc_max_per_channel"])) == add_ref
    # what the alignment costs: per input its multiplier and the bits it adds, as inspect shows them
    xlo, xhi = int_range(*quant_type(m.q))
    short = [r for r in _conv_ranges(m.cd, (4, 4), xlo, xhi)] if down else [(xlo, xhi)]
    assert add["alignment"][1]["input_bits"] == _sbits(min(r[0] for r in short), max(r[1] for r in short))
    assert all(a["aligned_bits"] > a["input_bits"] and a["multiplier_bits"] >= 1 for a in add["alignment"])
    from a2qhls.cli.inspect import render_text

    assert "x multiplier of up to" in render_text(rep, False)
    narrower = exporter == "torchscript" if down else exporter == "dynamo"
    check_exact_then_narrower(path, ref, tmp_path, capsys, random=20, tag=f"{exporter}{int(down)}", narrower=narrower)


def test_alignment_beyond_64_bits_is_refused_in_one_line(tmp_path):
    """Scales 2^-100 apart cannot be summed exactly within a 64-bit accumulator: one line with the reason."""
    from onnx import TensorProto, helper, numpy_helper

    from a2qhls.errors import A2QError
    from a2qhls.importer import load_qonnx

    def c(name, v):
        return numpy_helper.from_array(np.asarray(v, dtype=np.float32), name)

    nodes = [
        helper.make_node("Quant", ["x", "s1", "z", "b"], ["a"], domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Quant", ["x", "s2", "z", "b"], ["bq"], domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Add", ["a", "bq"], ["y"], name="res"),
        helper.make_node("Quant", ["y", "s1", "z", "b"], ["yq"], domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("MatMul", ["yq", "wq"], ["out"]),
        helper.make_node("Quant", ["w", "s1", "z", "b"], ["wq"], domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2])],
                          [c("s1", 1.0), c("s2", 2.0 ** -100), c("z", 0.0), c("b", 8.0), c("w", np.ones((4, 2)))])
    p = tmp_path / "far.onnx"
    import onnx

    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]), p)
    with pytest.raises(A2QError) as e:
        load_qonnx(str(p))
    assert "'res'" in str(e.value) and "64-bit" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- per-channel scales on an add


@pytest.fixture(scope="module")
def per_channel_add(tmp_path_factory):
    """Two QuantReLUs with per-channel scales (different on each branch), added, then a per-tensor QuantReLU."""
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(21)
    C = 4

    def pc_relu():
        return qnn.QuantReLU(bit_width=4, return_quant_tensor=False, scaling_per_output_channel=True,
                             per_channel_broadcastable_shape=(1, C, 1, 1), scaling_stats_permute_dims=(1, 0, 2, 3))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=5, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(3, C, 3, padding=1, bias=False, weight_bit_width=4)
            self.ra = pc_relu()
            self.c2 = qnn.QuantConv2d(3, C, 1, bias=False, weight_bit_width=4)
            self.rb = pc_relu()
            self.r = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(C * 16, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.q(x)
            y = self.ra(self.c1(x)) + self.rb(self.c2(x))  # two float tensors: their scales differ per channel
            return self.fc(torch.flatten(self.r(y), 1))

    m = _calibrate(Net(), (3, 4, 4))
    return m, export_both(m, torch.randn(1, 3, 4, 4), tmp_path_factory.mktemp("pcadd"), "pcadd")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_add_of_per_channel_scaled_activations(per_channel_add, exporter, tmp_path, capsys):
    """An add whose inputs carry per-channel scales: aligned channel by channel (per-channel multipliers)."""
    import a2qhls

    m, paths = per_channel_add
    path = paths[exporter]
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        qx = m.q(x)
        m.ra.return_quant_tensor = m.rb.return_quant_tensor = True
        sa = m.ra(m.c1(qx)).scale.detach().double().numpy().reshape(-1)
        sb = m.rb(m.c2(qx)).scale.detach().double().numpy().reshape(-1)
        m.ra.return_quant_tensor = m.rb.return_quant_tensor = False
    assert len(set(sa.tolist())) > 1 and len(set(sb.tolist())) > 1  # really per channel
    xlo, xhi = int_range(*quant_type(m.q))
    ra = [int_range(4, False)] * 4
    add_ref = _aligned(sa, sb, ra, ra)
    rep = a2qhls.inspect(str(path), per_channel=True)
    add = next(r for r in rep["layers"] if r["op"] == "Add")
    assert list(zip(add["acc_min_per_channel"], add["acc_max_per_channel"])) == add_ref
    ref = [(min(r[0] for r in _conv_ranges(m.c1, (4, 4), xlo, xhi)), max(r[1] for r in _conv_ranges(m.c1, (4, 4), xlo, xhi))),
           (min(r[0] for r in _conv_ranges(m.c2, (4, 4), xlo, xhi)), max(r[1] for r in _conv_ranges(m.c2, (4, 4), xlo, xhi))),
           (min(r[0] for r in add_ref), max(r[1] for r in add_ref)),
           dense_range(int_weight(m.fc), *int_range(*quant_type(m.r)))]
    check_exact_then_narrower(path, ref, tmp_path, capsys, random=20, tag=exporter, narrower=exporter == "dynamo")


# ----------------------------------------------------------------------------- AveragePool before the activation


@pytest.fixture(scope="module")
def avg_first(tmp_path_factory):
    """QuantConv2d -> BatchNorm -> AvgPool2d(2) -> QuantReLU -> linear head."""
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(31)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=5, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn = nn.BatchNorm2d(4)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 16, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.r1(nn.functional.avg_pool2d(self.bn(self.c1(self.q(x))), 2))
            return self.fc(torch.flatten(x, 1))

    m = Net()
    m = _calibrate(m, (3, 8, 8), [m.bn])
    return m, export_both(m, torch.randn(1, 3, 8, 8), tmp_path_factory.mktemp("avgfirst"), "avgfirst")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_average_pool_before_the_activation(avg_first, exporter, tmp_path, capsys):
    """The window sum of the layer's accumulators is an accumulating op of its own (per channel k*k times the
    layer's exact range); the divide and the BatchNorm go into the thresholds."""
    from a2qhls.importer import load_qonnx

    m, paths = avg_first
    path = paths[exporter]
    model = load_qonnx(str(path))
    pool = next(op for op in model.ops if op.op == "Pool")
    assert pool.mode == "avg" and model.tensors[pool.inputs[0]].dtype is None  # it reads the accumulator
    c1 = _conv_ranges(m.c1, (8, 8), *int_range(*quant_type(m.q)))
    ref = [(min(r[0] for r in c1), max(r[1] for r in c1)),
           (min(4 * r[0] for r in c1), max(4 * r[1] for r in c1)),
           dense_range(int_weight(m.fc), *int_range(*quant_type(m.r1)))]
    check_exact_then_narrower(path, ref, tmp_path, capsys, random=20, tag=exporter, narrower=exporter == "torchscript")
