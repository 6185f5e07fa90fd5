"""Quantizers: plain ``nn.Module``s with explicit constructor arguments.

* :class:`ActQuant` -- integer activation quantizer (N bits, signed or not,
  narrow or not) with a learned per-tensor scale and straight-through rounding.
* :class:`IntWeightQuant` -- per-output-channel integer weights, round to
  nearest, learned scale: the unconstrained baseline.
* :class:`A2QWeightQuant` -- accumulator-aware weights (A2Q, and A2Q+ with
  ``zero_center=True``): weight normalization ``w = g * v / ||v||_1`` (A2Q+
  uses ``v - mean(v)``), ``g`` clamped to ``s * T`` with ``T`` the l1 budget of
  the target accumulator width for the layer's *input* quantizer, round toward
  zero, and a penalty ``sum relu(g - s*T)`` for the clamped ``g``.

Scales ``s`` and norms ``g`` are learned in the log2 domain. A weight
quantizer works on ``[channels, ...]`` tensors and treats everything after
dimension 0 as one channel's ``K`` terms (so it serves Linear and Conv alike).

The budgets come from :mod:`a2qhls.bounds`; nothing here restates them.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .. import bounds
from ..errors import A2QError

__all__ = [
    "round_ste",
    "round_to_zero_ste",
    "ActQuant",
    "IntWeightQuant",
    "A2QWeightQuant",
    "l1_budget",
]

_TINY = 1e-12


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


def round_to_zero_ste(x: torch.Tensor) -> torch.Tensor:
    """Truncate toward zero in the forward pass, identity gradient."""
    return x + (torch.trunc(x) - x).detach()


def l1_budget(kind: str, acc_bits: int, input_bits: int, input_signed: bool) -> float:
    """The integer l1 budget ``T`` of quantizer ``kind`` ("a2q" or "a2q+")."""
    if kind == "a2q":
        return bounds.a2q_l1_budget(acc_bits, input_bits, input_signed)
    if kind == "a2q+":
        return bounds.a2qplus_l1_budget(acc_bits, input_bits)
    raise A2QError(f"unknown accumulator-aware quantizer '{kind}' (supported: a2q, a2q+)")


def _check_bits(what: str, bits, lo: int = 1) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < lo:
        raise A2QError(f"{what} must be an integer >= {lo}, got {bits!r}")
    return bits


class ActQuant(nn.Module):
    """Per-tensor integer activation quantizer: ``y = s * clip(round(x / s), qmin, qmax)``.

    The scale ``s`` is learned (log2 domain). Unless ``init_scale`` is given it is
    set on the first forward pass in training mode from that batch: the largest
    magnitude maps to the top of the integer range, or with ``init_percentile=p``
    (0 < p <= 100) the ``p``-th percentile of the magnitudes does (Brevitas's
    activation quantizers start from a percentile of statistics in the same way),
    so a few outliers do not spend the few levels of a narrow quantizer.
    Rounding is half to even (``torch.round``), the same as QONNX's ``ROUND``.
    """

    def __init__(self, bits: int, signed: bool, narrow: bool = False, init_scale: Optional[float] = None,
                 init_percentile: Optional[float] = None):
        super().__init__()
        if init_percentile is not None and not 0 < init_percentile <= 100:
            raise A2QError(f"activation init_percentile must be in (0, 100], got {init_percentile}")
        self.init_percentile = init_percentile
        self.bits = _check_bits("activation bit width", bits, 2 if signed else 1)
        self.signed = bool(signed)
        self.narrow = bool(narrow)
        self.qmin, self.qmax = bounds.int_range(self.bits, self.signed, self.narrow)
        self.log2_scale = nn.Parameter(torch.zeros(()))
        self.register_buffer("initialized", torch.tensor(init_scale is not None))
        if init_scale is not None:
            if not init_scale > 0:
                raise A2QError(f"activation scale must be > 0, got {init_scale}")
            with torch.no_grad():
                self.log2_scale.fill_(float(torch.log2(torch.tensor(float(init_scale)))))

    def scale(self) -> torch.Tensor:
        return torch.exp2(self.log2_scale)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        mag = (x.abs() if self.signed else x.clamp_min(0)).flatten()
        if self.init_percentile is None or mag.numel() == 0:
            top = mag.max() if mag.numel() else x.new_ones(())
        else:
            k = max(1, min(mag.numel(), math.ceil(self.init_percentile / 100 * mag.numel() - 1e-6)))  # nearest-rank
            top = mag.kthvalue(k).values
        top = top.clamp_min(1e-8)
        self.log2_scale.copy_(torch.log2(top / self.qmax))
        self.initialized.fill_(True)

    def int_repr(self, x: torch.Tensor) -> torch.Tensor:
        """The integers ``clip(round(x / s))`` (as float tensor)."""
        return torch.clamp(torch.round(x / self.scale()), self.qmin, self.qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialized):
            if not self.training:
                raise A2QError("activation quantizer used in eval mode before its scale was set "
                               "(run a training batch or pass init_scale)")
            self.init_from(x.detach())
        s = self.scale()
        q = torch.clamp(round_ste(x / s), self.qmin, self.qmax)
        return q * s

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, narrow={self.narrow}"


class _WeightQuantBase(nn.Module):
    kind = "?"
    constrained = False

    def __init__(self, bits: int, narrow: bool = True):
        super().__init__()
        self.bits = _check_bits("weight bit width", bits, 2)
        self.narrow = bool(narrow)
        self.qmin, self.qmax = bounds.int_range(self.bits, True, self.narrow)
        self.log2_scale = nn.Parameter(torch.zeros(0))  # [channels, 1] after reset_from()

    @property
    def channels(self) -> int:
        return int(self.log2_scale.shape[0])

    def scale(self) -> torch.Tensor:
        """Per-channel scale ``s``, shape ``[channels, 1]``."""
        return 2.0**self.log2_scale

    def _set(self, name: str, value: torch.Tensor) -> None:
        p = getattr(self, name)
        if p.shape != value.shape:
            p.data = value.detach().clone().to(p.device)
        else:
            p.data.copy_(value.detach())

    @staticmethod
    def _flat(w: torch.Tensor) -> torch.Tensor:
        return w.reshape(w.shape[0], -1)

    @torch.no_grad()
    def reset_from(self, weight: torch.Tensor) -> None:
        """Initialize ``s`` from the float weight: ``max|w| / qmax`` per channel."""
        w = self._flat(weight.detach())
        top = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        self._set("log2_scale", torch.log2(top / self.qmax))

    def int_weight(self, weight: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def penalty(self) -> torch.Tensor:
        return self.log2_scale.new_zeros(())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        q = self.int_weight(weight)
        return (q * self.scale()).reshape(weight.shape)


class IntWeightQuant(_WeightQuantBase):
    """Per-channel integer weights, round to nearest, no accumulator constraint (baseline)."""

    kind = "baseline"

    def int_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Integers ``clip(round(w / s))`` as ``[channels, K]`` float tensor (STE)."""
        w = self._flat(weight)
        return torch.clamp(round_ste(w / self.scale()), self.qmin, self.qmax)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, narrow={self.narrow}"


