"""IR -> Vitis HLS C++ project, as a pure function: ``{relative path: text}``.

All C++, Tcl and shell text lives in the Jinja2 templates of the top-level
``templates/`` folder (package ``a2qhls.templates`` when installed); this module
only computes numbers (widths, folding, packed arrays) and hands them to the
templates, rendered with ``StrictUndefined``. Same IR, same folding, same widths:
byte-identical files.

The supported graph starts with an input Quant and has one or more graph outputs, each streamed out of
its own AXI-stream port of the top (``out``; with several, ``out0``, ``out1``, ... in graph-output order).
Every accumulating op (Dense, Conv, average Pool, Add) is fused with the Requant that follows
it (thresholds) into one streaming unit (:class:`LayerPlan`); a tensor with several consumers
gets a stream duplicator (``dup``). Streams are channels-last, each word a fixed number of
packed elements (a unit's ``PE``; the top input: one pixel, or the first layer's ``SIMD``).

* Dense -> ``layer<i>``, a matrix-vector unit: input words of ``IPB`` elements buffered as
  ``[SF][SIMD]``; ``NF = MH / PE`` by ``SF = MW / SIMD`` iterations at II=1, ``PE x SIMD``
  multiply-accumulates per cycle into ``PE`` accumulators ``ap_int<P>`` (wraparound; bias
  preloaded); output per PE the threshold count ``qmin + #{t: acc >= T[j, t]}`` (or the
  accumulator itself for a graph output), ``PE`` elements per word.
* Conv -> ``layer<i>_swg`` (line buffer of ``kh`` rows, stride, padding with the value 0 =
  the zero-point; windows of ``kh*kw*C_in`` values ``q - zp`` in (ky, kx, c) order, ``SIMD``
  per word) feeding ``layer<i>``, the same MVU once per output pixel (``MW = K``).
  Depthwise: the window generator feeds a vector-vector unit, PE over channels, SIMD over taps
  (words of ``PE * SIMD`` window values).
* DepthToSpace -> ``d2s<i>``, a streaming reorder (PyTorch's PixelShuffle is mode CRD): two input rows
  buffered (ping-pong), the ``r`` output rows of input row ``y`` emitted while row ``y + 1`` is read
  (:attr:`LayerPlan.d2s_buffer` for the minimal buffer); a layer's accumulator may feed it directly.
* Resize/Upsample (nearest, integer factors) -> ``up<i>`` (a row buffer for the row repeats, the
  pixel in registers for the column repeats); ConvTranspose -> ``zins<i>`` (zero insertion, no
  memory) feeding a stride-1 conv unit; Concat -> ``cat<i>`` (a pixel's words of the first input,
  then of the second, values shifted onto a common power-of-two scale). A skip path's fork copy is
  sized across the resolution changes (:func:`fork_depths`).
* max/avg Pool -> ``pool<i>`` (line buffer; max of stored integers / window sum + thresholds);
  Add -> ``add<i>`` (``ma * (a - zp_a) + mb * (b - zp_b)`` + thresholds; ``ma``/``mb`` constants, or
  per-channel ROMs where the inputs' scales differ per channel); an accumulator that feeds an add
  or an average pool (``bn(conv(x)) + shortcut``, ``Conv -> AveragePool -> Quant``) is streamed as
  its ``ap_int<P>`` values (the layer unit then has no thresholds); the fork copy that
  bypasses the other branch gets a FIFO deep enough for that branch's lag (:func:`fork_depths`).

Weights ``W[pe][nf * SF + sf][s] = weight[nf * PE + pe, sf * SIMD + s]`` (Conv weights as
``[C_out, kh*kw*C_in]``, depthwise ``[C, kh*kw]``) and thresholds ``T[pe][nf][t]`` are
partitioned on the PE and SIMD/threshold dimensions. A layer whose IR op has ``weights_external``
(:mod:`a2qhls.passes.memories`) has no weight ROM: its unit reads one beat of ``PE x SIMD`` weights
per iteration from an extra AXI-stream port of the top (:class:`WeightPort`).
"""
from __future__ import annotations

import collections
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import bounds
from .escape import FILTERS, Identifiers
from .errors import A2QError
from .ir import Add, Concat, Conv, Dense, DepthToSpace, InputQuant, IntType, Model, Pool, Requant, Upsample, ZeroInsert
from .passes.acc_bits import built_acc_bits

TOP = "a2q_top"
DEFAULT_PART = "xczu3eg-sbva484-1-e"
# a2qhls.json's format: 2 adds "control", "stream_weights" and interface.weights (the streamed weights'
# beat layout), and the default folding changed (conv SIMD divides C_in); cosim refuses other versions
FORMAT_VERSION = 2
CONTROLS = ("none", "axilite")  # block-level control of the top: ap_ctrl_none, or s_axilite (ap_start/ap_done registers)
AP_INT_DEFAULT_MAX_W = 1024  # Xilinx ap_int's default limit on a width
# bank_accesses value of a completely partitioned array: registers, any number of accesses per cycle
REGISTERS = "registers (complete partition)"
STREAMING_SWG = True  # the one-loop window generator where the folding allows it (LayerPlan.swg_streaming)
BINARY_SEARCH_MIN_NT = 32  # from this many thresholds per channel on, a pipelined binary search (log2 stages)
AP_INT_LIMIT_W = 4096  # the largest AP_INT_MAX_W this tool emits (UG1399: ap_[u]int up to 4096 bits by default builds)

__all__ = ["TOP", "CSIM", "csim_commands", "csim_sources", "project_units", "template_dir", "plan", "generate", "summary", "LayerPlan",
           "WeightPort", "weight_ports", "design_estimate", "fork_reasons", "swg_max_lead", "CONTROLS"]

# The g++ C-simulation build, the one source of both build_csim.sh (rendered from it) and
# cosim's compiler calls (csim_commands): the top (with the AXI adapters), each unit's own
# translation unit (firmware/layers/<unit>.cpp) and the testbench compiled separately (in
# parallel, at most one compiler per core), then linked. Paths are relative to the project
# folder; all are constants or generated unit names (C identifiers).
CSIM = {
    "default_flags": "-O1",  # CXXFLAGS when not set
    # -ftree-vectorize: the C simulation's native dot products (LayerPlan.native_sum) vectorize at -O1
    # (ResNet18: 2.3x less csim CPU than plain -O1 at the same compile time; -O2 costs 1.3x the compile)
    "flags": ["-std=c++14", "-w", "-ftree-vectorize"],
    "project_includes": ["firmware"],  # after -I<ap_types folder>
    "sources": [[f"firmware/{TOP}.cpp", "top.o"], ["tb/a2q_tb.cpp", "tb.o"]],
    "units": "firmware/layers",  # one <unit>.cpp per streaming unit, object <unit>.o
    "binary": "a2q_csim",
}


def csim_sources(unit_names) -> list:
    """``[[source, object]]`` of the C simulation build: the top (with the first units), the
    testbench, then the other translation units (``unit_names``: their file stems)."""
    return [list(p) for p in CSIM["sources"]] + [[f"{CSIM['units']}/{n}.cpp", f"{n}.o"] for n in unit_names]


def project_units(project) -> list:
    """The file stems of a generated project's extra translation units: ``part1``, ``part2``, ...
    as long as ``firmware/layers/part<g>.cpp`` exists (the names :func:`unit_file` gives; nothing
    else in that folder is compiled, as in ``build_csim.sh``)."""
    names, g = [], 1
    while (Path(project) / CSIM["units"] / f"{unit_file(g)}.cpp").is_file():
        names.append(unit_file(g))
        g += 1
    return names


def csim_commands(project, *, include, cxx: str = "g++", cxxflags=None, obj, binary=None) -> list:
    """The compiler calls of the C simulation build, as argument lists (no shell).

    ``project``: the project folder; ``include``: the folder with ``ap_int.h``; ``cxxflags``: a
    list of flags (default ``[CSIM["default_flags"]]``); ``obj``: a folder for object files;
    ``binary``: the executable (default ``<project>/a2q_csim``). Returns
    ``[compile unit..., compile top, compile testbench, link]``: all but the link are independent
    (run them in parallel). ``build_csim.sh`` runs exactly these commands (rendered from the
    same :data:`CSIM` and :func:`csim_sources`).
    """
    project, obj = str(project), str(obj)
    flags = list(cxxflags) if cxxflags is not None else [CSIM["default_flags"]]
    flags += list(CSIM["flags"]) + [f"-I{include}"] + [f"-I{project}/{d}" for d in CSIM["project_includes"]]
    sources = csim_sources(project_units(project))
    cmds = [[cxx, *flags, "-c", f"{project}/{src}", "-o", f"{obj}/{o}"] for src, o in sources]
    link = [cxx, *flags, *[f"{obj}/{o}" for _, o in sources], "-o", str(binary or f"{project}/{CSIM['binary']}")]
    return cmds + [link]


def template_dir() -> Path:
    """The templates folder: the installed package ``a2qhls.templates``, else the repo's ``templates/``."""
    try:
        from importlib.resources import files

        p = files("a2qhls.templates")
        path = Path(str(p))
        if (path / "layers.h.j2").is_file():
            return path
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    import a2qhls

    path = Path(a2qhls.__file__).resolve().parent.parent / "templates"
    if not (path / "layers.h.j2").is_file():
        raise A2QError(f"a2qhls templates not found (looked for package a2qhls.templates and {path})")
    return path


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # the one escaping function per target language (a2qhls/escape.py): every string that comes
    # from the model file goes through one of these in the templates
    env.filters.update(FILTERS)
    return env


