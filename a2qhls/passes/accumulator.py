"""Accumulator sizing: the minimal safe width of every layer from its integer weights.

A residual add sums its two inputs (activations or accumulators) times the integer multipliers that
align their scales (:class:`~a2qhls.ir.Add`): its exact range is per channel from both input ranges
and the multipliers (:func:`size_add`); an average pool of a layer's accumulators sums that layer's
exact per-channel range over its windows (:func:`size_pool_of_acc`).

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
    rep = _report(lo, hi)
    worst = rep.worst_channel
    rep.adversarial_max, _ = bounds.adversarial_inputs(w[worst] * np.repeat(masks[best_mask_hi[worst]], per_pos), x_min, x_max)
    _, rep.adversarial_min = bounds.adversarial_inputs(w[worst] * np.repeat(masks[best_mask_lo[worst]], per_pos), x_min, x_max)
    pos, neg = pos_t.sum(axis=1), neg_t.sum(axis=1)
    l1 = int((pos - neg).max())  # the largest channel l1 norm
    l1_plus = int((2 * np.maximum(pos, -neg)).max())  # = bounds.a2qplus_effective_l1(w).max()
    w_bits = op.weight_type.bits if hasattr(op, "weight_type") else 2  # a pool's weights are all 1
    target = getattr(op, "target_acc_bits", None)
    # the comparison bounds take an N-bit input; a bipolar input {-1, +1} enters them as 2-bit signed
    # (its values lie in that type's range), the exact range above uses {-1, +1} itself
    n_bits, n_signed = (2, True) if getattr(in_type, "bipolar", False) else (in_type.bits, in_type.signed)
    rep.datatype_bits = bounds.datatype_acc_bits(op.K, n_bits, n_signed, w_bits)
    rep.a2q_bits = bounds.a2q_acc_bits(l1, n_bits, n_signed)
    rep.a2qplus_bits = bounds.a2qplus_acc_bits(l1_plus, n_bits)
    rep.exceeds_target = target is not None and rep.acc_bits > target
    return rep


def operand_range(model: Model, tensor: str, built: bool = False) -> tuple:
    """Per channel ``(lo, hi)`` (object arrays of Python ints) of the values ``q - zp`` an op reads from
    ``tensor``: an integer activation's type range, or an accumulator's exact per-channel range (from
    its producer's report, sized here if absent). ``built``: joined with the range of the width the
    producer is built with (``op.acc_bits``; a narrower override wraps into it)."""
    info = model.tensors[tensor]
    C = info.channels
    if info.dtype is not None:
        return np.full(C, int(info.dtype.vmin), dtype=object), np.full(C, int(info.dtype.vmax), dtype=object)
    prod = model.producer(tensor)
    rep = prod.acc if prod.acc is not None else _size_op(model, prod)
    lo = np.asarray([int(v) for v in rep.per_channel_min], dtype=object)
    hi = np.asarray([int(v) for v in rep.per_channel_max], dtype=object)
    if built and prod.acc_bits is not None:
        half = 1 << (int(prod.acc_bits) - 1)
        lo = np.asarray([min(int(v), -half) for v in lo], dtype=object)
        hi = np.asarray([max(int(v), half - 1) for v in hi], dtype=object)
    return lo, hi


def _report(lo, hi, alignment=()) -> AccumulatorReport:
    """The report of the exact per-channel range ``[lo_j, hi_j]``: per-channel and layer widths, extremes, and
    the worst channel (widest, ties broken by the larger magnitude it reaches). The data-type, A2Q and A2Q+
    columns show the exact width, which is all there is for an op without weights (average pool of
    accumulators, residual add); the caller sets the adversarial inputs of the worst channel (and, for a
    layer with weights, the comparison columns)."""
    per_bits = bounds.signed_bits_for_range(lo, hi)
    reach = [max(int(h), -int(l) - 1) for l, h in zip(lo, hi)]
    worst = int(max(range(len(reach)), key=lambda j: (int(per_bits[j]), reach[j], -j)))
    bits = int(per_bits.max())
    return AccumulatorReport(
        acc_bits=bits, acc_min=int(min(int(v) for v in lo)), acc_max=int(max(int(v) for v in hi)),
        per_channel_bits=np.asarray(per_bits, dtype=np.int64),
        per_channel_min=np.asarray([int(v) for v in lo], dtype=object),
        per_channel_max=np.asarray([int(v) for v in hi], dtype=object),
        datatype_bits=bits, a2q_bits=bits, a2qplus_bits=bits, worst_channel=worst,
        adversarial_max=np.zeros(0, dtype=object), adversarial_min=np.zeros(0, dtype=object),
        alignment=tuple(alignment),
    )


def size_add(op: Add, model: Model) -> AccumulatorReport:
    """A residual add ``ma * a + mb * b`` per channel: since every multiplier is positive, channel ``j``
    ranges over ``[ma_j * lo_a_j + mb_j * lo_b_j, ma_j * hi_a_j + mb_j * hi_b_j]``, reached by both inputs
    at their extremes (each input ranging independently over its type or its producer's exact range).
    The report's ``alignment`` says what the multipliers cost per input. Raises :class:`A2QError` when
    the exact sum needs more than 64 bits."""
    ranges = [operand_range(model, t) for t in op.inputs]
    mults = [op.multiplier(k) for k in range(2)]
    lo = mults[0] * ranges[0][0] + mults[1] * ranges[1][0]
    hi = mults[0] * ranges[0][1] + mults[1] * ranges[1][1]
    alignment = []
    for k, t in enumerate(op.inputs):
        odd, shift = op.multiplier_parts(k)
        alignment.append({
            "input": t,
            "input_bits": int(bounds.signed_bits_for_range(ranges[k][0], ranges[k][1]).max()),
            "multiplier_bits": int(max(int(m).bit_length() for m in mults[k])),
            "odd_bits": int(odd),
            "shift": int(shift),
            "aligned_bits": int(bounds.signed_bits_for_range(mults[k] * ranges[k][0], mults[k] * ranges[k][1]).max()),
        })
    rep = _report(lo, hi, alignment)
    w = rep.worst_channel
    rep.adversarial_max = np.asarray([ranges[0][1][w], ranges[1][1][w]], dtype=object)
    rep.adversarial_min = np.asarray([ranges[0][0][w], ranges[1][0][w]], dtype=object)
    if rep.acc_bits > 64:
        from ..errors import A2QError

        raise A2QError(
            f"{op.op} '{op.name}': the exact sum of its inputs aligned to a common scale needs a {rep.acc_bits}-bit accumulator "
            f"(multipliers of {alignment[0]['multiplier_bits']} and {alignment[1]['multiplier_bits']} bits), above 64 bits; "
            "quantize both branches with one shared quantizer (same scale), or with scales closer together"
        )
    return rep


def size_pool_of_acc(op, model: Model) -> AccumulatorReport:
    """An average pool whose input is an accumulator with exact per-channel range ``[lo_j, hi_j]``: a window
    of ``n`` real taps (padding adds 0) sums to ``[n * lo_j, n * hi_j]``; extremes over the window masks."""
    lo_in, hi_in = operand_range(model, op.inputs[0])
    counts = sorted({int(m.sum()) for m in op.window_masks()})
    lo = np.asarray([min(n * int(v) for n in counts) for v in lo_in], dtype=object)
    hi = np.asarray([max(n * int(v) for n in counts) for v in hi_in], dtype=object)
    rep = _report(lo, hi)
    w = rep.worst_channel
    rep.adversarial_max = np.full(op.K, hi_in[w], dtype=object)
    rep.adversarial_min = np.full(op.K, lo_in[w], dtype=object)
    return rep


def _size_op(model: Model, op) -> AccumulatorReport:
    if isinstance(op, Add):
        return size_add(op, model)
    if model.tensors[op.inputs[0]].dtype is None:  # an average pool of accumulators
        return size_pool_of_acc(op, model)
    return size_layer(op, model.tensors[op.inputs[0]].dtype)


def size_accumulators(model: Model) -> Model:
    """Fill ``op.acc`` for every op of ``model`` that owns an accumulator (in place, in topological
    order: an add or a pool of accumulators reads its producers' reports) and return it."""
    for op in model.accumulating_ops():
        op.acc = _size_op(model, op)
    return model


def acc_range(model: Model, op) -> tuple[int, int]:
    """Exact accumulator range ``(min, max)`` over all channels of an accumulating op
    (Dense, Conv, average Pool, Add; from its sizing report, sized here if absent)."""
    rep = op.acc if op.acc is not None else _size_op(model, op)
    return int(rep.acc_min), int(rep.acc_max)
