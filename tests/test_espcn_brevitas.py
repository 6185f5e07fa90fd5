"""Brevitas 0.13.4's ESPCN x2 (``brevitas_examples/super_resolution``, unmodified, built by its own
``get_model_by_name``; see tests/espcn_brevitas.py), A2Q and A2Q+ at P=13, seeded random weights, on an
8x8 image (the constructor fixes the channels): its ``relu(inp)`` folds into the input quantizer, its
final ``PixelShuffle`` (DepthToSpace CRD) + ``QuantReLU`` become conv4's thresholds and a streaming
reorder, and it goes inspect -> build -> cosim with 0 mismatches through both of Brevitas's QONNX
exporters (dynamo and TorchScript), with the trained integers (a2qhls's ``export_brevitas_qonnx``: the
targeted layers within 13 bits) and, with the other exporter, as Brevitas writes the file
(``export_qonnx``: imports, builds, and the numpy model equals QONNX on it)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas_examples.super_resolution")

import espcn_brevitas  # noqa: E402
from cnn_patterns import build, cosim  # noqa: E402


@pytest.fixture(scope="module", params=[("a2q", "dynamo"), ("a2q+", "torchscript")], ids=["a2q_dynamo", "a2qplus_torchscript"])
def exported(request, tmp_path_factory):
    """The model exported by ``export_brevitas_qonnx`` (the trained integers, targets recorded) and by
    Brevitas's own ``export_qonnx`` with the other exporter."""
    import warnings

    from brevitas.export import export_qonnx

    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    kind, how = request.param
    model, x = espcn_brevitas.make(kind)
    d = tmp_path_factory.mktemp("espcn")
    ours, raw = d / f"espcn_{kind}_{how}.onnx", d / f"espcn_{kind}_raw.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_brevitas_qonnx(model, x, str(ours), dynamo=how == "dynamo")
        export_qonnx(model, x, export_path=str(raw), dynamo=how != "dynamo")
    return kind, model, x, ours, raw


def test_inspect_build_cosim_within_target(exported, tmp_path, capsys):
    import a2qhls
    from a2qhls import load_qonnx
    from a2qhls.ir import DepthToSpace, InputQuant, Requant

    kind, model, x, ours, _ = exported
    m = load_qonnx(str(ours))
    assert isinstance(m.ops[0], InputQuant) and [p[0] for p in m.ops[0].pre] == ["Relu"]  # relu(inp), folded
    # conv4 -> QuantReLU moved before the PixelShuffle: the last two ops are its Requant and the reorder
    assert isinstance(m.ops[-2], Requant) and isinstance(m.ops[-1], DepthToSpace) and m.ops[-1].mode == "CRD"
    rep = a2qhls.inspect(str(ours))
    lys = rep["layers"]
    assert [ly["target_acc_bits"] for ly in lys] == [32, 13, 13, None]
    assert all(ly["acc_bits"] <= ly["target_acc_bits"] for ly in lys if ly["target_acc_bits"])
    out = tmp_path / "prj"
    summary = build(ours, out, capsys)
    assert [u["kind"] for u in summary["units"]][-2] == "d2s"
    assert summary["interface"]["output"]["shape"] == [16, 16, 3]
    assert [ly["acc_bits"] for ly in summary["layers"]] == [ly["acc_bits"] for ly in lys]
    rc, cs = cosim(out, capsys, "--random", "3", "--adversarial")
    assert rc == 0 and cs["mismatches_cpp_vs_model"] == 0 and cs["mismatches_model_vs_qonnx"] == 0, cs
    # the torch model's own output, dequantized, is what the numpy model gives (same file, same image)
    from a2qhls.sim import simulate, to_real

    with torch.no_grad():
        want = model(x).detach().numpy()
    t = m.outputs[0]
    got = to_real(m, t, simulate(m, x.numpy())[t]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_brevitas_export_as_written_builds_and_matches_qonnx(exported, tmp_path, capsys):
    """Brevitas's own file (float weights ``v`` and a rounding Quant: not the trained integers, so the
    widths may exceed the target) imports and builds (with the reorder unit), and the numpy model, which
    the C simulation equals (above), gives QONNX's output on it (no second g++ build here)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    from a2qhls import load_qonnx
    from a2qhls.sim import simulate, to_real

    _, _, x, _, raw = exported
    summary = build(raw, tmp_path / "raw", capsys)
    assert [u["kind"] for u in summary["units"]][-2] == "d2s"
    m = load_qonnx(str(raw))
    xs = np.concatenate([x.numpy(), np.random.default_rng(0).uniform(-0.5, 1.5, size=(1, 3, 8, 8)).astype(np.float32)])
    t = m.outputs[0]
    got = to_real(m, t, simulate(m, xs)[t]).transpose(0, 3, 1, 2)
    mw = ModelWrapper(str(raw)).transform(InferShapes())
    ref = np.concatenate([execute_onnx(mw, {mw.graph.input[0].name: xs[i:i + 1]})[mw.graph.output[0].name] for i in range(len(xs))])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
