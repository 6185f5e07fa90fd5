"""Brevitas CNN patterns people export (issue 10), each from a small Brevitas 0.13.4 model built here,
exported by both QONNX exporters where Brevitas manages: inspect equals an independent reference of
every exact accumulator range; build; cosim random + adversarial 0 mismatches; one bit narrower caught."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")

import numpy as np  # noqa: E402

from cnn_patterns import (  # noqa: E402
    check_exact_then_narrower, conv_range, dense_range, export_both, int_range, int_weight, op_types, quant_type,
)

EXPORTERS = ("dynamo", "torchscript")


# ----------------------------------------------------------------------------- 1: ReduceMean global pool


def _gap_model():
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=4)
            self.relu = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.qp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.relu(self.conv(self.q(x)))
            x = self.qp(self.gap(x))
            return self.fc(torch.flatten(x, 1))

    m = Net()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(16, 3, 6, 6))
    m.eval()
    return m


@pytest.fixture(scope="module")
def gap(tmp_path_factory):
    m = _gap_model()
    return m, export_both(m, torch.rand(1, 3, 6, 6), tmp_path_factory.mktemp("gap"), "gap")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_global_average_pool_reducemean_and_globalaveragepool(gap, exporter, tmp_path, capsys):
    """AdaptiveAvgPool2d(1): ReduceMean (dynamo) or GlobalAveragePool (TorchScript), sized exactly."""
    m, paths = gap
    path = paths[exporter]
    assert ("ReduceMean" if exporter == "dynamo" else "GlobalAveragePool") in op_types(path)
    b, s = quant_type(m.q)
    conv = conv_range(int_weight(m.conv), (6, 6), (1, 1), (1, 1, 1, 1), *int_range(b, s))
    rb, rs = quant_type(m.relu)
    lo, hi = int_range(rb, rs)
    pool = (36 * lo, 36 * hi)
    fc = dense_range(int_weight(m.fc), *int_range(*quant_type(m.qp)))
    check_exact_then_narrower(path, [conv, pool, fc], tmp_path, capsys, tag=exporter, narrower=exporter == "dynamo")


def test_reducemean_over_channels_refused(tmp_path):
    """A ReduceMean that is not a global pool (over the channel axis) is refused in one line."""
    import onnx
    from onnx import helper

    from a2qhls.errors import A2QError
    from a2qhls.importer import load_qonnx

    src = onnx.load(str(_fixture("a2q_cnn_reducemean_dynamo.onnx")))
    node = next(n for n in src.graph.node if n.op_type == "ReduceMean")
    axes = next(i for i in src.graph.initializer if i.name == node.input[1])
    axes.CopyFrom(onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), axes.name))
    p = tmp_path / "bad.onnx"
    onnx.save(src, str(p))
    with pytest.raises(A2QError, match=r"ReduceMean over axes \[1\] is not supported; supported: the mean over the spatial axes \[2, 3\]"):
        load_qonnx(str(p))
    del helper


# ----------------------------------------------------------------------------- 8: 1-D conv and pools


def _conv1d_model(pool: str):
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=6, return_quant_tensor=True)
            self.conv = qnn.QuantConv1d(2, 4, 3, padding=1, stride=1, bias=False, weight_bit_width=4)
            self.relu = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = nn.AvgPool1d(2) if pool == "avg" else nn.MaxPool1d(2)
            self.qp = qnn.QuantIdentity(bit_width=5, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 6, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.relu(self.conv(self.q(x)))
            x = self.pool(x)
            if pool == "avg":
                x = self.qp(x)
            return self.fc(torch.flatten(x, 1))

    m = Net()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 2, 12))
    m.eval()
    return m


@pytest.fixture(scope="module")
def conv1d(tmp_path_factory):
    out = {}
    for pool in ("avg", "max"):
        m = _conv1d_model(pool)
        out[pool] = m, export_both(m, torch.randn(1, 2, 12), tmp_path_factory.mktemp("c1d"), f"c1d_{pool}")
    return out


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_conv1d_and_pool1d_as_height_one_maps(conv1d, pool, exporter, tmp_path, capsys):
    """QuantConv1d -> QuantReLU -> AvgPool1d/MaxPool1d -> QuantLinear on [batch, 2, 12]: a 2-D map of height 1."""
    m, paths = conv1d[pool]
    w = int_weight(m.conv)[:, :, None, :]  # [C_out, C_in, 1, k]
    ref = [conv_range(w, (1, 12), (1, 1), (0, 1, 0, 1), *int_range(*quant_type(m.q)))]
    lo, hi = int_range(*quant_type(m.relu))
    if pool == "avg":
        ref.append((2 * lo, 2 * hi))
        fc_in = int_range(*quant_type(m.qp))
    else:
        fc_in = (lo, hi)
    ref.append(dense_range(int_weight(m.fc), *fc_in))
    check_exact_then_narrower(paths[exporter], ref, tmp_path, capsys, tag=f"{pool}_{exporter}", narrower=exporter == "dynamo")


def test_conv_on_non_map_names_the_onnx_shape(tmp_path):
    """A Conv whose input is a flat feature vector is refused; the message prints the ONNX shape."""
    from a2qhls.importer.conv import onnx_shape

    assert onnx_shape((1, 16, 2)) == [2, 1, 16]
    assert onnx_shape((5, 7, 3)) == [3, 5, 7]
    assert onnx_shape((10,)) == [10]


# ----------------------------------------------------------------------------- 9: QCDQ


@pytest.fixture(scope="module")
def qcdq_mlp(tmp_path_factory):
    import warnings

    import brevitas.nn as qnn
    import torch.nn as nn
    from brevitas.export import export_onnx_qcdq

    torch.manual_seed(3)
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantLinear(10, 8, bias=False, weight_bit_width=4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(8, 3, bias=False, weight_bit_width=4),
    )
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(32, 10))
    m.eval()
    d = tmp_path_factory.mktemp("qcdq")
    paths = {}
    for ex in EXPORTERS:
        p = d / f"qcdq_{ex}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            export_onnx_qcdq(m, torch.randn(1, 10), export_path=str(p), dynamo=(ex == "dynamo"))
        paths[ex] = p
    return m, paths


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_qcdq_converted_to_quant(qcdq_mlp, exporter, tmp_path, capsys):
    """export_onnx_qcdq (QuantizeLinear / Clip / DequantizeLinear) imports through qonnx's QCDQToQuant."""
    m, paths = qcdq_mlp
    assert "QuantizeLinear" in op_types(paths[exporter]) and "Quant" not in op_types(paths[exporter])
    ref = [dense_range(int_weight(m[1]), *int_range(*quant_type(m[0]))), dense_range(int_weight(m[3]), *int_range(*quant_type(m[2])))]
    check_exact_then_narrower(paths[exporter], ref, tmp_path, capsys, tag=exporter, narrower=exporter == "dynamo")


