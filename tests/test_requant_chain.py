"""Quantizers in a row (QuantReLU -> QuantIdentity -> a layer's input quantizer): one threshold unit."""
import itertools
from fractions import Fraction

import numpy as np
import pytest

from a2qhls import load_qonnx, size_accumulators
from a2qhls.errors import A2QError
from a2qhls.ir import IntType, Requant
from a2qhls.passes.thresholds import ROUNDING_MODES, requant_exact, requant_thresholds
from cosim_run import assert_exact, build_and_cosim


def rq(name, scale, bits, signed, mode="ROUND", relu=False, zp=0, pre=None):
    return Requant(name, ["a"], [name], relu=relu, scale=np.asarray(scale, np.float32), zero_point=np.asarray(zp, np.float32),
                   out_type=IntType(bits, signed, False, zp), rounding_mode=mode, pre=pre)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_composed_thresholds_equal_the_two_stage_definition(mode):
    rng = np.random.default_rng(0)
    for bits1, bits2, signed2, zp1 in itertools.product((3, 6), (2, 4), (False, True), (0, 2)):
        first = rq("q1", rng.uniform(0.05, 0.3), bits1, False, "ROUND", relu=True, zp=zp1)
        op = rq("q2", rng.uniform(0.1, 0.8), bits2, signed2, mode, pre=first)
        sa, off, lo, hi = np.array([0.013, 0.021]), np.array([-0.1, 0.05]), -300, 300
        T = requant_thresholds(op, sa, off, lo, hi)
        assert T.shape == (2, op.out_type.qmax - op.out_type.qmin)
        for j in range(2):
            for acc in range(lo, hi + 1, 3):
                want = requant_exact(acc, Fraction(sa[j]), Fraction(off[j]), op, j)
                assert op.out_type.qmin + int(np.sum(acc >= T[j])) == want, (mode, j, acc)


def brevitas_chain_mlp():
    import torch
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFloat

    torch.manual_seed(0)
    net = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantLinear(16, 12, weight_bit_width=4),
        qnn.QuantReLU(bit_width=6, return_quant_tensor=True),
        qnn.QuantIdentity(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(12, 8, weight_bit_width=4, input_quant=Int8ActPerTensorFloat, input_bit_width=3),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(8, 3, weight_bit_width=4),
    )
    net.train()
    for _ in range(5):
        net(torch.randn(32, 16))
    return net.eval()


def test_brevitas_quant_chain_imports_as_one_requant_and_cosimulates(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from brevitas.export import export_qonnx

    path = str(tmp_path / "chain.onnx")
    export_qonnx(brevitas_chain_mlp(), torch.zeros(1, 16), path)
    model = size_accumulators(load_qonnx(path))
    assert [type(op).__name__ for op in model.ops] == ["InputQuant", "Dense", "Requant", "Dense", "Requant", "Dense"]
    chain = model.ops[2]
    assert chain.pre is not None and chain.pre.pre is not None and chain.pre.pre.relu  # relu 6b -> 4b -> 3b
    assert str(model.tensors[model.ops[3].inputs[0]].dtype) == "int3"  # the layer's own input quantizer
    assert_exact(*build_and_cosim(path, tmp_path / "hls", capsys, "--random", "500", "--adversarial"))


def test_requantizing_a_shared_activation_goes_through_an_identity_layer(tmp_path, capsys):
    """A Quant of an activation that another node also reads cannot fold into the first Quant's
    thresholds: it becomes an identity layer (accumulator = the activation's value) with its own
    threshold unit, exact in cosim."""
    from qonnx_graphs import GraphBuilder, save

    g = GraphBuilder()
    x = g.quant("x", 0.1, 0, 8, True, False)
    w = g.quant(g.const("w", np.ones((3, 4), np.float32)), 0.5, 0, 4, True, True)
    y = g.quant(g.node("Relu", [g.node("Gemm", [x, w], {"transB": 1})]), 0.5, 0, 4, False, False, name="act")
    a = g.quant(y, 0.25, 0, 3, False, False, name="again")
    s = g.node("Add", [a, y])  # 'act' is read twice: by 'again' and by the Add
    m = g.model("x", s, [4], 3, batch=1)
    path = save(m, tmp_path / "m.onnx")
    model = size_accumulators(load_qonnx(path))
    ident = next(op for op in model.layers() if op.source_op == "Quant")
    assert ident.inputs == [y] and np.array_equal(ident.weight, np.eye(3, dtype=np.int64))
    assert (ident.acc.acc_min, ident.acc.acc_max) == (0, 15)  # the uint4 activation's range
    assert_exact(*build_and_cosim(path, tmp_path / "hls", capsys, "--random", "200", "--adversarial"))


def test_quantidentity_then_quantrelu_folds_the_relu(tmp_path, capsys):
    """Relu between two activation Quants (a signed QuantIdentity, then a QuantReLU) is part of the fold."""
    torch = pytest.importorskip("torch")
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx

    torch.manual_seed(1)
    net = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantLinear(16, 12, weight_bit_width=4),
        qnn.QuantIdentity(bit_width=6, return_quant_tensor=True),  # signed
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(12, 3, weight_bit_width=4),
    )
    net.train()
    for _ in range(5):
        net(torch.randn(32, 16))
    net.eval()
    path = str(tmp_path / "idrelu.onnx")
    export_qonnx(net, torch.zeros(1, 16), path)
    model = load_qonnx(path)
    r = model.ops[2]
    assert r.relu and r.pre is not None and not r.pre.relu and r.pre.out_type.signed
    assert_exact(*build_and_cosim(path, tmp_path / "hls", capsys, "--random", "500", "--adversarial"))


def test_cosim_tie_distance_looks_at_every_stage():
    """The float32 near-tie excuse of cosim measures each rounding of a folded chain: a tie in the
    first Quant counts even when the second stage's value is far from one."""
    from fractions import Fraction

    from a2qhls.cosimulation import _stage_tie_distance
    from a2qhls.passes.thresholds import _single

    first = rq("q1", 1.0, 4, False)  # u1 = v
    op = rq("q2", 0.7, 4, False, pre=first)  # u2 = q1 / 0.7
    half = Fraction(1, 2)
    # acc = 5 at acc scale 1/2: u1 = 2.5 exactly (a tie); q1 = 2, u2 = 2.857 (0.14 from 3)
    assert _stage_tie_distance(op, 5, half, Fraction(0), 0) == 0.0
    assert _stage_tie_distance(_single(op), 2, Fraction(float(np.float32(1.0))), Fraction(0), 0) > 0.1
    # acc = 7 at scale 2/5: u1 = 2.8 (0.2 from 3); q1 = 3, u2 = 4.2857 (0.214 from 4.5): the first stage decides
    assert _stage_tie_distance(op, 7, Fraction(2, 5), Fraction(0), 0) == pytest.approx(0.2)
