"""CNN export: conv and depthwise integers survive exactly, qonnx's executor agrees with torch,
the residual Add is exact on integers, and inspect sees every constrained layer within its target."""
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
from torch import nn  # noqa: E402

from a2qhls import load_qonnx  # noqa: E402
from a2qhls.errors import A2QError  # noqa: E402
from a2qhls.frontend import A2QWeightQuant, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU  # noqa: E402
from a2qhls.frontend.data import load_dataset  # noqa: E402
from a2qhls.frontend.export import METADATA_KEY, QUANT_DOMAIN, export_qonnx  # noqa: E402
from a2qhls.frontend.init import init_from_float  # noqa: E402
from a2qhls.frontend.layers import QuantResidual, weight_layers  # noqa: E402
from a2qhls.frontend.train import TrainConfig, build_cnn, fit  # noqa: E402
from a2qhls.ir import Add, Conv, Pool  # noqa: E402

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# conv3x3 -> depthwise 3x3 -> maxpool -> residual block -> 2x2 avg pool -> flatten -> linear
SPEC = "cnn:c8,dw,p,r,a"
CONFIGS = {  # name -> (spec, quant, acc_bits, constrain)
    "a2q+": (SPEC, "a2q+", 12, "all"),
    "a2q": (SPEC, "a2q", 12, "all"),
    "a2q+gap-inner": ("cnn:c8,dw,r,gap", "a2q+", 11, "inner"),
    "baseline": (SPEC, "baseline", 12, "all"),
}


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits", 0).as_images()
    floats, models = {}, {}
    for name, (spec, quant, P, constrain) in CONFIGS.items():
        if spec not in floats:
            torch.manual_seed(0)
            floats[spec] = build_cnn(spec, data.sample_shape, data.classes, "float")
            fit(floats[spec], data, TrainConfig(epochs=6, seed=0))
        torch.manual_seed(0)
        m = build_cnn(spec, data.sample_shape, data.classes, quant, 4, 4, P, constrain)
        init_from_float(m, floats[spec], "ep")
        fit(m, data, TrainConfig(epochs=3, seed=0))
        models[name] = m.eval()
    return data, models


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exported_conv_and_depthwise_weights_round_back_to_the_trained_integers(trained, name):
    data, models = trained
    model = models[name]
    mp = export_qonnx(model, None, data.sample_shape)
    inits = {i.name: numpy_helper.to_array(i) for i in mp.graph.initializer}
    producers = {o: n for n in mp.graph.node for o in n.output}
    layers = weight_layers(model)
    nodes = [n for n in mp.graph.node if n.op_type in ("Conv", "Gemm")]
    assert [n.op_type for n in nodes] == ["Conv" if isinstance(m, QuantConv2d) else "Gemm" for m in layers]
    depthwise = 0
    for node, layer in zip(nodes, layers):
        quant = producers[node.input[1]]
        assert quant.op_type == "Quant" and quant.domain == QUANT_DOMAIN
        assert _attrs(quant) == {"signed": 1, "narrow": 1, "rounding_mode": b"ROUND"}
        w, s = inits[quant.input[0]], inits[quant.input[1]]
        q = layer.int_weight().numpy().reshape(layer.weight.shape)
        assert w.dtype == np.float32 and w.shape == q.shape
        assert s.shape == (q.shape[0],) + (1,) * (q.ndim - 1)  # per output channel: [C_out, 1, 1, 1] for Conv
        assert int(inits[quant.input[3]]) == layer.weight_quant.bits
        np.testing.assert_array_equal(np.round(w / s), q)  # the file's integers are the layer's integers
        if node.op_type == "Conv":
            a = _attrs(node)
            assert a["kernel_shape"] == [3, 3] and a["strides"] == [1, 1] and a["pads"] == [1, 1, 1, 1]
            assert a["group"] == layer.groups
            if layer.groups > 1:
                depthwise += 1
                assert layer.groups == layer.in_channels == layer.out_channels and w.shape[1] == 1
    assert depthwise == 1
    meta = json.loads({p.key: p.value for p in mp.metadata_props}[METADATA_KEY])
    assert sorted(meta) == sorted(n.name for n in nodes)
    for node, layer in zip(nodes, layers):
        wq = layer.weight_quant
        assert meta[node.name]["quant"] == wq.kind and meta[node.name]["weight_bits"] == wq.bits
        if isinstance(wq, A2QWeightQuant):
            assert meta[node.name]["target_acc_bits"] == wq.acc_bits
            assert (meta[node.name]["input_bits"], meta[node.name]["input_signed"]) == (wq.input_bits, False)
        else:
            assert meta[node.name]["target_acc_bits"] is None