def test_qcdq_that_cannot_be_fused_names_export_qonnx(tmp_path):
    """A QuantizeLinear without its DequantizeLinear cannot become a Quant: one line naming export_qonnx."""
    import onnx

    from a2qhls.errors import A2QError
    from a2qhls.importer import load_qonnx

    src = onnx.load(str(_fixture("mlp_qcdq.onnx")))
    g = src.graph
    first_dq = next(n for n in g.node if n.op_type == "DequantizeLinear")
    q_out, dq_out = first_dq.input[0], first_dq.output[0]
    g.node.remove(first_dq)
    for n in g.node:  # the consumer reads the QuantizeLinear's output directly
        for i, name in enumerate(n.input):
            if name == dq_out:
                n.input[i] = q_out
    p = tmp_path / "lone_q.onnx"
    onnx.save(src, str(p))
    with pytest.raises(A2QError) as e:
        load_qonnx(str(p))
    msg = str(e.value)
    assert "\n" not in msg and "QuantizeLinear" in msg and "export_qonnx" in msg


# ----------------------------------------------------------------------------- 7: all-zero weights


@pytest.fixture(scope="module")
def zero_conv(tmp_path_factory):
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(4)
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, bias=False, weight_bit_width=4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantConv2d(4, 3, 3, bias=False, weight_bit_width=4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        torch.nn.Flatten(),
        qnn.QuantLinear(12, 2, bias=False, weight_bit_width=4),
    )
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 2, 6, 6))
        m[3].weight.zero_()
    m.eval()
    return m, export_both(m, torch.randn(1, 2, 6, 6), tmp_path_factory.mktemp("zero"), "zero", exporters=("dynamo",))


