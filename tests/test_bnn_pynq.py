"""BipolarQuant activations (the 1-bit bipolar type, value 2q - 1) and FINN's BNN-PYNQ networks
(brevitas_examples/bnn_pynq, unmodified, seeded random weights): the numpy model against a big-integer
reference, the XNOR-popcount units bit-exact in g++ (derived widths: 0 mismatches; one bit narrower:
the same wrapped values in C++ and the model, caught against QONNX), a golden project, reduced TFC
through both exporters, the two CNV-style fixtures, full-size CNV w1a1 inspected, export_brevitas_qonnx
on binary weights."""
from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import hand_models
from golden_files import assert_matches_golden
from a2qhls import codegen
from a2qhls.ir import IntType
from a2qhls.passes.accumulator import size_accumulators
from a2qhls.passes.acc_bits import apply_acc_bits
from a2qhls.passes.folding import apply_folding
from a2qhls.passes.thresholds import compute_thresholds
from a2qhls.sim import BitSim

CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases"
if not CASES.exists():
    CASES = Path("/work/shared/cases")


def test_bipolar_type_values_and_range():
    t = IntType.bipolar_type()
    assert (t.bits, t.signed, t.qmin, t.qmax, t.vmin, t.vmax, str(t)) == (1, False, 0, 1, -1, 1, "bipolar")
    assert t.values(np.array([0, 1])).tolist() == [-1, 1] and t.stored(np.array([-1, 1])).tolist() == [0, 1]
    with pytest.raises(ValueError):
        IntType(2, True, bipolar=True)


def _bipolar_mlp(sizes=(12, 8, 6, 4), seed=0, bias=False, name="bnn"):
    """InputQuant (bipolar) -> Dense (+-1 weights) -> sign -> Dense (weights in {-1, 0, 1}) -> sign -> Dense."""
    bp = IntType.bipolar_type()
    m = hand_models.mlp(sizes, seed=seed, in_type=bp, in_scale=1.0, w_bits=2, act_type=bp, relu=False, bias=bias,
                        float_bias=True, name=name)
    rng = np.random.default_rng(seed + 1)
    d0 = m.layers()[0]
    d0.weight = np.where(rng.random(d0.weight.shape) < 0.5, -1, 1)  # binary: the XNOR-popcount form
    for op in m.ops:  # activations' scale: the sign does not depend on it
        if op.op == "Requant":
            op.scale = np.float32(1.0)
    return size_accumulators(m)


def test_bipolar_numpy_model_matches_big_integer_reference():
    """Every accumulator = bias + sum w * (2b - 1) in Python integers; every sign activation = 1 iff the
    accumulator's exact real value scale * acc + offset >= 0 (Fractions); for random and extreme bit vectors."""
    m = _bipolar_mlp(bias=True)
    compute_thresholds(m)
    sim = BitSim(m)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, size=(64, 12))
    x[0], x[1] = 0, 1
    vals = sim.run(x, start="x_q", keep=True)
    bits = x
    for op in m.ops[1:]:
        if op.op == "Dense":
            w, b = op.weight.astype(object), op.bias
            ref = [[int(b[j]) + sum(int(w[j, i]) * (2 * int(r[i]) - 1) for i in range(op.K)) for j in range(op.channels)]
                   for r in bits]
            assert np.array_equal(np.asarray(vals[op.outputs[0]]).astype(object), np.asarray(ref, dtype=object)), op.name
            acc, info = ref, m.tensors[op.outputs[0]]
        else:  # sign
            ref = [[1 if Fraction(float(info.scale[j])) * a[j] + Fraction(float(info.offset[j])) >= 0 else 0
                    for j in range(len(a))] for a in acc]
            assert np.array_equal(np.asarray(vals[op.outputs[0]]), np.asarray(ref)), op.name
            bits = ref
    d0 = m.layers()[0]  # K = 12 terms of +-1 * +-1 and the bias
    assert (d0.acc.acc_min, d0.acc.acc_max) == (int(min(d0.bias)) - 12, int(max(d0.bias)) + 12)


def _fold(m):
    return {d.name: {"PE": 2, "SIMD": 4 if d.K % 4 == 0 else 2} for d in m.layers()}


def test_golden_bipolar_project():
    """The bipolar MLP's project (XNOR-popcount first layer, 2q - 1 values into the second) equals
    tests/golden/tiny_bipolar/ (A2QHLS_REGEN_GOLDEN=1 rewrites)."""
    m = _bipolar_mlp(name="tiny_bipolar")
    compute_thresholds(m)
    files = codegen.generate(apply_folding(m, _fold(m)))
    top = files["firmware/a2q_top.cpp"]
    assert top.count("XNOR-popcount form") == 1 and "(2 * (int)(" in top
    assert_matches_golden(files, "tiny_bipolar")


