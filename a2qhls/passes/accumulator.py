"""Accumulator sizing: the minimal safe width of every layer from its integer weights.

For each op that owns an accumulator (:class:`~a2qhls.ir.Dense`, :class:`~a2qhls.ir.Conv`,
average :class:`~a2qhls.ir.Pool`) it derives, per output channel, the exact worst-case
accumulator range over every input the layer's input type allows (bias and zero-point
included; A2QPLUS.md bound 4; for a convolution, over every window, where padding
contributes the zero-point, i.e. the value 0), the minimal signed width per channel, and
the layer width (max over channels). Alongside, for comparison, the data-type, A2Q and
A2Q+ widths from the same weights. The worst channel and its adversarial input vectors
are kept for co-simulation.
"""
from __future__ import annotations

import numpy as np

from .. import bounds
from ..ir import AccumulatorReport, Add, Conv, Dense, Model


def _matrix_and_masks(op) -> tuple[np.ndarray, list, int]:
    """The op as ``[channels, K]`` integer weights, the distinct 0/1 masks of real (unpadded) taps
    over the ``kh * kw`` window positions, and the number of weights per position (``K / (kh * kw)``)."""
    if isinstance(op, Dense):
        return op.weight, [np.ones(1, dtype=np.int64)], op.K
    if isinstance(op, Conv):
        w = op.weight.reshape(op.channels, -1)
        cin_g = op.weight.shape[3]
    else:  # average pool: a per-channel window sum
        w = np.ones((op.channels, op.K), dtype=np.int64)
        cin_g = 1
    return w, [m.reshape(-1).astype(np.int64) for m in op.window_masks()], cin_g


def size_layer(op, in_type) -> AccumulatorReport:
    """The :class:`AccumulatorReport` of one op whose input has integer type ``in_type``.

    The sums of positive and negative weights are taken once per window position (``[C, kh*kw]``);
    each padding mask then selects positions, so a padded convolution costs one pass over its weights."""
    w, masks, per_pos = _matrix_and_masks(op)
    bias = getattr(op, "bias", None)
    x_min, x_max = in_type.vmin, in_type.vmax
    pos_t, neg_t = bounds.channel_sums(w.reshape(w.shape[0], -1, per_pos))  # [C, positions]
    if pos_t.dtype != object and int(np.abs(pos_t - neg_t).sum(axis=1).max(initial=0)) >= 2**62:
        pos_t, neg_t = pos_t.astype(object), neg_t.astype(object)  # a channel's total would not fit int64
    lo = hi = None
    best_mask_hi = best_mask_lo = None
    for k, m in enumerate(masks):
        if pos_t.dtype == object:
            pos_m, neg_m = (pos_t * m).sum(axis=1), (neg_t * m).sum(axis=1)
        else:  # a masked total is at most the channel's l1 norm, < 2^62 (checked above)
            pos_m, neg_m = pos_t @ m, neg_t @ m
        l_m, h_m = bounds.range_from_sums(pos_m, neg_m, x_min, x_max, bias)
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
    adv_max, _ = bounds.adversarial_inputs(w[worst] * np.repeat(masks[best_mask_hi[worst]], per_pos), x_min, x_max)
    _, adv_min = bounds.adversarial_inputs(w[worst] * np.repeat(masks[best_mask_lo[worst]], per_pos), x_min, x_max)
    pos, neg = pos_t.sum(axis=1), neg_t.sum(axis=1)
    l1 = int((pos - neg).max())  # the largest channel l1 norm
    l1_plus = int((2 * np.maximum(pos, -neg)).max())  # = bounds.a2qplus_effective_l1(w).max()
    w_bits = op.weight_type.bits if hasattr(op, "weight_type") else 2  # a pool's weights are all 1
    target = getattr(op, "target_acc_bits", None)
    return AccumulatorReport(
        acc_bits=acc_bits,
        acc_min=int(min(int(v) for v in lo)),
        acc_max=int(max(int(v) for v in hi)),
        per_channel_bits=np.asarray(per_bits, dtype=np.int64),
        per_channel_min=np.asarray([int(v) for v in lo], dtype=object),
        per_channel_max=np.asarray([int(v) for v in hi], dtype=object),
        datatype_bits=bounds.datatype_acc_bits(op.K, in_type.bits, in_type.signed, w_bits),
        a2q_bits=bounds.a2q_acc_bits(l1, in_type.bits, in_type.signed),
        a2qplus_bits=bounds.a2qplus_acc_bits(l1_plus, in_type.bits),
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
