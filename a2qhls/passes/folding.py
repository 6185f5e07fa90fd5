"""Folding of each layer's matrix-vector unit over PE output rows and SIMD input columns.

A layer with ``MH`` output channels and ``MW`` inputs uses ``PE`` parallel rows and
``SIMD`` parallel columns (``MH % PE == 0``, ``MW % SIMD == 0``) and needs
``(MH / PE) * (MW / SIMD)`` cycles per input vector at II=1.

Default policy (:func:`default_folding`), balanced dataflow at bounded cost:

1. every layer gets the largest ``SIMD`` dividing ``MW`` and the largest ``PE`` dividing
   ``MH`` that are ``<= MAX_PAR`` (16); the slowest layer then sets the pipeline's
   cycles per vector, ``target``;
2. every other layer is slowed down to the cheapest folding (least ``PE * SIMD``,
   ties: larger SIMD, then fewer cycles) whose cycle count is still ``<= target``,
   since being faster than the bottleneck only costs multipliers.

A convolution is a matrix-vector unit run once per output pixel: ``MH = C_out`` (PE folds
output channels), ``MW = K = kh * kw * C_in`` (SIMD folds the window, which its sliding-window
generator streams ``SIMD`` values per word), ``OH * OW * (MH / PE) * (MW / SIMD)`` cycles per
image. A depthwise convolution is a vector-vector unit: PE folds the channels, SIMD the
``kh * kw`` taps, ``OH * OW * (C / PE) * (kh * kw / SIMD)`` cycles per image. The policy
balances cycles per image.

A folding file (``--folding F.json``) maps layer names to ``{"PE": p, "SIMD": s}``;
layers it leaves out keep their default. :func:`apply_folding` records the decision in the IR
(``op.pe``, ``op.simd`` of every Dense/Conv), where code generation reads it.
"""
from __future__ import annotations

import json

from ..errors import A2QError
from ..ir import Model

MAX_PAR = 16

__all__ = ["MAX_PAR", "divisors", "default_folding", "validate_folding", "load_folding", "apply_folding", "folding_of", "cycles", "layer_cycles"]


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def cycles(MH: int, MW: int, pe: int, simd: int) -> int:
    return (MH // pe) * (MW // simd)


def pixels(layer) -> int:
    """Output pixels per image: 1 for a dense layer."""
    shape = getattr(layer, "out_shape", None)
    return int(shape[0] * shape[1]) if shape is not None else 1


def layer_cycles(layer, pe: int, simd: int) -> int:
    """Compute cycles per image of a Dense or Conv layer at this folding (II=1)."""
    return pixels(layer) * cycles(layer.channels, layer.K, pe, simd)


def default_folding(model: Model) -> dict:
    """Layer name -> ``{"PE": p, "SIMD": s}`` following the policy above."""
    layers = model.layers()
    first = {}
    for d in layers:
        pe = max(x for x in divisors(d.channels) if x <= MAX_PAR)
        simd = max(x for x in divisors(d.K) if x <= MAX_PAR)
        first[d.name] = (pe, simd)
    target = max(layer_cycles(d, *first[d.name]) for d in layers)
    out = {}
    for d in layers:
        best = None
        for pe in divisors(d.channels):
            if pe > MAX_PAR:
                continue
            for simd in divisors(d.K):
                if simd > MAX_PAR:
                    continue
                c = layer_cycles(d, pe, simd)
                if c > target:
                    continue
                key = (pe * simd, -simd, c)
                if best is None or key < best[0]:
                    best = (key, pe, simd)
        out[d.name] = {"PE": best[1], "SIMD": best[2]}
    return out


def validate_folding(model: Model, folding: dict, source: str = "folding") -> dict:
    """Check a complete or partial folding; returns the complete one (defaults filled in)."""
    if not isinstance(folding, dict):
        raise A2QError(f"{source}: expected a JSON object mapping layer names to {{\"PE\": p, \"SIMD\": s}}")
    layers = {d.name: d for d in model.layers()}
    order = list(layers)
    resolved = {}
    for key, spec in folding.items():
        name = key
        if key not in layers:  # 'layerN' or 'N': the N-th Dense/Conv layer, as for --acc-bits
            k = key[5:] if isinstance(key, str) and key.startswith("layer") else key
            if isinstance(k, str) and k.isascii() and k.isdigit() and int(k) < len(order):
                name = order[int(k)]
            else:
                raise A2QError(f"{source}: unknown layer '{key}' (layers: {', '.join(layers)}, or layer0..layer{len(order) - 1})")
        if name in resolved:
            raise A2QError(f"{source}: layer '{name}' is given twice")
        resolved[name] = spec
    out = default_folding(model)
    for name, spec in resolved.items():
        d = layers[name]
        if not isinstance(spec, dict) or set(spec) - {"PE", "SIMD"}:
            raise A2QError(f"{source}: layer '{name}': expected {{\"PE\": p, \"SIMD\": s}}, got {json.dumps(spec)}")
        dw = getattr(d, "depthwise", False)
        mw_what = "kernel taps (kh*kw)" if dw else ("window inputs (MW = kh*kw*C_in)" if hasattr(d, "kernel") else "inputs (MW)")
        for key, n, what in (("PE", d.channels, "channels" if dw else "output channels (MH)"), ("SIMD", d.K, mw_what)):
            if key not in spec:
                continue
            v = spec[key]
            valid = divisors(n)
            if isinstance(v, bool) or not isinstance(v, int) or v not in valid:
                raise A2QError(
                    f"{source}: layer '{name}': {key}={json.dumps(v)} must divide its {n} {what}; "
                    f"valid {key} values: {', '.join(map(str, valid))}"
                )
            out[name][key] = v
    return out


def load_folding(model: Model, path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise A2QError(f"{path}: no such folding file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise A2QError(f"{path}: not a valid JSON folding file ({e})") from None
    return validate_folding(model, data, str(path))


def apply_folding(model: Model, folding: dict | None = None) -> Model:
    """Record every layer's folding in the IR (``op.pe``, ``op.simd``; in place); returns ``model``.

    ``folding``: a complete or partial ``{LAYER: {"PE": p, "SIMD": s}}`` (LAYER: a layer's name,
    ``layerN`` or ``N``; checked by
    :func:`validate_folding`, which raises :class:`A2QError`); layers it leaves out get the
    default policy's folding.
    """
    full = validate_folding(model, folding) if folding is not None else default_folding(model)
    given = set(_names(model, folding)) if folding else set()
    for d in model.layers():
        d.pe, d.simd = int(full[d.name]["PE"]), int(full[d.name]["SIMD"])
        d.folding_overridden = d.name in given
    return model


def _names(model: Model, folding: dict) -> list:
    """The layer names a (validated) folding's keys refer to."""
    order = [d.name for d in model.layers()]
    out = []
    for key in folding:
        if key in order:
            out.append(key)
        else:
            k = key[5:] if key.startswith("layer") else key
            out.append(order[int(k)])
    return out


def folding_of(model: Model) -> dict:
    """The folding recorded in the IR, as ``{layer name: {"PE": p, "SIMD": s}}``."""
    return {d.name: {"PE": d.pe, "SIMD": d.simd} for d in model.layers()}
