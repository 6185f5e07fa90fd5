"""a2qhls's own intermediate representation: plain dataclasses, no protobuf.

A :class:`Model` is a list of ops in topological order over named tensors.
Every tensor between ops is an integer tensor in channels-last layout whose
real value is ``scale * (q - zero_point) + offset`` (``scale`` and ``offset``
broadcast over the last axis). Ops say what they compute on integers; passes
(``a2qhls.passes``) fill in derived facts (the exact accumulator range and safe width,
thresholds) and the build's decisions (the width each accumulator is built with, the folding);
codegen and the numpy simulator read them from the ops, never from parameters beside the model.

A new op kind is a new dataclass with ``inputs``/``outputs`` like the ones below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from .bounds import int_range, value_range
from .errors import A2QError


def round_like_qonnx(y: np.ndarray, mode: str) -> np.ndarray:
    """The numpy rounding functions QONNX's ``Quant`` and ``Trunc`` use, by mode name (the functions of
    qonnx's ``resolve_rounding_mode``, here so that the importer does not load qonnx's op package,
    which imports onnxruntime). Raises :class:`~a2qhls.errors.A2QError` for an unknown mode."""
    m = str(mode).upper()
    if m in ("ROUND", "HALF_EVEN"):
        return np.round(y)
    if m == "CEIL":
        return np.ceil(y)
    if m == "FLOOR":
        return np.floor(y)
    if m == "UP":
        return np.sign(y) * np.ceil(np.abs(y))
    if m == "DOWN":
        return np.fix(y)
    if m == "HALF_UP":
        return np.sign(y) * np.floor(np.abs(y) + 0.5)
    if m == "HALF_DOWN":
        return np.sign(y) * np.ceil(np.abs(y) - 0.5)
    raise A2QError(f"rounding mode '{mode}' is not supported")


@dataclass(frozen=True)
class IntType:
    """An integer data type: ``bits`` wide, signed or not, narrow or not, with a zero-point.

    ``q`` (the stored integer) lies in ``int_range``; the value entering arithmetic
    is ``q - zero_point``.

    ``bipolar`` (QONNX ``BipolarQuant``, FINN's ``BIPOLAR``): a 1-bit type whose stored bit
    ``q`` in {0, 1} stands for the value ``2 * q - 1`` in {-1, +1} (``bits == 1``, unsigned,
    zero-point 0). Use :meth:`values` rather than ``q - zero_point`` to get values.
    """

    bits: int
    signed: bool
    narrow: bool = False
    zero_point: int = 0
    bipolar: bool = False

    def __post_init__(self):
        if self.bipolar and (self.bits != 1 or self.signed or self.zero_point):
            raise ValueError("a bipolar type is 1 bit, unsigned, zero-point 0")

    @staticmethod
    def bipolar_type() -> "IntType":
        """The 1-bit bipolar type: stored bit ``q``, value ``2 * q - 1``."""
        return IntType(1, False, bipolar=True)

    @property
    def qmin(self) -> int:
        return int_range(self.bits, self.signed, self.narrow)[0]

    @property
    def qmax(self) -> int:
        return int_range(self.bits, self.signed, self.narrow)[1]

    @property
    def vmin(self) -> int:
        """Smallest value ``q - zero_point`` (``-1`` for bipolar)."""
        if self.bipolar:
            return -1
        return value_range(self.bits, self.signed, self.narrow, self.zero_point)[0]

    @property
    def vmax(self) -> int:
        """Largest value ``q - zero_point`` (``+1`` for bipolar)."""
        if self.bipolar:
            return 1
        return value_range(self.bits, self.signed, self.narrow, self.zero_point)[1]

    def values(self, q):
        """Stored integers ``q`` -> the values entering arithmetic: ``q - zero_point``, or ``2q - 1``
        (bipolar). Works on Python ints and numpy arrays (any dtype, including object)."""
        return 2 * q - 1 if self.bipolar else q - self.zero_point

    def stored(self, v):
        """Values -> stored integers: the inverse of :meth:`values` (``(v + 1) / 2`` for bipolar)."""
        return (v + 1) // 2 if self.bipolar else v + self.zero_point

    def __str__(self) -> str:
        if self.bipolar:
            return "bipolar"
        s = ("int" if self.signed else "uint") + str(self.bits)
        if self.narrow:
            s += "n"
        if self.zero_point:
            s += f"(zp={self.zero_point})"
        return s


@dataclass
class TensorInfo:
    """A tensor between ops. ``dtype`` is None for an accumulator whose width a pass decides."""

    name: str
    shape: tuple  # per sample, channels last, no batch dimension
    dtype: Optional[IntType]
    scale: np.ndarray  # real = scale * (q - zero_point) + offset, broadcast over the last axis
    offset: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.shape[-1])


@dataclass
class InputQuant:
    """Quantizes the float graph input exactly as a QONNX ``Quant`` node does."""

    name: str
    inputs: list  # [graph input name]
    outputs: list  # [integer tensor]
    scale: np.ndarray
    zero_point: np.ndarray
    out_type: IntType
    rounding_mode: str
    # float preprocessing between the graph input and the quantizer, applied in float32 in this order,
    # in the graph input's own layout, as ONNX computes it: ("Sub"|"Add"|"Mul"|"Div", constant) or ("Relu", None)
    pre: tuple = ()
    pre_shape: tuple = ()  # the per-sample shape the preprocessing constants broadcast over (ONNX layout)

    op = "InputQuant"


@dataclass
class Dense:
    """``acc[j] = bias[j] + sum_i weight[j, i] * (x[i] - zp_in)`` on integers.

    ``weight`` is ``[channels, K]`` with the weight zero-point already removed.
    ``bias`` (accumulator units, or None) is part of the accumulator; a float bias
    that is not in accumulator units lives in the output tensor's ``offset``.
    """

    name: str
    inputs: list  # [input tensor]
    outputs: list  # [accumulator tensor]
    weight: np.ndarray
    weight_type: IntType
    weight_scale: np.ndarray  # [channels]
    bias: Optional[np.ndarray]
    source_op: str = "MatMul"  # the QONNX op it came from
    target_acc_bits: Optional[int] = None  # from the model's annotations
    quant_kind: Optional[str] = None  # e.g. "a2q", "a2q+", from the model's annotations
    # output channels whose weights (and bias) the importer negated, so that the accumulator grows
    # with the activation's real value (a negative BatchNormalization scale); see importer
    negated_channels: tuple = ()
    # filled by passes.accumulator.size_accumulators
    acc: Optional["AccumulatorReport"] = None
    # build decisions, filled by flow steps: the accumulator width the hardware is built with
    # (passes.acc_bits.apply_acc_bits: the safe width acc.acc_bits, or a user override) and the
    # folding (passes.folding.apply_folding: PE parallel output channels, SIMD parallel inputs)
    acc_bits: Optional[int] = None
    acc_bits_overridden: bool = False
    pe: Optional[int] = None
    simd: Optional[int] = None
    folding_overridden: bool = False  # PE/SIMD given by the user (else the default policy's)
    # passes.memories.apply_stream_weights: the weights come from outside the design over an extra
    # AXI-stream port (no on-chip ROM), in the order the matrix unit consumes them
    weights_external: bool = False

    op = "Dense"

    @property
    def K(self) -> int:
        return int(self.weight.shape[1])

    @property
    def channels(self) -> int:
        return int(self.weight.shape[0])


def _out_hw(in_shape, kernel, stride, pads) -> tuple:
    (H, W), (kh, kw), (sh, sw), (t, l, b, r) = in_shape[:2], kernel, stride, pads
    return ((H + t + b - kh) // sh + 1, (W + l + r - kw) // sw + 1)


def window_masks(in_shape, kernel, stride, pads, zero_insert=(1, 1)) -> list:
    """The distinct ``[kh, kw]`` boolean masks (True = a real input, False = padding) of a sliding window.

    ``zero_insert = (zy, zx)``: the input is a zero-inserted map (:class:`ZeroInsert`) whose
    positions ``(iy, ix)`` carry data only where ``iy % zy == 0`` and ``ix % zx == 0``; the others
    are structural zeros, False in the masks. Each distinct mask is one output phase (and border)
    of a transposed convolution, so sizing over these masks is exact per phase."""
    (H, W), (kh, kw), (sh, sw), (t, l) = in_shape[:2], kernel, stride, pads[:2]
    zy, zx = zero_insert
    oh, ow = _out_hw(in_shape, kernel, stride, pads)
    rows = {tuple(0 <= oy * sh - t + dy < H and (oy * sh - t + dy) % zy == 0 for dy in range(kh)) for oy in range(oh)}
    cols = {tuple(0 <= ox * sw - l + dx < W and (ox * sw - l + dx) % zx == 0 for dx in range(kw)) for ox in range(ow)}
    return [np.outer(r, c) for r in sorted(rows) for c in sorted(cols)]


class _SlidingWindow:
    """Geometry shared by the ops that slide a window over an ``[H, W, C]`` tensor."""

    @property
    def out_shape(self) -> tuple:
        return (*_out_hw(self.in_shape, self.kernel, self.stride, self.pads), self.channels)

    def window_masks(self) -> list:
        return window_masks(self.in_shape, self.kernel, self.stride, self.pads, getattr(self, "zero_insert", (1, 1)))


@dataclass
class Conv(_SlidingWindow):
    """2-D convolution on a channels-last integer tensor ``[H, W, C_in]``.

    ``weight`` is ``[C_out, kh, kw, C_in // groups]`` integers (zero-point removed), so a
    channel's taps flatten in the same (row, column, channel) order as a channels-last
    sliding window. Padding inserts the input's zero-point, i.e. the value 0.
    ``groups == C_in == C_out`` is a depthwise convolution (K = kh * kw).
    """

    name: str
    inputs: list
    outputs: list
    weight: np.ndarray
    weight_type: IntType
    weight_scale: np.ndarray  # [C_out]
    bias: Optional[np.ndarray]
    kernel: tuple  # (kh, kw)
    stride: tuple  # (sh, sw)
    pads: tuple  # (top, left, bottom, right)
    groups: int
    in_shape: tuple  # (H, W, C_in)
    source_op: str = "Conv"
    target_acc_bits: Optional[int] = None
    quant_kind: Optional[str] = None
    negated_channels: tuple = ()  # as for Dense
    # a ConvTranspose: this stride-1 convolution reads the output of a ZeroInsert of factor (zy, zx),
    # whose inserted positions are structural zeros (window_masks, hence the exact sizing, knows them)
    zero_insert: tuple = (1, 1)
    acc: Optional["AccumulatorReport"] = None
    # build decisions, filled by flow steps: the accumulator width the hardware is built with
    # (passes.acc_bits.apply_acc_bits: the safe width acc.acc_bits, or a user override) and the
    # folding (passes.folding.apply_folding: PE parallel output channels, SIMD parallel inputs)
    acc_bits: Optional[int] = None
    acc_bits_overridden: bool = False
    pe: Optional[int] = None
    simd: Optional[int] = None
    folding_overridden: bool = False  # PE/SIMD given by the user (else the default policy's)
    # passes.memories.apply_stream_weights: the weights come from outside the design over an extra
    # AXI-stream port (no on-chip ROM), in the order the matrix unit consumes them
    weights_external: bool = False

    op = "Conv"

    @property
    def K(self) -> int:
        return int(np.prod(self.weight.shape[1:]))

    @property
    def channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_shape[2] == self.channels


@dataclass
class Pool(_SlidingWindow):
    """Max or average pooling over ``kernel`` windows of a channels-last tensor.

    ``mode == "avg"`` keeps the integer window sum (an accumulator, sized like a layer
    whose weights are all 1); the division is the following requantization's job. Its input is
    an integer activation (``q - zp``) or, for ``Conv -> AveragePool -> Quant``, the accumulator
    of the layer before it (zero-point 0; the window sum of accumulators, sized from that layer's
    exact per-channel range).
    """

    name: str
    inputs: list
    outputs: list
    mode: str  # "max" | "avg"
    kernel: tuple
    stride: tuple
    pads: tuple
    in_shape: tuple
    source_op: str = "MaxPool"
    source_inputs: tuple = ()  # the ONNX tensor read (when the input is an accumulator: a reference is cut there)
    acc: Optional["AccumulatorReport"] = None
    # build decision (passes.acc_bits.apply_acc_bits): the accumulator width the hardware uses
    acc_bits: Optional[int] = None
    acc_bits_overridden: bool = False

    op = "Pool"

    @property
    def K(self) -> int:
        return int(self.kernel[0] * self.kernel[1])

    @property
    def channels(self) -> int:
        return int(self.in_shape[2])


@dataclass
class Add:
    """Residual add: ``acc[..., j] = ma[j] * (a[..., j] - zp_a) + mb[j] * (b[..., j] - zp_b)``.

    Each input is an integer activation (``q - zp``) or the accumulator of another op (a layer
    or an average pool, ``zp = 0``; e.g. ``bn2(conv2(x)) + shortcut(x)`` before the activation
    Quant). ``ma``/``mb`` (positive integers, per channel) align the two real-value scales
    exactly on a common power-of-two grid: ``scale_a[j] = ma[j] * s[j]`` and
    ``scale_b[j] = mb[j] * s[j]`` with ``s`` the output accumulator's scale (each input's scale
    taken in float32, the exported graph's precision, as a dyadic rational ``m * 2^e``;
    ``ma = m_a * 2^(e_a - e)`` reduced by the common factor, so a multiplier is an odd
    mantissa shifted left, see :meth:`multiplier_parts`). The sum is an accumulator (sized
    exactly from both input ranges and the multipliers) that a Requant thresholds.
    """

    name: str
    inputs: list  # [a, b]
    outputs: list
    multipliers: tuple  # (ma, mb): each an int (every channel) or a tuple of one int per channel
    shape: tuple
    source_op: str = "Add"
    # the ONNX tensors the Add reads, whose real values are the inputs' (an accumulator's after its
    # BatchNormalization): a reference run of the source graph is cut there
    source_inputs: tuple = ()
    acc: Optional["AccumulatorReport"] = None
    # build decision (passes.acc_bits.apply_acc_bits): the accumulator width the hardware uses
    acc_bits: Optional[int] = None
    acc_bits_overridden: bool = False

    op = "Add"

    K = 2

    @property
    def channels(self) -> int:
        return int(self.shape[-1])

    def multiplier(self, k: int) -> np.ndarray:
        """Input ``k``'s multipliers as ``[channels]`` Python integers (object array)."""
        m = self.multipliers[k]
        if isinstance(m, (tuple, list, np.ndarray)):
            return np.asarray([int(v) for v in m], dtype=object)
        return np.full(self.channels, int(m), dtype=object)

    def uniform(self, k: int) -> bool:
        """Input ``k`` has one multiplier for all channels."""
        m = self.multiplier(k)
        return bool(np.all(m == m[0]))

    def multiplier_parts(self, k: int) -> tuple:
        """``(odd mantissa bits, shift)``: the widest odd part and the largest left shift of input
        ``k``'s multipliers (``m = odd << shift``): what aligning it costs in hardware."""
        m = [int(v) for v in self.multiplier(k)]
        shifts = [(v & -v).bit_length() - 1 for v in m]
        return max((v >> s).bit_length() for v, s in zip(m, shifts)), max(shifts)


@dataclass(frozen=True)
class TruncSpec:
    """The first rounding of a QONNX ``Trunc`` (v2): ``y = ROUND(v / scale + zero_point)``
    (half to even); the Requant then rounds ``y / trunc_scale`` (a power of two) with its
    own rounding mode and clips to its output type."""

    scale: float
    zero_point: float
    trunc_scale: float


@dataclass
class Requant:
    """Integer accumulator -> integer activation, reproducing ``[Relu ->] Quant`` or ``Trunc``.

    Real input ``v = scale_in * acc + offset_in`` (from the input tensor); output
    ``q = clip(round(relu?(v) / scale + zero_point), qmin, qmax)``, or with ``trunc``
    (a QONNX ``Trunc``, e.g. after Brevitas's average pool)
    ``q = clip(round(ROUND(v / trunc.scale + trunc.zero_point) / trunc.trunc_scale), qmin, qmax)``
    where ``scale``/``zero_point`` then only give the output's real value. A pass turns this
    into per-channel integer thresholds (``thresholds``): ``q = qmin + #{t: acc >= T[j, t]}``.
    A bipolar ``out_type`` (QONNX ``BipolarQuant``) is the sign: ``q = 1`` iff ``relu?(v) >= 0``
    (one threshold), real value ``scale * (2q - 1)``.
    """

    name: str
    inputs: list
    outputs: list
    relu: bool
    scale: np.ndarray  # output scale, [channels] or scalar
    zero_point: np.ndarray
    out_type: IntType
    rounding_mode: str
    thresholds: Optional[np.ndarray] = None  # [channels, qmax - qmin], filled by a pass
    trunc: Optional[TruncSpec] = None
    # two quantizers in a row (e.g. QuantReLU -> QuantIdentity): ``pre`` maps the accumulator to an
    # intermediate activation q1 (never materialized), this op requantizes q1's real value
    # ``pre.scale * (q1 - pre.zero_point)``; the thresholds fold both into one unit on the accumulator
    pre: Optional["Requant"] = None

    op = "Requant"


DEPTH_TO_SPACE_MODES = ("DCR", "CRD")


def depth_to_space_sources(channels: int, blocksize: int, mode: str) -> np.ndarray:
    """``src[i, j, c]``: the input channel that ONNX ``DepthToSpace`` puts at output channel ``c``,
    row offset ``i`` and column offset ``j`` of each ``blocksize x blocksize`` block
    (ONNX operator spec: DCR reads channel ``(i * r + j) * C' + c``, CRD ``c * r * r + i * r + j``;
    CRD is PyTorch's ``PixelShuffle``). ``channels`` is the input's, ``C' = channels / r^2``."""
    r = int(blocksize)
    co = channels // (r * r)
    i, j, c = np.meshgrid(np.arange(r), np.arange(r), np.arange(co), indexing="ij")
    if mode == "DCR":
        return (i * r + j) * co + c
    if mode == "CRD":
        return c * r * r + i * r + j
    raise ValueError(f"unknown DepthToSpace mode '{mode}'")


@dataclass
class DepthToSpace:
    """ONNX ``DepthToSpace`` on a channels-last tensor ``[H, W, C]`` -> ``[H*r, W*r, C/r^2]``:
    ``out[y, x, c] = in[y // r, x // r, src[y % r, x % r, c]]`` with ``src`` from
    :func:`depth_to_space_sources`. A pure reorder: the integers and their type are unchanged.
    """

    name: str
    inputs: list
    outputs: list
    blocksize: int
    mode: str  # "DCR" | "CRD"
    in_shape: tuple  # (H, W, C)
    source_op: str = "DepthToSpace"
    op = "DepthToSpace"

    @property
    def out_shape(self) -> tuple:
        H, W, C = self.in_shape
        r = self.blocksize
        return (H * r, W * r, C // (r * r))

    @property
    def channels(self) -> int:
        return int(self.out_shape[2])

    def sources(self) -> np.ndarray:
        return depth_to_space_sources(self.in_shape[2], self.blocksize, self.mode)


@dataclass
class Upsample:
    """Nearest-neighbour upsampling (ONNX ``Resize`` mode nearest / ``Upsample``) by integer
    factors ``(sy, sx)`` of a channels-last ``[H, W, C]`` tensor: ``out[y, x, c] = in[y // sy, x // sx, c]``.
    The integers and their type are unchanged."""

    name: str
    inputs: list
    outputs: list
    scale: tuple  # (sy, sx), integers >= 1
    in_shape: tuple  # (H, W, C)
    source_op: str = "Resize"
    op = "Upsample"

    @property
    def out_shape(self) -> tuple:
        H, W, C = self.in_shape
        return (H * self.scale[0], W * self.scale[1], C)

    @property
    def channels(self) -> int:
        return int(self.in_shape[2])


@dataclass
class ZeroInsert:
    """The zero-insertion upsampler of a stride-``(zy, zx)`` ``ConvTranspose``: ``[H, W, C]`` ->
    ``[(H-1)*zy + 1, (W-1)*zx + 1, C]`` with ``out[y*zy, x*zx] = in[y, x]`` and every other position
    the value 0, i.e. the stored integer ``zero_point`` of the input type (type unchanged). The
    convolution that follows it (stride 1, flipped kernel) computes the transposed convolution."""

    name: str
    inputs: list
    outputs: list
    factor: tuple  # (zy, zx)
    in_shape: tuple
    source_op: str = "ConvTranspose"
    op = "ZeroInsert"

    @property
    def out_shape(self) -> tuple:
        H, W, C = self.in_shape
        return ((H - 1) * self.factor[0] + 1, (W - 1) * self.factor[1] + 1, C)

    @property
    def channels(self) -> int:
        return int(self.in_shape[2])


@dataclass
class Concat:
    """``Concat`` along channels of integer tensors ``[H, W, C_k]`` (or ``[C_k]``): output channel
    block ``k`` holds ``(q_k - zp_k) * 2^shifts[k] + out_zp`` where ``out_zp`` is the output type's
    zero-point. Same scales and types: ``shifts`` all 0 and the stored integers pass unchanged;
    scales in power-of-two ratios: each input is brought to the finest scale exactly (a left shift),
    into an output type wide enough for every input's shifted range."""

    name: str
    inputs: list
    outputs: list
    shifts: tuple  # per input, >= 0
    shape: tuple  # output shape
    source_op: str = "Concat"
    op = "Concat"

    @property
    def channels(self) -> int:
        return int(self.shape[-1])


Op = Union[InputQuant, Dense, Conv, Pool, Add, Requant, DepthToSpace, Upsample, ZeroInsert, Concat]


@dataclass
class AccumulatorReport:
    """What the accumulator sizing pass derived for one layer."""

    acc_bits: int  # exact layer width: max over channels
    acc_min: int
    acc_max: int
    per_channel_bits: np.ndarray
    per_channel_min: np.ndarray
    per_channel_max: np.ndarray
    datatype_bits: int
    a2q_bits: int
    a2qplus_bits: int
    worst_channel: int
    adversarial_max: np.ndarray  # input values (q - zp) reaching acc_max of the worst channel
    adversarial_min: np.ndarray
    exceeds_target: bool = False
    # a residual add (or an average pool) whose inputs are aligned to a common grid: per input a dict
    # {"input", "input_bits", "multiplier_bits", "odd_bits", "shift", "aligned_bits"} (see passes.accumulator)
    alignment: tuple = ()


def channels_first(shape, one_d: bool = False) -> tuple:
    """A per-sample IR shape as ONNX lays it out: an ``(H, W, C)`` map as ``(C, H, W)``, or ``(C, L)`` for a
    1-D model's maps (height 1, ``one_d``); a vector as it is."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3:
        return shape
    H, W, C = shape
    return (C, W) if one_d else (C, H, W)


@dataclass
class Model:
    name: str
    input_name: str  # float graph input
    input_shape: tuple  # per sample, as the float graph input takes it (may be flattened before InputQuant)
    ops: list
    tensors: dict  # name -> TensorInfo
    outputs: list  # tensor names that leave the graph
    output_names: list = field(default_factory=list)  # the graph's own output names
    # per graph output (output_names), its per-sample shape in the ONNX graph (channels first, e.g. (C, H, W);
    # (C*H*W,) when the graph flattens the map); empty: the channels-first form of its tensor (see output_onnx_shape)
    output_shapes: list = field(default_factory=list)
    source: str = ""  # the file it was loaded from (absolute path)
    source_stat: tuple = ()  # (size, mtime_ns) of that file when loaded: a build checks it is unchanged
    # the declared input type ``--input-quant`` (e.g. "uint8:0.00392") when the file has no input quantizer
    input_quant: Optional[str] = None

    def onnx_shape(self, tensor: str) -> tuple:
        """The per-sample shape of the IR tensor ``tensor`` where the ONNX graph (QONNX) computes it under its
        name: channels first (:func:`channels_first`). A graph output the graph reshapes after it (a Flatten)
        has its own shape: :meth:`output_onnx_shape`."""
        return channels_first(self.tensors[tensor].shape, one_d=len(self.input_shape) == 2)

    def output_onnx_shape(self, k: int = 0) -> tuple:
        """The per-sample shape of the ``k``-th graph output (``output_names[k]``) as QONNX gives it: recorded
        at import (:attr:`output_shapes`; ``(C*H*W,)`` when the graph flattens the map), else
        :meth:`onnx_shape` of its tensor."""
        if len(self.output_shapes) == len(self.outputs):
            return tuple(self.output_shapes[k])
        return self.onnx_shape(self.outputs[k])

    def producer(self, tensor: str):
        for op in self.ops:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: str) -> list:
        return [op for op in self.ops if tensor in op.inputs]

    def layers(self) -> list:
        """The ops with weights and an accumulator (Dense, Conv), in topological order."""
        return [op for op in self.ops if isinstance(op, (Dense, Conv))]

    def accumulating_ops(self) -> list:
        """Every op that owns an accumulator: layers, average pooling and residual adds."""
        return [op for op in self.ops if isinstance(op, (Dense, Conv, Add)) or (isinstance(op, Pool) and op.mode == "avg")]
