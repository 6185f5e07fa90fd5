"""QONNX Trunc (Brevitas's TruncAvgPool2d): exact semantics, thresholds, import and co-simulation."""
from fractions import Fraction
import itertools

import numpy as np
import pytest

from a2qhls.ir import IntType, Requant, TruncSpec
from a2qhls.passes.thresholds import ROUNDING_MODES, requant_exact, requant_thresholds


def trunc_requant(mode, out_bits=4, signed=False, scale=0.25, zp=0.0, k=2):
    ts = 2.0**k
    out_scale = scale * ts
    return Requant("t", ["a"], ["q"], relu=False, scale=np.asarray(out_scale, np.float32),
                   zero_point=np.asarray(zp / ts, np.float32), out_type=IntType(out_bits, signed, False, int(zp / ts)),
                   rounding_mode=mode, trunc=TruncSpec(scale, zp, ts))


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_exact_trunc_equals_qonnx_trunc_v2(mode):
    """On exactly representable values, the exact definition equals qonnx's own trunc_v2."""
    from qonnx.custom_op.general.trunc import trunc_v2

    for k, signed, zp in itertools.product((-1, 0, 2, 3), (False, True), (0.0, 4.0)):
        op = trunc_requant(mode, 4, signed, 0.25, zp, k)
        sa = Fraction(1, 16)  # an average pool of 4 over inputs of scale 1/4
        for acc in range(-150, 151, 3):
            x = np.asarray(float(sa * acc), dtype=np.float64)
            y = trunc_v2(x, np.float64(0.25), np.float64(zp), np.float64(8), 0, signed, np.float64(0.25 * 2.0**k), np.float64(4), mode)
            q_ref = int(np.round(y / (0.25 * 2.0**k) + zp / 2.0**k))
            assert requant_exact(acc, sa, Fraction(0), op, 0) == q_ref, (mode, k, signed, zp, acc)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_trunc_thresholds_equal_the_definition(mode):
    for k, signed in itertools.product((-2, 0, 1, 3), (False, True)):
        op = trunc_requant(mode, 3, signed, 0.3, 0.0, k)
        sa, lo, hi = 0.3 / 9, -200, 200  # a 3x3 average pool, arbitrary scale
        T = requant_thresholds(op, np.array([sa]), np.array([0.0]), lo, hi)
        for acc in range(lo, hi + 1):
            want = requant_exact(acc, Fraction(sa), Fraction(0), op, 0)
            assert op.out_type.qmin + int(np.sum(acc >= T[0])) == want, (mode, k, acc)


def test_brevitas_trunc_avg_pool_cnn_cosimulates_exactly(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx


    torch.manual_seed(0)
    net = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(1, 4, 3, padding=1, weight_bit_width=4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.TruncAvgPool2d(kernel_size=2, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(4 * 3 * 3, 10, weight_bit_width=4),
    )
    net.train()
    for _ in range(3):
        net(torch.rand(16, 1, 6, 6) * 2)
    net.eval()
    path = str(tmp_path / "trunc.onnx")
    export_qonnx(net, torch.zeros(1, 1, 6, 6), path)
    from a2qhls import load_qonnx
    from cosim_run import assert_exact, build_and_cosim

    model = load_qonnx(path)
    assert any(getattr(op, "trunc", None) is not None for op in model.ops)
    assert_exact(*build_and_cosim(path, tmp_path / "hls", capsys, "--random", "200", "--adversarial"))


def test_trunc_v1_is_a_clear_error(tmp_path):
    from a2qhls import load_qonnx
    from a2qhls.errors import A2QError
    from qonnx_graphs import GraphBuilder, save

    g = GraphBuilder()
    x = g.quant("x", 0.25, 0, 4, False, False)
    y = g.node("AveragePool", [x], {"kernel_shape": [2, 2], "strides": [2, 2]})
    c = [g.const(f"c{i}", v) for i, v in enumerate((0.25, 0.0, 6.0, 4.0))]
    y = g.node("Trunc", [y, *c], {"rounding_mode": "FLOOR"}, "qonnx.custom_op.general", name="tr")
    m = g.model("x", y, [2, 4, 4], 0, batch=1)
    with pytest.raises(A2QError, match="'tr'.*version 1"):
        load_qonnx(save(m, tmp_path / "t.onnx"))
