"""A small Brevitas UNet-style net (Brevitas 0.13.4 has none): encoder QuantConv2d + QuantReLU, max
pool, a decoder with nn.Upsample (nearest) + QuantIdentity or a stride-2 QuantConvTranspose2d, and a
skip torch.cat of tensors quantized by one shared quantizer. Seeded weights, reduced size."""
from __future__ import annotations


def brevitas_unet(up: str = "upsample", ch: int = 4, seed: int = 0, kernel: int = 2):
    """``up``: ``"upsample"`` (nn.Upsample nearest x2 + QuantIdentity) or ``"convT"``
    (QuantConvTranspose2d stride 2, ``kernel`` 2 (pad 0), 3 (pad 1, output_padding 1) or 4 (pad 1))."""
    import torch
    import torch.nn as nn
    from brevitas import nn as qnn
    from brevitas.quant import Int8WeightPerTensorFloat

    torch.manual_seed(seed)

    class W4(Int8WeightPerTensorFloat):
        bit_width = 4

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.enc1 = qnn.QuantConv2d(1, ch, 3, padding=1, weight_quant=W4, bias=False)
            self.act1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = nn.MaxPool2d(2)
            self.enc2 = qnn.QuantConv2d(ch, 2 * ch, 3, padding=1, weight_quant=W4, bias=False)
            self.act2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            if up == "upsample":
                self.up = nn.Upsample(scale_factor=2, mode="nearest")
                self.upq = qnn.QuantIdentity(act_quant=None, return_quant_tensor=True) if False else None
                self.dec_in = 2 * ch
            else:
                pad, opad = {2: (0, 0), 3: (1, 1), 4: (1, 0)}[kernel]
                self.up = qnn.QuantConvTranspose2d(2 * ch, ch, kernel, stride=2, padding=pad, output_padding=opad,
                                                   weight_quant=W4, bias=False)
                self.dec_in = ch
            # one shared quantizer for both halves of the skip concat (same scale)
            self.cat_q = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
            self.dec = qnn.QuantConv2d(self.dec_in + ch, ch, 3, padding=1, weight_quant=W4, bias=False)
            self.act3 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.head = qnn.QuantConv2d(ch, 1, 1, weight_quant=W4, bias=False)

        def forward(self, x):
            x = self.inp(x)
            e1 = self.act1(self.enc1(x))
            e2 = self.act2(self.enc2(self.pool(e1)))
            u = self.up(e2)
            a = self.cat_q(u)
            b = self.cat_q(e1)
            y = torch.cat([a, b], dim=1)
            return self.head(self.act3(self.dec(y)))

    return UNet()
