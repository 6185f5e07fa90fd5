"""Accumulator sizing: the minimal safe width of every layer from its integer weights.

For each op that owns an accumulator (:class:`~a2qhls.ir.Dense`, :class:`~a2qhls.ir.Conv`,
average :class:`~a2qhls.ir.Pool`) it derives, per output channel, the exact worst-case
accumulator range over every input the layer's input type allows (bias and zero-point
included; A2QPLUS.md bound 4; for a convolution, over every window, where padding
contributes the zero-point, i.e. the value 0; a bipolar input ranges over {-1, +1}), the minimal
signed width per channel, and
the layer width (max over channels). Alongside, for comparison, the data-type, A2Q and
A2Q+ widths from the same weights. The worst channel and its adversarial input vectors
are kept for co-simulation.
"""
from __future__ import annotations

import numpy as np

from .. import bounds
from ..ir import AccumulatorReport, Add, Conv, Dense, Model


def _matrix_and_masks(op) -> tuple[np.ndarray, list]:
    """The op as ``[channels, K]`` integer weights and the distinct 0/1 masks of real (unpadded) taps."""
    if isinstance(op, Dense):
        return op.weight, [np.ones(op.K, dtype=np.int64)]
    if isinstance(op, Conv):
        w = op.weight.reshape(op.channels, -1)
        cin_g = op.weight.shape[3]
    else:  # average pool: a per-channel window sum
        w = np.ones((op.channels, op.K), dtype=np.int64)
        cin_g = 1
    masks = [np.repeat(m.reshape(-1), cin_g).astype(np.int64) for m in op.window_masks()]
    return w, masks


def size_layer(op, in_type) -> AccumulatorReport:
    """The :class:`AccumulatorReport` of one op whose input has integer type ``in_type``."""
    w, masks = _matrix_and_masks(op)
    bias = getattr(op, "bias", None)
    x_min, x_max = in_type.vmin, in_type.vmax
    lo = hi = None
    best_mask_hi = best_mask_lo = None
    for k, m in enumerate(masks):
        l_m, h_m = bounds.exact_channel_range(w * m, x_min, x_max, bias)
        if lo is None:
            lo, hi = l_m, h_m
            best_mask_hi = np.zeros(len(h_m), dtype=np.int64)
            best_mask_lo = np.zeros(len(l_m), dtype=np.int64)
            continue
        up, down = h_m > hi, l_m < lo
        hi, lo = np.where(up, h_m, hi), np.where(down, l_m, lo)
        best_mask_hi[up], best_mask_lo[down] = k, k
    per_bits = bounds.signed_bits_for_range(lo, hi)
    acc_bits = int(per_bits.max())
    # the worst channel: widest, ties broken by the larger magnitude it reaches
    reach = [max(int(h), -int(l) - 1) for l, h in zip(lo, hi)]
    worst = int(max(range(len(reach)), key=lambda j: (int(per_bits[j]), reach[j], -j)))
    adv_max, _ = bounds.adversarial_inputs(w[worst] * masks[best_mask_hi[worst]], x_min, x_max)
    _, adv_min = bounds.adversarial_inputs(w[worst] * masks[best_mask_lo[worst]], x_min, x_max)
    pos, neg = bounds.channel_sums(w)
    l1 = int((pos - neg).max())  # the largest channel l1 norm
    l1_plus = int((2 * np.maximum(pos, -neg)).max())  # = bounds.a2qplus_effective_l1(w).max()
    w_bits = op.weight_type.bits if hasattr(op, "weight_type") else 2  # a pool's weights are all 1
    target = getattr(op, "target_acc_bits", None)
    # the comparison bounds take an N-bit input; a bipolar input {-1, +1} enters them as 2-bit signed
    # (its values lie in that type's range), the exact range above uses {-1, +1} itself
    n_bits, n_signed = (2, True) if getattr(in_type, "bipolar", False) else (in_type.bits, in_type.signed)
    return AccumulatorReport(
        acc_bits=acc_bits,
        acc_min=int(min(int(v) for v in lo)),
        acc_max=int(max(int(v) for v in hi)),
        per_channel_bits=np.asarray(per_bits, dtype=np.int64),
        per_channel_min=np.asarray([int(v) for v in lo], dtype=object),
        per_channel_max=np.asarray([int(v) for v in hi], dtype=object),
        datatype_bits=bounds.datatype_acc_bits(op.K, n_bits, n_signed, w_bits),
        a2q_bits=bounds.a2q_acc_bits(l1, n_bits, n_signed),
        a2qplus_bits=bounds.a2qplus_acc_bits(l1_plus, n_bits),
        worst_channel=worst,
        adversarial_max=adv_max,
        adversarial_min=adv_min,
        exceeds_target=target is not None and acc_bits > target,
    )


def size_add(op: Add, ta, tb) -> AccumulatorReport:
    """A residual add ``ma * a + mb * b``: the range follows from both input ranges."""
    ma, mb = op.multipliers
    lo = ma * ta.vmin + mb * tb.vmin
    hi = ma * ta.vmax + mb * tb.vmax
    bits = bounds.signed_bits_for_range(lo, hi)
    C = op.channels
    return AccumulatorReport(
        acc_bits=bits, acc_min=lo, acc_max=hi,
        per_channel_bits=np.full(C, bits, dtype=np.int64),
        per_channel_min=np.full(C, lo, dtype=object), per_channel_max=np.full(C, hi, dtype=object),
        datatype_bits=bits, a2q_bits=bits, a2qplus_bits=bits, worst_channel=0,
        adversarial_max=np.array([ta.vmax, tb.vmax]), adversarial_min=np.array([ta.vmin, tb.vmin]),
    )


def size_accumulators(model: Model) -> Model:
    """Fill ``op.acc`` for every op of ``model`` that owns an accumulator (in place) and return it."""
    for op in model.accumulating_ops():
        if isinstance(op, Add):
            op.acc = size_add(op, model.tensors[op.inputs[0]].dtype, model.tensors[op.inputs[1]].dtype)
        else:
            op.acc = size_layer(op, model.tensors[op.inputs[0]].dtype)
    return model


def acc_range(model: Model, op) -> tuple[int, int]:
    """Exact accumulator range ``(min, max)`` over all channels of an accumulating op
    (Dense, Conv, average Pool, Add; from its sizing report, sized here if absent)."""
    if op.acc is None:
        if isinstance(op, Add):
            rep = size_add(op, model.tensors[op.inputs[0]].dtype, model.tensors[op.inputs[1]].dtype)
        else:
            rep = size_layer(op, model.tensors[op.inputs[0]].dtype)
        return int(rep.acc_min), int(rep.acc_max)
    return int(op.acc.acc_min), int(op.acc.acc_max)
