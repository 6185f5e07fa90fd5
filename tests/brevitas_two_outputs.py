"""A small Brevitas 0.13.4 net with two graph outputs, for the multi-output build and cosim test.

QuantIdentity (8-bit input) -> QuantConv2d 3x3 -> QuantReLU ``a`` -> MaxPool2d(2) -> Flatten ->
QuantLinear ``y``; the graph outputs are ``(y, a)``: the head's logits and the feature map ``a``, which
the head also reads (a graph output that is both exported and read by a later layer). Random
initialization, a few calibration passes on sklearn digits; no training.
"""
from __future__ import annotations


def make_two_output_net(*, ch: int = 4, seed: int = 0):
    import torch
    import torch.nn as nn
    import brevitas.nn as qnn

    from brevitas_cnn import digits

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(1, ch, 3, padding=1, weight_bit_width=4, bias=True)
            self.act = qnn.QuantReLU(bit_width=4)  # a plain tensor: a QuantTensor graph output would also export its scale (TorchScript)
            self.pool = nn.MaxPool2d(2)
            self.fc = qnn.QuantLinear(ch * 16, 10, weight_bit_width=4, bias=True)

        def forward(self, x):
            a = self.act(self.conv(self.inp(x)))
            y = self.fc(torch.flatten(self.pool(a), 1))
            return y, a

    model = Net()
    model.train()
    xs = torch.from_numpy(digits(128))
    with torch.no_grad():
        for i in range(2):
            model(xs[i * 64:(i + 1) * 64])
    model.eval()
    return model
