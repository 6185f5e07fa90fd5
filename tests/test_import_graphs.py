"""Importing QONNX graphs built with onnx.helper: integers, types, bias, layouts, sizing."""
import json

import numpy as np
import pytest

from a2qhls import bounds, load_qonnx, size_accumulators
from a2qhls.ir import Dense, InputQuant, Requant

from qonnx_graphs import mlp, save


def imported(tmp_path, **kw):
    proto, ints, biases = mlp(**kw)
    return size_accumulators(load_qonnx(save(proto, tmp_path / "m.onnx"))), ints, biases


@pytest.mark.parametrize("style", ["gemm", "gemm_nt", "matmul_transpose"])
@pytest.mark.parametrize("bias", ["none", "float", "int"])
def test_layouts_and_bias_give_the_same_integers(tmp_path, style, bias):
    model, ints, biases = imported(tmp_path, style=style, bias=bias)
    kinds = [type(op) for op in model.ops]
    assert kinds == [InputQuant, Dense, Requant, Dense]
    for dense, w, b in zip(model.layers(), ints, biases):
        assert np.array_equal(dense.weight, w)
        if bias == "int":
            assert np.array_equal(dense.bias, b)
        else:
            assert dense.bias is None
    # a float bias lives in the accumulator tensor's offset, not in the accumulator
    acc0 = model.tensors[model.layers()[0].outputs[0]]
    assert np.any(acc0.offset != 0) == (bias == "float")


def test_input_type_comes_from_the_feeding_quant(tmp_path):
    model, ints, _ = imported(tmp_path, in_bits=6, in_signed=True, in_narrow=True, act_bits=3, act_signed=False)
    d0, d1 = model.layers()
    assert model.tensors[d0.inputs[0]].dtype.__dict__ == {"bits": 6, "signed": True, "narrow": True, "zero_point": 0, "bipolar": False}
    assert model.tensors[d1.inputs[0]].dtype.bits == 3 and not model.tensors[d1.inputs[0]].dtype.signed


def test_sizing_matches_the_bounds_on_known_integers(tmp_path):
    model, ints, biases = imported(tmp_path, bias="int", in_bits=8, in_signed=False, in_zp=3)
    d0 = model.layers()[0]
    x_min, x_max = 0 - 3, 255 - 3
    lo, hi = bounds.exact_channel_range(ints[0], x_min, x_max, biases[0])
    assert d0.acc.acc_min == int(lo.min()) and d0.acc.acc_max == int(hi.max())
    per = bounds.signed_bits_for_range(lo, hi)
    assert d0.acc.per_channel_bits.tolist() == per.tolist()
    assert d0.acc.acc_bits == int(per.max())
    j = d0.acc.worst_channel
    assert per[j] == per.max()
    # the adversarial vectors reach the worst channel's extremes exactly
    top = int(np.dot(ints[0][j], d0.acc.adversarial_max)) + int(biases[0][j])
    bot = int(np.dot(ints[0][j], d0.acc.adversarial_min)) + int(biases[0][j])
    assert (bot, top) == (int(lo[j]), int(hi[j]))
    assert d0.acc.a2q_bits == bounds.a2q_acc_bits(int(np.abs(ints[0]).sum(1).max()), 8, False)
    assert d0.acc.datatype_bits == bounds.datatype_acc_bits(ints[0].shape[1], 8, False, 4)


def test_per_tensor_scale_and_fixed_batch(tmp_path):
    model, ints, _ = imported(tmp_path, per_channel=False, batch=1)
    d0 = model.layers()[0]
    assert np.all(d0.weight_scale == d0.weight_scale[0])
    assert np.array_equal(d0.weight, ints[0])


def test_flattened_input(tmp_path):
    model, ints, _ = imported(tmp_path, sizes=(12, 6, 3), flatten_input=(3, 4))
    assert model.input_shape == (3, 4)  # what the user feeds; the input quantizer sees it flattened
    assert model.tensors[model.ops[0].outputs[0]].shape == (12,)
    assert np.array_equal(model.layers()[0].weight, ints[0])


def test_target_widths_from_metadata_are_reported_and_checked(tmp_path):
    meta = {"a2qhls.layers": json.dumps({"layer0": {"quant": "a2q+", "target_acc_bits": 40}, "layer1": {"target_acc_bits": 4}})}
    model, _, _ = imported(tmp_path, metadata=meta)
    d0, d1 = model.layers()
    assert (d0.target_acc_bits, d0.quant_kind, d0.acc.exceeds_target) == (40, "a2q+", False)
    assert d1.target_acc_bits == 4 and d1.acc.exceeds_target == (d1.acc.acc_bits > 4)
    assert d1.acc.exceeds_target  # 4 bits is below any 8-input 4-bit layer's need


def test_weight_integers_equal_qonnx_quant_folding(tmp_path):
    """Our integers are what qonnx's executor computes for the weight Quant, divided by the scale."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    proto, ints, _ = mlp(style="gemm", bias="none", batch=1)
    path = save(proto, tmp_path / "m.onnx")
    model = load_qonnx(path)
    from qonnx.transformation.infer_shapes import InferShapes

    ctx = execute_onnx(ModelWrapper(path).transform(InferShapes()), {"x": np.zeros((1, 12), np.float32)}, return_full_exec_context=True)
    wq_out = [n.output[0] for n in proto.graph.node if n.name == "w0_quant"][0]
    scale = [np.asarray(ctx[n.input[1]]) for n in proto.graph.node if n.name == "w0_quant"][0]
    assert np.array_equal(np.round(ctx[wq_out] / scale).astype(np.int64), model.layers()[0].weight)
