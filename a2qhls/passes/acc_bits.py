"""The accumulator width each op is built with: a build decision, stored in the IR.

After :func:`~a2qhls.passes.accumulator.size_accumulators` has derived every accumulating op's
safe width (``op.acc.acc_bits``), :func:`apply_acc_bits` records on each op the width the
hardware uses (``op.acc_bits``): the safe width, or a user override (``op.acc_bits_overridden``).
Thresholds, code generation, the build summary and the bit-accurate model read ``op.acc_bits``
through :func:`built_acc_bits`; none of them takes the override as a parameter.
"""
from __future__ import annotations

import numpy as np

from .. import bounds
from ..errors import A2QError
from ..ir import Model

# The smallest accumulator the hardware uses is 1 bit (ap_int<1>, values -1 and 0): the exact width of a
# layer whose integer weights and bias are all zero. Safe widths and --acc-bits overrides share these bounds.
MIN_ACC_BITS, MAX_ACC_BITS = 1, 64

__all__ = ["MIN_ACC_BITS", "MAX_ACC_BITS", "parse_acc_bits", "apply_acc_bits", "built_acc_bits"]


def parse_acc_bits(model: Model, specs) -> dict:
    """``["LAYER=BITS", ...]`` (the command line's ``--acc-bits``) -> ``{op name: bits}``.

    LAYER is the name of any op with an accumulator (layer, average pool, residual add), or
    ``layerN`` / ``N`` for the N-th Dense/Conv layer. Raises :class:`A2QError` on a malformed
    spec, an unknown layer or a width outside ``MIN_ACC_BITS..MAX_ACC_BITS``.
    """
    layers = model.layers()
    acc_ops = model.accumulating_ops()
    out = {}
    for spec in specs:
        if "=" not in spec:
            raise A2QError(f"--acc-bits '{spec}': expected LAYER=BITS")
        key, _, bits = spec.rpartition("=")
        if not (bits.isascii() and bits.isdigit() and len(bits) <= 3):
            raise A2QError(f"--acc-bits '{spec}': BITS must be an integer written with ASCII digits 0-9")
        if not key.isascii() and not any(d.name == key for d in acc_ops):
            raise A2QError(f"--acc-bits '{spec}': unknown layer '{key}' (LAYER: a layer name, layerN or N with ASCII digits)")
        b = int(bits)
        match = [d for d in acc_ops if d.name == key]
        if not match and key.isascii() and key.isdigit() and len(key) <= 9 and int(key) < len(layers):
            match = [layers[int(key)]]
        if not match and key.startswith("layer") and key[5:].isascii() and key[5:].isdigit() and len(key) <= 14 and int(key[5:]) < len(layers):
            match = [layers[int(key[5:])]]
        if not match:
            raise A2QError(f"--acc-bits '{spec}': unknown layer '{key}' (layers: {', '.join(d.name for d in acc_ops)}, or layer0..layer{len(layers) - 1})")
        if not MIN_ACC_BITS <= b <= MAX_ACC_BITS:
            raise A2QError(f"--acc-bits '{spec}': width must be in {MIN_ACC_BITS}..{MAX_ACC_BITS}")
        if match[0].name in out:
            raise A2QError(f"--acc-bits '{spec}': layer '{match[0].name}' is given twice")
        out[match[0].name] = b
    return out


def _safe_bits(model: Model, op) -> int:
    if op.acc is not None:
        return int(op.acc.acc_bits)
    from .accumulator import acc_range

    lo, hi = acc_range(model, op)
    return int(bounds.signed_bits_for_range(lo, hi))


def apply_acc_bits(model: Model, overrides: dict | None = None) -> Model:
    """Record on every accumulating op the width it is built with (in place); returns ``model``.

    ``overrides``: ``{op name: bits}``; ops it does not name get their safe width. Raises
    :class:`A2QError` for an unknown op name or a width outside ``MIN_ACC_BITS..MAX_ACC_BITS``.
    """
    overrides = dict(overrides or {})
    ops = model.accumulating_ops()
    names = {d.name for d in ops}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise A2QError(f"--acc-bits: unknown layer '{unknown[0]}' (layers: {', '.join(d.name for d in ops)})")
    for d in ops:
        if d.name in overrides:
            p = overrides[d.name]
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
                raise A2QError(f"--acc-bits: width {p!r} for layer '{d.name}' is not an integer")
            p = int(p)
            if not MIN_ACC_BITS <= p <= MAX_ACC_BITS:
                raise A2QError(f"--acc-bits: width {p} for layer '{d.name}' is outside {MIN_ACC_BITS}..{MAX_ACC_BITS}")
            d.acc_bits, d.acc_bits_overridden = p, True
        else:
            d.acc_bits, d.acc_bits_overridden = _safe_bits(model, d), False
    return model


def built_acc_bits(model: Model) -> dict:
    """Accumulating op name -> the width it is built with: ``op.acc_bits`` where
    :func:`apply_acc_bits` decided it, else the safe width (the default decision)."""
    return {d.name: int(d.acc_bits) if d.acc_bits is not None else _safe_bits(model, d) for d in model.accumulating_ops()}
