"""Resource estimates (LUT, FF, CARRY, BRAM18, URAM, DSP) of the generated dataflow units.

Pure functions of a unit's parameters (folding, bit widths, accumulator width ``P``,
thresholds, memory shapes); torch-free and numpy-free. :func:`unit_cost` reads them from a
:class:`a2qhls.codegen.LayerPlan`; :func:`design_cost` adds up a whole design, with the
same estimate at a 32-bit accumulator for comparison.

Sources and method.

* Structure: FINN-R (Blott et al., "FINN-R: An End-to-End Deep-Learning Framework for Fast
  Exploration of Quantized Neural Networks", ACM TRETS 11(3), 2018), as used by FINN's
  ``matrixvectoractivation`` ``lut_estimation``/``bram_estimation``/``dsp_estimation``: a
  matrix-vector unit costs ``PE`` times one processing element (``SIMD`` multipliers, an adder
  tree, an accumulator, threshold comparators) plus its weight and threshold memories, and a
  memory costs BRAM18 blocks by its width and depth.
* Coefficients: our own, calibrated against Yosys ``synth_xilinx`` (UltraScale+, multipliers in
  LUTs) on the PE datapath of ``templates/verilog/pe.v.j2`` (:mod:`a2qhls.synth`); the bench
  ``bench/bench_estimate.py`` prints estimate vs Yosys over a grid of SIMD, weight/input bits,
  ``P`` and thresholds. Where FINN-R counts the adder tree at the product width, we cap every
  adder at ``P``: sums modulo ``2^P`` may drop the higher bits (the accumulator wraps), which is
  where accumulator-aware quantization saves logic besides the accumulator and comparators.
* What is *not* checked by synthesis: memories (BRAM/LUTRAM mapping follows the rules in
  :func:`memory`), the HLS control logic (a constant per unit), sliding-window generators,
  pools, adds, forks and FIFOs (first-order counts of their multiplexers, adders and
  registers). These are estimates for comparing foldings and widths, not a place-and-route.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = [
    "Cost",
    "PARTS",
    "part_capacity",
    "mult_luts",
    "adder_tree",
    "comparator_luts",
    "popcount_luts",
    "pe_cost",
    "bram18",
    "memory",
    "mvu_cost",
    "swg_cost",
    "pool_cost",
    "pool_stream_cost",
    "add_cost",
    "thresholds_cost",
    "dup_cost",
    "fifo_cost",
    "width_converter_cost",
    "swg_stream_cost",
    "threshold_search_cost",
    "axis_adapter_cost",
    "weight_memory_cost",
    "unit_cost",
    "design_cost",
    "BASELINE_ACC_BITS",
]

BASELINE_ACC_BITS = 32  # the comparison: a 32-bit accumulator (and 32-bit thresholds, as FINN's INT32 default)

# Memories of at most this many bits, or at most LUTRAM_DEPTH words deep, go to LUTs (distributed
# RAM/ROM); larger ones to BRAM18. A rule of thumb of Vivado/Vitis HLS for ram_style "auto".
LUTRAM_BITS = 1024
LUTRAM_DEPTH = 64
# Products with both operands wider than this go to a DSP slice (resType "auto").
DSP_MIN_BITS = 9
# Per-unit HLS control (loop counters, stream handshakes), a rough constant: not synthesized.
CONTROL_LUT = 40
CONTROL_FF = 40

# name -> (LUT, FF, BRAM18, URAM, DSP): device capacities from the vendor's product tables
# (Zynq-7000: DS190; Zynq UltraScale+: DS891; Alveo U250/U280 data sheets).
PARTS = {
    "xc7z020": (53200, 106400, 280, 0, 220),
    "xczu3eg": (70560, 141120, 432, 0, 360),
    "xczu7ev": (230400, 460800, 624, 96, 1728),
    "xczu9eg": (274080, 548160, 1824, 0, 2520),
    "xcu250": (1728000, 3456000, 5376, 1280, 12288),
    "xcu280": (1303680, 2607360, 4032, 960, 9024),
}


@dataclass
class Cost:
    """Resource counts of a unit (or a sum of units). ``CARRY``: 4-bit carry-chain cells as Yosys
    maps them (CARRY4); ``BRAM18``: 18 Kb block RAMs (a BRAM36 is two)."""

    LUT: int = 0
    FF: int = 0
    CARRY: int = 0
    BRAM18: int = 0
    URAM: int = 0
    DSP: int = 0

    def __add__(self, o: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(o, f.name) for f in fields(self)))

    def scale(self, k: int) -> "Cost":
        return Cost(*(getattr(self, f.name) * k for f in fields(self)))

    def as_dict(self) -> dict:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


# a plan's ROM binding (LayerPlan.w_impl / t_impl) -> the :func:`memory` style it is costed as
_STYLE = {None: "auto", "lutram": "distributed", "bram": "block", "uram": "ultra"}


def part_capacity(part: str) -> tuple[str, dict]:
    """``(table name, {"LUT", "FF", "BRAM18", "URAM", "DSP"})`` of a part: a key of :data:`PARTS`
    or a full part name starting with one (``xczu3eg-sbva484-1-e``). Raises ``KeyError``."""
    p = str(part).lower()
    for name in sorted(PARTS, key=len, reverse=True):
        if p == name or p.startswith(name + "-") or p.startswith(name):
            return name, dict(zip(("LUT", "FF", "BRAM18", "URAM", "DSP"), PARTS[name]))
    raise KeyError(part)


# ---------------------------------------------------------------- one processing element


def mult_luts(wbits: int, abits: int, out_bits: int | None = None, asigned: bool = False) -> int:
    """LUTs of one multiplier of a signed ``wbits``-bit weight by an ``abits``-bit input, in fabric.

    An array multiplier reduces ``n = wbits * abits`` partial-product bits in a tree of adders
    about ``log2(n)`` deep; FINN-R models it as ``(2 * ceil((W + A) / 6) - 1) * (W + A)``.
    Calibrated on Yosys ``synth_xilinx``: ``0.3 * n * log2(n) + 3`` for an unsigned input, 1.2
    times that for a signed one (the sign corrections of a signed-by-signed product). When only
    the low ``out_bits`` of the product are used (the accumulator is narrower than the product),
    only the partial products ``x_i w_j`` with ``i + j < out_bits`` count.
    """
    if out_bits is None or out_bits >= wbits + abits:
        n = wbits * abits
    else:
        n = sum(1 for i in range(wbits) for j in range(abits) if i + j < out_bits)
    if n <= 1:
        return 1
    luts = 0.3 * n * math.log2(n) + 3
    return round(luts * (1.2 if asigned else 1.0))


def adder_tree(n: int, leaf_bits: int, acc_bits: int) -> list[int]:
    """Widths of the adders of a balanced tree summing ``n`` values of ``leaf_bits`` bits.

    Each sum is one bit wider than the wider of its operands, capped at ``acc_bits``: sums
    taken modulo ``2^acc_bits`` (as the accumulator wraps) may drop every higher bit. An odd
    operand passes to the next level. ``n - 1`` adders; each ``b``-bit adder costs ``b`` LUTs
    and ``ceil(b / 4)`` carry cells.
    """
    out = []
    cur = [min(leaf_bits, acc_bits)] * n
    while len(cur) > 1:
        nxt = [min(max(cur[i], cur[i + 1]) + 1, acc_bits) for i in range(0, len(cur) - 1, 2)]
        out += nxt
        if len(cur) % 2:
            nxt.append(cur[-1])
        cur = nxt
    return out


def comparator_luts(bits: int) -> float:
    """LUTs of one ``acc >= threshold`` comparison of ``bits``-bit signed values:
    ``0.67 * bits + 0.5`` (calibrated on Yosys; FINN-R counts ``bits``)."""
    return 0.67 * bits + 0.5


def comparator_carry(bits: int) -> int:
    """Carry cells of one comparison as Yosys maps it (calibrated): ``ceil(bits / 12)``."""
    return math.ceil(bits / 12)


def popcount_luts(n: int) -> int:
    """LUTs that count how many of ``n`` comparator outputs are set: ``n - bitlength(n)``
    (an adder tree of 1-bit inputs; calibrated on Yosys)."""
    return max(0, n - int(n).bit_length())


def pe_cost(simd: int, wbits: int, abits: int, acc_bits: int, nt: int = 0, tbits: int = 0, *, asigned: bool = False,
            dsp: bool | None = None, thr_search: bool = False) -> Cost:
    """One processing element: ``simd`` products, the adder tree, a ``acc_bits``-bit accumulator,
    ``nt`` comparators against ``tbits``-bit thresholds and their count (``asigned``: signed inputs).

    The datapath of ``templates/verilog/pe.v.j2`` (memories excluded):

    * LUT = ``simd * mult_luts(W, A, P, asigned) + sum(adder_tree) + P + nt * comparator_luts(max(P, T))
      + popcount_luts(nt) + 1``; products in DSPs instead when ``dsp`` (default: both operands
      wider than ``DSP_MIN_BITS - 1`` bits), one DSP48 per product.
    * FF = ``simd * min(W + A, P)`` (registered products) + the tree's root + ``P`` (accumulator)
      + output bits (``bitlength(nt)``, or ``P`` without thresholds) + 2 (control).
    * CARRY = ``ceil(b / 4)`` per adder of ``b`` bits (tree and accumulator) + the comparators' + 2.

    Source: FINN-R's decomposition (Blott et al., TRETS 2018), coefficients calibrated on Yosys
    (see the module docstring). ``thr_search``: the thresholds are searched in stages
    (:func:`threshold_search_cost`, counted there): no comparators or popcount here.
    Raises ``ValueError`` on a width or SIMD below 1.
    """
    if thr_search:
        nt = 0
    if min(simd, wbits, abits, acc_bits) < 1 or nt < 0:
        raise ValueError(f"pe_cost: SIMD and widths must be >= 1 (simd={simd}, W={wbits}, A={abits}, P={acc_bits}, nt={nt})")
    if dsp is None:
        dsp = min(wbits, abits) >= DSP_MIN_BITS
    pbits = wbits + abits
    tree = adder_tree(simd, pbits, acc_bits)
    root = tree[-1] if tree else min(pbits, acc_bits)
    cmp_bits = max(acc_bits, tbits) if nt else 0
    lut = (0 if dsp else simd * mult_luts(wbits, abits, acc_bits, asigned)) + sum(tree) + acc_bits + 1
    lut += nt * comparator_luts(cmp_bits) + popcount_luts(nt)
    obits = max(1, int(nt).bit_length()) if nt or thr_search else acc_bits
    ff = simd * min(pbits, acc_bits) + root + acc_bits + obits + 2
    carry = sum(math.ceil(b / 4) for b in tree) + math.ceil(acc_bits / 4) + nt * (comparator_carry(cmp_bits) if nt else 0) + 2
    return Cost(LUT=round(lut), FF=ff, CARRY=carry, DSP=simd if dsp else 0)


# ---------------------------------------------------------------- memories


_BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def bram18(width: int, depth: int) -> int:
    """BRAM18 blocks for a ``depth x width`` memory: the best of the simple-dual-port aspect
    ratios 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, 512x36 (Xilinx UG573, Table 1-10), each tiled
    ``ceil(depth / d) * ceil(width / w)``; the rule of FINN's ``bram_estimation`` (FINN-R)."""
    if width <= 0 or depth <= 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM18_SHAPES)