@dataclass
class IntT:
    """A C++ integer type: ``ap_int<bits>`` or ``ap_uint<bits>``."""

    bits: int
    signed: bool

    @property
    def slot_bits(self) -> int:
        """The bits of one element in whole bytes (an AXI-stream port's slot for it)."""
        return 8 * ((self.bits + 7) // 8)

    @staticmethod
    def for_range(lo: int, hi: int) -> "IntT":
        if lo >= 0:
            return IntT(max(1, int(hi).bit_length()), False)
        return IntT(max(2, int(bounds.signed_bits_for_range(lo, hi))), True)


@dataclass
class LayerPlan:
    """One streaming unit of the dataflow: a layer (fused with its Requant), a pool, an add or a fork.

    ``kind``: ``mvu`` (Dense), ``conv`` (sliding-window generator ``<cname>_swg`` feeding a
    matrix-vector unit), ``dw`` (sliding-window generator feeding a vector-vector unit),
    ``maxpool``, ``avgpool`` (window sum + thresholds), ``add`` (requantizing residual add),
    ``dup`` (stream duplicator at a fork), ``dwc`` (stream width converter: ``IPB`` elements per
    input word to ``PE`` per output word, where a producer's PE differs from a consumer's SIMD),
    ``d2s`` (DepthToSpace: ``dense`` is the op; ``MW`` = input channels ``C``, ``MH`` = output channels
    ``C / r^2``, ``PE`` = ``IPB`` elements per word in and out).
    Fields that a kind does not use keep their defaults.
    """

    index: int
    cname: str
    dense: object  # the op (Dense, Conv, Pool, Add; None for dup)
    requant: Optional[Requant]
    MW: int
    MH: int
    PE: int
    SIMD: int
    IPB: int  # input elements per stream word
    P: int
    safe_bits: int
    in_t: IntT  # stored input integers q
    zp: int
    val_t: IntT  # q - zp
    w_t: Optional[IntT]
    bias_t: Optional[IntT]
    out_t: IntT  # stored output integers
    thr_t: Optional[IntT]
    NT: int
    qmin: int
    kind: str = "mvu"
    inputs: list = field(default_factory=list)  # tensors read
    outputs: list = field(default_factory=list)  # tensors written (a dup writes one tensor to several streams)
    in_shape: tuple = ()
    out_shape: tuple = ()
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    OPB: int = 1  # sliding-window generator: window elements per word
    IPB_b: int = 1  # add: elements per word of the second input
    in_t_b: Optional[IntT] = None
    zp_b: int = 0
    bipolar_b: bool = False  # add: the second input is bipolar
    mult: tuple = (1, 1)
    mult_rom: tuple = ()  # add with per-channel multipliers: per input M[pe][nf] = multiplier of channel nf * PE + pe
    mult_t: tuple = ()  # add: the unsigned types of those multipliers
    n_out: int = 1  # dup: number of copies
    win_t: Optional[IntT] = None  # window values (q - zp, padding 0); concat: the shifted values
    scale: tuple = (1, 1)  # upsample: factors (sy, sx); zeroins: the insertion factors (zy, zx)
    in_shape_b: tuple = ()  # concat: the second input's shape
    shifts: tuple = (0, 0)  # concat: left shift of each input's value q - zp
    out_zp: int = 0  # concat: the output type's zero-point
    thr_binary: bool = False  # thresholds searched in log2(NT+1) stages instead of NT comparators
    bipolar: bool = False  # the input is bipolar: stored bit q, value 2q - 1 (val_t/win_t hold values)
    xnor: bool = False  # bipolar x bipolar in FINN's XNOR-popcount form (see uses_xnor_popcount)
    w_stream: bool = False  # weights read from an extra AXI-stream port of the top (op.weights_external), no ROM

    @property
    def NF(self) -> int:
        return self.MH // self.PE

    @property
    def SF(self) -> int:
        return self.MW // self.SIMD

    @property
    def out_tensor(self) -> str:
        return self.outputs[0]

    @property
    def pixels(self) -> int:
        return int(self.out_shape[0] * self.out_shape[1]) if len(self.out_shape) == 3 else 1

    @property
    def in_elems(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_elems(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def in_elems_b(self) -> int:
        """Elements of the second input (add: as the first; concat: its own shape)."""
        return int(np.prod(self.in_shape_b)) if self.kind == "concat" else self.in_elems

    @property
    def has_acc(self) -> bool:
        return self.kind in ("mvu", "conv", "dw", "avgpool", "add")

    @property
    def has_weights(self) -> bool:
        return self.kind in ("mvu", "conv", "dw")

    @property
    def cycles(self) -> int:
        """Iterations per image of the unit's pipelined loops (its cycles per image at II=1, not
        counting pipeline fill); for conv/dw the matrix unit alone (:attr:`swg_cycles`: its window
        generator). The C simulation counts exactly these (``-DA2Q_COUNT_CYCLES``)."""
        rd = self.in_elems // self.IPB
        if self.kind == "dwc":
            return max(rd, self.in_elems // self.PE)
        if self.kind == "mvu":
            return self.NF * self.SF
        if self.kind in ("conv", "dw"):
            return self.pixels * self.NF * self.SF
        if self.running_max:
            return rd  # one input word per iteration, an output word in the same iteration
        if self.kind in ("maxpool", "avgpool"):
            if self.swg_streaming:  # one loop: a read and a window tap per iteration where it can
                return swg_schedule(self)
            return rd + self.out_elems // self.PE  # rows read, then windows written: not overlapped
        if self.kind == "add":
            return rd  # one word of a and of b in, one word out per iteration
        if self.kind in ("upsample", "zeroins", "concat"):
            return self.out_elems // self.PE  # one output word per iteration (reads in some of them)
        if self.kind == "d2s":
            return rd + self.in_shape[1] * self.in_shape[2] // self.PE  # read row y while emitting row y - 1, then the last
        return rd  # dup

    @staticmethod
    def rom_impl(depth: int) -> Optional[str]:
        """Storage of a constant table bank ``depth`` words deep: None (depth 1: constants in logic),
        ``lutram`` up to 64 words (a LUT6 holds 64 x 1 bits), else ``bram``."""
        if depth <= 1:
            return None
        return "lutram" if depth <= 64 else "bram"

    @property
    def w_words(self) -> list:
        """The packed weight words of one (PE, tile): ``[(first s, count)]``, ``64 // B`` weights of
        ``B`` bits a word (see :func:`weight_words`)."""
        E = 64 // self.w_t.bits
        return [(s0, min(E, self.SIMD - s0)) for s0 in range(0, self.SIMD, E)]

    @property
    def native_csim(self) -> bool:
        """Whether the C simulation may compute this unit's sums in native integers
        (``#ifndef __SYNTHESIS__``): the bias and the sum of a whole vector's products (``MW`` of
        them) fit 63 bits, so wrapping once per vector to ``P`` bits equals ``ap_int<P>``'s wrap at
        every addition (addition modulo 2^P is a ring map). See :attr:`native_elem` for the types."""
        if not self.has_weights or getattr(self, "w_stream", False):  # streamed weights: no ROM to decode once
            return False
        v = self.win_t if self.kind != "mvu" else self.val_t
        b = self.bias_t.bits if self.bias_t is not None else 0
        return self.P <= 60 and b <= 60 and self.w_t.bits + v.bits + int(self.MW).bit_length() <= 60

    @property
    def native_sum(self) -> str:
        """C simulation: the native type of one word's sum of SIMD products: ``int`` when it fits 31
        bits (so g++ vectorizes the dot product), else ``long long``."""
        v = self.win_t if self.kind != "mvu" else self.val_t
        return "int" if self.w_t.bits + v.bits + int(self.SIMD).bit_length() <= 31 else "long long"

    @property
    def native_elem(self) -> str:
        """C simulation: the native type of the decoded weights and input values (``short`` when both
        fit 16 bits and the sum is ``int``, else the sum's type)."""
        v = self.win_t if self.kind != "mvu" else self.val_t

        def fits16(t: IntT) -> bool:
            return t.bits <= 15 or (t.signed and t.bits <= 16)

        if self.native_sum == "int" and fits16(v) and fits16(self.w_t):
            return "short"
        return self.native_sum

    @property
    def native_add(self) -> bool:
        """Whether the C simulation computes this residual add with native integers
        (``#ifndef __SYNTHESIS__``): its words fit 64 bits, the sum of both scaled values fits a
        long long exactly (then one wrap to ``P`` bits), and the thresholds compare as long longs."""
        if self.kind != "add":
            return False
        words = (self.PE * self.in_t.bits, self.PE * self.in_t_b.bits, self.PE * self.out_t.bits)
        thr = self.thr_stage_t if self.thr_binary else self.thr_t
        # the largest multiplier over all channels (``mult`` holds the estimate's, not the largest)
        mults = [abs(int(m)) for m in self.mult] + [int(v) for rom in (self.mult_rom or ()) for row in rom for v in row]
        scaled = max(self.val_t.bits, self.win_t.bits if self.win_t else 0) + max(mults).bit_length() + 1
        return max(words) <= 64 and self.P <= 62 and (thr is None or thr.bits <= 63) and scaled <= 60

    @property
    def w_impl(self) -> Optional[str]:
        """Storage of each PE's weight ROM (``NF*SF`` words of ``SIMD`` packed weights)."""
        return self.rom_impl(self.NF * self.SF) if self.has_weights and not self.w_stream else None

    @property
    def w_port(self) -> Optional[str]:
        """The top's AXI-stream port that carries this unit's weights (``w_stream``), else None."""
        return f"{self.cname}_weights" if self.w_stream else None

    @property
    def t_impl(self) -> Optional[str]:
        """Storage of each PE's threshold ROM (``NF`` words of ``NT`` packed thresholds)."""
        return self.rom_impl(self.MH // self.PE) if self.NT and not self.thr_binary else None

    @property
    def thr_stages(self) -> int:
        """Binary search: stages K = ceil(log2(NT + 1)); stage k holds 2^k thresholds per channel."""
        return int(self.NT).bit_length()

    @property
    def thr_stage_t(self) -> Optional[IntT]:
        """Binary search: the stage tables' type, wide enough for the sentinel 2^(P-1) (above any accumulator)."""
        return IntT(max(self.thr_t.bits, self.P + 1), True) if self.thr_binary else None

    def thr_stage_impl(self, k: int) -> Optional[str]:
        return self.rom_impl(self.NF << k)

    @property
    def running_max(self) -> bool:
        """A max pool whose windows tile the map (kernel == stride, no padding): a running-max unit."""
        return self.kind == "maxpool" and tuple(self.kernel) == tuple(self.stride) and not any(self.pads)

    @property
    def bank_accesses(self) -> dict:
        """Memory -> accesses per bank per iteration of the unit's pipelined loop (II=1 on a
        dual-port RAM needs at most 2). Registers (completely partitioned arrays) are not listed."""
        out: dict = {}
        if self.kind in ("mvu", "conv", "dw"):
            if self.kind != "dw" and self.NF > 1:
                out["inbuf"] = 1  # written when nf == 0, else read
            if self.w_impl:
                out["W"] = 1  # one packed SIMD word per PE bank
            if self.bias_t is not None and self.NF > 1:
                out["B"] = 1
        if self.kind == "d2s":
            out["buf"] = 2  # one element written (the word read), one read (the word emitted) per bank
        if self.running_max and self.MH // self.PE > 1:
            out["mx"] = 2  # the running max of (ox, channel group): read, then written
        if self.mult_rom and self.MH // self.PE > 1:
            out["MA"] = out["MB"] = 1  # one multiplier per PE bank and input
        if self.t_impl:
            out["T"] = 1  # one packed word of NT thresholds per PE bank
        if self.kind == "upsample" and self.scale[0] > 1:
            out["rowbuf"] = 1  # written on the first copy of a row, read on the others
        if self.thr_binary:
            for k in range(self.thr_stages):
                if self.thr_stage_impl(k):
                    out[f"T{k}"] = 1  # one threshold per PE bank and stage
        return out

    @property
    def d2s_buffer(self) -> int:
        """Elements a DepthToSpace unit buffers: two input rows, ``2 * W * C``.

        The least any full-rate schedule needs (one word in and one out per cycle) is about
        ``W * C * (r - 1) / r``: output row ``y * r`` needs, for its last pixel, input pixel
        ``W - 1`` of row ``y``, which arrives ``W * C`` elements after the row starts while that output
        row is only ``W * C / r`` elements long, so the output lags the input by at least
        ``(W - 1) * C * (r - 1) / r`` elements, all of them read and not yet written. One row
        (``W * C``) holds that, but only if each row is written into the slots the previous row frees,
        whose order (sub-row, pixel, column, channel) differs from the read order (pixel, channel): an
        address permutation that changes every row. Two rows with fixed addresses cost at most
        ``2r / (r - 1)`` times the minimum (4x at r=2) and keep the addressing counters-only; a single
        row read, then emitted, would halve the buffer and double the cycles."""
        return 2 * self.in_shape[1] * self.in_shape[2] if self.kind == "d2s" else 0

    @property
    def swg_streaming(self) -> bool:
        """The window generator reads and emits in one loop from a line buffer of packed words
        (``swg_V`` channels each): Conv with SIMD dividing C_in, depthwise with SIMD = 1 and input
        words of the same size. Otherwise the fallback reads rows, then emits windows."""
        if not STREAMING_SWG:
            return False
        if self.kind == "conv":
            return self.in_shape[2] % self.SIMD == 0 and self.IPB == self.SIMD
        if self.kind == "dw":
            return self.SIMD == 1 and self.IPB == self.PE
        if self.kind in ("maxpool", "avgpool"):  # a pool: the same loop, each tap folded into a running max / sum
            return not self.running_max and self.IPB == self.PE
        return False

    @property
    def swg_bank_accesses(self) -> dict:
        """Window generator: memory -> accesses per bank per iteration. Streaming: one write of the
        word read, one read of the word emitted (the line buffer is one simple dual-port RAM). The
        row-buffer fallback: ``lb`` is registers (a complete partition, :data:`REGISTERS`), any
        number of reads per cycle; its size is bounded by ``SWG_REGISTER_BITS_MAX`` (:func:`plan`)."""
        if self.swg_streaming:
            return {"lb": 2}
        return {"lb": REGISTERS} if self.kind in ("conv", "dw") else {}

    @property
    def swg_buffer_bits(self) -> int:
        """Bits of the row-buffer window generator's register line buffer, ``kh * W * C * bits``
        (0 for the streaming generator, whose line buffer is a RAM)."""
        if self.kind not in ("conv", "dw") or self.swg_streaming:
            return 0
        return self.kernel[0] * self.in_shape[1] * self.in_shape[2] * self.win_t.bits

    @property
    def swg_V(self) -> int:
        """Channels per line-buffer word (and per input word) of a streaming window generator."""
        return self.SIMD if self.kind == "conv" else self.PE

    @property
    def swg_rows(self) -> int:
        """Line-buffer rows of a streaming window generator: the kernel's, plus the stride's read ahead."""
        return self.kernel[0] + self.stride[0]

    def swg_need(self, oy: int, ox: int) -> int:
        """Streaming window generator: input words read before output pixel (oy, ox) is emitted
        (every word its window reaches in raster order, plus one; 0 when it reaches no row)."""
        H, W, C = self.in_shape
        G = C // self.swg_V
        iy_max = min(H - 1, oy * self.stride[0] - self.pads[0] + self.kernel[0] - 1)
        ix_max = min(W - 1, ox * self.stride[1] - self.pads[1] + self.kernel[1] - 1)
        return min((iy_max * W + ix_max + 1) * G + 1, H * W * G) if iy_max >= 0 else 0

    @property
    def swg_cycles(self) -> int:
        """The sliding-window generator's iterations per image (conv, dw): see :func:`swg_schedule`
        for the streaming one; the fallback reads rows, then emits windows (their sum)."""
        if self.swg_streaming:
            return swg_schedule(self)
        return self.in_elems // self.IPB + self.pixels * (self.kernel[0] * self.kernel[1] * self.in_shape[2]) // self.OPB

    @property
    def stage_cycles(self) -> int:
        return max(self.cycles, self.swg_cycles) if self.kind in ("conv", "dw") else self.cycles


def swg_max_lead(u: "LayerPlan") -> int:
    """The most input words a streaming window generator has read beyond the input pixels its
    emitted output pixels stand for, over its schedule (:func:`swg_schedule`'s decisions): at each
    iteration, ``read - G * done * (H * W) / (OH * OW)`` with ``done`` whole output pixels emitted
    (``G`` words per input pixel). A bypass FIFO beside it must hold this many words (in its words
    of ``V`` channels), which :func:`_lag_rows`'s row count bounds."""
    return _swg_run(u, lead=True)[1]


def swg_schedule(u: "LayerPlan") -> int:
    """Iterations per image of the streaming window generator (templates/_cnn_units.j2, ``swg_stream``),
    by running its schedule: each iteration first decides, from the state at its start,
    - to emit the next window word when every input word its output pixel needs, plus one, has
      been read (the newest word is never read back in the iteration after its write), and
    - to read the next input word when its row is less than ``swg_rows`` rows below the current
      output pixel's top row (rows above the top are free);
    and stops when all words are read and emitted. The template makes the same decisions."""
    return _swg_run(u)[0]


def _swg_run(u: "LayerPlan", lead: bool = False) -> tuple[int, int]:
    """``(iterations per image, most words read ahead)`` of the streaming window generator's schedule:
    :func:`swg_schedule`, :func:`swg_max_lead` (the lead only when ``lead``, else 0)."""
    H, W, C = u.in_shape
    OH, OW = u.out_shape[0], u.out_shape[1]
    KH, KW = u.kernel
    SH, _ = u.stride
    G = C // u.swg_V
    R = u.swg_rows
    total_rd = H * W * G
    per_px = KH * KW * G
    ratio = (H * W) / (OH * OW)
    rd = it = most = 0
    for oy in range(OH):
        top = oy * SH - u.pads[0]
        for ox in range(OW):
            need = u.swg_need(oy, ox)
            emitted = 0
            while emitted < per_px:
                it += 1
                can_emit = rd >= need
                if rd < total_rd and rd // (W * G) < top + R:
                    rd += 1
                if can_emit:
                    emitted += 1
            if lead:  # the words read grow within an output pixel's iterations: its last one leads most
                most = max(most, rd - int(G * (oy * OW + ox) * ratio))
    return it + total_rd - rd, most  # then one word read per iteration: the rows below the last window


def uses_xnor_popcount(op, in_type) -> bool:
    """Whether the layer ``op`` (Dense/Conv) is built in FINN's XNOR-popcount form: bipolar inputs
    (stored bit ``x``, value ``2x - 1``), weights all in {-1, +1} (stored as the bit ``w = 1`` for +1),
    no bias, no padding (a padded tap is the value 0, which no bit encodes), not depthwise.

    Then ``sum_i (2w_i - 1)(2x_i - 1) = 2 * popcount(XNOR(w, x)) - K`` (a product is +1 exactly when
    the bits agree; Umuroglu et al., "FINN", FPGA 2017). The unit accumulates the popcount in its
    ``P``-bit accumulator and outputs ``2 * pop - K`` wrapped to ``P`` bits, which equals the
    wrapped sum of products for any ``P`` (``2 * (pop mod 2^P) = 2 * pop mod 2^P``), so the numpy
    model (:mod:`a2qhls.sim`, sums of values) is unchanged and the widths are the exact ones.

    Why (measured with :mod:`a2qhls.estimate`): per product a 1-bit XNOR instead of a 2-bit signed
    multiply, an adder tree of 1-bit leaves, 1-bit weights: 2.1-2.2x fewer LUTs per matrix unit and
    half the weight memory on TFC/CNV layer shapes (``bench/bnn_pynq.py`` prints the estimate)."""
    if not getattr(in_type, "bipolar", False) or op.bias is not None:
        return False
    if isinstance(op, Conv) and (op.depthwise or any(op.pads)):
        return False
    w = np.asarray(op.weight)
    return bool(w.size) and bool(np.all(np.abs(w) == 1))


def _weight_matrix(op) -> np.ndarray:
    """``[MH, MW]`` integer weights: Dense as is; Conv ``[C_out, kh*kw*C_in]`` in (ky, kx, c) order
    (depthwise: ``[C, kh*kw]``)."""
    w = np.asarray(op.weight)
    return w.reshape(w.shape[0], -1)


def _requant_of(model: Model, op) -> Optional[Requant]:
    cons = model.consumers(op.outputs[0])
    rq = cons[0] if len(cons) == 1 and isinstance(cons[0], Requant) else None
    if rq is None and any(isinstance(c, Requant) for c in cons):
        raise A2QError(f"'{op.name}': an accumulator used by more than its activation is not supported")
    if rq is not None and op.outputs[0] in model.outputs:
        raise A2QError(f"'{op.name}': an accumulator used by more than its activation is not supported")
    if rq is None and len(cons) == 1 and isinstance(cons[0], DepthToSpace):
        return None  # the accumulator itself is reordered (a graph output through DepthToSpace)
    if rq is None and cons and not (len(cons) == 1 and _reads_accumulator(cons[0])):
        raise A2QError(f"'{op.name}': its accumulator feeds {cons[0].op} '{cons[0].name}'"
                       f"{' and more' if len(cons) > 1 else ''}; an accumulator may feed one Requant (activation Quant), "
                       "residual add, average pool or DepthToSpace")
    if rq is not None and rq.thresholds is None:
        raise A2QError(f"{rq.name}: thresholds not computed (run passes.thresholds.compute_thresholds)")
    return rq


def _reads_accumulator(op) -> bool:
    """Ops that take an accumulator as it is (streamed at the producer's width): a residual add, an average pool."""
    return isinstance(op, Add) or (isinstance(op, Pool) and op.mode == "avg")


def _thr_fields(rq: Optional[Requant], P: int) -> tuple:
    if rq is not None:
        T = np.asarray(rq.thresholds)
        NT = int(T.shape[1])
        thr_t = IntT(int(bounds.signed_bits_for_range(min(int(T.min()), 0), max(int(T.max()), 0))), True) if NT else None
        ot = rq.out_type
        return NT, thr_t, IntT(ot.bits, ot.signed), ot.qmin
    return 0, None, IntT(P, True), 0


class Units(list):
    """:func:`plan`'s result: the units in dataflow order (a list), and ``outputs``: the graph output
    tensors in graph-output order, each streamed out of its own AXI-stream port (:func:`axis_ports`)."""

    def __init__(self, units=(), outputs=()):
        super().__init__(units)
        self.outputs = list(outputs)


def graph_outputs(units: list) -> list:
    """The graph output tensors of a plan, in graph-output order (a plain list of units: its last unit's)."""
    return list(getattr(units, "outputs", None) or [units[-1].out_tensor])


def _shape3(shape) -> tuple:
    return tuple(int(v) for v in shape)


def plan(model: Model) -> Units:
    """Check the graph is supported and compute every unit's C++ types, in dataflow order.

    Reads the build's decisions from the IR: each layer's folding (``op.pe``/``op.simd``, from
    :func:`a2qhls.passes.folding.apply_folding`) and each accumulator's width (``op.acc_bits``).
    Returns :class:`Units` (the units, and the graph outputs in order). A tensor that is a graph output
    and is also read by later units gets a ``dup`` whose last copy feeds its output port.
    Raises :class:`A2QError` for a graph code generation does not support or a layer without folding.
    """
    ops = model.ops
    if not ops or not isinstance(ops[0], InputQuant):
        raise A2QError("code generation needs the graph to start with an input Quant")
    for op in ops:
        if isinstance(op, Conv) and tuple(op.zero_insert) != (1, 1):
            prod = model.producer(op.inputs[0])
            if not (isinstance(prod, ZeroInsert) and tuple(prod.factor) == tuple(op.zero_insert)):
                raise A2QError(f"'{op.name}': a transposed convolution must read its ZeroInsert's output")
    widths = built_acc_bits(model)
    for d in model.layers():
        if d.pe is None or d.simd is None:
            raise A2QError(f"layer '{d.name}': no folding decided (run passes.folding.apply_folding first)")
    units: list[LayerPlan] = []
    epw: dict = {}  # tensor -> elements per stream word
    etype: dict = {}  # tensor -> its stored element type (an accumulator's: ap_int<P>)
    # unit names are generated (never taken from the model's names) and unique C++ identifiers:
    # a prefix per kind numbered in dataflow order (layer0, pool0, dup0, ...)
    ids = Identifiers(reserved={TOP, "a2q_in_word", "a2q_out_word", "a2q_axis_in", "a2q_axis_out", "a2q_axis_word",
                                "a2q_in_adapter", "a2q_out_adapter", "a2q_cycle_count", "a2q_process_name"})
    named: collections.Counter = collections.Counter()  # prefix -> units named with it so far

    def cname(prefix: str) -> str:
        """The next unit name with ``prefix``."""
        named[prefix] += 1
        return ids.claim(f"{prefix}{named[prefix] - 1}")

    def append(u: LayerPlan) -> None:
        """Appends a unit, numbered by its place in dataflow order (the units are built with ``index=0``)."""
        u.index = len(units)
        units.append(u)

    def record(u: LayerPlan) -> None:
        """Appends a unit that produces a new tensor: notes the tensor's words and element type, then
        copies it for each consumer when it has more than one."""
        append(u)
        epw[u.out_tensor], etype[u.out_tensor] = u.PE, u.out_t
        fork(u.out_tensor)
    iq = ops[0]
    first_layer = next((o for o in ops if isinstance(o, (Dense, Conv))), None)

    def dtype_of(tensor: str) -> IntType:
        """The integer type a tensor is streamed as: its activation type, or an accumulator's ``ap_int<P>``."""
        t = model.tensors[tensor]
        if t.dtype is not None:
            return t.dtype
        return IntType(widths[model.producer(tensor).name], True)
    in_info = model.tensors[iq.outputs[0]]
    fused = set()

    def fork(tensor: str) -> None:
        """A dup when ``tensor`` has several readers; each graph output's AXI-stream port counts as one (two
        graph outputs may be one IR tensor, e.g. ``a`` and ``Flatten(a)``)."""
        n = len(model.consumers(tensor)) + model.outputs.count(tensor)
        if n > 1:
            t = model.tensors[tensor]
            it = etype[tensor]
            append(LayerPlan(
                index=0, cname=cname("dup"), dense=None, requant=None, MW=t.channels, MH=t.channels,
                PE=epw[tensor], SIMD=1, IPB=epw[tensor], P=0, safe_bits=0, in_t=it, zp=0, val_t=it, w_t=None,
                bias_t=None, out_t=it, thr_t=None, NT=0, qmin=0, kind="dup", inputs=[tensor], outputs=[tensor],
                in_shape=_shape3(t.shape), out_shape=_shape3(t.shape), n_out=n,
            ))

    def convert(tensor: str, to_epw: int) -> None:
        """Width converters in front of a consumer that wants ``to_epw`` elements per word: one when
        one count divides the other, else two through their least common multiple."""
        src = epw[tensor]
        if src == to_epw:
            return
        t = model.tensors[tensor]
        it = etype[tensor]
        lcm = src * to_epw // math.gcd(src, to_epw)
        steps = [(src, to_epw)] if lcm in (src, to_epw) else [(src, lcm), (lcm, to_epw)]
        for a, b in steps:
            append(LayerPlan(
                index=0, cname=cname("dwc"), dense=None, requant=None, MW=t.channels, MH=t.channels,
                PE=b, SIMD=1, IPB=a, P=0, safe_bits=0, in_t=it, zp=0, val_t=it, w_t=None, bias_t=None, out_t=it,
                thr_t=None, NT=0, qmin=0, kind="dwc", inputs=[tensor], outputs=[tensor],
                in_shape=_shape3(t.shape), out_shape=_shape3(t.shape),
            ))

    # the top input: one word per pixel for a feature map, the first layer's SIMD for a vector
    etype[iq.outputs[0]] = IntT(in_info.dtype.bits, in_info.dtype.signed)
    if len(in_info.shape) == 3:
        epw[iq.outputs[0]] = in_info.channels
    else:
        feeds_first = first_layer is not None and first_layer.inputs[0] == iq.outputs[0]
        epw[iq.outputs[0]] = int(first_layer.simd) if feeds_first else 1
    fork(iq.outputs[0])
    for op in ops[1:]:
        if isinstance(op, Requant):
            if op.name not in fused:
                raise A2QError(f"code generation: '{op.name}' does not directly follow an accumulator")
            continue
        if isinstance(op, InputQuant):
            raise A2QError(f"code generation: a second input Quant '{op.name}' is not supported")
        for t in op.inputs:
            if t not in epw:
                raise A2QError(f"code generation: op '{op.name}' ({op.op}) reads '{t}', which no unit produces")
        if isinstance(op, DepthToSpace):
            record(_d2s_unit(op, cname("d2s"), epw, etype, convert))  # after any width converter in front of it
            continue
        x = model.tensors[op.inputs[0]]
        in_dt = dtype_of(op.inputs[0])
        ipb0 = epw[op.inputs[0]]
        if isinstance(op, Dense):
            # the matrix-vector unit takes SIMD elements per word (it stores the vector as SF words)
            simd = int(op.simd)
            if op.K % simd == 0 and int(np.prod(x.shape)) % epw[op.inputs[0]] == 0:
                convert(op.inputs[0], simd)
                ipb0 = simd
        if isinstance(op, Conv) and x.shape[2] % epw[op.inputs[0]] == 0 and STREAMING_SWG:
            # the one-loop window generator stores and reads words of SIMD (conv) or PE (depthwise) channels
            v = int(op.pe) if op.depthwise else int(op.simd)
            if (op.simd == 1 if op.depthwise else x.shape[2] % v == 0) and x.shape[2] % v == 0:
                convert(op.inputs[0], v)
                ipb0 = v
        if isinstance(op, Add):
            # one iteration reads a word of each addend: b repacked to a's elements per word
            convert(op.inputs[1], epw[op.inputs[0]])
        if isinstance(op, Concat):
            # words of a common element count E (dividing both inputs' channels), a's then b's per pixel
            E = math.gcd(epw[op.inputs[0]], epw[op.inputs[1]])
            convert(op.inputs[0], E)
            convert(op.inputs[1], E)
            ipb0 = E
        in_t = IntT(in_dt.bits, in_dt.signed)
        if isinstance(op, (Upsample, ZeroInsert, Concat)):
            record(_reorder_plan(model, op, cname, ipb0, in_t))
            continue
        rq = _requant_of(model, op) if not (isinstance(op, Pool) and op.mode == "max") else None
        if rq is not None:
            fused.add(rq.name)
        P = widths.get(op.name, 0)
        safe = int(op.acc.acc_bits) if getattr(op, "acc", None) is not None else P
        NT, thr_t, out_t, qmin = _thr_fields(rq, P)
        # a binary search needs every channel's thresholds in order (they are: exact requantization
        # is monotone; negated channels were mirrored by the importer)
        thr_binary = NT >= BINARY_SEARCH_MIN_NT and bool(np.all(np.diff(np.asarray(rq.thresholds, dtype=object), axis=1) >= 0))
        out_tensor = (rq or op).outputs[0]
        common = dict(
            index=0, dense=op, requant=rq, IPB=ipb0, P=P, safe_bits=safe, in_t=in_t,
            zp=int(in_dt.zero_point), val_t=IntT.for_range(in_dt.vmin, in_dt.vmax), out_t=out_t, thr_t=thr_t, NT=NT,
            qmin=qmin, inputs=list(op.inputs), outputs=[out_tensor], in_shape=_shape3(x.shape),
            out_shape=_shape3(model.tensors[out_tensor].shape), thr_binary=thr_binary, bipolar=bool(in_dt.bipolar),
        )
        if isinstance(op, (Dense, Conv)):
            PE, SIMD = int(op.pe), int(op.simd)
            if op.channels % PE or op.K % SIMD:
                raise A2QError(f"layer '{op.name}': PE={PE}/SIMD={SIMD} do not divide MH={op.channels}/MW={op.K}")
            w = _weight_matrix(op)
            xnor = uses_xnor_popcount(op, in_dt)
            w_t = IntT.for_range(min(int(w.min()), -1), max(int(w.max()), 1))
            w_t = IntT(1, False) if xnor else IntT(w_t.bits, True)
            bias_t = None
            if op.bias is not None:
                b = np.asarray(op.bias)
                bias_t = IntT(int(bounds.signed_bits_for_range(min(int(b.min()), 0), max(int(b.max()), 0))), True)
            u = LayerPlan(cname=cname("layer"), MW=op.K, MH=op.channels, PE=PE, SIMD=SIMD, w_t=w_t, bias_t=bias_t, **common)
            u.w_stream = bool(getattr(op, "weights_external", False))
            if u.w_stream and getattr(op, "depthwise", False):
                raise A2QError(f"layer '{op.name}': a depthwise layer cannot stream its weights (Dense and Conv layers can)")
            if xnor:  # stored bits flow unchanged into the unit; the sum is 2 * popcount(XNOR) - K
                u.xnor, u.bipolar, u.zp, u.val_t = True, False, 0, IntT(1, False)
            if isinstance(op, Conv):
                u.kind = "dw" if op.depthwise else "conv"
                u.kernel, u.stride, u.pads = tuple(op.kernel), tuple(op.stride), tuple(op.pads)
                u.OPB = PE * SIMD if op.depthwise else SIMD
                u.win_t = IntT(1, False) if u.xnor else IntT.for_range(min(in_dt.vmin, 0), max(in_dt.vmax, 0))
                if u.in_shape[2] % u.IPB:
                    raise A2QError(f"layer '{op.name}': input words of {u.IPB} elements do not divide its {u.in_shape[2]} channels")
        elif isinstance(op, Pool):
            C = op.channels
            u = LayerPlan(cname=cname("pool"), MW=op.K, MH=C, PE=epw[op.inputs[0]], SIMD=1, w_t=None, bias_t=None, **common)
            u.kind = "maxpool" if op.mode == "max" else "avgpool"
            u.kernel, u.stride, u.pads = tuple(op.kernel), tuple(op.stride), tuple(op.pads)
            if u.kind == "maxpool":
                if any(op.pads):
                    raise A2QError(f"'{op.name}': padded max pooling is not supported by code generation")
                u.out_t = in_t
                u.win_t = in_t
            else:
                u.win_t = IntT.for_range(min(in_dt.vmin, 0), max(in_dt.vmax, 0))
        elif isinstance(op, Add):
            C = op.channels
            tb = dtype_of(op.inputs[1])
            u = LayerPlan(cname=cname("add"), MW=2, MH=C, PE=epw[op.inputs[0]], SIMD=1, w_t=None, bias_t=None, **common)
            u.kind = "add"
            u.IPB_b = u.IPB
            u.in_t_b = IntT(tb.bits, tb.signed)
            u.zp_b = int(tb.zero_point)
            u.bipolar_b = bool(tb.bipolar)
            ms = [[int(v) for v in op.multiplier(k)] for k in range(2)]
            # the estimate's constant multiplier: the channel's with the most set bits (shift-and-add cost)
            u.mult = tuple(max(m, key=lambda v: (bin(v).count("1"), v)) for m in ms)
            if not (op.uniform(0) and op.uniform(1)):  # per-channel multipliers: ROMs [PE][NF]
                u.mult_rom = tuple([[m[nf * u.PE + pe] for nf in range(C // u.PE)] for pe in range(u.PE)] for m in ms)
                u.mult_t = tuple(IntT(max(1, max(m).bit_length()), False) for m in ms)
            u.win_t = IntT.for_range(min(in_dt.vmin, tb.vmin), max(in_dt.vmax, tb.vmax))
        else:
            raise A2QError(f"code generation does not support op '{op.name}' ({op.op})")
        if u.out_shape and u.MH % u.PE:
            raise A2QError(f"'{op.name}': {u.PE} elements per word do not divide its {u.MH} channels")
        record(u)
    for t in model.outputs:
        if t not in epw or t == iq.outputs[0]:
            raise A2QError(f"code generation: the graph output '{t}' is not produced by any unit"
                           f"{' (it is the input quantizer output)' if t in epw else ''}")
    read = {t for u in units for t in u.inputs}
    for u in units:
        if u.out_tensor not in read and u.out_tensor not in model.outputs:
            outs = ", ".join(f"'{t}'" for t in model.outputs)
            raise A2QError(f"code generation: {f'{u.dense.op} {u.dense.name!r}' if u.dense is not None else u.cname} writes "
                           f"'{u.out_tensor}', which no unit reads and which is not a graph output "
                           f"(graph output{'s' if len(model.outputs) > 1 else ''} {outs})")
    units = Units(units, model.outputs)
    widest_word(units)
    from .passes.folding import SWG_REGISTER_BITS_MAX

    for u in units:
        if u.swg_buffer_bits > SWG_REGISTER_BITS_MAX:
            fix = ("SIMD=1 (PE over channels)" if u.kind == "dw"
                   else f"a SIMD dividing its {u.in_shape[2]} input channels")
            raise A2QError(f"layer '{u.dense.name}': PE={u.PE}, SIMD={u.SIMD} needs the row-buffer window generator, whose "
                           f"register line buffer ({u.swg_buffer_bits} bits) exceeds {SWG_REGISTER_BITS_MAX} bits; use {fix} "
                           f"(--folding)")
        for mem, k in {**u.bank_accesses, **u.swg_bank_accesses}.items():
            if k == REGISTERS:
                continue  # registers: any number of reads per cycle
            if k > 2:  # a template change that breaks II=1 on dual-port memories
                raise AssertionError(f"{u.cname}: {k} accesses per bank of {mem} per iteration")
    return units


def _reorder_plan(model: Model, op, cname, ipb: int, in_t: IntT) -> LayerPlan:
    """The unit of an op that moves integers without an accumulator: ``upsample`` (nearest
    neighbour, a row buffer), ``zeroins`` (zero insertion of a transposed convolution, no memory),
    ``concat`` (channel concatenation of two streams, values shifted to a common scale).
    ``cname(prefix)`` names the unit; its ``index`` is set when the plan records it."""
    x = model.tensors[op.inputs[0]]
    out = model.tensors[op.outputs[0]]
    if len(x.shape) != 3:
        raise A2QError(f"'{op.name}': code generation supports {op.op} on [H, W, C] feature maps only")
    ot = out.dtype
    common = dict(index=0, dense=op, requant=None, MW=1, MH=out.channels, PE=ipb, SIMD=1, IPB=ipb, P=0, safe_bits=0,
                  in_t=in_t, zp=int(x.dtype.zero_point), val_t=in_t, w_t=None, bias_t=None, out_t=IntT(ot.bits, ot.signed),
                  thr_t=None, NT=0, qmin=0, inputs=list(op.inputs), outputs=list(op.outputs), in_shape=_shape3(x.shape),
                  out_shape=_shape3(out.shape))
    if isinstance(op, Upsample):
        return LayerPlan(cname=cname("up"), kind="upsample", scale=tuple(op.scale), **common)
    if isinstance(op, ZeroInsert):
        return LayerPlan(cname=cname("zins"), kind="zeroins", scale=tuple(op.factor), **common)
    b = model.tensors[op.inputs[1]]
    tb = b.dtype
    ta = x.dtype
    lo = min(min(ta.vmin << op.shifts[0], tb.vmin << op.shifts[1]), 0) + min(ot.zero_point, 0)
    hi = max(max(ta.vmax << op.shifts[0], tb.vmax << op.shifts[1]), 0) + max(ot.zero_point, 0)
    va, vb = IntT.for_range(ta.vmin, ta.vmax), IntT.for_range(tb.vmin, tb.vmax)
    win = IntT.for_range(min(lo, -1), hi)  # q - zp, shifted, plus the output zero-point: signed
    win = IntT(max(win.bits, va.bits + 1, vb.bits + 1) + 1, True)
    return LayerPlan(cname=cname("cat"), kind="concat", IPB_b=ipb, in_t_b=IntT(tb.bits, tb.signed),
                     zp_b=int(tb.zero_point), in_shape_b=_shape3(b.shape), shifts=tuple(int(k) for k in op.shifts),
                     out_zp=int(ot.zero_point), win_t=win, **common)


def d2s_word(mode: str, blocksize: int, out_channels: int, epw_in: int) -> int:
    """Elements per word of a DepthToSpace unit (in and out): the largest divisor of both the
    producer's ``epw_in`` and the output channels ``C'`` (an output word holds channels of one output
    pixel); in CRD mode also coprime to ``r``. The buffer is partitioned cyclically by that count on
    the channel index: an input word's elements (consecutive channels) land in distinct banks, and so
    do an output word's (channels ``(i*r + j)*C' + c`` (DCR), consecutive; ``c*r^2 + i*r + j`` (CRD),
    a stride of ``r^2``, distinct modulo the count when it is coprime to ``r``)."""
    g = math.gcd(int(epw_in), int(out_channels))
    r = int(blocksize)
    return max(d for d in range(1, g + 1) if g % d == 0 and (mode == "DCR" or math.gcd(d, r) == 1))


def _d2s_unit(op: DepthToSpace, cname: str, epw: dict, etype: dict, convert) -> LayerPlan:
    """The plan of a DepthToSpace unit (its input repacked to :func:`d2s_word` elements per word)."""
    H, W, C = (int(v) for v in op.in_shape)
    co = C // (op.blocksize ** 2)
    V = d2s_word(op.mode, op.blocksize, co, epw[op.inputs[0]])
    convert(op.inputs[0], V)
    t = etype[op.inputs[0]]
    return LayerPlan(
        index=0, cname=cname, dense=op, requant=None, MW=C, MH=co, PE=V, SIMD=1, IPB=V, P=0, safe_bits=0,
        in_t=t, zp=0, val_t=t, w_t=None, bias_t=None, out_t=t, thr_t=None, NT=0, qmin=0, kind="d2s",
        inputs=list(op.inputs), outputs=[op.outputs[0]], in_shape=(H, W, C), out_shape=_shape3(op.out_shape),
    )


@dataclass
class AxisPort:
    """One AXI-stream port of the top function and its adapter (a dataflow process).

    On the bus every element takes ``slot_bits`` = its bit width rounded up to whole bytes,
    sign-extended when signed (zero-extended when unsigned), little-endian; ``per_beat`` =
    ``bus_bits // slot_bits`` elements per beat, element ``e`` of a beat in bits
    ``[e*slot_bits, (e+1)*slot_bits)``, in tensor order (channels-last for feature maps); the last
    beat of an image is padded with zeros and carries TLAST; TKEEP/TSTRB are all ones. Inside, the
    adapter repacks to ``per_word`` elements of ``bits`` per word with a shift register of
    ``per_beat + per_word`` elements, reading and writing in one pipelined loop of ``iters``
    iterations per image.
    """

    direction: str  # "in" or "out"
    bus_bits: int
    bits: int
    signed: bool
    elems: int
    per_word: int
    shape: tuple = ()  # the tensor's shape (channels last), for the layout
    reorder: str = ""  # the op that produced the output tensor, when it is a reorder (DepthToSpace)
    sfx: str = ""  # an output port's suffix: "" for the only output, else its graph-output index ("out0", "out1", ...)
    tensor: str = ""  # an output port's tensor
    word: str = ""  # the C++ word type of the stream an output adapter reads
    index: int = 0  # an output port's graph-output index

    @property
    def name(self) -> str:
        """The top function's argument: ``in``, ``out``, or ``out<k>`` with several outputs."""
        return self.direction + self.sfx

    @property
    def adapter(self) -> str:
        """The adapter's function (and dataflow process) name: ``a2q_in_adapter``, ``a2q_out<k>_adapter``."""
        return f"a2q_{self.name}_adapter"

    @property
    def stream(self) -> str:
        """The internal stream between the design and an output adapter: ``sout``, ``sout<k>``."""
        return f"s{self.name}"

    @property
    def t(self) -> "IntT":
        return IntT(self.bits, self.signed)

    @property
    def slot_bits(self) -> int:
        return 8 * ((self.bits + 7) // 8)

    @property
    def per_beat(self) -> int:
        return self.bus_bits // self.slot_bits

    @property
    def beats(self) -> int:
        return -(-self.elems // self.per_beat)

    @property
    def words(self) -> int:
        return self.elems // self.per_word

    @property
    def cap(self) -> int:
        return self.per_beat + self.per_word

    @property
    def iters(self) -> int:
        """Iterations of the adapter's loop per image: each reads when the shift register has room,
        then writes when it holds a whole output (the output adapter also flushes the last beat)."""
        if self.direction == "in":
            n_in, per_in, n_out, per_out, flush = self.beats, self.per_beat, self.words, self.per_word, False
        else:
            n_in, per_in, n_out, per_out, flush = self.words, self.per_word, self.beats, self.per_beat, True
        have = rd = wr = it = 0
        while rd < n_in or wr < n_out:
            it += 1
            if rd < n_in and have + per_in <= self.cap:
                have, rd = have + per_in, rd + 1
            if wr < n_out and (have >= per_out or (flush and rd == n_in and have > 0)):
                have, wr = max(have - per_out, 0), wr + 1
        return it

    def layout(self) -> dict:
        """The byte layout, for ``a2qhls.json`` (a driver is written from it)."""
        return {
            "bus_bits": self.bus_bits,
            "element_type": f"{'int' if self.signed else 'uint'}{self.bits}",
            "element_bytes": self.slot_bits // 8,
            "extension": "sign" if self.signed else "zero",
            "elements_per_beat": self.per_beat,
            "elements": self.elems,
            "beats_per_image": self.beats,
            "padding": "zeros after the last element of the last beat",
            "tlast": "set on the last beat of each image" if self.direction == "out" else "ignored",
            "byte_order": "little-endian; element e of a beat at bytes [e*element_bytes, (e+1)*element_bytes)",
            "element_order": "row-major, channels last (h, w, c)" ,
            "shape": list(self.shape),
            **({"layout_note": self.reorder} if self.reorder else {}),
        }


def port_suffixes(n: int) -> list:
    """The output ports' name suffixes for ``n`` graph outputs: ``[""]`` (``out``) for one, else
    ``["0", "1", ...]`` (``out0``, ``out1``, ...)."""
    return [""] if n == 1 else [str(k) for k in range(n)]


def output_sources(units: list) -> list:
    """``[(tensor, producing unit, C++ word type of the stream the port reads)]`` per graph output, in
    graph-output order: the producer's output word, or a dup's copy when the tensor is also read by units."""
    out = []
    for t in graph_outputs(units):
        prod = next(u for u in units if u.kind not in ("dup", "dwc") and u.out_tensor == t)
        dup = next((u for u in units if u.kind == "dup" and u.inputs[0] == t), None)
        out.append((t, prod, f"{(dup or prod).cname}_out_word"))
    return out


def axis_ports(units: list, bus_bits: Optional[int] = None) -> tuple:
    """``(input port, [output ports])`` for a bus of ``bus_bits`` (a multiple of 8); default: each
    port as wide as its unit's word (the first unit's input word; the word of the unit producing that
    graph output) with every element widened to whole bytes (no repacking). One output port per graph
    output, in graph-output order."""
    first = units[0]
    srcs = output_sources(units)
    sfx = port_suffixes(len(srcs))
    ports = []
    specs = [("in", first, first.in_t, first.in_elems, first.IPB, first.in_shape, "", "", "")]
    for k, (tensor, prod, word) in enumerate(srcs):
        specs.append(("out", prod, prod.out_t, prod.out_elems, prod.PE, prod.out_shape, sfx[k], tensor, word))
    for k, (direction, u, t, elems, per_word, shape, suffix, tensor, word) in enumerate(specs):
        note = ""
        if direction == "out" and u.kind == "d2s":
            H, W, C = u.in_shape
            r = u.dense.blocksize
            note = (f"DepthToSpace {u.dense.mode} output: element (y, x, c) of the {H * r}x{W * r}x{C // (r * r)} image is input "
                    f"channel {'(y%r*r + x%r)*C/r^2 + c' if u.dense.mode == 'DCR' else 'c*r^2 + (y%r)*r + x%r'} (r={r}) "
                    f"of pixel (y/r, x/r) of the {H}x{W}x{C} map before it; PyTorch's PixelShuffle is CRD")
        slot = t.slot_bits
        bus = bus_bits if bus_bits is not None else per_word * slot
        if bus_bits is None and bus > AP_INT_LIMIT_W:  # the default bus: one unit word, each element in whole bytes
            raise A2QError(f"the AXI-stream {direction}put port{(' ' + direction + suffix) if suffix else ''} would carry "
                           f"{per_word} {t.bits}-bit elements a beat in whole "
                           f"bytes ({bus} bits), above the {AP_INT_LIMIT_W}-bit limit: fold unit {u.cname} "
                           f"({f'layer {u.dense.name!r}' if u.dense is not None else f'reading tensor {u.inputs[0]!r}'}) "
                           f"to fewer elements a word "
                           f"({'SIMD' if direction == 'in' else 'PE'}) or give --bus-bits to repack them")
        if bus % 8 or bus < slot or bus > 4096:
            raise A2QError(f"--bus-bits {bus}: the AXI-stream width must be a multiple of 8 from {slot} (one {t.bits}-bit "
                           f"{direction}put element in whole bytes) to 4096")
        ports.append(AxisPort(direction, bus, t.bits, t.signed, elems, per_word, tuple(shape), note, suffix, tensor, word,
                              max(k - 1, 0)))
    return ports[0], ports[1:]


@dataclass
class WeightPort:
    """The AXI-stream port of a unit whose weights stream from outside (``LayerPlan.w_stream``).

    One beat per iteration of the unit's NF*SF loop, in the order it consumes them: for every
    input vector (every output pixel of a convolution), tiles ``t = nf * SF + sf`` for ``nf`` in
    ``0..NF-1``, ``sf`` in ``0..SF-1``; beat ``t`` holds ``weight[nf * PE + pe][sf * SIMD + s]`` for
    ``pe < PE``, ``s < SIMD`` as a ``B``-bit two's complement field at bits
    ``[(pe * SIMD + s) * B, (pe * SIMD + s) * B + B - 1]`` of TDATA (``B`` = weight bits), TDATA
    ``bus_bits`` = ``PE * SIMD * B`` rounded up to whole bytes (the high bits zero). A driver sends
    the ``NF * SF`` beats of the layer's matrix once per vector (``pixels`` times per image);
    TLAST may mark the last beat of an image (the unit ignores it; the testbench sets it).
    """

    cname: str
    layer: str
    PE: int
    SIMD: int
    NF: int
    SF: int
    bits: int
    pixels: int

    @property
    def data_bits(self) -> int:
        return self.PE * self.SIMD * self.bits

    @property
    def bus_bits(self) -> int:
        return 8 * ((self.data_bits + 7) // 8)

    @property
    def beats_per_vector(self) -> int:
        return self.NF * self.SF

    @property
    def beats_per_image(self) -> int:
        return self.pixels * self.NF * self.SF

    def layout(self) -> dict:
        """The byte layout, for ``a2qhls.json``'s ``interface.weights``."""
        return {
            "port": f"{self.cname}_weights",
            "layer": self.layer,
            "bus_bits": self.bus_bits,
            "weight_type": f"int{self.bits}",
            "PE": self.PE,
            "SIMD": self.SIMD,
            "beats_per_vector": self.beats_per_vector,
            "vectors_per_image": self.pixels,
            "beats_per_image": self.beats_per_image,
            "beat_order": "per vector: tile t = nf*SF + sf for nf in 0..NF-1, sf in 0..SF-1 (NF = MH/PE, SF = MW/SIMD)",
            "field": "weight[nf*PE + pe][sf*SIMD + s] at bits [(pe*SIMD + s)*B, (pe*SIMD + s)*B + B - 1], B-bit two's complement",
            "padding": "bits above PE*SIMD*B are zero",
            "weight_columns": "Dense: the input index; Conv: (ky, kx, c) of the window, c fastest",
            "tlast": "ignored by the design (the testbench sets it on the last beat of an image)",
            "byte_order": "little-endian (bit 0 of TDATA in byte 0)",
        }


def weight_ports(units: list) -> list:
    """:class:`WeightPort` of every unit that streams its weights, in dataflow order."""
    return [WeightPort(u.cname, u.dense.name, u.PE, u.SIMD, u.NF, u.SF, u.w_t.bits, u.pixels) for u in units if u.w_stream]


def adapter_costs(units: list, bus_bits: Optional[int] = None) -> list:
    """``[(name, Cost)]`` of the top's AXI-stream adapters (the input's, then each output's) (:func:`a2qhls.estimate.axis_adapter_cost`)."""
    from . import estimate

    axin, axouts = axis_ports(units, bus_bits)
    return [(p.adapter, estimate.axis_adapter_cost(p.direction, p.bus_bits, p.bits, p.per_beat, p.per_word))
            for p in [axin, *axouts]]


def design_estimate(units: list, bus_bits: Optional[int] = None) -> dict:
    """:func:`a2qhls.estimate.design_cost` of a plan: its units, fork FIFOs (:func:`fork_depths`) and
    AXI-stream adapters (:func:`adapter_costs`)."""
    from . import estimate

    return estimate.design_cost(units, fork_depths(units), adapters=adapter_costs(units, bus_bits))


def word_widths(units: list) -> list:
    """``[(C++ type name, bits)]`` of every packed word the design declares (stream words and sliding windows)."""
    out = []
    for u in units:
        out.append((f"{u.cname}_in_word", u.IPB * u.in_t.bits))
        if u.kind in ("add", "concat"):
            out.append((f"{u.cname}_inb_word", u.IPB_b * u.in_t_b.bits))
        if u.kind in ("conv", "dw"):
            out.append((f"{u.cname}_win_word", u.OPB * u.win_t.bits))
        if u.w_stream:
            out.append((f"{u.cname}_w_beat", 8 * ((u.PE * u.SIMD * u.w_t.bits + 7) // 8)))
        out.append((f"{u.cname}_out_word", u.PE * u.out_t.bits))
    return out


def widest_word(units: list) -> tuple:
    """``(name, bits)`` of the widest packed word; A2QError above :data:`AP_INT_LIMIT_W` bits.

    It sets ``AP_INT_MAX_W`` (emitted before the first ``#include "ap_int.h"``) when it exceeds
    ap_int's default limit of 1024 bits, as FINN does (``get_ap_int_max_w``)."""
    name, bits = max(word_widths(units), key=lambda nb: nb[1])
    if bits > AP_INT_LIMIT_W:
        raise A2QError(
            f"code generation: the stream word '{name}' is {bits} bits wide, above the {AP_INT_LIMIT_W}-bit limit "
            f"of ap_uint; lower that unit's PE or SIMD (--folding)"
        )
    return name, bits


def processes(units: list) -> list:
    """``[(function, cycles per image)]``: every dataflow process of the top function, in order,
    with the iterations its pipelined loops run per image (the cycles at II=1)."""
    out = []
    for u in units:
        if u.kind in ("conv", "dw"):
            out.append((f"{u.cname}_swg", u.swg_cycles))
        out.append((u.cname, u.cycles))
    return out


def layers_of(units: list) -> list:
    """The units that own an accumulator (the ``layers`` of the build summary), in order."""
    return [u for u in units if u.has_acc]


def is_chain(units: list) -> bool:
    """True for a plain chain of matrix-vector units (an MLP, with any width converters between
    them): the testbench's ``--start L`` then works."""
    return all(u.kind in ("mvu", "dwc") for u in units)


def chain_starts(units: list) -> list:
    """``[(L, entry unit, units from there to the end)]`` for each layer L of a chain: where the
    testbench feeds layer L's input (the width converter in front of it, if any)."""
    out = []
    weighted = [u for u in units if u.has_weights]
    for L, u in enumerate(weighted):
        i = u.index
        while i > 0 and units[i - 1].kind == "dwc":
            i -= 1
        out.append((L, units[i], units[i:]))
    return out


def netlist(units: list) -> tuple[list, list]:
    """Streams and calls of the top function.

    Returns ``(streams, calls)``: ``streams`` = ``[(name, word type, depth, comment)]`` (the top's
    ``in``/``out`` AXI-stream ports excluded); ``calls`` = ``[(function, [argument streams])]`` in
    dataflow order, from the input adapter (``in`` -> ``sin``) to the output adapters (``sout`` -> ``out``;
    with several graph outputs ``sout<k>`` -> ``out<k>`` in graph-output order, see :class:`AxisPort`).
    Stream names: ``s<i>`` the output of unit ``i``, ``s<i>_<k>`` copy ``k`` of a dup, ``s<i>w`` a
    sliding-window stream; a graph output that units also read reaches its port through the dup's last
    copy. FIFO depth is 2 except on a fork's copies: see :func:`fork_depths`.
    """
    src: dict = {}  # tensor -> list of streams not yet consumed (a dup offers several)
    streams, calls = [], []
    reasons = fork_reasons(units)
    first_tensor = units[0].inputs[0]
    src[first_tensor] = ["sin"]
    gouts = graph_outputs(units)
    sfx = port_suffixes(len(gouts))
    direct = {t: f"sout{k}" for t, k in zip(gouts, sfx) if not any(t in u.inputs for u in units)}  # written by its producer
    streams.append(("sin", f"{units[0].cname}_in_word", 2, "the input, unpacked from the AXI-stream beats"))
    calls.append(("a2q_in_adapter", ["in", "sin"]))
    for u in units:
        args = [src[t].pop(0) for t in u.inputs]
        if u.kind == "dwc":
            out = f"s{u.index}"
            streams.append((out, f"{u.cname}_out_word", 2, f"'{u.inputs[0]}' repacked {u.IPB} -> {u.PE} elements per word"))
            calls.append((u.cname, args + [out]))
            src[u.inputs[0]].insert(0, out)
            continue
        if u.kind == "dup":
            outs = [f"s{u.index}_{k}" for k in range(u.n_out)]
            for k, name in enumerate(outs):
                depth, why = reasons.get((u.index, k), (2, ""))
                note = f"copy {k} of '{u.inputs[0]}'" + (f", depth {depth}: {why}" if depth != 2 else "")
                streams.append((name, f"{u.cname}_out_word", depth, note))
            calls.append((u.cname, args + outs))
            src[u.inputs[0]] = list(outs)
            continue
        to_port = u.out_tensor in direct
        out = direct[u.out_tensor] if to_port else f"s{u.index}"
        if u.kind in ("conv", "dw"):
            streams.append((f"s{u.index}w", f"{u.cname}_win_word", 2, "sliding windows"))
            calls.append((f"{u.cname}_swg", [args[0], f"s{u.index}w"]))
            args = [f"s{u.index}w"]
        if u.w_stream:
            args = args + [u.w_port]
        streams.append((out, f"{u.cname}_out_word", 2, "the output, packed into AXI-stream beats" if to_port else ""))
        calls.append((u.cname, args + [out]))
        src[u.out_tensor] = [out]
    for t, k in zip(gouts, sfx):
        calls.append((f"a2q_out{k}_adapter", [src[t].pop(0), f"out{k}"]))
    return streams, calls


def _lag_rows(u: LayerPlan, H: int) -> tuple:
    """``(rows, why)``: rows of its input a unit on a branch reads before (and ahead of) the row it
    is emitting, from the cycle model:

    * a one-loop window generator (:func:`swg_schedule`; also a streaming pool's loop) reads while its next word's row is less
      than ``swg_rows = kh + sh`` rows below the current window's top row ``oy*sh - pad_top``: it
      runs ``kh + sh - pad_top`` rows ahead of the output row it emits;
    * the row-buffer window generator and the pools read the ``kh - pad_top`` rows a window row
      needs, then emit: ``kh - pad_top + 1`` rows (one row of slack for the read that overlaps);
    * a running-max pool reads ``kh`` rows per output row: ``kh`` rows;
    * a dense layer reads its whole input (``H`` rows) before its first output;
    * a DepthToSpace unit reads a whole input row before its first output word: 2 rows;
    * a nearest upsampler or a zero insertion emits its first output row from its first input row
      (the upsampler's row buffer repeats it): 1 row;
    * everything else (adds, width converters, the matrix unit behind a window generator): less than
      a row (its depth-2 FIFOs are the per-unit slack)."""
    if u.kind in ("conv", "dw", "maxpool", "avgpool") and u.swg_streaming:
        r = max(u.swg_rows - u.pads[0], 1)
        return r, f"{u.cname} {r} (kh {u.kernel[0]} + stride {u.stride[0]} - pad {u.pads[0]}: its line buffer's read-ahead)"
    if u.running_max:
        return u.kernel[0], f"{u.cname} {u.kernel[0]} (kh rows per output row)"
    if u.kind in ("conv", "dw", "maxpool", "avgpool"):
        r = max(u.kernel[0] - u.pads[0], 1) + 1
        return r, f"{u.cname} {r} (kh {u.kernel[0]} - pad {u.pads[0]} rows, then windows; + 1)"
    if u.kind == "mvu":
        return H, f"{u.cname} {H} (a dense layer reads its whole input)"
    if u.kind == "d2s":
        return 2, f"{u.cname} 2 (a whole input row before its first output word)"
    if u.kind == "upsample":
        return 1, f"{u.cname} 1 (one input row, repeated {u.scale[0]} x {u.scale[1]} from its row buffer)"
    if u.kind == "zeroins":
        return 1, f"{u.cname} 1 (one input row, then {u.scale[0] - 1} inserted zero rows)"
    return 0, ""


def _lag_words(units: list, path: list, fork_u: LayerPlan, closed: bool = True) -> tuple:
    """``(words, why)``: words of the fork tensor a branch consumes before its first output (see
    :func:`_lag_rows`), ``rows * W * C / PE`` plus 2 words per unit on the branch (the depth-2
    FIFOs between them), at most one image; ``why`` states the sum. A unit behind a stride-``s``
    unit needs ``s`` fork rows per row of its input, so its rows count ``s`` times (an upsampler or
    zero insertion does not divide the factor back: one fork row per output row, conservative).
    ``closed``: the branch reached the add or concat; a branch that forks again (a nested skip, as in
    a UNet) is given one whole image."""
    if not path:
        return 0, "the other branch is empty"
    total = fork_u.in_elems // fork_u.PE
    if not closed:
        return total, (f"other branch ({', '.join(u.cname for u in path)}) forks again before it meets "
                       f"this copy: one image ({total})")
    H, W = (fork_u.in_shape[0], fork_u.in_shape[1]) if len(fork_u.in_shape) == 3 else (1, 1)
    rows, per, terms = 0, 1, []
    for u in path:
        r, w = _lag_rows(u, H)
        rows += r * per
        if r:
            terms.append(w + (f" x {per} (behind stride {per})" if per > 1 else ""))
        if u.kind in ("conv", "dw", "maxpool", "avgpool"):
            per *= u.stride[0]
    rows = max(rows, 1)
    words_per_row = W * fork_u.MH // fork_u.PE
    words = min(total, rows * words_per_row + 2 * (len(path) + 1))
    why = (f"other branch ({', '.join(u.cname for u in path)}) runs {rows} rows ahead [{'; '.join(terms) or 'no window unit'}]: "
           f"{rows} rows x {words_per_row} words + 2 x {len(path) + 1} FIFO slack" + (f", capped at one image ({total})" if words == total else ""))
    return words, why


def fork_reasons(units: list) -> dict:
    """``{(dup index, k): (depth, reasoning)}`` for every fork copy (see :func:`fork_depths`)."""
    out: dict = {}
    by_tensor_consumer: dict = {}
    for u in units:
        if u.kind == "dwc":  # transparent: it passes the same tensor on
            continue
        for t in u.inputs:
            by_tensor_consumer.setdefault(t, []).append(u)
    for d in units:
        if d.kind != "dup":
            continue
        cons = [u for u in by_tensor_consumer.get(d.inputs[0], []) if u is not d]
        # the branch behind each copy: follow single-consumer units until an add/concat (or the end)
        paths = []
        for c in cons:
            path, u, closed = [], c, True
            while u is not None and u.kind not in ("add", "concat"):
                path.append(u)
                nxt = by_tensor_consumer.get(u.out_tensor, [])
                if len(nxt) > 1 or (nxt and nxt[0].kind == "dup"):
                    closed, u = False, None  # the branch forks again
                else:
                    u = nxt[0] if nxt else None
            paths.append((path, closed))
        for k in range(len(cons)):
            lags = [_lag_words(units, p, d, cl) for i, (p, cl) in enumerate(paths) if i != k]
            lag, why = max(lags, key=lambda lw: lw[0]) if lags else (0, "no other branch")
            out[(d.index, k)] = (max(2, lag), why)
    return out


def fork_depths(units: list) -> dict:
    """FIFO depth of each fork copy ``(dup index, k)`` feeding a residual add or a skip concat.

    When a fork's copies meet again at an add (which reads a word of each in the same iteration;
    a concat reads a pixel's words of one, then of the other),
    the dup writes a word to every copy in the same iteration, so the copy whose branch is short
    (the bypass) must buffer what the other branch consumes before it produces its first output,
    or the dup stalls and the dataflow deadlocks. Each copy gets the other branch's lag in words
    (:func:`_lag_words`, from the rows each unit reads ahead in the cycle model, :func:`_lag_rows`);
    the reasoning is written next to each FIFO in the generated top (:func:`fork_reasons`).
    """
    return {key: depth for key, (depth, _) in fork_reasons(units).items()}


def _weights_folded(lp: LayerPlan) -> np.ndarray:
    """``[PE][NF*SF][SIMD]`` int64 array: ``W[pe][nf*SF + sf][s] = weight[nf*PE + pe][sf*SIMD + s]``."""
    w = _weight_matrix(lp.dense).astype(np.int64)
    if lp.xnor:  # XNOR-popcount: the bit 1 for +1, 0 for -1
        w = (w > 0).astype(np.int64)
    # weight[nf*PE + pe, sf*SIMD + s] -> [pe][nf][sf][s]
    return w.reshape(lp.NF, lp.PE, lp.SF, lp.SIMD).transpose(1, 0, 2, 3).reshape(lp.PE, lp.NF * lp.SF, lp.SIMD)


def weight_words(lp: LayerPlan) -> list:
    """The SIMD weights of one (PE, tile) packed into words of at most 64 bits (FINN's idea: hex
    words, not decimal text): word ``k`` holds weights ``s = k*E .. min(SIMD, (k+1)*E) - 1`` with
    ``E = 64 // B`` (``B`` = weight bits), weight ``s`` in bits ``[(s - k*E)*B, (s - k*E)*B + B - 1]``
    as its ``B``-bit two's complement pattern. Returns ``[(first s, count, bits, uint64 [PE][NF*SF])]``."""
    W = _weights_folded(lp)
    B = lp.w_t.bits
    u = (W & ((1 << B) - 1)).astype(np.uint64)
    out = []
    for s0, n in lp.w_words:
        word = np.zeros(u.shape[:2], dtype=np.uint64)
        for j in range(n):
            word |= u[:, :, s0 + j] << np.uint64(j * B)
        out.append((s0, n, n * B, word))
    return out


def _hex_rows(a: np.ndarray, per_line: int = 16) -> list:
    """Rows of a 2-D unsigned array as C initializer text (``0x..`` words, ``per_line`` a line)."""
    rows = []
    for r in a:
        words = [f"0x{v:x}" for v in r.tolist()]
        lines = [", ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]
        rows.append(",\n    ".join(lines))
    return rows


def _bias_folded(lp: LayerPlan) -> list:
    b = np.asarray(lp.dense.bias).astype(object)
    return b.reshape(lp.NF, lp.PE).T.tolist()


def _thresholds_folded(lp: LayerPlan) -> list:
    T = np.asarray(lp.requant.thresholds).astype(object)
    return T.reshape(lp.NF, lp.PE, lp.NT).transpose(1, 0, 2).tolist()


def _threshold_stages(lp: LayerPlan) -> list:
    """Binary search tables: ``[stage k][pe][nf][j]`` = the threshold at index ``j * 2^(K-k) + 2^(K-1-k) - 1``
    of channel ``nf * PE + pe`` (``2^(P-1)``, above any accumulator, past the last threshold).

    Search: ``lo = 0``; at stage ``k``, ``if acc >= T_k[lo >> (K-k)]: lo += 2^(K-1-k)``; then ``lo`` =
    ``#{t : acc >= T[t]}`` for thresholds in non-decreasing order (the classic lower bound search)."""
    K = lp.thr_stages
    T = np.asarray(lp.requant.thresholds).astype(object).reshape(lp.NF, lp.PE, lp.NT).transpose(1, 0, 2)
    pad = np.full((lp.PE, lp.NF, (1 << K) - 1), 1 << (lp.P - 1), dtype=object)
    pad[:, :, : lp.NT] = T
    stages = []
    for k in range(K):
        step = 1 << (K - 1 - k)
        idx = [j * (step << 1) + step - 1 for j in range(1 << k)]
        stages.append(pad[:, :, idx].tolist())
    return stages


def file_names(lp: LayerPlan) -> dict:
    out = {}
    if lp.has_weights:
        out["weights"] = f"firmware/weights/{lp.cname}_w.h"
    if lp.requant is not None and lp.NT:
        out["thresholds"] = f"firmware/weights/{lp.cname}_t.h"
    return out


def check_control(control: str) -> str:
    """``control`` if it is one of :data:`CONTROLS`, else :class:`A2QError`."""
    if control not in CONTROLS:
        raise A2QError(f"--control {control!r}: expected one of {', '.join(CONTROLS)}")
    return control


def _context(model: Model, layers: list, part: str, clock_ns: float, bus_bits: Optional[int] = None, control: str = "none") -> dict:
    streams, calls = netlist(layers)
    axin, axouts = axis_ports(layers, bus_bits)
    wide_name, wide_bits = widest_word(layers)
    groups = unit_groups(layers)
    return dict(
        widest=(wide_name, wide_bits),
        processes=[("a2q_in_adapter", axin.iters)] + processes(layers) + [(p.adapter, p.iters) for p in axouts],
        axin=axin,
        axout=axouts[0],
        axouts=axouts,
        wports=weight_ports(layers),
        control=check_control(control),
        ap_int_max_w=wide_bits if wide_bits > AP_INT_DEFAULT_MAX_W else None,
        top=TOP,
        model_name=model.name,
        layers=layers,
        first=layers[0],
        last=layers[-1],
        chain=is_chain(layers),
        starts=chain_starts(layers) if is_chain(layers) else chain_starts(layers)[:1],
        streams=streams,
        calls=calls,
        part=part,
        clock_ns=clock_ns,
        files={lp.cname: file_names(lp) for lp in layers},
        decls=unit_declarations(layers, streams, calls),
        csim=_csim_checked(),
        groups=groups,
        csim_sources=_csim_sources_checked([unit_file(g) for g in range(1, len(groups))]),
    )


# compile cost of one translation unit, in weights (see unit_groups). Each translation unit pays
# ~1.5 s of CPU parsing ap_int.h and hls_stream.h before its own code; weights as hex words are
# cheap, so a few large units beat many small ones: ResNet18 (11M weights) in 3 units besides the
# top and testbench compiles in 13 s of CPU (20 s in 10 units at 1M weights), at most 300 MB a process.
TU_BUDGET = 1 << 22
TU_UNIT_COST = 1 << 13  # the code of one unit, in weights


def unit_cost(lp: LayerPlan) -> int:
    """Rough g++ cost of a unit in weight-equivalents: its weights and thresholds, plus a constant
    for its code (measured: a ResNet18 layer's 2.4M 4-bit weights as hex words ~ an MVU's code x 100)."""
    n = lp.MH * lp.MW if lp.has_weights else 0
    if lp.requant is not None:
        n += lp.MH * max(lp.NT, 1)
    return n + TU_UNIT_COST


def unit_groups(layers: list) -> list:
    """The units split into translation units, in dataflow order: a group closes when its
    :func:`unit_cost` reaches :data:`TU_BUDGET` (a large layer alone), so a small network is one
    translation unit (with the top) and a large one compiles in parallel with bounded memory per
    compiler; every weight array is in exactly one. Group 0 goes into the top's file."""
    groups, cur, cost = [], [], 0
    for lp in layers:
        c = unit_cost(lp)
        if cur and cost + c > TU_BUDGET:
            groups.append(cur)
            cur, cost = [], 0
        cur.append(lp)
        cost += c
    groups.append(cur)
    return groups


def unit_file(g: int) -> str:
    """The file stem of translation unit ``g >= 1`` under ``firmware/layers``."""
    return f"part{g}"


def unit_declarations(layers: list, streams: list, calls: list) -> dict:
    """``{unit: [(function, [stream word types])]}``: the functions each unit's translation unit
    defines and the top calls (a conv/dw unit: its window generator and its matrix unit)."""
    wtype = {name: t for name, t, _, _ in streams}
    wtype.update({u.w_port: f"{u.cname}_w_beat" for u in layers if u.w_stream})
    owner = {}
    for lp in layers:
        owner[lp.cname] = lp.cname
        owner[f"{lp.cname}_swg"] = lp.cname
    out = {lp.cname: [] for lp in layers}
    for fn, args in calls:
        if fn in owner:
            out[owner[fn]].append((fn, [wtype[a] for a in args]))
    return out


_SAFE_PATH = re.compile(r"[A-Za-z0-9_.+=-][A-Za-z0-9_./+=-]*")


def _csim_checked() -> dict:
    """:data:`CSIM` for the build script template; its words are pasted into the shell script
    (inside double quotes), so each must be a plain path or flag."""
    words = [CSIM["default_flags"], *CSIM["flags"], *CSIM["project_includes"], CSIM["binary"], CSIM["units"]]
    words += [w for pair in CSIM["sources"] for w in pair]
    bad = [w for w in words if not _SAFE_PATH.fullmatch(w) or ".." in w]
    if bad:
        raise A2QError(f"internal: unsafe C simulation build word(s) {bad}")
    return CSIM


def _csim_sources_checked(unit_names) -> list:
    """:func:`csim_sources` for the build script (pasted into it like :data:`CSIM`'s words)."""
    sources = csim_sources(unit_names)
    bad = [w for pair in sources for w in pair if not _SAFE_PATH.fullmatch(w) or ".." in w]
    if bad:
        raise A2QError(f"internal: unsafe C simulation source name(s) {bad}")
    return sources


def generate(model: Model, *, part: str = DEFAULT_PART, clock_ns: float = 5.0, bus_bits: Optional[int] = None,
             control: str = "none") -> dict:
    """Render the whole project: ``{relative path: file text}`` (sorted, deterministic).

    ``bus_bits``: the width of both AXI-stream ports (a multiple of 8); None: each port as wide
    as its first/last unit's word with elements widened to whole bytes (see :class:`AxisPort`).
    ``control``: ``none`` (``ap_ctrl_none``: free-running) or ``axilite`` (an AXI4-Lite slave with
    the ap_start/ap_done/ap_idle/auto_restart register, see the README). Layers whose IR op has
    ``weights_external`` read their weights from an extra AXI-stream port (:class:`WeightPort`);
    their weight header is then read by the testbench only."""
    layers = plan(model)
    env = _env()
    ctx = _context(model, layers, part, clock_ns, bus_bits, control)
    files: dict = {}
    for lp in layers:
        names = file_names(lp)
        if "weights" in names:
            words = [(s0, n, IntT(bits, False), _hex_rows(w)) for s0, n, bits, w in weight_words(lp)]
            files[names["weights"]] = env.get_template("weights.h.j2").render(
                ctx, lp=lp, words=words, B=_bias_folded(lp) if lp.bias_t is not None else None
            )
        if "thresholds" in names:
            files[names["thresholds"]] = env.get_template("thresholds.h.j2").render(
                ctx, lp=lp, T=_thresholds_folded(lp), stages=_threshold_stages(lp) if lp.thr_binary else None
            )
    unit = env.get_template("unit.cpp.j2")
    for g, group in enumerate(ctx["groups"][1:], start=1):
        files[f"{CSIM['units']}/{unit_file(g)}.cpp"] = unit.render(ctx, group=group)
    files["firmware/a2q_layers.h"] = env.get_template("layers.h.j2").render(ctx)
    files[f"firmware/{TOP}.h"] = env.get_template("top.h.j2").render(ctx)
    files[f"firmware/{TOP}.cpp"] = env.get_template("top.cpp.j2").render(ctx)
    files["tb/a2q_tb.cpp"] = env.get_template("tb.cpp.j2").render(ctx)
    files["build_csim.sh"] = env.get_template("build_csim.sh.j2").render(ctx)
    files["vitis_hls.tcl"] = env.get_template("vitis_hls.tcl.j2").render(ctx)
    return dict(sorted(files.items()))


def _tname(t: IntT) -> str:
    return f"{'int' if t.signed else 'uint'}{t.bits}"


def summary(model: Model, *, model_file: str = "model.onnx", part: str = DEFAULT_PART, bus_bits: Optional[int] = None,
            control: str = "none") -> dict:
    """The machine-readable description of a build (written as ``a2qhls.json``).

    ``layers``: every unit that owns an accumulator (Dense, Conv, average pool, residual add),
    in dataflow order; ``units``: every unit with its cycles per image and those of each of its
    dataflow processes (``processes``: function -> iterations of its pipelined loops per image,
    which the C simulation counts with ``-DA2Q_COUNT_CYCLES``); ``cycles_per_image``: the slowest
    process's (the dataflow's initiation interval per image at II=1, pipeline fill not counted).
    ``cost``: the resource estimates of :mod:`a2qhls.estimate` in total, against ``part``'s
    capacity, and with every accumulator at 32 bits (``total_acc32``, ``lut_ratio_acc32``); each
    layer and unit has its own ``cost`` (and, with an accumulator, ``cost_acc32`` and
    ``lut_ratio_acc32``). Raises :class:`A2QError` for a part not in :data:`a2qhls.estimate.PARTS`.
    ``interface``: the AXI-stream ports' byte layout (:meth:`AxisPort.layout`), the block control
    (``control``) and each streamed-weights port's beat layout (``weights``, :meth:`WeightPort.layout`);
    ``stream_weights``: the layers whose weights stream from outside.
    """
    from . import estimate

    units = plan(model)
    costs = design_estimate(units, bus_bits)
    try:
        util = estimate.utilization(costs["total"], part)
    except KeyError:
        raise A2QError(f"part '{part}': no capacity known (known parts: {', '.join(estimate.PARTS)})") from None
    cost_of = {c["cname"]: c for c in costs["units"]}
    axin, axouts = axis_ports(units, bus_bits)
    overrides = {d.name: int(d.acc_bits) for d in sorted(model.accumulating_ops(), key=lambda d: d.name) if d.acc_bits_overridden}
    out_layers = []
    for lp in layers_of(units):
        d = lp.dense
        weighted = lp.has_weights
        entry = {
            "index": len(out_layers),
            "name": d.name,
            "cname": lp.cname,
            "unit": lp.index,
            "kind": lp.kind,
            "op": d.op,
            "MW": lp.MW,
            "MH": lp.MH,
            "PE": lp.PE,
            "SIMD": lp.SIMD if weighted else None,
            "cycles_per_vector": lp.NF * lp.SF if weighted else lp.cycles,
            "cycles_per_image": lp.stage_cycles,
            "acc_bits": lp.P,
            "safe_acc_bits": lp.safe_bits,
            "acc_bits_overridden": bool(d.acc_bits_overridden),
            "target_acc_bits": getattr(d, "target_acc_bits", None),
            "quant_kind": getattr(d, "quant_kind", None),
            "input_tensor": d.inputs[0],
            "input_tensors": list(d.inputs),
            "input_type": _tname(lp.in_t),
            "input_zero_point": lp.zp,
            "input_shape": list(lp.in_shape),
            "weight_bits": lp.w_t.bits if weighted else None,
            "activation": lp.requant.name if lp.requant is not None else None,
            "output_tensor": lp.out_tensor,
            "output_shape": list(lp.out_shape),
            "output_type": _tname(lp.out_t),
            "threshold_bits": lp.thr_t.bits if lp.thr_t is not None else None,
            "thresholds_per_channel": lp.NT,
            "files": file_names(lp),
            "cost": cost_of[lp.cname]["cost"],
            "cost_acc32": cost_of[lp.cname]["cost_32"],
            "lut_ratio_acc32": cost_of[lp.cname]["lut_ratio"],
        }
        if d.acc is not None:
            entry.update(
                acc_min=int(d.acc.acc_min),
                acc_max=int(d.acc.acc_max),
                datatype_bits=int(d.acc.datatype_bits),
                a2q_bits=int(d.acc.a2q_bits),
                a2qplus_bits=int(d.acc.a2qplus_bits),
                worst_channel=int(d.acc.worst_channel),
            )
        out_layers.append(entry)
    unit_list = [{"index": None, "cname": "a2q_in_adapter", "kind": "axis_in", "op": None, "inputs": [units[0].inputs[0]],
                  "output": units[0].inputs[0], "cycles_per_image": axin.iters, "cost": cost_of["a2q_in_adapter"]["cost"],
                  "processes": {"a2q_in_adapter": axin.iters}}]
    for u in units:
        e = {"index": u.index, "cname": u.cname, "kind": u.kind, "op": u.dense.name if u.dense is not None else None,
             "inputs": list(u.inputs), "output": u.out_tensor, "cycles_per_image": u.stage_cycles,
             "cost": cost_of[u.cname]["cost"], "processes": {name: cyc for name, cyc in processes([u])}}
        if u.kind in ("conv", "dw"):
            e["swg_cycles_per_image"] = u.swg_cycles
            e["compute_cycles_per_image"] = u.cycles
        unit_list.append(e)
    for p in axouts:
        unit_list.append({"index": None, "cname": p.adapter, "kind": "axis_out", "op": None, "inputs": [p.tensor],
                          "output": p.tensor, "cycles_per_image": p.iters, "cost": cost_of[p.adapter]["cost"],
                          "processes": {p.adapter: p.iters}})
    slow = max(unit_list, key=lambda e: e["cycles_per_image"])
    first = units[0]
    streams, _ = netlist(units)
    return {
        "format": FORMAT_VERSION,
        "tool": "a2qhls",
        "model": model_file,
        "model_name": model.name,
        "top": TOP,
        "input": {"name": model.input_name, "shape": list(model.input_shape), "tensor": first.inputs[0]},
        **({"output": {"tensor": model.outputs[0], "name": _output_name(model, 0)}} if len(axouts) == 1 else
           {"outputs": [{"tensor": p.tensor, "name": _output_name(model, p.index), "port": p.name} for p in axouts]}),
        "acc_bits_overrides": overrides,
        "bus_bits": bus_bits,
        "control": check_control(control),
        "stream_weights": [u.dense.name for u in units if u.w_stream],
        **({"input_quant": model.input_quant} if getattr(model, "input_quant", None) is not None else {}),
        "folding": {lp.dense.name: {"PE": lp.PE, "SIMD": lp.SIMD} for lp in units if lp.has_weights},
        "chain": is_chain(units),
        "cycles_per_image": slow["cycles_per_image"],
        "bottleneck": slow["cname"],
        "interface": {
            "protocol": "AXI4-Stream in and out (TDATA, TKEEP, TSTRB, TLAST), " + (
                "block control ap_ctrl_none: free-running, one image per input burst" if control == "none" else
                "block control s_axilite (bundle 'control'): register 0x00 bit 0 ap_start, bit 1 ap_done, bit 2 ap_idle, "
                "bit 3 ap_ready, bit 7 auto_restart; write 0x81 once to run free, or 0x01 per image and poll ap_done"),
            "control": control,
            "input": axin.layout(),
            **({"output": _output_layout(model, axouts[0])} if len(axouts) == 1 else
               {"outputs": [_output_layout(model, p) for p in axouts]}),
            "weights": [w.layout() for w in weight_ports(units)],
        },
        "fifo_depths": {name: depth for name, _, depth, _ in streams if depth != 2},
        "layers": out_layers,
        "units": unit_list,
        "cost": {
            "part": util["part"],
            "capacity": util["capacity"],
            "total": costs["total"],
            "utilization_percent": util["percent"],
            "fifos": costs["fifos"],
            "total_acc32": costs["total_32"],
            "lut_ratio_acc32": costs["lut_ratio"],
        },
    }


def _output_name(model: Model, k: int) -> Optional[str]:
    """Graph output ``k``'s name in the model file (None when the model has none)."""
    names = model.output_names or []
    return names[k] if k < len(names) else None


def _output_layout(model: Model, port: "AxisPort") -> dict:
    """An output port's layout; when the graph flattens the output map (QONNX's output ``[C*H*W]``,
    channels first) also ``onnx_shape`` and, in ``layout_note``, where each streamed element lands in it.
    With several graph outputs, also the port's name (``out<k>``), its tensor and the output's name in the
    model file, and always ``onnx_shape`` (QONNX's shape of that output, without the batch dimension)."""
    out = port.layout()
    k = port.index
    onnx_shape = model.output_onnx_shape(k)
    if port.sfx:
        out = {"port": port.name, "tensor": port.tensor, "name": _output_name(model, k), **out,
               "onnx_shape": list(onnx_shape)}
    if len(onnx_shape) == 1 and len(port.shape) == 3:
        H, W, C = port.shape
        note = (f"the graph flattens this {H}x{W}x{C} map channels first: streamed element (h, w, c) is element "
                f"c*{H * W} + h*{W} + w of QONNX's [{onnx_shape[0]}] output")
        out["onnx_shape"] = list(onnx_shape)
        out["layout_note"] = f"{out['layout_note']}; {note}" if out.get("layout_note") else note
    return out


def summary_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"
