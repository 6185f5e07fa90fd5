"""Importing what Brevitas 0.13.4 export_qonnx writes for MLPs (both torch exporters)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")

from a2qhls import bounds, load_qonnx, size_accumulators  # noqa: E402
from a2qhls.ir import Dense, InputQuant, Requant  # noqa: E402

import brevitas_mlp as bm  # noqa: E402  (examples/brevitas_mlp.py)


def trained(quant, steps_epochs=1, bias=True, per_channel=True, act_bits=4, acc_bits=12, seed=0):
    torch.manual_seed(seed)
    m = bm.make_mlp([64, 16, 10], quant, 4, act_bits, acc_bits, bias=bias, per_channel=per_channel)
    xtr, ytr, _, _ = bm.load_digits_split(seed)
    return bm.train(m, xtr[:400], ytr[:400], epochs=steps_epochs, seed=seed)


def qonnx_weight_ints(path):
    """Each layer weight Quant's output divided by its scale, as qonnx's executor computes it."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(path).transform(InferShapes())
    inp = mw.graph.input[0]
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    ctx = execute_onnx(mw, {inp.name: np.zeros(shape, np.float32)}, return_full_exec_context=True)
    out = []
    for n in mw.graph.node:
        if n.op_type == "Quant" and mw.get_initializer(n.input[0]) is not None and len(mw.get_initializer(n.input[0]).shape) == 2:
            out.append(np.round(ctx[n.output[0]] / ctx[n.input[1]]).astype(np.int64))
    return out


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("quant,per_channel", [("baseline", False), ("baseline", True), ("a2q+", True)])
def test_brevitas_export_imports_with_exact_integers(tmp_path, dynamo, bias, quant, per_channel):
    m = trained(quant, bias=bias, per_channel=per_channel)
    path = str(tmp_path / "m.onnx")
    bm.export(m, path, 64, dynamo=dynamo, exact=False)  # what Brevitas itself writes
    model = size_accumulators(load_qonnx(path))
    assert [type(op) for op in model.ops] == [InputQuant, Dense, Requant, Dense]
    d0, d1 = model.layers()
    assert (d0.K, d0.channels, d1.K, d1.channels) == (64, 16, 16, 10)
    # input types come from the Quant feeding each layer: int8 QuantIdentity, uint4 QuantReLU
    assert str(model.tensors[d0.inputs[0]].dtype) == "int8"
    assert str(model.tensors[d1.inputs[0]].dtype) == "uint4"
    assert model.ops[2].relu
    ref = qonnx_weight_ints(path)
    # the torchscript exporter may put a transpose after the Quant: compare in [out, in] layout
    ref = [r if r.shape == d.weight.shape else r.T for r, d in zip(ref, (d0, d1))]
    assert np.array_equal(ref[0], d0.weight) and np.array_equal(ref[1], d1.weight)
    if not per_channel:
        assert np.unique(d0.weight_scale).size == 1
    for d in (d0, d1):
        lo, hi = bounds.exact_channel_range(d.weight, model.tensors[d.inputs[0]].dtype.vmin,
                                            model.tensors[d.inputs[0]].dtype.vmax, d.bias)
        assert d.acc.acc_bits == int(bounds.signed_bits_for_range(lo, hi).max())
        assert d.acc.acc_bits <= d.acc.datatype_bits


def test_brevitas_a2qplus_export_requantizes_to_other_integers(tmp_path):
    """Brevitas 0.13.4 exports A2Q+ layers as a float weight + rounding Quant; those integers are not
    the ones the layer trained with. We size what the file contains; the trained ones fit the target."""
    m = trained("a2q+", steps_epochs=2, acc_bits=12)
    path = str(tmp_path / "m.onnx")
    bm.export(m, path, 64, exact=False)
    model = size_accumulators(load_qonnx(path))
    d0 = model.layers()[0]
    trained_ints = m[1].quant_weight().int().detach().numpy().astype(np.int64)
    in_t = model.tensors[d0.inputs[0]].dtype
    lo, hi = bounds.exact_channel_range(trained_ints, in_t.vmin, in_t.vmax)
    trained_bits = int(bounds.signed_bits_for_range(lo, hi).max())
    assert trained_bits <= 12  # what A2Q+ guaranteed during training
    assert not np.array_equal(trained_ints, d0.weight)
    assert np.abs(d0.weight).sum(1).max() > np.abs(trained_ints).sum(1).max()
    assert d0.acc.acc_bits > trained_bits


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_exact_brevitas_export_keeps_the_trained_integers(tmp_path, dynamo):
    """a2qhls.frontend.brevitas.export_brevitas_qonnx: the file's integers are the trained ones,
    so the derived widths stay within the A2Q+ target."""
    m = trained("a2q+", steps_epochs=2, acc_bits=12)
    x = torch.rand(5, 64)
    with torch.no_grad():
        before = m(x).numpy()
    path = str(tmp_path / "m.onnx")
    ints = bm_export_exact(m, path, dynamo)
    model = size_accumulators(load_qonnx(path))
    for d, q in zip(model.layers(), ints):
        assert np.array_equal(d.weight, q)
        assert d.acc.acc_bits <= 12
        # the target and kind are recorded for 'a2qhls inspect'
        assert (d.quant_kind, d.target_acc_bits, d.acc.exceeds_target) == ("a2q+", 12, False)
    # the export left the model's own parameters as they were
    with torch.no_grad():
        assert np.array_equal(m(x).numpy(), before)


def bm_export_exact(m, path, dynamo):
    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    return export_brevitas_qonnx(m, torch.zeros(1, 64), path, dynamo=dynamo)


def test_model_returning_a_quanttensor_is_refused_with_the_fix(tmp_path):
    """TorchScript export of a Brevitas model whose last module returns a QuantTensor writes its
    scale, zero-point and bit width as extra (constant) graph outputs: one line saying so and what
    to change (return .value, or the dynamo exporter)."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantConv2d, QuantReLU

    from a2qhls.errors import A2QError
    from a2qhls.importer import load_qonnx

    torch.manual_seed(0)
    m = torch.nn.Sequential(QuantReLU(return_quant_tensor=True), QuantConv2d(3, 4, 3, bias=False),
                            QuantReLU(return_quant_tensor=True))
    m.eval()
    path = tmp_path / "qt.onnx"
    export_qonnx(m, torch.rand(1, 3, 8, 8), str(path), dynamo=False)
    with pytest.raises(A2QError) as e:
        load_qonnx(str(path))
    msg = str(e.value)
    assert "returns a QuantTensor" in msg and ".value" in msg and "\n" not in msg