def test_all_zero_weight_layer_builds_at_one_bit(zero_conv, tmp_path, capsys):
    """A layer whose integer weights are all zero has the exact width 1 (ap_int<1>): it builds and
    cosimulates exactly; the other layers one bit narrower are caught; a width of 0 is refused."""
    from a2qhls.cli import main

    m, paths = zero_conv
    assert not int_weight(m[3]).any()
    ref = [
        conv_range(int_weight(m[1]), (6, 6), (1, 1), (0, 0, 0, 0), *int_range(*quant_type(m[0]))),
        (0, 0),
        dense_range(int_weight(m[6]), *int_range(*quant_type(m[4]))),
    ]
    summary = check_exact_then_narrower(paths["dynamo"], ref, tmp_path, capsys)
    assert summary["layers"][1]["acc_bits"] == summary["layers"][1]["safe_acc_bits"] == 1
    name = summary["layers"][1]["name"]
    assert main(["build", str(paths["dynamo"]), "--out", str(tmp_path / "zero0"), "--acc-bits", f"{name}=0"]) != 0
    err = capsys.readouterr().err
    assert "outside 1..64" in err or "must be in 1..64" in err


# ----------------------------------------------------------------------------- the shared fixtures


def _fixture(name: str):
    from pathlib import Path

    p = Path(__file__).resolve().parents[2] / "shared" / "cases" / name
    if not p.is_file():
        p = Path(__file__).resolve().parent / "cases" / name
    if not p.is_file():
        pytest.skip(f"fixture {name} not found beside the checkout")
    return p


@pytest.mark.parametrize("name", ["a2q_cnn_reducemean_dynamo.onnx", "conv1d_avgpool1d.onnx", "mlp_qcdq.onnx", "residual_shared_quant.onnx",
                                  "conv_maxpool_before_relu.onnx", "cnv_binary_w1a2.onnx", "wide_acc_float32_boundary.onnx"])
def test_shared_fixture_builds_and_cosimulates(name, tmp_path, capsys):
    """The shared cases' files for patterns 1, 8, 9, 3 (shared quantizer), 2 (max pool first): build and cosim random + adversarial, 0 mismatches."""
    from cnn_patterns import build, cosim

    out = tmp_path / "prj"
    build(_fixture(name), out, capsys)
    rc, cs = cosim(out, capsys, "--random", "50", "--adversarial")
    assert rc == 0 and cs["mismatches_cpp_vs_model"] == 0 and cs["mismatches_model_vs_qonnx"] == 0, cs


# ----------------------------------------------------------------------------- 5: float preprocessing