@pytest.mark.parametrize("narrower", [False, True], ids=["derived", "one_bit_narrower"])
def test_bipolar_csim_bit_exact(tmp_path, narrower):
    """g++ C simulation (native sums and the ap_int loop) equals the numpy model on random and adversarial bit
    vectors; one bit narrower on every layer the C++ wraps exactly like the model, which then differs from
    the exact sums (the adversarial inputs overflow)."""
    from a2qhls.cosimulation import compile_csim, run_csim

    m = _bipolar_mlp(sizes=(16, 8, 8, 4), seed=5)
    apply_folding(m, _fold(m))
    if narrower:
        apply_acc_bits(m, {d.name: d.acc.acc_bits - 1 for d in m.layers()})
    compute_thresholds(m)
    for rel, text in codegen.generate(m).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    rng = np.random.default_rng(0)
    d0 = m.layers()[0]
    adv = d0.acc.adversarial_max, d0.acc.adversarial_min
    x = np.vstack([rng.integers(0, 2, size=(30, 16)), [(np.asarray(a) + 1) // 2 for a in adv]]).astype(np.int64)
    sim = BitSim(m)
    want = sim.run(x, start="x_q")[m.outputs[0]]
    exact = sim.accumulate(d0, [x], exact=True)
    wrapped = sim.accumulate(d0, [x])
    assert np.array_equal(exact, wrapped) != narrower
    for flags in ("-O1", "-O1 -DA2Q_CSIM_AP_INT") if narrower else ("-O1",):  # the ap_int loop where it wraps
        binary = tmp_path / ("csim_ap" if "AP_INT" in flags else "csim")
        compile_csim(tmp_path, binary, cxxflags=flags)
        assert np.array_equal(run_csim(binary, x, tmp_path, tag=binary.name), np.asarray(want).reshape(len(x), -1)), flags


# ---------------------------------------------------------------- Brevitas BNN-PYNQ

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas_examples")

from bnn_pynq_models import bnn_pynq, reduced_fc  # noqa: E402
from cnn_patterns import build, check_exact_then_narrower, cosim, dense_range, export_both  # noqa: E402


def _ranges(ints, xlo=-1, xhi=1):
    return [dense_range(w.reshape(w.shape[0], -1), xlo, xhi) for w in ints]


@pytest.mark.parametrize("wa", [(1, 1, 1), (1, 2, 1), (2, 2, 1)], ids=["w1a1", "w1a2", "w2a2"])
def test_reduced_tfc_both_exporters(wa, tmp_path, capsys):
    """brevitas_examples' FC (TFC/SFC/LFC's class) at 8x8 -> 16 -> 16 -> 10, with its 2x - 1 input
    preprocessing and TensorNorm (negative weight in w2a2): a2qhls's export (TorchScript) inspects to the
    exact ranges from the trained integers, builds and cosims with 0 mismatches, one bit narrower caught
    (w1a1, w2a2);
    Brevitas's own export_qonnx, dynamo and TorchScript, gives the same widths (w1a1: the dynamo file
    also builds and passes cosim)."""
    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    wb, ab, ib = wa
    model, shape = reduced_fc(wb, ab, ib, seed=wb * 10 + ab)
    if wb == 2:
        with torch.no_grad():
            model.features[-1].weight.fill_(-0.75)
    path = tmp_path / "tfc.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ints = export_brevitas_qonnx(model, torch.rand(1, *shape), str(path))
    check_exact_then_narrower(path, _ranges(ints), tmp_path, capsys, random=10, tag="tfc", narrower=ab == wb)
    import a2qhls

    layers = a2qhls.inspect(str(path))["layers"]
    assert all(ly["input_type"] == ("bipolar" if (k == 0 and ib == 1) or (k and ab == 1) else "int2n")
               for k, ly in enumerate(layers)), layers
    files = export_both(model, torch.rand(1, *shape), tmp_path, "plain")
    for ex, p in files.items():
        assert [(ly["acc_min"], ly["acc_max"]) for ly in a2qhls.inspect(str(p))["layers"]] == _ranges(ints)
        if wb == 1 and ab == 1 and ex == "dynamo":  # (g++ time: one build of Brevitas's own export)
            out = tmp_path / f"prj_{ex}"
            build(p, out, capsys)
            rc, cs = cosim(out, capsys, "--random", "10")
            assert rc == 0 and cs["mismatches_cpp_vs_model"] == 0 and cs["mismatches_model_vs_qonnx"] == 0, (ex, cs)


def _input_range(g, init, by_out, name):
    """(lo, hi) of the integer values feeding a layer: traced back through pooling/reshapes to its quantizer."""
    n = by_out[name]
    while n.op_type not in ("Quant", "BipolarQuant"):
        n = by_out[n.input[0]]
    if n.op_type == "BipolarQuant":
        return -1, 1
    a = {x.name: x.i for x in n.attribute}
    b = int(init[n.input[3]])
    if not a.get("signed", 1):
        return 0, 2**b - 1
    return -(2 ** (b - 1)) + a.get("narrow", 0), 2 ** (b - 1) - 1


def _file_ranges(path, negated):
    """Exact (min, max) per layer of a fixture from its own weights (BipolarQuant: sign, sign(0) = +1) and
    its quantizers' types; ``negated``: per layer, the channels the importer negated (negative BatchNorm scale)."""
    import onnx
    from onnx import numpy_helper

    from cnn_patterns import conv_range

    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    by_out = {o: n for n in g.node for o in n.output}
    H = W = g.input[0].type.tensor_type.shape.dim[2].dim_value
    out = []
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        lo, hi = _input_range(g, init, by_out, n.input[0])
        w = np.where(init[by_out[n.input[1]].input[0]] >= 0, 1, -1)
        if n.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in n.attribute):
            w = w.T  # Gemm without transB: [K, C] -> [C, K]
        neg = list(negated[len(out)])
        w = w.copy()
        w[neg] = -w[neg]
        if n.op_type == "Conv":
            out.append(conv_range(w, (H, W), (1, 1), (0, 0, 0, 0), lo, hi))
            H, W = H - w.shape[2] + 1, W - w.shape[3] + 1
        else:
            out.append(dense_range(w, lo, hi))
    return out


@pytest.mark.parametrize("name", ["cnv_binary_w1a1", "cnv_binary_w1a2"])
def test_cnv_fixtures(name, tmp_path, capsys):
    """The BNN-PYNQ CNV-style fixtures: exact ranges from the file's weights; build; cosim 0 mismatches;
    one bit narrower caught (w1a1, XNOR-popcount convolutions)."""
    path = CASES / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not present")
    import a2qhls

    negated = [ly["negated_channels"] for ly in a2qhls.inspect(str(path))["layers"]]
    check_exact_then_narrower(path, _file_ranges(path, negated), tmp_path, capsys, random=10, tag=name,
                              narrower=name.endswith("w1a1"))


def test_full_cnv_w1a1_inspects_to_exact_widths(tmp_path):
    """Full-size CNV w1a1 (32x32 input, 8-bit Q1.7 input quantizer, 6 binary convolutions, 3 binary linear
    layers, TensorNorm): per-layer ranges are +-(max l1) behind bipolar inputs and the exact int8 range
    of the first convolution; the layers behind bipolar inputs are built in XNOR-popcount form."""
    import a2qhls
    from a2qhls.frontend.brevitas import export_brevitas_qonnx
    from a2qhls.importer import load_qonnx

    model, shape = bnn_pynq("cnv_1w1a")
    path = tmp_path / "cnv.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ints = export_brevitas_qonnx(model, torch.rand(1, *shape), str(path))
    rep = a2qhls.inspect(str(path))["layers"]
    w0 = ints[0].reshape(ints[0].shape[0], -1).copy()
    w0[list(rep[0]["negated_channels"])] *= -1  # channels the importer negated (negative BatchNorm scale)
    want = [dense_range(w0, -128, 127)] + _ranges(ints[1:])
    assert [(ly["acc_min"], ly["acc_max"]) for ly in rep] == want
    assert [ly["input_type"] for ly in rep] == ["int8"] + ["bipolar"] * 8
    m = load_qonnx(str(path))
    size_accumulators(m)
    assert [codegen.uses_xnor_popcount(d, m.tensors[d.inputs[0]].dtype) for d in m.layers()] == [False] + [True] * 8


def test_export_binary_weights_and_failure_leaves_no_file(tmp_path):
    """export_brevitas_qonnx gives back {-1, +1} for BipolarQuant weights; a binary layer the forward pass
    never runs fails the check, and nothing is left at the path."""
    import brevitas.nn as qnn
    from brevitas_examples.bnn_pynq.models.common import CommonWeightQuant

    from a2qhls.errors import A2QError
    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    model, shape = reduced_fc(1, 1, 1)
    ints = export_brevitas_qonnx(model, torch.rand(1, *shape), str(tmp_path / "ok.onnx"))
    assert all(set(np.unique(w).tolist()) == {-1, 1} for w in ints) and os.listdir(tmp_path) == ["ok.onnx"]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model
            self.unused = qnn.QuantLinear(4, 2, bias=False, weight_quant=CommonWeightQuant, weight_bit_width=1)

        def forward(self, x):
            return self.body(x)

    with pytest.raises(A2QError, match="unused"):
        export_brevitas_qonnx(Net().eval(), torch.rand(1, *shape), str(tmp_path / "bad.onnx"))
    assert os.listdir(tmp_path) == ["ok.onnx"]