@pytest.mark.parametrize("name", list(CONFIGS))
def test_qonnx_executor_equals_torch_eval(trained, tmp_path, name):
    data, models = trained
    model = models[name]
    x = data.x_test
    path = str(tmp_path / "m.onnx")
    export_qonnx(model, path, data.sample_shape, batch_size=len(x))
    mw = ModelWrapper(path)
    assert [d.dim_value for d in mw.graph.input[0].type.tensor_type.shape.dim] == [len(x), 1, 8, 8]
    out = execute_onnx(mw, {mw.graph.input[0].name: x.numpy()})[mw.graph.output[0].name]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4 * float(np.abs(ref).max()))
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_residual_add_is_exact_on_integers(trained, tmp_path):
    """Both Add inputs are Quant outputs with the same scale (the body's last quantizer is the block
    input's), so the importer aligns them with multipliers (1, 1) and the torch sum is s * (a + b)."""
    data, models = trained
    model = models["a2q+"]
    block = next(m for m in model.modules() if isinstance(m, QuantResidual))
    assert block.body[-1].quant is model[4].quant  # shared with the quantizer feeding the block (via the max pool)
    path = str(tmp_path / "m.onnx")
    mp = export_qonnx(model, path, data.sample_shape)
    inits = {i.name: numpy_helper.to_array(i) for i in mp.graph.initializer}
    producers = {o: n for n in mp.graph.node for o in n.output}
    (add,) = [n for n in mp.graph.node if n.op_type == "Add"]
    src = [producers[i] for i in add.input]
    assert src[0].op_type == "Quant" and src[1].op_type == "MaxPool" and producers[src[1].input[0]].op_type == "Quant"
    scales = [inits[src[0].input[1]], inits[producers[src[1].input[0]].input[1]]]
    assert scales[0] == scales[1]
    ir = load_qonnx(path)
    (ir_add,) = [op for op in ir.ops if isinstance(op, Add)]
    assert ir_add.multipliers == (1, 1)
    # in torch, both addends are integers times the one shared scale, so the sum is s * (a + b)
    s = block.body[-1].quant.scale().detach()
    feats = {}
    hook = block.body.register_forward_hook(lambda m, i, o: feats.__setitem__("body", (i[0], o)))
    with torch.no_grad():
        model(data.x_test[:64])
    hook.remove()
    x, y = (t.detach() for t in feats["body"])
    a, b = torch.round(x / s), torch.round(y / s)
    torch.testing.assert_close(x, a * s, rtol=1e-6, atol=0)
    torch.testing.assert_close(y, b * s, rtol=1e-6, atol=0)
    assert float(a.min()) >= 0 and float(a.max()) <= 15 and float(b.min()) >= 0 and float(b.max()) <= 15
    torch.testing.assert_close(x + y, (a + b) * s, rtol=1e-6, atol=0)