def _pre_models():
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(5)

    class Normalized(nn.Module):  # (x - mean) / std per channel, then the input quantizer
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))
            self.q = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=4)
            self.relu = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 16, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.q((x - self.mean) / self.std)
            return self.fc(torch.flatten(self.relu(self.conv(x)), 1))

    class Affine(nn.Module):  # relu(2 * x - 1) (ESPCN's relu(inp) after a rescale), unsigned quantizer
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantReLU(bit_width=6, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(12, 5, bias=False, weight_bit_width=4)

        def forward(self, x):
            return self.fc(self.q(torch.relu(2 * x - 1)))

    out = []
    for m, shape in ((Normalized(), (1, 3, 6, 6)), (Affine(), (1, 12))):
        m.train()
        with torch.no_grad():
            for _ in range(3):
                m(torch.rand((16,) + shape[1:]))
        m.eval()
        out.append((m, shape))
    return out


@pytest.fixture(scope="module")
def pre_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    return [(m, export_both(m, torch.rand(shape), d, f"pre{i}")) for i, (m, shape) in enumerate(_pre_models())]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_float_preprocessing_folds_into_the_input_quantizer(pre_models, exporter, tmp_path, capsys):
    """(x - mean) / std per channel, and relu(2 * x - 1): Sub/Add/Mul/Div by constants and Relu on the
    graph input fold into the input quantizer; the hardware receives the quantizer's integers."""
    (norm, norm_paths), (aff, aff_paths) = pre_models
    assert {"Sub", "Div"} <= op_types(norm_paths[exporter])
    assert {"Mul", "Relu"} <= op_types(aff_paths[exporter])
    ref = [conv_range(int_weight(norm.conv), (6, 6), (1, 1), (0, 0, 0, 0), *int_range(*quant_type(norm.q))),
           dense_range(int_weight(norm.fc), *int_range(*quant_type(norm.relu)))]
    check_exact_then_narrower(norm_paths[exporter], ref, tmp_path, capsys, tag="norm", narrower=exporter == "dynamo")
    ref = [dense_range(int_weight(aff.fc), *int_range(*quant_type(aff.q)))]
    check_exact_then_narrower(aff_paths[exporter], ref, tmp_path, capsys, tag="aff", narrower=exporter == "torchscript")


def test_preprocessing_matches_onnx_float32():
    """The model's preprocessing and its inverse: the quantizer gives back every integer of the range."""
    from a2qhls.ir import InputQuant, IntType
    from a2qhls.sim import dequantize_input, quantize_input

    c = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
    s = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
    iq = InputQuant("q", ["x"], ["q"], np.float32(0.0173), np.float32(0), IntType(8, True), "ROUND",
                    pre=(("Sub", c), ("Div", s), ("Mul", np.float32(-1.5))), pre_shape=(3, 2, 2))
    q = np.random.default_rng(0).integers(-128, 128, size=(50, 3, 2, 2))
    x = dequantize_input(iq, q)
    assert np.array_equal(quantize_input(iq, x), q)


# ----------------------------------------------------------------------------- 6: --input-quant


@pytest.fixture(scope="module")
def unquantized_input(tmp_path_factory):
    """A first QuantConv2d that reads the float image directly (Brevitas's CIFAR ResNet18 assumes 8-bit input)."""
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(6)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = qnn.QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=4)
            self.relu = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 16, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            return self.fc(torch.flatten(self.relu(self.conv(x)), 1))

    m = Net()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(16, 3, 4, 4))
    m.eval()
    return m, export_both(m, torch.rand(1, 3, 4, 4), tmp_path_factory.mktemp("inq"), "inq")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_input_quant_option_declares_the_input_type(unquantized_input, exporter, tmp_path, capsys):
    """Without --input-quant: one line naming the option. With uint8:0.00392: exact ranges for inputs
    in [0, 255], build, cosim (which reads the declaration from the project) exact, one bit narrower caught."""
    import a2qhls
    from a2qhls.cli import main

    m, paths = unquantized_input
    path = paths[exporter]
    assert main(["inspect", str(path)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--input-quant" in err
    ref = [conv_range(int_weight(m.conv), (4, 4), (1, 1), (1, 1, 1, 1), 0, 255),
           dense_range(int_weight(m.fc), *int_range(*quant_type(m.relu)))]
    summary = check_exact_then_narrower(path, ref, tmp_path, capsys, extra=("--input-quant", "uint8:0.00392"), tag=exporter,
                                       narrower=exporter == "dynamo")
    assert summary["input_quant"] == "uint8:0.00392"
    rep = a2qhls.inspect(str(path), input_quant="uint8:0.00392")
    assert rep["layers"][0]["input_type"] == "uint8"


def test_input_quant_malformed_or_redundant_is_refused(unquantized_input, gap):
    from a2qhls.errors import A2QError
    from a2qhls.importer import load_qonnx

    with pytest.raises(A2QError, match="expected TYPE:SCALE"):
        load_qonnx(str(unquantized_input[1]["dynamo"]), input_quant="float8:1")
    with pytest.raises(A2QError, match="already has a quantizer"):
        load_qonnx(str(gap[1]["dynamo"]), input_quant="uint8:0.5")


# ----------------------------------------------------------------------------- 3: shared requantizer


@pytest.fixture(scope="module")
def shared_requant(tmp_path_factory):
    """Both branches of a residual add re-quantized by one shared QuantIdentity; one branch is the
    input quantizer's output, which the first layer also reads."""
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(7)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_in = qnn.QuantIdentity(bit_width=5, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(8, 8, bias=False, weight_bit_width=4)
            self.relu = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.shared = qnn.QuantIdentity(bit_width=6, return_quant_tensor=True)
            self.q_out = qnn.QuantIdentity(bit_width=5, return_quant_tensor=True)
            self.head = qnn.QuantLinear(8, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.q_in(x)
            y = self.relu(self.fc(x))
            return self.head(self.q_out(self.shared(x) + self.shared(y)))

    m = Net()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(32, 8))
    m.eval()
    return m, export_both(m, torch.randn(1, 8), tmp_path_factory.mktemp("shared"), "shared")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_shared_requantizer_of_a_tensor_read_elsewhere(shared_requant, exporter, tmp_path, capsys):
    """A Quant whose input another node also reads becomes an identity layer (exact range = its input's)
    with the Quant's threshold unit; the same-scale add then sums two integers exactly."""
    m, paths = shared_requant
    lo, hi = int_range(*quant_type(m.q_in))
    slo, shi = int_range(*quant_type(m.shared))
    ref = [dense_range(int_weight(m.fc), lo, hi), (lo, hi), (2 * slo, 2 * shi),
           dense_range(int_weight(m.head), *int_range(*quant_type(m.q_out)))]
    import a2qhls

    kinds = [ly["op"] for ly in a2qhls.inspect(str(paths[exporter]))["layers"]]
    assert kinds[1] == "Quant" and kinds[2] == "Add", kinds
    check_exact_then_narrower(paths[exporter], ref, tmp_path, capsys, tag=exporter, narrower=exporter == "dynamo")


# ----------------------------------------------------------------------------- 2: max pool before the activation


@pytest.fixture(scope="module")
def pool_first(tmp_path_factory):
    """QuantConv2d -> BatchNorm -> MaxPool2d -> QuantReLU, then QuantConv2d -> MaxPool2d -> QuantReLU -> head."""
    import brevitas.nn as qnn
    import torch.nn as nn

    torch.manual_seed(8)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=6, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(2, 4, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn = nn.BatchNorm2d(4)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=False, weight_bit_width=3)
            self.r2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 2 * 2, 3, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.q(x)
            x = self.r1(nn.functional.max_pool2d(self.bn(self.c1(x)), 2))
            x = self.r2(nn.functional.max_pool2d(self.c2(x), 2))
            return self.fc(torch.flatten(x, 1))

    m = Net()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2)
        m.bn.weight.uniform_(0.5, 1.5)
    m.train()
    m.bn.eval()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 2, 8, 8))
    m.eval()
    return m, export_both(m, torch.randn(1, 2, 8, 8), tmp_path_factory.mktemp("poolfirst"), "poolfirst")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_max_pool_before_the_activation(pool_first, exporter, tmp_path, capsys):
    """Max commutes with the monotone activation: the pool runs on the quantized integers after the
    threshold unit, bit-exact with QONNX's pool of floats before the Quant."""
    from a2qhls.importer import load_qonnx

    m, paths = pool_first
    path = paths[exporter]
    model = load_qonnx(str(path))
    kinds = [op.op for op in model.ops]
    assert kinds.count("Pool") == 2 and kinds.index("Pool") == kinds.index("Requant") + 1, kinds
    ref = [conv_range(int_weight(m.c1), (8, 8), (1, 1), (1, 1, 1, 1), *int_range(*quant_type(m.q))),
           conv_range(int_weight(m.c2), (4, 4), (1, 1), (1, 1, 1, 1), *int_range(*quant_type(m.r1))),
           dense_range(int_weight(m.fc), *int_range(*quant_type(m.r2)))]
    check_exact_then_narrower(path, ref, tmp_path, capsys, tag=exporter, narrower=exporter == "dynamo")


