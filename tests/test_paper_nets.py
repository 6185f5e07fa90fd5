"""The A2Q+ paper's ResNet18 reduced (brevitas_examples' QuantBasicBlock, A2Q/A2Q+ at 12/16 bits,
8-bit input declared with --input-quant), exported by a2qhls's export_brevitas_qonnx (Brevitas's
dynamo exporter cannot export QuantBasicBlock: its add asserts QuantTensors, which dynamo turns off):
inspect -> build -> cosim with 0 mismatches, every targeted layer within its target."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas_examples")

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