def memory(width: int, depth: int, count: int = 1, *, style: str = "auto", ports: int = 1, rom: bool = False) -> Cost:
    """``count`` memories of ``depth`` words of ``width`` bits (``rom``: constant contents).

    ``style``: ``auto`` (depth 1: registers, or nothing for a ROM, whose one word is constants
    folded into the logic that reads it; at most ``LUTRAM_BITS`` bits or ``LUTRAM_DEPTH`` words:
    distributed; else block), ``distributed`` (LUT6 as 64x1 RAM/ROM: ``width * ceil(depth / 64)``
    LUTs per port), ``block`` (:func:`bram18`), ``ultra`` (URAM288, 4K x 72: ``ceil(depth / 4096)
    * ceil(width / 72)``), ``registers`` (``width * depth`` FF).
    """
    if width <= 0 or depth <= 0 or count <= 0:
        return Cost()
    if style == "auto":
        if depth == 1 and rom:
            return Cost()
        if depth == 1:
            style = "registers"
        elif width * depth <= LUTRAM_BITS or depth <= LUTRAM_DEPTH:
            style = "distributed"
        else:
            style = "block"
    if style == "registers":
        c = Cost(FF=width * depth)
    elif style == "distributed":
        c = Cost(LUT=width * math.ceil(depth / 64) * ports)
    elif style == "block":
        c = Cost(BRAM18=bram18(width, depth))
    elif style == "ultra":
        c = Cost(URAM=math.ceil(depth / 4096) * math.ceil(width / 72))
    else:
        raise ValueError(f"memory style '{style}' (supported: auto, distributed, block, ultra)")
    return c.scale(count)


