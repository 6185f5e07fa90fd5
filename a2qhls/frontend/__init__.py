"""The PyTorch front end: A2Q / A2Q+ quantization-aware training and exact QONNX export.

Importing this package imports torch; the compiler side of a2qhls never does.
"""
from .layers import (QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, QuantResidual, input_spec, penalty,
                     weight_layers)
from .quantizers import A2QWeightQuant, ActQuant, IntWeightQuant, l1_budget

__all__ = [
    "ActQuant",
    "IntWeightQuant",
    "A2QWeightQuant",
    "l1_budget",
    "QuantLinear",
    "QuantConv2d",
    "QuantReLU",
    "QuantIdentity",
    "QuantResidual",
    "input_spec",
    "penalty",
    "weight_layers",
]
