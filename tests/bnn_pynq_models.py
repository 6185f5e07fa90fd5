"""FINN's BNN-PYNQ networks as Brevitas 0.13.4 defines them (``brevitas_examples/bnn_pynq``), with seeded
random weights (no download), for the tests and ``bench/bnn_pynq.py``.

* :func:`bnn_pynq`: a config by name (``tfc_1w1a``, ``cnv_2w2a``, ...) built exactly as
  ``brevitas_examples.bnn_pynq.models.model_with_cfg`` builds it from its ``.ini`` file.
* :func:`reduced_fc`: the same ``FC`` class (TFC/SFC/LFC) with a smaller input and fewer, narrower
  layers, as its constructor allows (``in_features``, ``out_features``); CNV's constructor fixes its
  channels and its 32x32 input, so CNV runs full size (inspect and the numpy model in the tests, build
  and cosim in the bench).

BatchNorm statistics and affine parameters and the TensorNorm are drawn at random (seeded), so
thresholds are neither trivial nor all equal.
"""
from __future__ import annotations


def randomize_norms(model, seed: int = 0):
    """Seeded random BatchNorm statistics/affine and TensorNorm parameters (in place); returns ``model``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        with torch.no_grad():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or type(m).__name__ == "TensorNorm":
                n = m.running_mean.numel()
                m.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 4)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_((torch.rand(n, generator=g) - 0.5) * 2)
                m.bias.copy_((torch.rand(n, generator=g) - 0.5) * 2)
    return model.eval()


def bnn_pynq(name: str, seed: int = 0):
    """``(model, input_shape)`` of a BNN-PYNQ config (``brevitas_examples/bnn_pynq/cfg/<name>.ini``)."""
    import torch
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(seed)
    model, cfg = model_with_cfg(name, pretrained=False)
    shape = (1, 28, 28) if cfg.get("MODEL", "ARCH") == "FC" else (cfg.getint("MODEL", "IN_CHANNELS"), 32, 32)
    return randomize_norms(model, seed), shape


def reduced_fc(weight_bits: int, act_bits: int, in_bits: int = 1, in_hw=(8, 8), out_features=(16, 16), seed: int = 0):
    """``(model, input_shape)``: brevitas_examples' ``FC`` (TFC/SFC/LFC) at a reduced size."""
    import torch
    from brevitas_examples.bnn_pynq.models.FC import FC

    torch.manual_seed(seed)
    model = FC(num_classes=10, weight_bit_width=weight_bits, act_bit_width=act_bits, in_bit_width=in_bits,
               in_channels=1, out_features=list(out_features), in_features=tuple(in_hw))
    return randomize_norms(model, seed), (1, *in_hw)
