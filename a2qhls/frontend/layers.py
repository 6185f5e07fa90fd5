"""Quantized layers that compose in ordinary ``nn.Sequential`` / ``nn.Module`` models.

* :class:`QuantLinear`, :class:`QuantConv2d` (``groups``, so depthwise works):
  a float weight and bias plus an optional weight quantizer from
  :mod:`a2qhls.frontend.quantizers`; the bias stays float.
* :class:`QuantReLU` (ReLU then an unsigned :class:`ActQuant`) and
  :class:`QuantIdentity` (an :class:`ActQuant` alone, e.g. on the network input;
  also after an average pool). Either can *share* another module's quantizer
  (``quant=other.quant``): the same scale, bits and sign in two places.
* :class:`QuantResidual` ``post(body(x) + x)``: a residual block whose sum is
  exact on integers because the body's last quantizer is the block input's
  (shared), so both addends carry the same scale.
* :func:`penalty` sums the accumulator-aware quantizers' penalty terms.

An accumulator-aware weight quantizer is told its input quantizer's bit width
and sign explicitly; :func:`input_spec` reads them from the activation module
that feeds the layer, so a model is written as::

    inp = QuantIdentity(bits=4, signed=False)
    fc = QuantLinear(64, 32, weight_quant=A2QWeightQuant(4, 12, **input_spec(inp), zero_center=True))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import A2QError
from .quantizers import A2QWeightQuant, ActQuant

__all__ = ["QuantLinear", "QuantConv2d", "QuantReLU", "QuantIdentity", "QuantResidual", "penalty", "input_spec",
           "weight_layers"]


def input_spec(act: nn.Module) -> dict:
    """``{"input_bits": N, "input_signed": bool}`` of an activation quantizer module."""
    q = getattr(act, "quant", None)
    if not isinstance(q, ActQuant):
        raise A2QError(f"{type(act).__name__} is not a quantized activation (QuantReLU / QuantIdentity)")
    return {"input_bits": q.bits, "input_signed": q.signed}


class _QuantWeightLayer(nn.Module):
    weight: nn.Parameter

    def _attach(self, weight_quant) -> None:
        if weight_quant is not None and not hasattr(weight_quant, "int_weight"):
            raise A2QError(f"weight_quant must be a weight quantizer module, got {type(weight_quant).__name__}")
        self.weight_quant = weight_quant
        if weight_quant is not None:
            weight_quant.reset_from(self.weight)

    def quant_weight(self) -> torch.Tensor:
        """The weight the layer computes with (``s * q``, or the float weight)."""
        if self.weight_quant is None:
            return self.weight
        return self.weight_quant(self.weight)

    @torch.no_grad()
    def int_weight(self) -> torch.Tensor:
        """Integer weights ``[out, K]`` as int64 (quantized layers only)."""
        if self.weight_quant is None:
            raise A2QError(f"{type(self).__name__} has no weight quantizer")
        return self.weight_quant.int_weight(self.weight).to(torch.int64)

    @property
    def K(self) -> int:
        return int(self.weight[0].numel())


class QuantLinear(_QuantWeightLayer):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, weight_quant=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        self._attach(weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class QuantConv2d(_QuantWeightLayer):
    """2-D convolution; ``groups == in_channels == out_channels`` is depthwise.

    Each output channel accumulates ``K = in_channels / groups * kh * kw`` terms.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, weight_quant=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise A2QError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.K)
            nn.init.uniform_(self.bias, -bound, bound)
        self._attach(weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.quant_weight(), self.bias, self.stride, self.padding, 1, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}")


def _act_quant(bits, signed: bool, narrow: bool, init_scale, quant, init_percentile=None) -> ActQuant:
    if quant is None:
        if bits is None:
            raise A2QError("an activation module needs bits=... (or quant=... to share another module's quantizer)")
        return ActQuant(bits, signed=signed, narrow=narrow, init_scale=init_scale, init_percentile=init_percentile)
    if not isinstance(quant, ActQuant):
        raise A2QError(f"quant= must be an ActQuant (e.g. other.quant), got {type(quant).__name__}")
    if bits is not None and bits != quant.bits:
        raise A2QError(f"bits={bits} contradicts the shared quantizer's {quant.bits} bits")
    return quant


class QuantReLU(nn.Module):
    """``ReLU`` followed by an unsigned ``bits``-bit activation quantizer.

    ``quant=other.quant`` shares an existing quantizer instead (same scale, bits and
    sign; it must be unsigned): how :class:`QuantResidual` bodies end.
    """

    def __init__(self, bits=None, narrow: bool = False, init_scale=None, quant: ActQuant | None = None,
                 init_percentile=None):
        super().__init__()
        self.quant = _act_quant(bits, False, narrow, init_scale, quant, init_percentile)
        if self.quant.signed:
            raise A2QError("QuantReLU needs an unsigned quantizer (the shared one is signed)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(torch.relu(x))


class QuantIdentity(nn.Module):
    """An activation quantizer alone (e.g. on the network input, or after an average pool).

    ``quant=other.quant`` shares an existing quantizer instead.
    """

    def __init__(self, bits=None, signed: bool = False, narrow: bool = False, init_scale=None,
                 quant: ActQuant | None = None, init_percentile=None):
        super().__init__()
        self.quant = _act_quant(bits, signed, narrow, init_scale, quant, init_percentile)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(x)


class QuantResidual(nn.Module):
    """Residual block ``post(body(x) + x)`` that stays exact on integers.

    ``x`` is a quantized tensor (the output of the activation module before the
    block). ``body`` maps it to a tensor of the same shape and must end with a
    :class:`QuantReLU`/:class:`QuantIdentity` that *shares* the block input's quantizer
    (``QuantReLU(quant=prev.quant)``), so both addends are integers times one scale
    ``s`` and the sum is ``s * (a + b)`` exactly: the Add a compiler sees has scale
    ratio 1. (Any pair of scales in a small integer ratio is also accepted by the
    exporter; sharing is the way to get it by construction.) ``post`` (a
    :class:`QuantReLU` or :class:`QuantIdentity`) re-quantizes the sum.

    With float modules (``nn.ReLU`` / ``nn.Identity``) the same block is the float
    model a quantized one is initialized from.
    """

    def __init__(self, body: nn.Module, post: nn.Module):
        super().__init__()
        self.body = body
        self.post = post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.body(x) + x)


def weight_layers(model: nn.Module) -> list:
    """The quantized weight layers of ``model`` in module order."""
    return [m for m in model.modules() if isinstance(m, _QuantWeightLayer)]


def penalty(model: nn.Module) -> torch.Tensor:
    """Sum of the accumulator-aware weight quantizers' penalties ``sum relu(g - s*T)``."""
    terms = [m.penalty() for m in model.modules() if isinstance(m, A2QWeightQuant)]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()
