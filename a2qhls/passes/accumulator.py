"""Accumulator sizing: the minimal safe width of every layer from its integer weights.

For each :class:`~a2qhls.ir.Dense` it derives, per output channel, the exact
worst-case accumulator range over every input the layer's input type allows
(bias and zero-point included; A2QPLUS.md bound 4), the minimal signed width
per channel, and the layer width (max over channels). Alongside, for
comparison, the data-type, A2Q and A2Q+ widths from the same weights. The
worst channel and its adversarial input vectors are kept for co-simulation.
"""
from __future__ import annotations

import numpy as np

from .. import bounds
from ..ir import AccumulatorReport, Dense, Model


def size_layer(dense: Dense, in_type) -> AccumulatorReport:
    """The :class:`AccumulatorReport` of one layer whose input has integer type ``in_type``."""
    w = dense.weight
    x_min, x_max = in_type.vmin, in_type.vmax
    lo, hi = bounds.exact_channel_range(w, x_min, x_max, dense.bias)
    per_bits = bounds.signed_bits_for_range(lo, hi)
    acc_bits = int(per_bits.max())
    # the worst channel: widest, ties broken by the larger magnitude it reaches
    reach = np.array([max(int(h), -int(l) - 1) for l, h in zip(lo, hi)], dtype=object)
    worst = int(max(range(len(reach)), key=lambda j: (int(per_bits[j]), reach[j], -j)))
    adv_max, adv_min = bounds.adversarial_inputs(w[worst], x_min, x_max)
    l1 = int(np.abs(w).sum(axis=1).max())
    l1_plus = int(bounds.a2qplus_effective_l1(w).max())
    rep = AccumulatorReport(
        acc_bits=acc_bits,
        acc_min=int(min(int(v) for v in lo)),
        acc_max=int(max(int(v) for v in hi)),
        per_channel_bits=np.asarray(per_bits, dtype=np.int64),
        per_channel_min=np.asarray([int(v) for v in lo], dtype=object),
        per_channel_max=np.asarray([int(v) for v in hi], dtype=object),
        datatype_bits=bounds.datatype_acc_bits(dense.K, in_type.bits, in_type.signed, dense.weight_type.bits),
        a2q_bits=bounds.a2q_acc_bits(l1, in_type.bits, in_type.signed),
        a2qplus_bits=bounds.a2qplus_acc_bits(l1_plus, in_type.bits),
        worst_channel=worst,
        adversarial_max=adv_max,
        adversarial_min=adv_min,
    )
    rep.exceeds_target = dense.target_acc_bits is not None and acc_bits > dense.target_acc_bits
    return rep


def size_accumulators(model: Model) -> Model:
    """Fill ``Dense.acc`` for every layer of ``model`` (in place) and return it."""
    for dense in model.layers():
        in_type = model.tensors[dense.inputs[0]].dtype
        dense.acc = size_layer(dense, in_type)
    return model