# ----------------------------------------------------------------------------- bipolar (binary) weights


def test_bipolar_activations_import_as_the_1_bit_bipolar_type():
    """BNN-PYNQ's w1a1: BipolarQuant on an activation (once refused) imports as the 1-bit bipolar type
    (tests/test_bnn_pynq.py builds and cosims it)."""
    from a2qhls.importer import load_qonnx

    m = load_qonnx(str(_fixture("cnv_binary_w1a1.onnx")))
    assert [str(m.tensors[d.inputs[0]].dtype) for d in m.layers()] == ["int8", "bipolar", "bipolar"]


def test_binary_weights_brevitas(tmp_path, capsys):
    """QuantConv2d/QuantLinear with Brevitas's binary weight quantizer (BipolarQuant in QONNX): exact."""
    import brevitas.nn as qnn
    import torch.nn as nn
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    torch.manual_seed(9)
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=4, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
        qnn.QuantReLU(bit_width=2, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(4 * 16, 3, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
    )
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 2, 6, 6))
    m.eval()
    path = export_both(m, torch.randn(1, 2, 6, 6), tmp_path, "bin", exporters=("dynamo",))["dynamo"]
    assert "BipolarQuant" in op_types(path)
    ref = [conv_range(int_weight(m[1]), (6, 6), (1, 1), (0, 0, 0, 0), *int_range(*quant_type(m[0]))),
           dense_range(int_weight(m[4]), *int_range(*quant_type(m[2])))]
    check_exact_then_narrower(path, ref, tmp_path, capsys)