class A2QWeightQuant(_WeightQuantBase):
    """Accumulator-aware per-channel integer weights (A2Q; A2Q+ with ``zero_center=True``).

    ``q = clip(round_to_zero(v' * min(g / s, T) / ||v'||_1))`` with ``v' = v`` (A2Q)
    or ``v' = v - mean(v)`` (A2Q+); the layer uses ``s * q``. Because
    ``||q||_1 <= T`` by construction, a layer fed by inputs of ``input_bits`` bits
    (signed or not) never overflows a ``acc_bits`` accumulator.

    ``input_bits`` and ``input_signed`` describe the quantizer feeding the layer
    and are required.
    """

    constrained = True

    def __init__(self, bits: int, acc_bits: int, input_bits: Optional[int], input_signed: Optional[bool],
                 zero_center: bool = False, narrow: bool = True):
        super().__init__(bits, narrow)
        if input_bits is None or input_signed is None:
            raise A2QError("an accumulator-aware layer needs its input quantizer's bit width and signedness "
                           "(input_bits=..., input_signed=...)")
        self.acc_bits = _check_bits("target accumulator width", acc_bits, 2)
        self.input_bits = _check_bits("input bit width", input_bits, 1)
        self.input_signed = bool(input_signed)
        self.zero_center = bool(zero_center)
        self.kind = "a2q+" if self.zero_center else "a2q"
        self.budget = l1_budget(self.kind, self.acc_bits, self.input_bits, self.input_signed)
        if self.budget < 1:  # ||q||_1 < 1 forces every integer weight to 0
            raise A2QError(f"target accumulator width {acc_bits} leaves no l1 budget for "
                           f"{input_bits}-bit inputs (T = {self.budget:.3g} < 1); use a wider accumulator")
        self.log2_g = nn.Parameter(torch.zeros(0))  # [channels, 1] after reset_from()

    def centred(self, weight: torch.Tensor) -> torch.Tensor:
        """``v'``: the flattened weight, minus its per-channel mean for A2Q+."""
        v = self._flat(weight)
        if self.zero_center:
            v = v - v.mean(dim=1, keepdim=True)
        return v

    def g(self) -> torch.Tensor:
        return 2.0**self.log2_g

    @torch.no_grad()
    def reset_from(self, weight: torch.Tensor) -> None:
        """A2Q's default initialization: ``s = max|v'| / qmax``, ``g = ||v'||_1``.

        The clamp ``g <= s*T`` then shrinks over-budget channels uniformly.
        """
        v = self.centred(weight.detach())
        top = v.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        self._set("log2_scale", torch.log2(top / self.qmax))
        self._set("log2_g", torch.log2(v.norm(p=1, dim=1, keepdim=True).clamp_min(1e-8)))

    def int_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Integers as a ``[channels, K]`` float tensor (straight-through)."""
        v = self._flat(weight)
        mean = v.mean(dim=1, keepdim=True) if self.zero_center else None
        vc = v - mean if self.zero_center else v
        norm = vc.norm(p=1, dim=1, keepdim=True).clamp_min(_TINY)
        g_over_s = torch.clamp_max(self.g() / self.scale(), self.budget)
        pre_scale = norm / g_over_s  # w / s = v' / pre_scale
        y = v / pre_scale
        if self.zero_center:
            y = y - mean / pre_scale
        return torch.clamp(round_to_zero_ste(y), self.qmin, self.qmax)

    def penalty(self) -> torch.Tensor:
        """``sum relu(g - s*T)`` over channels: pulls a clamped ``g`` back to its budget."""
        return torch.relu(self.g() - self.scale() * self.budget).sum()

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, bits={self.bits}, acc_bits={self.acc_bits}, input_bits={self.input_bits}, "
                f"input_signed={self.input_signed}, budget={self.budget:.4g}")
