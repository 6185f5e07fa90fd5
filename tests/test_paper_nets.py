"""The A2Q+ paper's ResNet18 reduced (brevitas_examples' QuantBasicBlock, A2Q/A2Q+ at 12/16 bits,
8-bit input declared with --input-quant), exported by a2qhls's export_brevitas_qonnx (Brevitas's
dynamo exporter cannot export QuantBasicBlock: its add asserts QuantTensors, which dynamo turns off):
inspect -> build -> cosim with 0 mismatches, every targeted layer within its target."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas_examples")

import numpy as np  # noqa: E402

from cnn_patterns import build, cosim  # noqa: E402

INPUT_QUANT = "uint8:0.00392"


@pytest.fixture(scope="module", params=[("a2q", 12), ("a2q+", 16)], ids=["a2q_12", "a2qplus_16"])
def resnet_file(request, tmp_path_factory):
    import paper_nets

    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    kind, bits = request.param
    m = paper_nets.resnet(kind, bits)
    path = tmp_path_factory.mktemp("resnet") / f"resnet_{kind}_{bits}.onnx"
    export_brevitas_qonnx(m, torch.rand(1, 3, 8, 8), str(path))
    return path, kind, bits


def test_reduced_resnet18_inspect_build_cosim(resnet_file, tmp_path, capsys):
    import a2qhls

    path, kind, bits = resnet_file
    rep = a2qhls.inspect(str(path), input_quant=INPUT_QUANT)
    layers = rep["layers"]
    ops = [ly["op"] for ly in layers]
    assert ops.count("Add") == 2 and ops.count("Conv") == 6 and "AveragePool" in ops, ops
    targeted = [ly for ly in layers if ly["target_acc_bits"] is not None]
    assert len(targeted) == 5  # the blocks' 3x3 convs and the 1x1 shortcut conv
    assert all(ly["quant"] == kind and ly["target_acc_bits"] == bits and ly["acc_bits"] <= bits for ly in targeted)
    assert not any(ly["exceeds_target"] for ly in layers)
    out = tmp_path / "prj"
    summary = build(path, out, capsys, "--input-quant", INPUT_QUANT)
    assert summary["input_quant"] == INPUT_QUANT
    rc, cs = cosim(out, capsys, "--random", "20", "--adversarial")
    assert rc == 0 and cs["mismatches_cpp_vs_model"] == 0 and cs["mismatches_model_vs_qonnx"] == 0, cs


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    import paper_nets

    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    m = paper_nets.mobilenet()
    path = tmp_path_factory.mktemp("mobilenet") / "mobilenet_4b.onnx"
    export_brevitas_qonnx(m, torch.randn(1, 3, 16, 16), str(path))
    return m, path


def test_reduced_mobilenet_v1_per_channel_scales_into_depthwise(mobilenet_file, tmp_path, capsys):
    """brevitas_examples' MobileNet (reduced): per-channel activation scales feed the depthwise convs
    (moved to the accumulator's per-channel scale); inspect -> build -> cosim exact, one bit narrower caught."""
    import a2qhls
    from a2qhls.importer import load_qonnx

    m, path = mobilenet_file
    iq = "int8:0.03125"
    model = load_qonnx(str(path), input_quant=iq)
    dw = [op for op in model.layers() if getattr(op, "depthwise", False)]
    assert len(dw) == 2
    per_channel_in = [np.unique(model.tensors[op.inputs[0]].scale).size > 1 for op in dw]
    assert per_channel_in[0]  # the init block's per-channel QuantReLU feeds the first depthwise conv
    rep = a2qhls.inspect(str(path), input_quant=iq)
    assert [ly["op"] for ly in rep["layers"]] == ["Conv"] * 5 + ["AveragePool", "Gemm"]
    out = tmp_path / "prj"
    summary = build(path, out, capsys, "--input-quant", iq)
    rc, cs = cosim(out, capsys, "--random", "20", "--adversarial")
    assert rc == 0 and cs["mismatches_cpp_vs_model"] == 0 and cs["mismatches_model_vs_qonnx"] == 0, cs
    name = summary["layers"][1]["name"]  # the first depthwise conv, one bit narrower
    out2 = tmp_path / "narrow"
    build(path, out2, capsys, "--input-quant", iq, "--acc-bits", f"{name}={summary['layers'][1]['acc_bits'] - 1}")
    rc, cs = cosim(out2, capsys, "--adversarial")
    assert rc == 1 and cs["mismatches_cpp_vs_model"] == 0 and cs["mismatches_model_vs_qonnx"] > 0, cs


def test_per_channel_scales_into_a_conv_over_channels_are_refused(tmp_path):
    """A per-channel activation scale into a convolution that sums over channels stays refused, in one line."""
    import warnings

    import brevitas.nn as qnn
    import torch.nn as nn
    from brevitas.export import export_qonnx
    from brevitas_examples.imagenet_classification.models.common import CommonUintActQuant

    from a2qhls.errors import A2QError
    from a2qhls.importer import load_qonnx

    torch.manual_seed(0)
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=4),
        qnn.QuantReLU(act_quant=CommonUintActQuant, bit_width=4, per_channel_broadcastable_shape=(1, 4, 1, 1),
                      scaling_stats_permute_dims=(1, 0, 2, 3), scaling_per_output_channel=True, return_quant_tensor=True),
        qnn.QuantConv2d(4, 2, 3, bias=False, weight_bit_width=4),
    )
    m.train()
    with torch.no_grad():  # activation statistics: a different scale per channel
        for _ in range(3):
            m(torch.randn(16, 3, 6, 6))
    m.eval()
    p = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(m, torch.randn(1, 3, 6, 6), export_path=str(p), dynamo=True)
    with pytest.raises(A2QError, match="per-channel scales, which a layer summing over channels cannot take exactly") as e:
        load_qonnx(str(p))
    assert "\n" not in str(e.value)
