"""Reduced versions of the A2Q+ paper's image classifiers, from ``brevitas_examples``' own building
blocks, for tests that run in seconds (``bench/paper_nets.py`` runs the full-size nets).

* :func:`resnet`: ``QuantResNet``'s stem (8-bit per-channel first conv, BatchNorm, shared QuantReLU),
  two unmodified ``QuantBasicBlock``s (the second downsampling, with its 1x1 conv shortcut), wired
  with shared activation quantizers as ``QuantResNet._make_layer`` does, ``TruncAvgPool2d`` and an
  8-bit linear head with an ``Int32Bias``; 4-bit A2Q or A2Q+ weights (``a2q/quant.py``) at a target
  width, as ``a2q/utils.py`` builds ``quant_resnet18``. Its input is an unquantized image: a2qhls
  needs ``--input-quant``.
* :func:`mobilenet`: ``imagenet_classification/models/mobilenetv1.py``'s own ``MobileNet`` class (what
  ``quant_mobilenet_v1`` instantiates) with fewer, narrower stages: 8-bit first ConvBlock with
  per-channel activation scales, depthwise-separable blocks (per-channel activation scales into the
  depthwise convolutions), ``TruncAvgPool2d``, 4-bit head with ``Int32Bias``; unquantized input.
"""
from __future__ import annotations


def resnet(kind: str = "a2q", acc_bits: int = 12, planes=(8, 16), seed: int = 0, hw: int = 8):
    import torch
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat, Int32Bias, TruncTo8bit
    from brevitas_examples.bnn_pynq.models.resnet import QuantBasicBlock, make_quant_conv2d
    from brevitas_examples.imagenet_classification.a2q.quant import (
        CommonIntAccumulatorAwareWeightQuant, CommonIntAccumulatorAwareZeroCenterWeightQuant)

    torch.manual_seed(seed)
    wq = (CommonIntAccumulatorAwareZeroCenterWeightQuant if kind == "a2q+" else CommonIntAccumulatorAwareWeightQuant)
    wq = wq.let(accumulator_bit_width=acc_bits)

    class ReducedResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = make_quant_conv2d(3, planes[0], 3, 8, Int8WeightPerChannelFloat, padding=1)
            self.bn1 = nn.BatchNorm2d(planes[0])
            self.relu = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            shared, blocks, inp = self.relu, [], planes[0]
            for i, p in enumerate(planes):
                b = QuantBasicBlock(inp, p, stride=1 if i == 0 else 2, shared_quant_act=shared, act_bit_width=4,
                                    weight_bit_width=4, weight_quant=wq)
                blocks.append(b)
                shared, inp = b.relu_out, p
            self.layers = nn.Sequential(*blocks)
            k = hw // 2 ** (len(planes) - 1)
            self.final_pool = qnn.TruncAvgPool2d(kernel_size=k, trunc_quant=TruncTo8bit, float_to_int_impl_type="FLOOR")
            self.linear = qnn.QuantLinear(inp, 10, weight_bit_width=8, bias=True, bias_quant=Int32Bias,
                                          weight_quant=Int8WeightPerTensorFloat)

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.final_pool(self.layers(out))
            return self.linear(out.view(out.size(0), -1))

    m = ReducedResNet()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    m.train()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eval()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(16, 3, hw, hw))
    m.eval()
    return m


def mobilenet(channels=((8,), (16,), (16,)), hw: int = 16, seed: int = 0, bits: int = 4):
    import torch
    import torch.nn as nn
    from brevitas_examples.imagenet_classification.models.mobilenetv1 import MobileNet

    torch.manual_seed(seed)
    final = hw // 2 // 2 ** (len(channels) - 2)
    m = MobileNet(channels=[list(c) for c in channels], first_stage_stride=False, act_bit_width=bits,
                  weight_bit_width=bits, round_average_pool=False, last_layer_bit_width=bits,
                  avg_pool_kernel_size=final, num_classes=10)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    m.train()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eval()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 3, hw, hw))
    m.eval()
    return m
