"""Brevitas 0.13.4's ESPCN (``brevitas_examples/super_resolution/models/espcn.py``), unmodified, as its
examples build it: :func:`make` takes the model from ``get_model_by_name`` (``model_impl``): A2Q is
``quant_espcn_x2_w4a4_a2q_13b`` (``quant_espcn_a2q``), A2Q+ ``quant_espcn_x2_w4a4_a2q_plus_13b``
(``quant_espcn`` with ``CommonIntAccumulatorAwareZeroCenterWeightQuant``), both 4-bit weights and
activations, a 13-bit target on conv2 and conv3 (conv1 and conv4 are 8-bit, conv1 at 32 bits, conv4
unconstrained). Seeded random weights (no download); BatchNorm statistics perturbed so they are not the
identity; activation scales calibrated on a few random batches. The constructor fixes the channels
(64, 64, 32): a reduced net is a small image. Its graph: ``relu(inp)`` on the graph input, conv1..conv4,
``PixelShuffle(2)`` and a ``QuantReLU`` (uint8) after it; 3 colour channels in, 3 out.
Shared by tests/test_espcn_brevitas.py and bench/espcn_brevitas.py."""
from __future__ import annotations

NAMES = {("a2q", 13): "quant_espcn_x2_w4a4_a2q_13b", ("a2q+", 13): "quant_espcn_x2_w4a4_a2q_plus_13b"}


def make(kind: str = "a2q", bits: int = 13, hw: int = 8, seed: int = 0, batches: int = 2):
    """``(model, example input [1, 3, hw, hw])``: the calibrated Brevitas ESPCN x2 (eval mode)."""
    import warnings

    import torch
    from brevitas_examples.super_resolution.models import get_model_by_name

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_model_by_name(NAMES[(kind, bits)])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.train()
    for m in model.modules():  # keep the statistics set above while the activation quantizers calibrate
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(8, 3, hw, hw))
    model.eval()
    return model, torch.rand(1, 3, hw, hw)


def targets(model) -> dict:
    """``{conv name: target accumulator bits}`` of the accumulator-aware layers (conv2, conv3)."""
    out = {}
    for name, m in model.named_modules():
        inj = getattr(getattr(m, "weight_quant", None), "quant_injector", None)
        try:
            out[name] = int(inj.accumulator_bit_width)
        except Exception:
            continue
    return out