def test_inspect_json_widths_within_targets(trained, tmp_path):
    data, models = trained
    for name in ("a2q+", "a2q", "a2q+gap-inner"):
        path = str(tmp_path / f"{name}.onnx")
        export_qonnx(models[name], path, data.sample_shape)
        proc = subprocess.run([sys.executable, "-m", "a2qhls", "inspect", path, "--json"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(proc.stdout)["layers"]
        constrained = [r for r in rows if r.get("target_acc_bits")]
        expected = [isinstance(m.weight_quant, A2QWeightQuant) for m in weight_layers(models[name])]
        assert len(constrained) == sum(expected) > 0
        for r in constrained:
            assert r["quant"] == CONFIGS[name][1]
            assert r["acc_bits"] <= r["target_acc_bits"], (name, r["name"], r["acc_bits"])
        ops = {r["op"] for r in rows}
        assert {"Conv", "Gemm", "Add"} <= ops
        assert ("GlobalAveragePool" if "gap" in name else "AveragePool") in ops
    ir = load_qonnx(str(tmp_path / "a2q+.onnx"))
    kinds = [type(op).__name__ for op in ir.ops]
    assert kinds == ["InputQuant", "Conv", "Requant", "Conv", "Requant", "Pool", "Conv", "Requant", "Conv", "Requant",
                     "Add", "Requant", "Pool", "Requant", "Dense"]
    assert [op.depthwise for op in ir.ops if isinstance(op, Conv)] == [False, True, False, False]
    assert [op.mode for op in ir.ops if isinstance(op, Pool)] == ["max", "avg"]


def _act(bits=4, scale=0.1, **kw):
    return QuantReLU(bits, init_scale=scale, **kw)


def _conv(cin, cout, groups=1, in_bits=4):
    return QuantConv2d(cin, cout, 3, padding=1, groups=groups, weight_quant=A2QWeightQuant(4, 12, in_bits, False))


def test_export_rejects_what_the_compiler_cannot_take_exactly():
    torch.manual_seed(0)
    inp = QuantIdentity(4, signed=False, init_scale=1 / 16)
    shape = (2, 4, 4)
    # a residual body whose last quantizer has an unrelated scale: the Add would not be exact
    bad = nn.Sequential(inp, QuantResidual(nn.Sequential(_conv(2, 2), _act(scale=0.0123)), _act()),
                        nn.Flatten(), QuantLinear(32, 3, weight_quant=A2QWeightQuant(4, 12, 4, False)))
    with pytest.raises(A2QError, match="no small integer ratio"):
        export_qonnx(bad, None, shape)
    # the shared quantizer makes the same block exportable
    good = nn.Sequential(inp, QuantResidual(nn.Sequential(_conv(2, 2), _act(quant=inp.quant)), _act()),
                         nn.Flatten(), QuantLinear(32, 3, weight_quant=A2QWeightQuant(4, 12, 4, False)))
    assert sum(n.op_type == "Add" for n in export_qonnx(good, None, shape).graph.node) == 1
    # a small integer ratio of the scales (here 4) is also exact
    ratio2 = nn.Sequential(inp, QuantResidual(nn.Sequential(_conv(2, 2), _act(scale=1 / 4)), _act()),
                           nn.Flatten(), QuantLinear(32, 3))
    with pytest.raises(A2QError, match="float weights"):  # gets past the Add, stops at the float layer
        export_qonnx(ratio2, None, shape)
    cases = [
        (nn.Sequential(inp, QuantResidual(_conv(2, 2), _act())), "must end with a QuantReLU"),
        (nn.Sequential(inp, _conv(2, 4), _act(), QuantLinear(64, 3)), "add nn.Flatten"),
        (nn.Sequential(inp, nn.AvgPool2d(2), _conv(2, 2)), "not fed by an activation quantizer"),
        (nn.Sequential(nn.MaxPool2d(2), inp), "must pool a quantized tensor"),
        (nn.Sequential(inp, nn.AdaptiveAvgPool2d(2)), r"AdaptiveAvgPool2d\(1\)"),
        (nn.Sequential(inp, nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode"),
        (nn.Sequential(inp, _conv(3, 3)), "expects 3 input channels but receives 2"),
        (nn.Sequential(inp, _conv(2, 2, in_bits=8)), "constrained for 8-bit unsigned"),
        (nn.Sequential(inp, nn.Conv2d(2, 2, 3)), "cannot export module Conv2d"),
    ]
    for model, needle in cases:
        with pytest.raises(A2QError, match=needle):
            export_qonnx(model, None, shape)
    with pytest.raises(A2QError, match="input shape"):
        export_qonnx(good, None, (4, 4))
