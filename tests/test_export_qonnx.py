"""Exact QONNX export: trained integers survive, qonnx's executor agrees with torch, inspect sees the targets."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import numpy_helper  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402

from a2qhls.errors import A2QError  # noqa: E402
from a2qhls.frontend import A2QWeightQuant, QuantIdentity, QuantLinear, QuantReLU  # noqa: E402
from a2qhls.frontend.data import load_dataset  # noqa: E402
from a2qhls.frontend.export import METADATA_KEY, QUANT_DOMAIN, export_qonnx  # noqa: E402
from a2qhls.frontend.init import init_from_float  # noqa: E402
from a2qhls.frontend.layers import weight_layers  # noqa: E402
from a2qhls.frontend.train import TrainConfig, build_mlp, fit  # noqa: E402

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {  # name -> (quant, acc_bits, constrain)
    "a2q+": ("a2q+", 12, "all"),
    "a2q": ("a2q", 12, "all"),
    "a2q-inner": ("a2q", 11, "inner"),
    "baseline": ("baseline", 12, "all"),
}


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", 0)
    torch.manual_seed(0)
    fmodel = build_mlp(data.features, [64, 32], data.classes, "float")
    fit(fmodel, data, TrainConfig(epochs=10, seed=0))
    return data, fmodel


@pytest.fixture(scope="module")
def trained(digits):
    data, fmodel = digits
    models = {}
    for name, (quant, P, constrain) in CONFIGS.items():
        torch.manual_seed(0)
        m = build_mlp(data.features, [64, 32], data.classes, quant, 4, 4, P, constrain)
        init_from_float(m, fmodel, "ep")
        fit(m, data, TrainConfig(epochs=4, seed=0))
        models[name] = m.eval()
    return data, models


def _initializers(mp):
    return {i.name: numpy_helper.to_array(i) for i in mp.graph.initializer}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exported_weights_round_back_to_the_trained_integers(trained, tmp_path, name):
    data, models = trained
    model = models[name]
    path = str(tmp_path / "m.onnx")
    mp = export_qonnx(model, path, data.features)
    inits = _initializers(mp)
    gemms = [n for n in mp.graph.node if n.op_type == "Gemm"]
    layers = weight_layers(model)
    assert len(gemms) == len(layers)
    producers = {o: n for n in mp.graph.node for o in n.output}
    for gemm, layer in zip(gemms, layers):
        quant = producers[gemm.input[1]]
        assert quant.op_type == "Quant" and quant.domain == QUANT_DOMAIN
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in quant.attribute}
        assert attrs == {"signed": 1, "narrow": 1, "rounding_mode": b"ROUND"}
        w, s = inits[quant.input[0]], inits[quant.input[1]]
        assert w.dtype == np.float32 and s.shape == (layer.out_features, 1)
        assert int(inits[quant.input[3]]) == layer.weight_quant.bits
        np.testing.assert_array_equal(np.round(w / s), layer.int_weight().numpy())
        assert {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute} == {"transB": 1}
    meta = json.loads({p.key: p.value for p in mp.metadata_props}[METADATA_KEY])
    assert sorted(meta) == sorted(g.name for g in gemms)
    for gemm, layer in zip(gemms, layers):
        entry = meta[gemm.name]
        assert entry["quant"] == layer.weight_quant.kind
        assert entry["weight_bits"] == layer.weight_quant.bits
        if isinstance(layer.weight_quant, A2QWeightQuant):
            assert entry["target_acc_bits"] == layer.weight_quant.acc_bits
            assert (entry["input_bits"], entry["input_signed"]) == (layer.weight_quant.input_bits, False)
        else:
            assert entry["target_acc_bits"] is None


@pytest.mark.parametrize("name", list(CONFIGS))
def test_qonnx_executor_equals_torch_eval(trained, tmp_path, name):
    data, models = trained
    model = models[name]
    x = data.x_test
    path = str(tmp_path / "m.onnx")
    export_qonnx(model, path, data.features, batch_size=len(x))
    mw = ModelWrapper(path)
    out = execute_onnx(mw, {mw.graph.input[0].name: x.numpy()})[mw.graph.output[0].name]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4 * float(np.abs(ref).max()))
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_inspect_shows_every_constrained_layer_within_target(trained, tmp_path):
    data, models = trained
    for name in ("a2q+", "a2q", "a2q-inner"):
        path = str(tmp_path / f"{name}.onnx")
        export_qonnx(models[name], path, data.features)
        proc = subprocess.run([sys.executable, "-m", "a2qhls", "inspect", path, "--json"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        constrained = [row for row in report["layers"] if row.get("target_acc_bits")]
        expected = sum(isinstance(layer.weight_quant, A2QWeightQuant) for layer in weight_layers(models[name]))
        assert len(constrained) == expected > 0
        for row in constrained:
            assert row["quant"] in ("a2q", "a2q+")
            assert row["acc_bits"] <= row["target_acc_bits"], (name, row["name"], row["acc_bits"])


def test_export_rejects_a_layer_constrained_for_another_input_quantizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(QuantIdentity(8, signed=False, init_scale=1 / 255),
                                QuantLinear(16, 4, weight_quant=A2QWeightQuant(4, 12, 4, False)))
    with pytest.raises(A2QError, match="8-bit unsigned"):
        export_qonnx(model, None, 16)
    with pytest.raises(A2QError, match="activation quantizer"):
        export_qonnx(torch.nn.Sequential(QuantLinear(16, 4, weight_quant=A2QWeightQuant(4, 12, 4, False))), None, 16)
    with pytest.raises(A2QError, match="calibrated"):
        export_qonnx(torch.nn.Sequential(QuantIdentity(4, signed=False), QuantLinear(
            16, 4, weight_quant=A2QWeightQuant(4, 12, 4, False)), QuantReLU(4)), None, 16)


@pytest.mark.parametrize("zero_center", [False, True], ids=["a2q", "a2q+"])
def test_brevitas_export_changes_a2q_integers_but_ours_does_not(tmp_path, zero_center):
    """Regression: Brevitas 0.13.4 stores the float weight behind a rounding Quant, so the file's
    integers are round(w / s), not the round-to-zero integers it trained; ours stores q * s."""
    qnn = pytest.importorskip("brevitas.nn")
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from brevitas.quant import (Int8AccumulatorAwareWeightQuant, Int8AccumulatorAwareZeroCenterWeightQuant,
                                Uint8ActPerTensorFloat)

    torch.manual_seed(0)
    K, out, P = 64, 16, 12
    wq = Int8AccumulatorAwareZeroCenterWeightQuant if zero_center else Int8AccumulatorAwareWeightQuant
    bmodel = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(K, out, bias=True, weight_quant=wq, weight_bit_width=4, weight_accumulator_bit_width=P))
    x = torch.rand(8, K)
    bmodel.train()
    bmodel(x)
    bmodel.eval()
    trained_ints = bmodel[1].quant_weight(bmodel[0](x)).int().numpy().astype(np.int64)
    bpath = str(tmp_path / "brevitas.onnx")
    brevitas_export_qonnx(bmodel, x, bpath)
    bmp = onnx.load(bpath)
    inits = _initializers(bmp)
    wquant = [n for n in bmp.graph.node if n.op_type == "Quant" and n.input[0] in inits
              and inits[n.input[0]].ndim == 2]
    assert len(wquant) == 1
    exported = np.round(inits[wquant[0].input[0]] / inits[wquant[0].input[1]]).astype(np.int64)
    assert not np.array_equal(exported, trained_ints)  # the bug
    budget = A2QWeightQuant(4, P, 4, False, zero_center=zero_center).budget
    if not zero_center:  # A2Q: the exported integers even break the l1 guarantee
        assert np.abs(exported).sum(1).max() > budget >= np.abs(trained_ints).sum(1).max()

    # the same layer in a2qhls, with Brevitas's trained state, exports its integers exactly
    ours = torch.nn.Sequential(QuantIdentity(4, signed=False, init_scale=float(bmodel[0].act_quant.scale())),
                               QuantLinear(K, out, weight_quant=A2QWeightQuant(4, P, 4, False, zero_center)))
    ours[1].weight.data.copy_(bmodel[1].weight.data)
    ours[1].bias.data.copy_(bmodel[1].bias.data)
    pre = bmodel[1].weight_quant.tensor_quant.pre_scaling_impl
    with torch.no_grad():
        ours[1].weight_quant.log2_scale.copy_(pre.scaling_impl.value.view(-1, 1))
        ours[1].weight_quant.log2_g.copy_(pre.value.view(-1, 1))
    np.testing.assert_array_equal(ours[1].int_weight().numpy(), trained_ints)
    mp = export_qonnx(ours, str(tmp_path / "ours.onnx"), K)
    oinits = _initializers(mp)
    q = [n for n in mp.graph.node if n.op_type == "Quant" and n.input[0] in oinits][0]
    np.testing.assert_array_equal(np.round(oinits[q.input[0]] / oinits[q.input[1]]), trained_ints)