# ---------------------------------------------------------------- units


def mvu_cost(MH: int, MW: int, PE: int, SIMD: int, wbits: int, abits: int, acc_bits: int, nt: int = 0, tbits: int = 0,
             *, bias_bits: int = 0, weights_packed: bool = False, thresholds_packed: bool = False, buffer_input: bool = True,
             weight_style: str = "auto", threshold_style: str = "auto", asigned: bool = False,
             weights_on_chip: bool = True, thresholds_search: bool = False) -> Cost:
    """A matrix-vector unit (or, with ``buffer_input=False``, a depthwise vector-vector unit).

    ``PE * pe_cost(...)`` + weight memory + threshold memory + bias + input buffer + control:

    * weights: ``WMEM = MH * MW / (PE * SIMD)`` words; ``PE * SIMD`` memories of ``wbits`` bits
      (the array partitioned on PE and SIMD), or ``PE`` memories of ``SIMD * wbits`` bits when
      ``weights_packed``; thresholds: ``PE * nt`` memories of ``TMEM = MH / PE`` words of
      ``tbits`` (``PE`` memories of ``nt * tbits`` bits when ``thresholds_packed``); bias: ``PE``
      memories of ``TMEM`` words; each a ROM through :func:`memory` (``*_style``: its style).
    * input buffer ``[MW / SIMD][SIMD]`` of ``abits`` (written while read: 2 ports).
    * ``weights_on_chip=False`` (weights streamed in from outside): no weight memory; the beat of
      ``PE * SIMD * wbits`` bits is used as it arrives (wires; its FIFO is the caller's).
    * ``thresholds_search``: the ``nt`` thresholds are searched in ``bitlength(nt)`` pipelined stages
      (:func:`threshold_search_cost`, with their stage tables) instead of ``nt`` comparators.
    * control: ``CONTROL_LUT`` / ``CONTROL_FF``.

    Source: FINN-R (Blott et al., TRETS 2018): ``c0 + c1 * PE * (mult + adder tree + acc + thresholds
    + comparators) + weight memory``; our coefficients, see :func:`pe_cost`.
    """
    if MH % PE or MW % SIMD:
        raise ValueError(f"mvu_cost: PE={PE} must divide MH={MH} and SIMD={SIMD} must divide MW={MW}")
    wmem, tmem = MH * MW // (PE * SIMD), MH // PE
    c = pe_cost(SIMD, wbits, abits, acc_bits, nt, tbits, asigned=asigned, thr_search=thresholds_search).scale(PE)
    if not weights_on_chip:
        pass
    elif weights_packed:
        c += memory(SIMD * wbits, wmem, PE, style=weight_style, rom=True)
    else:
        c += memory(wbits, wmem, PE * SIMD, style=weight_style, rom=True)
    if nt and thresholds_search:
        c += threshold_search_cost(PE, tmem, nt, max(tbits, acc_bits + 1))
    elif nt and thresholds_packed:
        c += memory(nt * tbits, tmem, PE, style=threshold_style, rom=True)
    elif nt:
        c += memory(tbits, tmem, PE * nt, style=threshold_style, rom=True)
    if bias_bits:
        c += memory(bias_bits, tmem, PE, rom=True)
    if buffer_input:
        c += memory(abits, MW // SIMD, SIMD, ports=2)
    return c + Cost(LUT=CONTROL_LUT, FF=CONTROL_FF)


def swg_cost(H: int, W: int, C: int, kh: int, kw: int, bits: int, in_per_word: int, out_per_word: int) -> Cost:
    """The row-buffer (read-then-emit) sliding-window generator (``templates/_cnn_units.j2``,
    ``swg``): its line buffer of ``kh`` rows of ``W * C`` values of ``bits`` is registers (a
    complete partition, so a word's ``out_per_word`` values are read at dynamic indices in one
    cycle): ``N * bits`` FFs, ``N = kh * W * C``; per output value an ``N``-to-1 read multiplexer,
    ``bits * ceil((N - 1) / 3)`` LUTs (a LUT6 is a 4-to-1 multiplexer; a tree of them adds 3
    inputs per LUT) plus the padding gate (``bits`` LUTs) and its output register; per buffer
    element a write-enable decode (1 LUT) and, with ``in_per_word > 1``, an ``in_per_word``-to-1
    input multiplexer (``bits * ceil((in_per_word - 1) / 3)`` LUTs). No BRAM. Not synthesized
    (first-order multiplexer counts); bounded by ``passes.folding.SWG_REGISTER_BITS_MAX``."""
    N = kh * W * C
    read = out_per_word * bits * (math.ceil((N - 1) / 3) + 1)
    write = N * (1 + bits * math.ceil((in_per_word - 1) / 3))
    c = Cost(LUT=read + write, FF=N * bits + out_per_word * bits)
    return c + Cost(LUT=CONTROL_LUT + 20, FF=CONTROL_FF + 20)


def swg_stream_cost(H: int, W: int, C: int, kh: int, kw: int, sh: int, bits: int, V: int, zp_bits: int = 0) -> Cost:
    """The one-loop sliding-window generator (``templates/_cnn_units.j2``, ``swg_stream``): a line
    buffer of ``R = kh + sh`` rows of ``W * C / V`` words of ``V`` values (one simple dual-port RAM,
    :func:`memory` with 2 ports: one write and one read per iteration), so an output word is one
    memory read, with no per-value row multiplexer; per output value the ``q - zp`` subtraction and
    the padding gate (``bits + 1`` LUTs: a ``bits``-wide adder with the AND folded into it; none
    for ``zp_bits == 0``, then ``bits / 2`` for the gate) and its register; control: the read and
    emit counters (row, slot, column, pixel, tap, group: 9 counters of ``bitlength(max)`` bits, one
    LUT and one FF per bit, plus the ``need`` compare).

    Source: the structure of finn-hlslib's ``ConvolutionInputGenerator`` (K/S+1 row blocks of
    SIMD-packed words) and FINN's ``bram_estimation`` for it (width ``SIMD * bits``, depth the
    buffered rows' words); not synthesized (first-order counts of adders and registers)."""
    if C % V:
        raise ValueError(f"swg_stream_cost: V={V} must divide C={C}")
    R = kh + sh
    depth = R * W * (C // V)
    c = memory(V * bits, depth, 1, ports=2)
    per = (bits + 1) if zp_bits else math.ceil(bits / 2)
    cnt_bits = 9 * max(1, int(max(H * W * (C // V), depth)).bit_length())
    c += Cost(LUT=V * per + cnt_bits + 2 * cnt_bits // 9, FF=V * bits + cnt_bits, CARRY=math.ceil(cnt_bits / 4))
    return c + Cost(LUT=CONTROL_LUT, FF=CONTROL_FF)


def threshold_search_cost(PE: int, NF: int, nt: int, cmp_bits: int, *, style="auto") -> Cost:
    """The pipelined binary-search threshold unit of a matrix unit's PE (``BINARY_SEARCH_MIN_NT``
    thresholds or more per channel, ``templates/_mvu.j2``), for ``PE`` PEs: ``K = bitlength(nt)``
    stages; stage ``k`` compares the accumulator against one threshold of ``cmp_bits`` (``max(T,
    P + 1)``: the sentinel ``2^(P-1)`` pads the table) read from a ROM of ``NF * 2^k`` words per PE
    at index ``lo >> (K - k)`` (:func:`memory`, constant when one word), and adds ``2^(K-1-k)`` to
    ``lo`` (a ``K``-bit adder, ``K`` LUTs: an OR into the free bit). Registered between stages
    (``K * (cmp_bits + K)`` FF per PE: the accumulator and ``lo`` travel down the pipeline).

    So ``K`` comparators instead of ``nt`` and no popcount: for 8-bit activations (nt = 255),
    8 comparators instead of 255 per PE. Source: the classic lower-bound search (Knuth, TAOCP 3,
    6.2.1), pipelined one stage per level as FINN's ``thresholding`` binary-search op does;
    comparators as :func:`comparator_luts` (calibrated on Yosys); not synthesized as a whole.
    ``style``: one :func:`memory` style for every stage table, or a list of one per stage."""
    if nt < 1:
        return Cost()
    K = int(nt).bit_length()
    per = K * (comparator_luts(cmp_bits) + K)
    c = Cost(LUT=round(PE * per), FF=PE * K * (cmp_bits + K), CARRY=PE * K * comparator_carry(cmp_bits))
    for k in range(K):
        st = style[k] if isinstance(style, (list, tuple)) else style
        c += memory(cmp_bits, NF << k, PE, style=st, rom=True)
    return c


def axis_adapter_cost(direction: str, bus_bits: int, bits: int, per_beat: int, per_word: int) -> Cost:
    """An AXI-stream adapter of the top (``templates/_axis.j2``; :class:`a2qhls.codegen.AxisPort`):
    ``per_beat`` elements of ``bits`` in whole-byte slots per ``bus_bits`` beat, ``per_word`` per
    internal word. When a beat is a word (``per_beat == per_word``): the slots' low bits are wired
    through, the output registered (``bus_bits`` FF; the output adapter's sign/zero extension is
    wiring). Else a shift register of ``cap = per_beat + per_word`` elements (``cap * bits`` FF): each
    of its bits is loaded from one of ``positions`` input slots (the fill level ``have`` at an
    insertion, at most ``ceil(cap / per_in)`` values; a ``positions``-to-1 multiplexer, ``ceil(p / 4)``
    LUTs a bit, a LUT6 being a 4-to-1 multiplexer) or shifted by ``per_out`` (a 2-to-1 before it,
    folded into the same LUTs when ``positions <= 3``); plus the TLAST/count logic. Source: the
    structure of FINN's ``StreamingDataWidthConverter`` and hls4ml's AXI wrapper; not synthesized."""
    if direction not in ("in", "out"):
        raise ValueError(f"axis_adapter_cost: direction '{direction}' (in or out)")
    ctl = Cost(LUT=CONTROL_LUT, FF=CONTROL_FF + 1)  # + TLAST
    if per_beat == per_word:
        return Cost(LUT=2, FF=bus_bits + 1) + ctl
    cap = per_beat + per_word
    per_in = per_beat if direction == "in" else per_word
    positions = max(1, math.ceil(cap / per_in))
    sel = math.ceil((positions + (1 if positions > 3 else 0)) / 4)
    return Cost(LUT=cap * bits * max(sel, 1) + 2 * int(cap).bit_length(), FF=cap * bits + int(cap).bit_length() + bus_bits) + ctl


def _threshold_unit(PE: int, NF: int, nt: int, tbits: int, acc_bits: int, search: bool, styles) -> tuple:
    """The thresholds of an add or average-pool unit, ``PE`` channels per cycle over ``NF`` channel
    groups: ``(per-PE comparator LUTs, Cost of the rest)``. Linear (``search`` False): ``nt``
    comparators of ``max(acc_bits, tbits)`` and their count per PE, thresholds in ``PE`` ROMs of
    ``NF`` words of ``nt * tbits`` (one packed word per PE bank, ``styles``: its :func:`memory`
    style). Binary search: :func:`threshold_search_cost` (``styles``: one per stage), as
    :func:`mvu_cost` prices a matrix unit's."""
    if not nt:
        return 0, Cost()
    if search:
        return 0, threshold_search_cost(PE, NF, nt, max(tbits, acc_bits + 1), style=styles or "auto")
    per = nt * comparator_luts(max(acc_bits, tbits)) + popcount_luts(nt)
    return per, memory(nt * tbits, NF, PE, style=styles or "auto", rom=True)


def pool_cost(H: int, W: int, C: int, kh: int, kw: int, bits: int, PE: int, mode: str, acc_bits: int = 0, nt: int = 0, tbits: int = 0,
              *, thr_search: bool = False, thr_styles=None) -> Cost:
    """Max or average pooling over ``kh x kw`` windows, ``PE`` channels per cycle, with a line
    buffer of ``kh`` rows (:func:`swg_cost`'s memory).

    max: per channel ``kh*kw - 1`` compare-and-select stages of ``bits`` (a comparator and a
    ``bits``-wide multiplexer). avg: ``kh*kw - 1`` adders of at most ``acc_bits`` (the window
    sum's :func:`adder_tree`), then the thresholds (:func:`_threshold_unit`: ``nt`` comparators and
    their count, or the binary search with ``thr_search``; their ROMs as bound, ``thr_styles``)."""
    k = kh * kw
    c = memory(bits, W * C, kh, ports=2)
    if mode == "max":
        per = (k - 1) * (comparator_luts(bits) + bits)
        c += Cost(LUT=round(PE * per), FF=PE * bits, CARRY=PE * (k - 1) * comparator_carry(bits))
    else:
        tree = adder_tree(k, bits, acc_bits)
        cmp, thr = _threshold_unit(PE, C // PE, nt, tbits, acc_bits, thr_search, thr_styles)
        c += thr
        per = sum(tree) + cmp
        obits = max(1, int(nt).bit_length()) if nt else acc_bits
        c += Cost(LUT=round(PE * per), FF=PE * (acc_bits + obits), CARRY=PE * sum(math.ceil(b / 4) for b in tree))
    return c + Cost(LUT=CONTROL_LUT, FF=CONTROL_FF)


def pool_stream_cost(H: int, W: int, C: int, kh: int, kw: int, sh: int, bits: int, PE: int, mode: str,
                     acc_bits: int = 0, nt: int = 0, tbits: int = 0, *, thr_search: bool = False, thr_styles=None) -> Cost:
    """The one-loop (streaming) max or average pool (``templates/_cnn_units.j2``, a pool with
    ``LayerPlan.swg_streaming``): :func:`swg_stream_cost`'s line buffer and counters with ``V = PE``,
    one window tap per iteration folded into a register per channel: max, one compare-and-select
    of ``bits`` (a comparator and a ``bits``-wide multiplexer); avg, one ``acc_bits`` adder, then
    ``nt`` comparators and their count as in :func:`pe_cost`. Unlike :func:`pool_cost` there is no
    ``kh*kw - 1`` stage tree: the taps arrive one per cycle.

    Source: finn-hlslib's ``ConvolutionInputGenerator`` followed by its pool unit (one tap per
    cycle into an accumulator), structure only; not synthesized (first-order counts)."""
    c = swg_stream_cost(H, W, C, kh, kw, sh, bits, PE)
    if mode == "max":
        per = comparator_luts(bits) + bits
        c += Cost(LUT=round(PE * per), FF=PE * bits, CARRY=PE * comparator_carry(bits))
    else:
        cmp, thr = _threshold_unit(PE, C // PE, nt, tbits, acc_bits, thr_search, thr_styles)
        c += thr
        per = acc_bits + cmp
        obits = max(1, int(nt).bit_length()) if nt else acc_bits
        c += Cost(LUT=round(PE * per), FF=PE * (acc_bits + obits), CARRY=PE * math.ceil(acc_bits / 4))
    return c


def _const_mult_luts(bits: int, m: int) -> int:
    """LUTs of ``x * m`` for a constant ``m``: one adder of ``bits + bitlength(m)`` per extra set
    bit of ``|m|`` (shift-and-add)."""
    ones = bin(abs(int(m))).count("1")
    return max(0, ones - 1) * (bits + abs(int(m)).bit_length())


def add_cost(C: int, PE: int, bits_a: int, bits_b: int, mult: tuple, acc_bits: int, nt: int = 0, tbits: int = 0,
             *, thr_search: bool = False, thr_styles=None) -> Cost:
    """A requantizing residual add, ``PE`` channels per cycle: per channel the constant
    multiplications ``ma * a`` and ``mb * b`` (:func:`_const_mult_luts`), one ``acc_bits`` adder,
    then the thresholds (:func:`_threshold_unit`: ``nt`` comparators and their count, or the
    pipelined binary search with ``thr_search``, and their ROMs as bound, ``thr_styles``); both
    inputs of one pixel buffered in registers (``C * (bits_a + bits_b)`` FF)."""
    cmp, thr = _threshold_unit(PE, C // PE, nt, tbits, acc_bits, thr_search, thr_styles)
    per = _const_mult_luts(bits_a, mult[0]) + _const_mult_luts(bits_b, mult[1]) + acc_bits + cmp
    obits = max(1, int(nt).bit_length()) if nt else acc_bits
    c = Cost(LUT=round(PE * per), FF=C * (bits_a + bits_b) + PE * obits, CARRY=PE * math.ceil(acc_bits / 4))
    return c + thr + Cost(LUT=CONTROL_LUT, FF=CONTROL_FF)


def thresholds_cost(C: int, PE: int, in_bits: int, nt: int, tbits: int) -> Cost:
    """A standalone multi-threshold unit (FINN's ``Thresholding``), ``PE`` channels per cycle:
    per channel ``nt`` comparators of ``max(in_bits, tbits)`` bits and their count
    (:func:`comparator_luts`, :func:`popcount_luts`), thresholds in ``PE * nt`` memories of
    ``C / PE`` words (:func:`memory`), the output registered."""
    if C % PE:
        raise ValueError(f"thresholds_cost: PE={PE} must divide C={C}")
    b = max(in_bits, tbits)
    obits = max(1, int(nt).bit_length())
    c = Cost(LUT=round(PE * (nt * comparator_luts(b) + popcount_luts(nt))), FF=PE * obits, CARRY=PE * nt * comparator_carry(b))
    return c + memory(tbits, C // PE, PE * nt, rom=True) + Cost(LUT=CONTROL_LUT, FF=CONTROL_FF)


def upsample_cost(W: int, C: int, bits: int, PE: int, sy: int, sx: int) -> Cost:
    """Nearest-neighbour upsampling, ``PE`` channels per word: a row buffer of ``W * C`` values of
    ``bits`` (one memory, :func:`memory`; none when ``sy == 1``) for the ``sy - 1`` row repeats, the
    current pixel in registers (``C * bits`` FF) for the ``sx - 1`` column repeats, and a 2-to-1
    multiplexer per output bit (stream or buffer; one LUT per bit, a LUT6 holds a 2-to-1 mux with
    its select logic) plus the counters. Not synthesized; FINN's ``UpsampleNearestNeighbour`` keeps
    the same row of words."""
    c = memory(bits, W * C, ports=2) if sy > 1 else Cost()
    return c + Cost(LUT=PE * bits + CONTROL_LUT, FF=C * bits + PE * bits + CONTROL_FF)


def zero_insert_cost(bits: int, PE: int) -> Cost:
    """Zero insertion of a transposed convolution: per output bit a 2-to-1 multiplexer between the
    input word and the constant zero-point pattern (one LUT per bit, often absorbed into the FIFO's
    output register) and the output register; counters for the phase. No memory."""
    return Cost(LUT=PE * bits + CONTROL_LUT, FF=PE * bits + CONTROL_FF)


def concat_cost(PE: int, bits_a: int, bits_b: int, out_bits: int, shifts: tuple) -> Cost:
    """Channel concatenation, ``PE`` channels per word: per output element a 2-to-1 multiplexer
    between the two inputs (``out_bits`` LUTs); a shift is wiring, a nonzero zero-point change an
    ``out_bits`` adder per input side that needs one (counted as ``out_bits`` LUTs each when the
    types differ); the output registered."""
    adders = (out_bits if (bits_a != out_bits or shifts[0]) else 0) + (out_bits if (bits_b != out_bits or shifts[1]) else 0)
    return Cost(LUT=PE * (out_bits + adders) + CONTROL_LUT, FF=PE * out_bits + CONTROL_FF,
                CARRY=PE * math.ceil(adders / 4))


def d2s_cost(W: int, C: int, bits: int, per_word: int, blocksize: int, mode: str) -> Cost:
    """A DepthToSpace unit (``templates/_cnn_units.j2``, ``d2s``): a buffer of two input rows,
    ``2 * W * C`` elements of ``bits`` in ``per_word`` banks (cyclic partition), each written and
    read once per cycle (2 ports, :func:`memory`); the output element ``e`` of a word reads bank
    ``e`` in DCR mode (no multiplexer) but a bank that depends on the sub-pixel ``(i, j)`` in CRD mode
    when ``per_word > 1`` (a ``per_word``-to-1 multiplexer per output bit, ``ceil(per_word / 4)``
    LUTs: a LUT6 is a 4-to-1 multiplexer); the five address counters and the control as every unit
    (``CONTROL_LUT``/``CONTROL_FF``); the output word registered. Source: the template's structure,
    costed with the same rules as :func:`swg_cost` (a line buffer and its multiplexers); not synthesized."""
    if C % per_word:
        raise ValueError(f"d2s_cost: {per_word} elements per word must divide C={C}")
    c = memory(bits, 2 * W * C // per_word, per_word, ports=2)
    mux = per_word * bits * math.ceil(per_word / 4) if mode == "CRD" and per_word > 1 else 0
    counters = 2 * (2 * W * C).bit_length() + 3 * max(W, blocksize).bit_length()
    return c + Cost(LUT=mux + counters + CONTROL_LUT, FF=per_word * bits + counters + CONTROL_FF)


def dup_cost(word_bits: int, n_out: int) -> Cost:
    """A stream duplicator: the word is wired to ``n_out`` streams; the handshake (all outputs
    ready) costs a few LUTs. ``2 * n_out + 4`` LUTs, ``n_out`` FF."""
    return Cost(LUT=2 * n_out + 4, FF=n_out)


def fifo_cost(width: int, depth: int) -> Cost:
    """A stream FIFO of ``depth`` words of ``width`` bits.

    depth <= 2: registers (``width * depth`` FF); up to 64: shift-register LUTs (SRL32,
    ``width * ceil(depth / 32)`` LUTs) and a ``bitlength(depth)`` counter; deeper: :func:`memory`
    (distributed or block) and two counters. Source: FINN's ``StreamingFIFO`` implementation
    choices (SRL up to a depth, else BRAM/LUTRAM)."""
    if depth <= 2:
        return Cost(LUT=2, FF=width * depth + 2)
    a = int(depth).bit_length()
    if depth <= 64:
        return Cost(LUT=width * math.ceil(depth / 32) + a + 4, FF=width + a + 2)
    return memory(width, depth, ports=2) + Cost(LUT=2 * a + 8, FF=width + 2 * a + 2)


def width_converter_cost(in_bits: int, out_bits: int) -> Cost:
    """A stream width converter: narrowing selects one of ``in / out`` slices per output word
    (an ``r``-to-1 multiplexer per output bit, ``ceil(r / 4)`` LUTs) from a registered input word;
    widening shifts input words into an ``out_bits`` register. Source: the structure of FINN's
    ``StreamingDataWidthConverter``; not synthesized."""
    if in_bits == out_bits:
        return Cost()
    if in_bits > out_bits:
        r = math.ceil(in_bits / out_bits)
        return Cost(LUT=out_bits * math.ceil(r / 4) + 8, FF=in_bits + 8)
    return Cost(LUT=out_bits // 2 + 8, FF=out_bits + 8)


# ---------------------------------------------------------------- from the code generator's plan


def unit_cost(u, acc_bits: int | None = None, thr_bits: int | None = None) -> Cost:
    """The estimate of one :class:`a2qhls.codegen.LayerPlan` (a conv/dw unit includes its
    sliding-window generator). ``acc_bits``/``thr_bits`` replace the unit's accumulator and
    threshold widths (the 32-bit comparison); default: the built widths."""
    P = int(acc_bits if acc_bits is not None else u.P)
    T = int(thr_bits if thr_bits is not None else (u.thr_t.bits if u.thr_t is not None else 0))
    nt = int(u.NT)
    if u.kind in ("mvu", "conv", "dw"):
        val = u.win_t if u.kind in ("conv", "dw") else u.val_t
        bias = 0
        if u.bias_t is not None:
            bias = P if acc_bits is not None else u.bias_t.bits
        # a plan that binds its ROMs (packed SIMD/threshold words per PE, w_impl/t_impl) is costed as bound
        packed = hasattr(u, "w_impl")
        kw = dict(weights_packed=packed, thresholds_packed=hasattr(u, "t_impl"))
        if packed:
            kw["weight_style"] = _STYLE.get(u.w_impl, "auto")
        if hasattr(u, "t_impl"):
            kw["threshold_style"] = _STYLE.get(u.t_impl, "auto")
        c = mvu_cost(u.MH, u.MW, u.PE, u.SIMD, u.w_t.bits, val.bits, P, nt, T, bias_bits=bias,
                     buffer_input=u.kind != "dw", asigned=val.signed, weights_on_chip=not getattr(u, "w_stream", False),
                     thresholds_search=bool(getattr(u, "thr_binary", False)), **kw)
        if getattr(u, "xnor", False):  # XNOR-popcount (1-bit weights and inputs above): + the P-bit 2 * pop - K per PE
            c += Cost(LUT=P * u.PE)
        if u.kind in ("conv", "dw"):
            H, W, C = u.in_shape
            if getattr(u, "swg_streaming", False):
                c += swg_stream_cost(H, W, C, u.kernel[0], u.kernel[1], u.stride[0], u.win_t.bits, u.swg_V, zp_bits=int(u.zp != 0 or getattr(u, "bipolar", False)))
            else:
                c += swg_cost(H, W, C, u.kernel[0], u.kernel[1], u.win_t.bits, u.IPB, u.OPB)
        return c
    if u.kind in ("maxpool", "avgpool"):
        H, W, C = u.in_shape
        mode = "max" if u.kind == "maxpool" else "avg"
        thr = _thr_kw(u)
        if getattr(u, "swg_streaming", False):
            return pool_stream_cost(H, W, C, u.kernel[0], u.kernel[1], u.stride[0], u.win_t.bits, u.PE, mode, P, nt, T, **thr)
        return pool_cost(H, W, C, u.kernel[0], u.kernel[1], u.win_t.bits, u.PE, mode, P, nt, T, **thr)
    if u.kind == "add":
        return add_cost(u.MH, u.PE, u.in_t.bits, u.in_t_b.bits, u.mult, P, nt, T, **_thr_kw(u))
    if u.kind == "dup":
        return dup_cost(u.PE * u.in_t.bits, u.n_out)
    if u.kind == "upsample":
        return upsample_cost(u.in_shape[1], u.in_shape[2], u.in_t.bits, u.PE, u.scale[0], u.scale[1])
    if u.kind == "zeroins":
        return zero_insert_cost(u.in_t.bits, u.PE)
    if u.kind == "concat":
        return concat_cost(u.PE, u.in_t.bits, u.in_t_b.bits, u.out_t.bits, u.shifts)
    if u.kind == "d2s":
        return d2s_cost(u.in_shape[1], u.in_shape[2], u.in_t.bits, u.PE, u.dense.blocksize, u.dense.mode)
    if u.kind == "dwc":  # width converter the plan puts where a producer's PE differs from a consumer's SIMD
        return width_converter_cost(u.IPB * u.in_t.bits, u.PE * u.in_t.bits)
    raise ValueError(f"unit_cost: unknown unit kind '{u.kind}'")


def _thr_kw(u) -> dict:
    """An add or pool plan's threshold implementation: binary search or not, and its ROMs'
    :func:`memory` styles as the plan binds them (``t_impl``; per stage ``thr_stage_impl``)."""
    if getattr(u, "thr_binary", False):
        return {"thr_search": True, "thr_styles": [_STYLE.get(u.thr_stage_impl(k), "auto") for k in range(u.thr_stages)]}
    return {"thr_search": False, "thr_styles": _STYLE.get(getattr(u, "t_impl", None), "auto")}


def weight_memory_cost(u) -> Cost:
    """The on-chip weight ROMs of a :class:`a2qhls.codegen.LayerPlan` with weights (what streaming
    its weights saves): ``PE`` memories of ``NF*SF`` words of ``SIMD * B`` bits, bound as the plan
    binds them (:func:`memory`); zero for a unit without weights or already streamed."""
    if not u.has_weights or getattr(u, "w_stream", False):
        return Cost()
    return memory(u.SIMD * u.w_t.bits, u.NF * u.SF, u.PE, style=_STYLE.get(u.w_impl, "auto"), rom=True)


def _stream_bits(u) -> int:
    """Bits of the word a unit writes: ``PE`` output elements."""
    return u.PE * u.out_t.bits


def design_cost(units: list, fifo_depths: dict | None = None, *, baseline_bits: int = BASELINE_ACC_BITS,
                adapters: list | None = None) -> dict:
    """Estimates of every unit of a plan, the FIFOs between them, and the totals.

    ``fifo_depths``: ``{(dup index, copy): depth}`` (:func:`a2qhls.codegen.fork_depths`); every
    other stream is a depth-2 FIFO. ``adapters``: ``[(name, Cost)]`` of the top's AXI-stream
    adapters (:func:`axis_adapter_cost`), listed in ``units`` and added to both totals. Returns ``{"units": [{cname, cost, cost_32, lut_ratio}],
    "fifos": Cost dict, "total": Cost dict, "total_32": Cost dict, "lut_ratio": float}`` where
    ``*_32`` is the same design with every accumulator (and threshold) at ``baseline_bits``
    and ``lut_ratio`` = LUT at ``baseline_bits`` / LUT as built.
    """
    fifo_depths = fifo_depths or {}
    out_units = []
    total, total32 = Cost(), Cost()
    fifos = Cost()
    last = units[-1] if units else None
    for u in units:
        c = unit_cost(u)
        c32 = unit_cost(u, baseline_bits, baseline_bits) if u.has_acc else c
        out_units.append({"cname": u.cname, "kind": u.kind, "cost": c.as_dict(), "cost_32": c32.as_dict(),
                          "lut_ratio": round(c32.LUT / c.LUT, 3) if c.LUT else None})
        total, total32 = total + c, total32 + c32
        if u.kind == "dup":
            for k in range(u.n_out):
                fifos += fifo_cost(_stream_bits(u), int(fifo_depths.get((u.index, k), 2)))
        elif u is not last:
            fifos += fifo_cost(_stream_bits(u), 2)
        if u.kind in ("conv", "dw"):
            fifos += fifo_cost(u.OPB * u.win_t.bits, 2)
    total, total32 = total + fifos, total32 + fifos
    for name, c in adapters or []:
        out_units.append({"cname": name, "kind": "axis", "cost": c.as_dict(), "cost_32": c.as_dict(), "lut_ratio": 1.0})
        total, total32 = total + c, total32 + c
    return {
        "units": out_units,
        "fifos": fifos.as_dict(),
        "total": total.as_dict(),
        "total_32": total32.as_dict(),
        "lut_ratio": round(total32.LUT / total.LUT, 3) if total.LUT else None,
    }


def utilization(total: dict, part: str) -> dict:
    """``{"part", "capacity", "percent"}`` of a total (a :class:`Cost` dict) on a part of
    :data:`PARTS`; ``percent`` per resource the part has (URAM omitted where it has none).
    Raises ``KeyError`` for a part not in the table."""
    name, cap = part_capacity(part)
    pct = {k: round(100.0 * total.get(k, 0) / v, 2) for k, v in cap.items() if v}
    return {"part": name, "capacity": cap, "percent": pct}
