"""Inference BatchNormalization after a layer: absorbed exactly into the thresholds."""

import numpy as np
import pytest

from a2qhls import load_qonnx, size_accumulators
from a2qhls.errors import A2QError
from a2qhls.ir import Conv, Dense, Requant
from cosim_run import assert_exact, build_and_cosim

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402


def brevitas_bn_cnn(negative_gamma=False):
    import brevitas.nn as qnn

    torch.manual_seed(0)
    net = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(1, 4, 3, padding=1, weight_bit_width=4, bias=False),
        nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(4 * 6 * 6, 8, weight_bit_width=4, bias=False),
        nn.BatchNorm1d(8),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(8, 3, weight_bit_width=4),
    )
    net.train()
    for _ in range(5):
        net(torch.rand(16, 1, 6, 6))
    with torch.no_grad():
        for bn in (net[2], net[6]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
        if negative_gamma:
            net[2].weight[1] = -0.7
    return net.eval()


def export(net, path):
    from brevitas.export import export_qonnx

    export_qonnx(net, torch.zeros(1, 1, 6, 6), str(path))
    return str(path)


def test_batchnorm_is_absorbed_and_cosimulates_exactly(tmp_path, capsys):
    path = export(brevitas_bn_cnn(), tmp_path / "bn.onnx")
    model = size_accumulators(load_qonnx(path))
    assert [type(op).__name__ for op in model.ops] == ["InputQuant", "Conv", "Requant", "Dense", "Requant", "Dense"]
    conv, fc = model.ops[1], model.ops[3]
    # the accumulators' real-value maps carry the BN affine: non-zero offsets, scales != s_in * s_w
    for layer in (conv, fc):
        info = model.tensors[layer.outputs[0]]
        assert np.any(info.offset != 0)
        s_in = float(model.tensors[layer.inputs[0]].scale[0])
        assert not np.allclose(info.scale, s_in * layer.weight_scale)
    assert_exact(*build_and_cosim(path, tmp_path / "hls", capsys, "--random", "300", "--adversarial"))


def test_negative_batchnorm_scale_negates_that_channel_and_stays_exact(tmp_path, capsys):
    """gamma < 0 makes the activation decrease with the accumulator: the importer negates that
    channel's weights so thresholds stay '>=', and the result still matches QONNX bit for bit."""
    net = brevitas_bn_cnn(negative_gamma=True)
    path = export(net, tmp_path / "neg.onnx")
    plain = export(brevitas_bn_cnn(), tmp_path / "pos.onnx")
    conv = load_qonnx(path).ops[1]
    ref = load_qonnx(plain).ops[1].weight  # the same conv weights, as the file holds them
    assert conv.negated_channels == (1,)
    assert np.array_equal(conv.weight[1], -ref[1]) and np.array_equal(np.delete(conv.weight, 1, 0), np.delete(ref, 1, 0))
    assert_exact(*build_and_cosim(path, tmp_path / "hls", capsys, "--random", "300", "--adversarial"))


def test_batchnorm_not_after_a_layer_is_a_clear_error(tmp_path):
    from qonnx_graphs import GraphBuilder, save

    g = GraphBuilder()
    x = g.quant("x", 0.25, 0, 4, False, False)
    c = [g.const(n, np.ones(3, np.float32)) for n in ("g", "b", "m", "v")]
    y = g.node("BatchNormalization", [x, *c], name="bn")
    m = g.model("x", y, [3], 3, batch=1)
    with pytest.raises(A2QError, match="'bn'.*directly after a Conv/Gemm/MatMul"):
        load_qonnx(save(m, tmp_path / "bn.onnx"))
