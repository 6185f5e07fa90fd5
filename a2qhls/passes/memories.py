"""Where each layer's weights live: on chip (ROMs, the default) or streamed from outside.

A layer whose weights do not fit the part's memories can read them, instead, from an extra
AXI-stream port of the top function, in the order its matrix unit consumes them (FINN's
``mem_mode=external``): one beat per iteration of the unit's NF*SF loop, i.e. ``NF * SF`` beats
per input vector, repeated for every output pixel of a convolution. The beat layout is
:class:`a2qhls.codegen.WeightPort` (recorded in ``a2qhls.json``, ``interface.weights``).

:func:`apply_stream_weights` records the decision in the IR (``op.weights_external`` of every
Dense/Conv), where code generation reads it.
"""
from __future__ import annotations

from typing import Optional, Union

from ..errors import A2QError
from ..ir import Model

__all__ = ["AUTO", "wants_auto", "check_stream_weights", "resolve_stream_weights", "auto_stream_weights",
           "apply_stream_weights"]

AUTO = "auto"  # the --stream-weights value that lets the estimate pick the layers
_AUTO_ALONE = ("--stream-weights: auto must stand alone (it picks the layers itself); "
               "give either auto or a list of layers")


def _items(spec: Union[str, list, tuple]) -> list:
    """The names of a ``--stream-weights`` specification: split at commas (a string), stripped."""
    return [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]


def wants_auto(spec: Union[str, list, tuple, None]) -> bool:
    """Whether a ``--stream-weights`` specification is ``"auto"`` (a string, spaces around allowed):
    the layers are then chosen by :func:`auto_stream_weights`."""
    return isinstance(spec, str) and spec.strip() == AUTO


def check_stream_weights(spec: Union[str, list, tuple, None]) -> None:
    """The model-free checks of a ``--stream-weights`` specification (before anything is read): no
    empty layer name, ``auto`` alone. Raises :class:`A2QError` (one line)."""
    if spec is None:
        return
    items = _items(spec)
    if not items or any(not x for x in items):
        raise A2QError(f"--stream-weights: empty layer name (expected LAYER[,LAYER...] or {AUTO})")
    if AUTO in items and len(items) > 1:
        raise A2QError(_AUTO_ALONE)


def resolve_stream_weights(model: Model, spec: Union[str, list, tuple, None]) -> list:
    """The layer names a ``--stream-weights`` specification names: ``"layer0,layer3"`` or a list
    of names, ``layerN`` or ``N`` (the N-th Dense/Conv layer, as for ``--acc-bits``); ``auto`` is
    resolved by :func:`auto_stream_weights`, not here. Raises :class:`A2QError` for an unknown layer
    or a depthwise layer (its vector unit keeps its taps on chip)."""
    if spec is None:
        return []
    items = _items(spec)
    layers = model.layers()
    by_name = {d.name: d for d in layers}
    out = []
    for key in items:
        if not key:
            continue
        d = by_name.get(key)
        if d is None:
            k = key[5:] if key.startswith("layer") else key
            if k.isascii() and k.isdigit() and int(k) < len(layers):
                d = layers[int(k)]
        if d is None and key == AUTO:  # a direct call without check_stream_weights, or a list ["auto"] (auto is a string)
            raise A2QError(_AUTO_ALONE)
        if d is None:
            raise A2QError(f"--stream-weights: unknown layer '{key}' (layers: {', '.join(by_name)}, or layer0..layer{len(layers) - 1}, or auto)")
        if getattr(d, "depthwise", False):
            raise A2QError(f"--stream-weights: layer '{d.name}' is depthwise; only Dense and (non-depthwise) Conv layers can stream their weights")
        if d.name not in out:
            out.append(d.name)
    return out


def auto_stream_weights(model: Model, part: str) -> list:
    """Layers to stream so that the design's BRAM estimate fits ``part``: while the whole design's
    BRAM18 (and URAM) estimate exceeds the part's, the on-chip layer whose weight memories take the
    most BRAM18 is streamed instead (greedy, largest first). Needs folding and widths recorded
    (run after the folding step). Returns the names (empty when everything fits)."""
    from .. import codegen, estimate

    _, cap = estimate.part_capacity(part)
    chosen: list = []
    while True:
        units = codegen.plan(model)
        total = codegen.design_estimate(units)["total"]
        if total["BRAM18"] <= cap["BRAM18"] and total["URAM"] <= cap["URAM"]:
            return chosen
        cands = [u for u in units if u.kind in ("mvu", "conv") and not u.w_stream]
        if not cands:
            return chosen
        bram, big = max(((estimate.weight_memory_cost(u).BRAM18, u) for u in cands), key=lambda p: (p[0], p[1].MH * p[1].MW))
        if bram == 0:
            return chosen
        big.dense.weights_external = True
        chosen.append(big.dense.name)


def apply_stream_weights(model: Model, spec: Union[str, list, tuple, None], part: Optional[str] = None) -> list:
    """Record which layers stream their weights (``op.weights_external``; in place): ``spec`` as
    for :func:`resolve_stream_weights`, or ``"auto"``: :func:`auto_stream_weights` on ``part``.
    Every other layer keeps its weights on chip. Returns the streamed layers' names."""
    for d in model.layers():
        d.weights_external = False
    if wants_auto(spec):
        from ..codegen import DEFAULT_PART

        return auto_stream_weights(model, part or DEFAULT_PART)
    names = resolve_stream_weights(model, spec)
    for d in model.layers():
        d.weights_external = d.name in names
    return names
