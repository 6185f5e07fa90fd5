"""Small Brevitas 0.13.4 MLPs exported with ``export_qonnx``, for end-to-end tests and the benchmark.

Random initialization plus a few calibration forward passes (activation scales);
no training: the compiler only needs a valid quantized model.
"""
from __future__ import annotations


def make_mlp(sizes, *, a2qplus: bool = True, acc_bits: int = 12, w_bits: int = 4, a_bits: int = 4, seed: int = 0):
    import torch
    import brevitas.nn as qnn
    from brevitas.quant.scaled_int import Int8AccumulatorAwareZeroCenterWeightQuant, Int8WeightPerTensorFloat

    torch.manual_seed(seed)
    layers = [qnn.QuantIdentity(bit_width=a_bits, return_quant_tensor=True)]
    n = len(sizes) - 1
    for i, (k, c) in enumerate(zip(sizes[:-1], sizes[1:])):
        kw = dict(weight_bit_width=w_bits, bias=True, return_quant_tensor=i < n - 1)
        if a2qplus:
            kw.update(weight_quant=Int8AccumulatorAwareZeroCenterWeightQuant, weight_accumulator_bit_width=acc_bits)
        else:
            kw.update(weight_quant=Int8WeightPerTensorFloat)
        layers.append(qnn.QuantLinear(k, c, **kw))
        if i < n - 1:
            layers.append(qnn.QuantReLU(bit_width=a_bits, return_quant_tensor=True))
    model = torch.nn.Sequential(*layers)
    model.train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(64, sizes[0], generator=g))
    model.eval()
    return model


def export_mlp(path, sizes, **kw):
    """Build, calibrate and export an MLP to QONNX at ``path``; returns the torch model."""
    import torch
    from brevitas.export import export_qonnx

    model = make_mlp(sizes, **kw)
    export_qonnx(model, torch.randn(1, sizes[0]), export_path=str(path))
    return model
