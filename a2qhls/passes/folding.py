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
   since being faster than the bottleneck only costs multipliers. A convolution first
   prefers a folding where the one-loop window generator applies (:func:`one_loop_swg`:
   ``SIMD`` dividing ``C_in``; depthwise: ``SIMD = 1``, PE over channels), since the row-buffer
   fallback keeps its rows in registers (refused above ``SWG_REGISTER_BITS_MAX`` bits, and then
   never chosen: the fastest one-loop folding is taken even when slower than ``target``). A
   (non-depthwise) convolution's ``SIMD`` dividing ``C_in`` (:func:`one_loop_swg`):
   its window words then never straddle two pixels and the one-loop sliding-window generator
   applies (finn-hlslib's ``ConvolutionInputGenerator`` asserts the same); only when no such
   folding meets ``target`` (e.g. ``C_in = 1`` on the slowest layer) is the cheapest other taken.

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

import contextlib
import json
import math

from ..errors import A2QError
from ..ir import Model

MAX_PAR = 16
# The row-buffer (read-then-emit) window generator keeps its ``kh`` input rows in registers (a complete
# partition, any number of reads per cycle): at most this many bits (``kh * W * C_in * bits``); a
# folding needing more is refused (:func:`fallback_buffer_bits`, :func:`a2qhls.codegen.plan`).
SWG_REGISTER_BITS_MAX = 16384

__all__ = ["MAX_PAR", "SWG_REGISTER_BITS_MAX", "divisors", "default_folding", "one_loop_swg", "fallback_buffer_bits", "validate_folding", "load_folding", "apply_folding", "folding_of",
           "cycles", "layer_cycles", "fold_to_cycles", "fold_to_budget", "fps_to_cycles"]


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


def one_loop_swg(layer, simd: int) -> bool:
    """True when the one-loop (streaming) window generator applies at this ``simd``
    (:attr:`a2qhls.codegen.LayerPlan.swg_streaming`): a Conv with ``simd`` dividing ``C_in``, a
    depthwise Conv with ``simd == 1`` (PE over channels); always for Dense layers (no generator)."""
    if not hasattr(layer, "kernel"):
        return True
    if getattr(layer, "depthwise", False):
        return int(simd) == 1
    return int(layer.in_shape[2]) % int(simd) == 0


def fallback_buffer_bits(layer, bits: int) -> int:
    """Bits of the row-buffer window generator's register line buffer: ``kh * W * C_in * bits``
    (``bits``: a window value's width, the input's plus one for a nonzero zero-point)."""
    H, W, C = (int(x) for x in layer.in_shape)
    return int(layer.kernel[0]) * W * C * int(bits)


def _window_bits(model: Model, layer) -> int:
    """A bound of a window value's width at the folding step: the input's stored width plus one
    (``q - zp``), or 33 for an accumulator input whose width is not decided yet."""
    t = model.tensors[layer.inputs[0]]
    return (t.dtype.bits + 1) if t.dtype is not None else 33


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
        best = fastest = None
        regs_ok = not hasattr(d, "kernel") or fallback_buffer_bits(d, _window_bits(model, d)) <= SWG_REGISTER_BITS_MAX
        for pe in divisors(d.channels):
            if pe > MAX_PAR:
                continue
            for simd in divisors(d.K):
                if simd > MAX_PAR:
                    continue
                one = one_loop_swg(d, simd)
                if not one and not regs_ok:
                    continue  # the fallback's register buffer would be refused: one-loop foldings only
                c = layer_cycles(d, pe, simd)
                if fastest is None or (c, pe * simd) < fastest[0]:
                    fastest = ((c, pe * simd), pe, simd)
                if c > target:
                    continue
                key = (not one, pe * simd, -simd, c)
                if best is None or key < best[0]:
                    best = (key, pe, simd)
        best = best or fastest  # no one-loop folding reaches the target and the fallback is too big
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
    """Read a folding file (JSON; size and nesting limited, see :func:`a2qhls.files.load_json_file`)."""
    from ..files import load_json_file

    return validate_folding(model, load_json_file(path, "JSON folding file"), str(path))


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


# ---------------------------------------------------------------- folding to a target


def _cost_key(c) -> tuple:
    """Cheapest first: LUTs, then BRAM18, DSP, FF."""
    return (c.LUT, c.BRAM18, c.DSP, c.FF)


def _swg_cycles_bound(u) -> int:
    """A lower bound of a window generator's cycles per image without running its schedule: the
    one-loop generator (SIMD | C_in, depthwise SIMD 1: input words of ``V`` channels) reads every
    input word and emits every window word, at most one of each per iteration; the row-buffer
    fallback reads (``IPB`` per word, as planned) and then emits, so it takes their sum."""
    H, W, C = u.in_shape
    kh, kw = u.kernel
    if one_loop_swg(u.dense, u.SIMD):
        V = u.SIMD if u.kind == "conv" else u.PE
        return max(H * W * C // V, u.pixels * kh * kw * C // V)
    return H * W * C // u.IPB + u.pixels * kh * kw * C // u.OPB


# the words of :func:`a2qhls.codegen.word_widths` (C++ type ``<unit>_<suffix>``) in an error message
_WORD_NAMES = {"in_word": "input word", "inb_word": "second input word", "win_word": "window word",
               "w_beat": "streamed-weight beat", "out_word": "output word"}


def _word_bits(u, in_port_slot: int | None, out_port_slot: int | None) -> tuple:
    """``(name, bits)`` of the widest word unit ``u``'s own folding sets: its packed words as code
    generation declares them (:func:`a2qhls.codegen.word_widths`: input, window, output words and a
    streamed-weight beat), and, with the default bus, the top's AXI-stream port it feeds or is fed by
    (``*_port_slot``: an element's whole-byte slot, else None; :func:`a2qhls.codegen.axis_ports`)."""
    from .. import codegen

    words = [(_WORD_NAMES.get(name[len(u.cname) + 1:], name), bits) for name, bits in codegen.word_widths([u])]
    if in_port_slot:
        words.append(("AXI-stream input port", u.IPB * in_port_slot))
    if out_port_slot:
        words.append(("AXI-stream output port", u.PE * out_port_slot))
    return max(words, key=lambda w: w[1])


def _candidates(lp, in_port_slot: int | None = None, out_port_slot: int | None = None, streamed: bool = False) -> list:
    """Every legal ``(cycles, cost, PE, SIMD)`` of one Dense/Conv unit (all divisors, no cap) whose
    words fit the 4096-bit limit (:data:`a2qhls.codegen.AP_INT_LIMIT_W`; :func:`_word_bits`, with the
    ports' slots as for :func:`_word_bits`; ``streamed``: its weights may stream in, so its weight beat
    counts too), the unit's other fields (types) as planned. Cycles: compute,
    and for a convolution its window generator's (:func:`_swg_cycles_bound`; :func:`fold_to_cycles`
    then checks the exact schedule)."""
    import dataclasses

    from .. import codegen, estimate

    out = []
    for pe in divisors(lp.MH):
        for simd in divisors(lp.MW):
            u = dataclasses.replace(lp, PE=pe, SIMD=simd)
            if lp.kind in ("conv", "dw") and not one_loop_swg(lp.dense, simd) and \
                    fallback_buffer_bits(lp.dense, lp.win_t.bits) > SWG_REGISTER_BITS_MAX:
                continue  # the row-buffer generator's register buffer is over the limit (refused by codegen.plan)
            C = lp.in_shape[2] if lp.kind in ("conv", "dw") else 0
            v = pe if lp.kind == "dw" else simd
            if C and one_loop_swg(lp.dense, simd) and C % lp.IPB == 0 and C % v == 0:
                u.IPB = v  # the plan converts the input words for the one-loop generator (codegen.plan)
            if lp.kind == "conv":
                u.OPB = simd
            elif lp.kind == "dw":
                u.OPB = pe * simd
            elif lp.kind == "mvu":
                u.IPB = simd  # the plan repacks the unit's input to SIMD elements a word (codegen.plan)
            wu = dataclasses.replace(u, w_stream=True) if streamed and not u.w_stream else u
            if _word_bits(wu, in_port_slot, out_port_slot)[1] > codegen.AP_INT_LIMIT_W:
                continue  # a stream word or the default bus's port above 4096 bits: cannot be built
            cyc = u.cycles
            if lp.kind in ("conv", "dw"):
                cyc = max(cyc, _swg_cycles_bound(u))
            out.append((cyc, estimate.unit_cost(u), pe, simd))
    return out


def _plan(model: Model, folding: dict) -> list:
    """The code generator's units with ``folding`` recorded on the IR (:func:`apply_folding`)."""
    from .. import codegen

    apply_folding(model, folding)
    return codegen.plan(model)


def _base_plan(model: Model) -> list:
    """The code generator's units at the default folding, or, when code generation refuses that one (a
    word above 4096 bits), at ``PE = SIMD = 1`` everywhere (the narrowest words): the types and shapes
    :func:`_layer_candidates` reads. Raises the default folding's :class:`A2QError` when both are refused."""
    try:
        return _plan(model, default_folding(model))
    except A2QError as e:
        try:
            return _plan(model, {d.name: {"PE": 1, "SIMD": 1} for d in model.layers()})
        except A2QError:
            raise e from None


def _buildable(model: Model, folding: dict, bus_bits: int | None) -> list:
    """The code generator's units at ``folding``, checked as a build checks them: :func:`a2qhls.codegen.plan`
    (every packed stream word, :func:`a2qhls.codegen.widest_word`: the units' own, the pools, adds, forks
    and width converters their words reach, streamed-weight beats) and the top's AXI-stream ports
    (:func:`a2qhls.codegen.axis_ports` on ``bus_bits``). Raises code generation's :class:`A2QError`."""
    from .. import codegen

    units = _plan(model, folding)
    codegen.axis_ports(units, bus_bits)
    return units


def _streamed(model: Model, stream_weights) -> set:
    """The layers whose weights stream in: those a ``--stream-weights`` list names
    (:func:`a2qhls.passes.memories.resolve_stream_weights`; ``auto`` names none here, see
    :func:`_with_streams`), plus those the IR already marks (``op.weights_external``)."""
    from .memories import resolve_stream_weights, wants_auto

    marked = {d.name for d in model.layers() if getattr(d, "weights_external", False)}
    return marked if wants_auto(stream_weights) else marked | set(resolve_stream_weights(model, stream_weights))


def _with_streams(model: Model, search, stream_weights, part: str | None):
    """``search(streamed, limit)`` (a folding search counting the streamed-weight beats of the layers in
    ``streamed``, within ``limit`` cycles per image too when not None, recording its folding on the IR)
    with the layers ``stream_weights`` streams: a list is known before folding; ``auto`` is decided on
    the folding (:func:`a2qhls.passes.memories.auto_stream_weights` on ``part``), so when the layers it
    streams at the folding found have a beat code generation refuses (auto plans the design with them:
    :func:`a2qhls.codegen.plan`), the search runs again counting them too, until it does not (at most
    once per layer). When that fails (counting their beats, no folding is fast enough), faster foldings
    with those layers' weights on chip are tried (each search within one cycle less than the last
    folding found: a wider folding needs fewer, shallower weight memories, so auto may stream none);
    the first that auto accepts is returned, else the first error is raised. Leaves
    ``op.weights_external`` as it found it."""
    from .. import codegen
    from .memories import apply_stream_weights, wants_auto

    streamed = _streamed(model, stream_weights)
    if not wants_auto(stream_weights):
        return search(streamed, None)
    on_chip = set(streamed)
    before = {d.name: getattr(d, "weights_external", False) for d in model.layers()}

    def accepted() -> bool:
        """Whether auto streams only layers whose beat code generation accepts at the IR's folding; else
        the layers it streams are left in ``names``, code generation's error in ``refusal``."""
        nonlocal names, refusal
        try:
            apply_stream_weights(model, stream_weights, part)  # what the memories step will choose
            return True  # auto plans the design with each layer it streams (codegen.plan): every beat fits
        except A2QError as e:  # the last layer it chose (marked) has a beat code generation refuses
            names, refusal = {d.name for d in model.layers() if d.weights_external}, e
            return False
        finally:
            for d in model.layers():
                d.weights_external = before[d.name]

    def cycles_now() -> int:
        return max(u.stage_cycles for u in codegen.plan(model))

    names: set = set()
    refusal = None
    result = search(streamed, None)
    refused_at = None  # cycles per image of the first folding found, whose streamed layers' beats are refused
    try:
        while True:
            if accepted():
                return result
            if refused_at is None:
                refused_at = cycles_now()
            if names <= streamed:
                raise refusal
            streamed |= names
            result = search(streamed, None)
    except A2QError as e:
        first = e
    limit = refused_at - 1  # faster foldings, weights on chip unless auto streams them
    while limit >= 1:
        try:
            result = search(on_chip, limit)
        except A2QError:
            break
        if accepted():
            return result
        limit = cycles_now() - 1
    raise first


def _layer_candidates(units: list, bus_bits: int | None = None, streamed=()) -> dict:
    """Layer name -> ``(unit, its candidates)`` for the Dense/Conv units of ``units`` (``w_stream`` set for
    a layer in ``streamed``), a plan at the
    default folding: their types and shapes, which do not depend on their own folding. Only foldings
    whose own words fit 4096 bits are candidates (a layer in ``streamed`` counting its streamed-weight
    beat); with the default bus (``bus_bits`` None) also the top's
    AXI-stream port: the first unit's input word (a vector input, SIMD elements a word) and the last
    unit's output word, each element in whole bytes (:func:`a2qhls.codegen.axis_ports`). A given
    ``bus_bits`` is checked first against the ports' element widths (:func:`a2qhls.codegen.axis_ports`,
    whose error names ``--bus-bits``). Words that depend on several layers' foldings (a width
    converter between two layers, a pool or add carrying a layer's words) are checked on the whole
    design by :func:`_fold_to_cycles`."""
    import dataclasses

    from .. import codegen

    if bus_bits is not None:  # the option's own error, before the search could report a level as unbuildable
        codegen.axis_ports(units, bus_bits)
    first, last = units[0], units[-1]
    out = {}
    for u in units:
        if u.has_weights:
            in_slot = u.in_t.slot_bits if bus_bits is None and u is first and u.kind == "mvu" else None
            out_slot = u.out_t.slot_bits if bus_bits is None and u is last else None
            streams = u.dense.name in streamed and u.kind != "dw"
            cs = _candidates(u, in_slot, out_slot, streams)
            if not cs:
                u1 = dataclasses.replace(u, PE=1, SIMD=1, IPB=1, OPB=1, w_stream=u.w_stream or streams)
                what, bits = _word_bits(u1, in_slot, out_slot)
                raise A2QError(f"layer '{u.dense.name}': no PE/SIMD folding can be built: even PE=1, SIMD=1 needs a {what} "
                               f"of {bits} bits, above the 4096-bit limit")
            out[u.dense.name] = (dataclasses.replace(u, w_stream=True) if streams and not u.w_stream else u, cs)
    return out


def fold_to_cycles(model: Model, target: int, *, clock_mhz: float | None = None, bus_bits: int | None = None,
                   stream_weights=None, part: str | None = None, target_fps: float | None = None) -> dict:
    """Per layer, the cheapest folding (by :mod:`a2qhls.estimate`: LUTs, then BRAM18, DSP, FF;
    ties: larger SIMD) whose cycles per image are at most ``target``, among every legal ``PE``/``SIMD``
    (divisors of MH/MW, no cap) whose stream words fit 4096 bits, and with the default bus
    (``bus_bits`` None) the top's AXI-stream ports too (:func:`_layer_candidates`); the design at the
    chosen folding is then checked as a build checks it (:func:`_buildable`: the words of width converters,
    pools, adds and forks too), and a layer whose folding it refuses moves to its next cheapest: a
    folding code generation would refuse is never returned. ``stream_weights`` (``--stream-weights``:
    layers, or ``auto``, then decided on ``part``: :func:`_with_streams`) counts those layers'
    streamed-weight beats. Every layer meeting one target balances the pipeline; a layer's
    output stream then also feeds its readers (pools, adds, forks, window generators) within the
    target, since it writes at most one word per compute cycle.

    Reads the built accumulator widths and thresholds from the IR (run after the ``thresholds``
    step); records the folding on the IR (:func:`apply_folding`) and returns it as
    ``{layer: {"PE", "SIMD"}}``. Raises :class:`A2QError` naming the first layer that cannot reach
    ``target`` and the best it can do (in images/s too, given ``clock_mhz``), prefixed with the
    throughput it came from when ``target_fps`` is given; a bad ``bus_bits`` is its own error.
    """

    def search(streamed, limit):
        cands = _layer_candidates(_base_plan(model), bus_bits, streamed)
        with _for_target(target_fps, clock_mhz, target):
            return _fold_to_cycles(model, target if limit is None else min(target, limit), clock_mhz, cands, bus_bits)[0]

    return _with_streams(model, search, stream_weights, part)


@contextlib.contextmanager
def _for_target(fps: float | None, clock_mhz: float | None, cycles: int | None):
    """Prefixes an :class:`A2QError` raised inside with the throughput target it came from:
    ``--target-fps F at C MHz allows N cycles per image; ...`` (nothing when ``fps`` is None)."""
    try:
        yield
    except A2QError as e:
        if fps is None:
            raise
        raise A2QError(f"--target-fps {fps:g} at {clock_mhz:g} MHz allows {cycles} cycles per image; {e}") from None


def _refusals(model: Model, folding: dict, bus_bits: int | None, cands: dict) -> list:
    """Why code generation refuses ``folding`` (:func:`_buildable`), as ``[(layer, "PE" | "SIMD" | None)]``,
    the values one could move to build it, best first. With the layers before ``L`` (dataflow order)
    at their folding and ``L`` and those after it at ``PE = SIMD = 1`` (the narrowest words) the design
    builds, and with ``L`` at its folding too it does not: ``L``'s words (with those its earlier
    layers' reach it with, through a width converter, pool or add) are refused. The candidates:
    ``L``'s PE or SIMD, when setting it to 1 builds; then an earlier layer's PE (the producer of words
    a width converter in front of ``L`` widens), when setting it to 1 builds; else ``(L, None)``: that
    PE/SIMD pair. Empty when no layer's folding is the cause: the design builds with every layer at its
    folding, or not even with every layer at ``PE = SIMD = 1``."""

    def builds(f) -> bool:
        try:
            _buildable(model, f, bus_bits)
        except A2QError:
            return False
        return True

    names = list(cands)
    one = {"PE": 1, "SIMD": 1}
    for k in range(len(names) + 1):
        trial = {n: (folding[n] if i < k else one) for i, n in enumerate(names)}
        if not builds(trial):
            break
    else:
        return []
    if k == 0:
        return []
    L = names[k - 1]
    out = [(L, key) for key in ("PE", "SIMD") if trial[L][key] != 1 and builds({**trial, L: {**trial[L], key: 1}})]
    out += [(n, "PE") for n in names[:k - 1] if trial[n]["PE"] != 1 and builds({**trial, n: {**trial[n], "PE": 1}})]
    return out or [(L, None)]


def _fastest_buildable(model: Model, above: int, cands: dict, bus_bits: int | None) -> int | None:
    """The fewest cycles per image above ``above`` that :func:`_fold_to_cycles` builds a design at
    (code generation accepts it), or None: the first level (a cycle count of the layers' candidates) it
    reaches, then a bisection of the targets between the level before and that one (a window generator's
    exact schedule can land between levels); returns the cycles of the folding found there. Leaves the
    IR's folding to the caller (it records one at each target it tries)."""

    def reach(t):
        try:
            return max(u.stage_cycles for u in _fold_to_cycles(model, t, None, cands, bus_bits, suggest=False)[1])
        except A2QError:
            return None

    prev = above
    for t in sorted({c[0] for _, cs in cands.values() for c in cs if c[0] > above}):
        got = reach(t)
        if got is None:
            prev = t
            continue
        lo, hi = prev + 1, t  # target hi is reached; the least reached target in (prev, t], if a slower one is too
        while lo < hi:
            mid = (lo + hi) // 2
            at = reach(mid)
            if at is None:
                lo = mid + 1
            else:
                hi, got = mid, min(got, at)
        return got
    return None


def _fold_to_cycles(model: Model, target: int, clock_mhz: float | None, cands: dict,
                    bus_bits: int | None = None, suggest: bool = True) -> tuple[dict, list]:
    """:func:`fold_to_cycles` from the layers' candidates ``cands`` (:func:`_layer_candidates`);
    returns the folding and the code generator's units at it (:func:`_buildable` on ``bus_bits``).
    ``suggest``: a layer that cannot reach ``target`` is reported with the fewest cycles per image a
    design can be built at (:func:`_fastest_buildable`; False: its own fastest candidate, without that
    search)."""

    def best(cycles: int) -> str:
        return f"{cycles}" + (f" ({clock_mhz * 1e6 / cycles:.6g} images/s at {clock_mhz:g} MHz)" if clock_mhz else "")

    out = {}
    excluded: dict = {}  # layer -> foldings whose exact cycles (window generator schedule) missed the target
    refused: dict = {}  # layer -> {"PE": values, "SIMD": values} code generation refused with the others' foldings
    refusal: dict = {}  # layer -> the last such error
    min_pe: dict = {}  # layer -> least PE: its output words feed a unit that must read them within the target

    def allowed(name, c) -> bool:
        r = refused.get(name, {})
        return (c[0] <= target and (c[2], c[3]) not in excluded.get(name, ()) and c[2] >= min_pe.get(name, 1)
                and c[2] not in r.get("PE", ()) and c[3] not in r.get("SIMD", ()))

    def leaves_one(name, key) -> bool:
        """Whether ``name`` keeps a folding within the target once its current ``key`` value (None:
        its PE/SIMD pair) is refused."""
        cur = out[name]
        return any(allowed(name, c) and ((c[2], c[3]) != (cur["PE"], cur["SIMD"]) if key is None else
                                         c[2 if key == "PE" else 3] != cur[key]) for c in cands[name][1])

    rounds = 64 + sum(len(cs) for _, cs in cands.values())
    for _ in range(rounds):
        for name, (u, cs) in cands.items():
            ok = [c for c in cs if allowed(name, c)]
            if not ok:
                if name in refusal:
                    raise A2QError(f"layer '{name}' cannot reach {target} cycles per image with a folding code generation "
                                   f"accepts: {refusal[name]}")
                fastest = min(c[0] for c in cs)
                if suggest and not excluded.get(name) and fastest > target:  # that folding may be refused as a whole
                    fastest = _fastest_buildable(model, fastest - 1, cands, bus_bits) or fastest
                raise A2QError(f"layer '{name}' cannot reach {target} cycles per image: its fastest folding "
                               + ("with its weights streamed (a beat of PE*SIMD weights within 4096 bits) " if u.w_stream else "")
                               + f"needs {best(fastest) if not excluded.get(name) else best(target + 1) + ' or more'}")
            _, _, pe, simd = min(ok, key=lambda c: (_cost_key(c[1]), -c[3], c[0]))
            out[name] = {"PE": pe, "SIMD": simd}
        try:
            units = _buildable(model, out, bus_bits)
        except A2QError as e:  # a word several layers' foldings make (width converter, pool, add): move one layer
            moves = _refusals(model, out, bus_bits, cands)
            if not moves:
                raise
            name, key = next((m for m in moves if leaves_one(*m)), moves[0])
            if key is None:
                excluded.setdefault(name, set()).add((out[name]["PE"], out[name]["SIMD"]))
            else:
                refused.setdefault(name, {}).setdefault(key, set()).add(out[name][key])
            refusal[name] = str(e).split("; ")[0]  # code generation's reason, without its advice (--folding)
            continue
        slow = [u for u in units if u.stage_cycles > target]
        if not slow:
            return out, units
        producer = {u.out_tensor: u for u in units if u.kind not in ("dup", "dwc")}  # those two pass a tensor on
        retry = False
        for u in slow:
            src = producer.get(u.inputs[0])
            for _ in range(len(units)):  # pools and adds keep their (first) producer's words per pixel
                if src is None or src.has_weights or src.kind not in ("maxpool", "avgpool", "add"):
                    break
                src = producer.get(src.inputs[0])
            rd = u.in_elems // u.IPB
            # units that read, then emit (row-buffer window generator, pools): reading gets what emitting leaves
            summed = (u.kind in ("conv", "dw") and not u.swg_streaming) or (u.kind in ("maxpool", "avgpool") and not u.running_max)
            budget = target - (u.stage_cycles - rd) if summed else target
            if rd > budget and budget >= 1 and src is not None and src.has_weights:
                need = -(-src.out_elems // budget)  # its producer must write wider words
                if need > min_pe.get(src.dense.name, 1) and need <= src.MH:
                    min_pe[src.dense.name] = need
                    retry = True
                    continue
            if u.has_weights:  # its window generator's exact schedule is slower than the bound: next folding
                excluded.setdefault(u.dense.name, set()).add((u.PE, u.SIMD))
                retry = True
        if not retry:  # the top input stream (one pixel per word), or a pool/add reading its producer's words
            u = slow[0]
            raise A2QError(f"unit {u.cname} ('{u.dense.name if u.dense is not None else u.inputs[0]}') cannot reach {target} "
                           f"cycles per image: it needs {best(u.stage_cycles)} (it reads {u.in_elems // u.IPB} input words)")
    raise A2QError(f"no folding reaches {target} cycles per image ({rounds} foldings tried)")


def fps_to_cycles(fps: float, clock_mhz: float) -> int:
    """Cycles per image a throughput of ``fps`` images/s allows at ``clock_mhz``: ``floor(f / fps)``."""
    if not fps > 0 or not clock_mhz > 0:
        raise A2QError(f"--target-fps ({fps}) and --clock-mhz ({clock_mhz}) must be positive")
    return int(math.floor(clock_mhz * 1e6 / fps))


def fold_to_budget(model: Model, budget: dict, *, max_cycles: int | None = None, clock_mhz: float | None = None,
                   bus_bits: int | None = None, stream_weights=None, part: str | None = None,
                   target_fps: float | None = None) -> tuple[dict, dict]:
    """The fastest folding whose whole-design estimate fits ``budget`` (``{"LUT": n, "BRAM18": n,
    "DSP": n}``, any subset): the least cycles per image ``T`` (among the cycle counts the layers
    can take) such that :func:`fold_to_cycles` at ``T`` fits; ``max_cycles`` (a throughput target,
    ``target_fps`` images/s when given, for the errors) bounds ``T``. The levels are the cycle counts of the layers' buildable foldings (stream words and,
    with the default bus for ``bus_bits`` None, the AXI-stream ports within 4096 bits:
    :func:`_layer_candidates`), and the folding at each level is one code generation accepts as a
    whole (:func:`_fold_to_cycles` moves a layer whose words a width converter, pool or add would
    widen past 4096 bits, or whose streamed-weight beat would be: ``stream_weights`` and ``part`` as for
    :func:`fold_to_cycles`). The levels are tried fastest first and the first that fits is returned:
    the whole-design estimate is not monotone in ``T`` (on a convolution feeding a pool, a slower level's
    cheaper folding can cost more LUTs), so a faster level is never skipped for a slower one's cost. A
    level that cannot be built (no folding reaches it) counts as over budget. Records the folding on
    the IR; returns ``(folding, total cost dict)``.

    Raises :class:`A2QError` when no level fits, naming the resource the slowest buildable folding
    exceeds, what that folding needs and the layer using the most of it; or when no level can be built,
    with the reason for the slowest; a bad ``bus_bits`` is its own error.
    """

    def search(streamed, limit):
        units = _base_plan(model)
        cands = _layer_candidates(units, bus_bits, streamed)
        most = max_cycles if limit is None else limit if max_cycles is None else min(max_cycles, limit)
        with _for_target(target_fps, clock_mhz, max_cycles):
            return _fold_to_budget(model, budget, units, cands, most, clock_mhz, bus_bits)

    return _with_streams(model, search, stream_weights, part)


def _fold_to_budget(model: Model, budget: dict, units: list, cands: dict, max_cycles: int | None,
                    clock_mhz: float | None, bus_bits: int | None) -> tuple[dict, dict]:
    """:func:`fold_to_budget` from the default plan ``units`` and the layers' candidates ``cands``."""
    from .. import codegen

    first = units[0]
    floor = max([min(c[0] for c in cs) for _, cs in cands.values()] + ([first.in_elems // first.IPB] if first.kind != "mvu" else []))
    levels = sorted({c[0] for _, cs in cands.values() for c in cs if c[0] >= floor})
    if max_cycles is not None:
        levels = [t for t in levels if t <= max_cycles]
        if not levels:
            _fold_to_cycles(model, max_cycles, clock_mhz, cands, bus_bits)  # names the layer that cannot
    cache: dict = {}
    why: dict = {}  # level -> why its design cannot be built (code generation's error)

    def total(t):
        if t not in cache:
            cache[t] = None  # no folding reaches t, or its design cannot be built: as if over budget
            try:
                f, units_t = _fold_to_cycles(model, t, None, cands, bus_bits, suggest=False)
            except A2QError:
                return None
            try:
                cache[t] = (f, codegen.design_estimate(units_t, bus_bits))
            except A2QError as e:
                why[t] = str(e)
        return cache[t]

    def fits(t):
        if total(t) is None:
            return False
        tot = total(t)[1]["total"]
        return all(tot[k] <= v for k, v in budget.items())

    slow = " within the throughput target" if max_cycles is not None else ""
    # fastest first, stopping at the first level that fits: the whole-design estimate does not fall
    # monotonically as T grows (a layer's cheaper folding can make a pool's or width converter's words,
    # or its memories, costlier), so no level is skipped on the strength of a slower one
    for t in levels:
        if fits(t):
            f, d = total(t)
            apply_folding(model, f)
            return f, d["total"]
    cheapest = levels[-1]  # the slowest level, with the narrowest words: if it cannot be built, no level can
    if total(cheapest) is None:
        if cheapest not in why:
            _fold_to_cycles(model, cheapest, clock_mhz, cands, bus_bits)  # raises, naming the unit that cannot reach it
        raise A2QError(f"no folding{slow} can be built for the budget {_budget_text(budget)}: the slowest one "
                       f"({cheapest} cycles per image) fails: {why[cheapest]}")
    f, d = total(cheapest)
    res = next(k for k, v in budget.items() if d["total"][k] > v)
    worst = max(d["units"], key=lambda u: u["cost"][res])
    raise A2QError(f"the budget cannot be met: no folding{slow} fits {res} <= {budget[res]}; the cheapest that "
                   f"can be built ({cheapest} cycles per image) needs {res} {d['total'][res]} "
                   f"({worst['cname']} the largest, {worst['cost'][res]})")


def _budget_text(budget: dict) -> str:
    return ", ".join(f"{k} <= {v}" for k, v in budget.items())
