"""A small Brevitas 0.13.4 CNN exported with ``export_qonnx``, for end-to-end tests and the benchmark.

QuantIdentity (8-bit input) -> QuantConv2d 3x3 -> QuantReLU -> depthwise QuantConv2d 3x3 with
A2Q+ weights (``Int8AccumulatorAwareZeroCenterWeightQuant``) -> QuantReLU -> MaxPool2d(2) ->
residual block (QuantConv2d 3x3 -> the *same* QuantReLU module, so both Add inputs share one
scale; + the pooled tensor) -> QuantReLU -> AvgPool2d over the whole map -> QuantIdentity ->
Flatten -> QuantLinear, on 1x8x8 inputs (sklearn digits). Random initialization and a few
calibration passes on digits (activation scales); no training: the compiler only needs a
valid quantized model.
"""
from __future__ import annotations

import numpy as np


def digits(n: int | None = None) -> np.ndarray:
    """sklearn's 8x8 digits as float32 ``[n, 1, 8, 8]`` in [0, 1]."""
    from sklearn.datasets import load_digits

    x = load_digits().images.astype(np.float32) / 16.0
    x = x[:, None, :, :]
    return x if n is None else x[:n]


def make_cnn(*, ch: int = 8, acc_bits: int = 12, w_bits: int = 4, a_bits: int = 4, seed: int = 0):
    import torch
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.quant import Int8AccumulatorAwareZeroCenterWeightQuant

    torch.manual_seed(seed)

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv0 = qnn.QuantConv2d(1, ch, 3, padding=1, weight_bit_width=w_bits, bias=True)
            self.act0 = qnn.QuantReLU(bit_width=a_bits, return_quant_tensor=True)
            self.dw = qnn.QuantConv2d(ch, ch, 3, padding=1, groups=ch, bias=False, weight_bit_width=w_bits,
                                      weight_quant=Int8AccumulatorAwareZeroCenterWeightQuant,
                                      weight_accumulator_bit_width=acc_bits)
            self.act1 = qnn.QuantReLU(bit_width=a_bits, return_quant_tensor=True)  # shared by both Add inputs
            self.pool = nn.MaxPool2d(2)
            self.conv2 = qnn.QuantConv2d(ch, ch, 3, padding=1, weight_bit_width=w_bits, bias=True)
            self.act2 = qnn.QuantReLU(bit_width=a_bits, return_quant_tensor=True)
            self.gap = nn.AvgPool2d(4)
            self.act3 = qnn.QuantIdentity(bit_width=a_bits, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(ch, 10, weight_bit_width=w_bits, bias=True)

        def forward(self, x):
            x = self.inp(x)
            x = self.act0(self.conv0(x))
            x = self.act1(self.dw(x))
            x = self.pool(x)
            y = self.act1(self.conv2(x))
            x = self.act2(x + y)
            x = self.act3(self.gap(x))
            return self.fc(torch.flatten(x, 1))

    model = CNN()
    model.train()
    xs = torch.from_numpy(digits(256))
    with torch.no_grad():
        for i in range(4):
            model(xs[i * 64 : (i + 1) * 64])
    model.eval()
    return model


def export_cnn(path, **kw):
    """Build, calibrate and export the CNN to QONNX at ``path``; returns the torch model."""
    import torch
    from brevitas.export import export_qonnx

    model = make_cnn(**kw)
    export_qonnx(model, torch.zeros(1, 1, 8, 8), export_path=str(path))
    return model
