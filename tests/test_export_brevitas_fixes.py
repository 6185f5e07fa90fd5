"""export_brevitas_qonnx (issue 10, pattern 10): layers found by name/structure, not by equal weight
arrays; nothing left at the path when its own check fails; works on a model on which Brevitas's
dynamo export failed earlier in the same process."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")

from a2qhls.errors import A2QError  # noqa: E402
from a2qhls.importer import load_qonnx  # noqa: E402


def _a2q_mlp(zero: bool):
    import brevitas.nn as qnn
    import torch.nn as nn
    from brevitas.quant import Int8AccumulatorAwareWeightQuant

    torch.manual_seed(0)
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantLinear(6, 6, bias=False, weight_bit_width=4, weight_quant=Int8AccumulatorAwareWeightQuant, weight_accumulator_bit_width=12),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(6, 6, bias=False, weight_bit_width=4, weight_quant=Int8AccumulatorAwareWeightQuant, weight_accumulator_bit_width=14),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(6, 6, bias=False, weight_bit_width=4, weight_quant=Int8AccumulatorAwareWeightQuant, weight_accumulator_bit_width=16),
    )
    if zero:  # collapsed layers: a (log-domain) norm so small that every weight truncates to 0
        with torch.no_grad():
            for k in (1, 3, 5):
                m[k].weight_quant.tensor_quant.pre_scaling_impl.value.fill_(-30.0)
    m.eval()
    return m


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_identical_all_zero_layers_each_keep_their_target(tmp_path, dynamo):
    """Three layers with identical (all-zero) integer weights: each node gets its own layer's target."""
    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    m = _a2q_mlp(zero=True)
    path = tmp_path / "m.onnx"
    ints = export_brevitas_qonnx(m, torch.zeros(1, 6), str(path), dynamo=dynamo)
    assert all(not q.any() for q in ints)
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temporary or external-data file left beside it
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as a plain save would leave it
    model = load_qonnx(str(path))
    assert [(d.quant_kind, d.target_acc_bits) for d in model.layers()] == [("a2q", 12), ("a2q", 14), ("a2q", 16)]


def test_failed_check_leaves_no_file(tmp_path):
    """A quantized layer that the forward pass never runs is not in the file: the export's own check
    fails, and neither the file nor a temporary one is left behind."""
    import brevitas.nn as qnn

    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _a2q_mlp(zero=False)
            self.unused = qnn.QuantLinear(6, 2, bias=False, weight_bit_width=4)

        def forward(self, x):
            return self.body(x)

    m = Net().eval()
    with pytest.raises(A2QError, match="unused"):
        export_brevitas_qonnx(m, torch.zeros(1, 6), str(tmp_path / "m.onnx"))
    assert os.listdir(tmp_path) == []


def test_export_after_a_failed_brevitas_dynamo_export(tmp_path):
    """Brevitas's residual block (QuantBasicBlock asserts QuantTensor inputs to its add) fails the dynamo
    export, which leaves QuantTensors switched off on the model; export_brevitas_qonnx then still
    exports the same object, and the file's integers are the trained ones."""
    import warnings

    import brevitas.nn as qnn
    import torch.nn as nn
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models.resnet import QuantBasicBlock

    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    torch.manual_seed(1)
    m = nn.Sequential(qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
                      QuantBasicBlock(4, 4, act_bit_width=4, weight_bit_width=4),
                      nn.Flatten(), qnn.QuantLinear(64, 2, bias=False, weight_bit_width=4))
    m.eval()
    x = torch.rand(1, 4, 4, 4)
    with warnings.catch_warnings(), pytest.raises(Exception):
        warnings.simplefilter("ignore")
        export_qonnx(m, x, export_path=str(tmp_path / "dyn.onnx"), dynamo=True)
    path = tmp_path / "ts.onnx"
    ints = export_brevitas_qonnx(m, x, str(path), dynamo=False)
    model = load_qonnx(str(path))
    assert [d.weight.shape[0] for d in model.layers()] == [4, 4, 2]
    for d, q in zip(model.layers()[:2], ints):
        assert np.array_equal(d.weight, q.transpose(0, 2, 3, 1))
    with torch.no_grad():  # the model itself works again (QuantTensors on)
        m(x)
