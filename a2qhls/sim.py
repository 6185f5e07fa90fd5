"""Bit-accurate numpy model of the generated hardware: THE definition of a2qhls's semantics.

What it computes, per op of the IR, on a batch (first axis) of samples:

* :class:`~a2qhls.ir.InputQuant`: the float input quantized exactly as QONNX's
  ``Quant`` does it in float32 (``x / scale + zero_point``, clip, the node's rounding
  function). The hardware's input stream carries these integers ``q``.
* :class:`~a2qhls.ir.Dense`: ``acc[j] = bias[j] + sum_i w[j, i] * (x[i] - zp_in)``,
  wrapped modulo ``2^P`` into a signed ``P``-bit value, exactly like an ``ap_int<P>``
  accumulator (with wraparound only the final sum matters, so it is wrapped once).
* :class:`~a2qhls.ir.Conv`: the same sum over each ``kh x kw`` window of the channels-last
  feature map (im2col, stride, padding with the value 0, i.e. the input's zero-point), over
  all ``C_in`` taps, or per channel for a depthwise convolution; wrapped to ``P`` bits.
* :class:`~a2qhls.ir.Pool`: ``max``: the maximum of the stored integers over each window
  (same type); ``avg``: the integer window sum ``sum (q - zp)`` (padding contributes 0),
  wrapped to ``P`` bits: an accumulator that a following Requant divides via its scale (the input
  may be a layer's accumulator, as it left that layer: wrapped to the layer's width, no zero-point).
* :class:`~a2qhls.ir.Add`: ``acc[..., j] = ma[j] * (a - zp_a) + mb[j] * (b - zp_b)`` (per-channel
  multipliers; an accumulator input has no zero-point), wrapped to ``P`` bits.
* :class:`~a2qhls.ir.Requant`: ``q = qmin + #{t : acc >= T[j, t]}`` with the exact
  thresholds of :mod:`a2qhls.passes.thresholds` (after any accumulating op).
* Bipolar tensors (QONNX ``BipolarQuant``, :meth:`~a2qhls.ir.IntType.bipolar_type`) store the
  bit ``q`` and enter every sum as the value ``2q - 1`` (in place of ``q - zp``); a bipolar input
  quantizer gives ``q = 1`` iff ``x / scale >= 0``, a bipolar Requant has one threshold (the sign).

Tensors are ``[batch, *shape]`` with ``shape`` channels-last (``[B, H, W, C]`` for a feature
map). A model whose float input is ``[C, H, W]`` (ONNX NCHW per sample) quantizes it, then
transposes to channels-last. A Dense on a feature map consumes it flattened in
``(h, w, c)`` order.

Graph outputs are integer tensors (an accumulator, or a requantized activation);
:func:`to_real` gives their real value ``scale * (q - zero_point) + offset``.

Fast paths, each exact (integer arithmetic, or floats holding integers exactly):

* The dot products of a layer whose weights fit int8 and whose input values span at most 256
  integers run as torch's integer GEMM (``torch._int_mm``: int8 x int8 with int32 sums, VNNI on
  x86) on ``value - shift`` in int8, the shift's ``shift * sum(w)`` added back with the bias, when
  every partial sum is below ``2^31``. Otherwise on BLAS in float32 or float64 when that is exact:
  every partial sum is an integer bounded by ``max_j sum_i |w[j, i]| * max|x|``, and a float holds
  such integers exactly below ``2^24`` (float32) or ``2^53`` (float64); wider layers fall back to
  int64 or Python integers. Wrapping is applied after the sum (only the final sum matters).
* An accumulator that does not wrap and that only a Requant reads stays int32 or float and
  indexes the threshold lookup table directly. The table holds every value of each channel's
  accumulator width or, where that is too large, each channel's thresholds' span (accumulators
  clipped to it first; it counts the same); beyond that, a binary search.
* A residual add whose bound fits runs in int32; a depthwise conv of few channels runs as one
  block-diagonal GEMM.
* :meth:`BitSim.run` splits a large batch into chunks that run in parallel threads.
* With ``jit`` (``BitSim(model, jit=True)``, or by default on very large batches), numba's fused loops (:mod:`a2qhls._jit`) quantize the input (divide, add,
  clip and round per element in float32, one pass) and read the threshold tables (clip, offset and
  lookup per element, one pass, in the table of each channel's thresholds' span, which stays in cache)
  where numpy takes three or four passes over memory.

``BitSim(model, blas=False)`` runs every sum in int64 (or Python integers) and counts thresholds
one by one: the plain path the tests compare the fast ones with.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import A2QError
from .ir import Add, Concat, Conv, Dense, DepthToSpace, InputQuant, Model, Pool, Requant, Upsample, ZeroInsert, round_like_qonnx
from .bounds import channel_sums, int_range
from .passes.acc_bits import built_acc_bits
from .passes.accumulator import acc_range, operand_range
from .passes.thresholds import compute_thresholds

__all__ = ["wrap", "round_like_qonnx", "quantize_input", "to_real", "BitSim", "simulate"]


def wrap(acc, bits: int):
    """Two's-complement wraparound of integers to a signed ``bits``-bit range."""
    half = 1 << (bits - 1)
    a = np.asarray(acc)
    if a.dtype == object or bits > 62:
        mask = (1 << bits) - 1
        f = np.frompyfunc(lambda v: ((int(v) + half) & mask) - half, 1, 1)
        out = f(a.astype(object))
        return out
    a = a.astype(np.int64, copy=False)
    return ((a + half) & ((1 << bits) - 1)) - half


def preprocess_input(op: InputQuant, x: np.ndarray) -> np.ndarray:
    """The float preprocessing ``op.pre`` (Sub/Add/Mul/Div by constants, Relu) on the float input
    ``[B, *input_shape]``, in float32 and in order, as ONNX computes it."""
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    if op.pre_shape:
        x = x.reshape((-1,) + tuple(op.pre_shape))
    for kind, c in op.pre:
        if kind == "Relu":
            x = np.maximum(x, np.float32(0))
        else:
            x = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[kind](x, np.asarray(c, dtype=np.float32))
        x = x.astype(np.float32, copy=False)
    return x.reshape(shape)


def unpreprocess_input(op: InputQuant, y: np.ndarray) -> np.ndarray:
    """Float inputs that :func:`preprocess_input` maps (nearly) to ``y``: the inverse maps in reverse
    order, in float64 (Relu inverts to the identity on ``y >= 0``)."""
    x = np.asarray(y, dtype=np.float64)
    shape = x.shape
    if op.pre_shape:
        x = x.reshape((-1,) + tuple(op.pre_shape))
    for kind, c in reversed(op.pre):
        if kind == "Relu":
            continue
        c = np.asarray(c, dtype=np.float64)
        x = {"Add": np.subtract, "Sub": np.add, "Mul": np.divide, "Div": np.multiply}[kind](x, c)
    return x.reshape(shape)


_QUANT_BLOCK = 1 << 18  # float32 elements per block of the input quantizer (1 MB: stays in a core's L2)


def narrow_int_dtype(qmin: int, qmax: int):
    """The narrowest numpy integer dtype holding ``[qmin, qmax]`` (uint8 for unsigned 8-bit values)."""
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64):
        if np.iinfo(dt).min <= qmin and qmax <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise A2QError(f"integers in [{qmin}, {qmax}] do not fit 64 bits")


def _scaled_clipped(op: InputQuant, x: np.ndarray, scale, zp, out=None, offset: int = 0) -> np.ndarray:
    """``clip(x / scale + zp, qmin, qmax)`` in float32, as QONNX computes it (into ``out`` if given).
    Raises :class:`A2QError` for a NaN (it survives the clip and has no integer); ``offset``: the flat
    index of ``x[0]`` in the whole input, for the message."""
    y = np.divide(x, scale, out=out)
    if zp != 0:
        y += zp
    np.clip(y, np.float32(op.out_type.qmin), np.float32(op.out_type.qmax), out=y)
    if y.size and np.isnan(y.max()):
        raise _nan_input(op, offset + int(np.flatnonzero(np.isnan(y.reshape(-1)))[0]))
    return y


def _nan_input(op: InputQuant, k: int) -> A2QError:
    return A2QError(f"{op.name}: the input has NaN at flat index {k}; quantizing needs numbers (infinities clip)")


def quantize_input(op: InputQuant, x: np.ndarray, *, narrow: bool = False, kernels=None) -> np.ndarray:
    """Float input -> integer ``q`` (int64; ``narrow``: in the narrowest integer dtype that holds them,
    e.g. uint8), as QONNX computes it in float32 (any float preprocessing ``op.pre`` first, then
    ``x / scale + zp``, clip, round; clipping before rounding to the integer bounds is the same as after).
    ``kernels``: :func:`jit_kernels`' module, for the narrow per-tensor ``ROUND`` case in one fused pass.
    Raises :class:`A2QError` for a NaN input."""
    x = preprocess_input(op, x) if op.pre else np.asarray(x, dtype=np.float32)
    scale = np.asarray(op.scale, dtype=np.float32)
    zp = np.asarray(op.zero_point, dtype=np.float32)
    m = str(op.rounding_mode).upper()
    dt = narrow_int_dtype(op.out_type.qmin, op.out_type.qmax) if narrow else np.dtype(np.int64)
    if op.out_type.bipolar:  # QONNX BipolarQuant: +1 (stored 1) iff x / scale >= 0
        return (np.divide(x, scale) >= 0).astype(dt)
    if narrow and m in ("ROUND", "HALF_EVEN") and scale.size == 1 and zp.size == 1:
        # the same steps in cache-sized blocks, each rounded straight into the narrow integers
        q = np.empty(x.shape, dtype=dt)
        xf, qf = np.ascontiguousarray(x).reshape(-1), q.reshape(-1)
        if kernels is not None and max(-op.out_type.qmin, op.out_type.qmax) <= 1 << 22:  # one fused pass
            f32 = np.float32
            if kernels.quantize_round(xf, f32(scale.reshape(())), f32(zp.reshape(())), f32(op.out_type.qmin),
                                      f32(op.out_type.qmax), qf):
                _scaled_clipped(op, xf, scale.reshape(()), zp.reshape(()))  # raises, naming the first NaN
            return q
        buf = np.empty(min(xf.size, _QUANT_BLOCK), dtype=np.float32)
        for i in range(0, xf.size, _QUANT_BLOCK):
            n = min(_QUANT_BLOCK, xf.size - i)
            yb = _scaled_clipped(op, xf[i : i + n], scale.reshape(()), zp.reshape(()), out=buf[:n], offset=i)
            np.rint(yb, out=qf[i : i + n], casting="unsafe")  # in range: clipped
        return q
    y = _scaled_clipped(op, x, scale, zp)
    if m in ("ROUND", "HALF_EVEN"):
        np.round(y, out=y)
    else:
        y = round_like_qonnx(y, m).astype(np.float32)
    return y.astype(dt)


def dequantize_input(op: InputQuant, q: np.ndarray) -> np.ndarray:
    """Integers ``q`` -> float32 inputs that :func:`quantize_input` maps back to ``q``."""
    scale = np.asarray(op.scale, dtype=np.float32)
    zp = np.asarray(op.zero_point, dtype=np.float32)
    q = np.asarray(q)
    x = ((op.out_type.values(q.astype(np.float32)) - zp) * scale).astype(np.float32)
    if op.pre:
        if any(k == "Relu" for k, _ in op.pre) and np.any(x < 0):
            raise A2QError(f"{op.name}: these integer inputs are negative after the input's Relu; no float input reaches them")
        y = x.astype(np.float64)
        x = unpreprocess_input(op, y).astype(np.float32)
        # float32 rounding of the preprocessing may move a value across a rounding boundary:
        # nudge each such element by one ulp at a time, towards its target, until the quantizer gives back q
        sign = np.ones((1,) + tuple(op.pre_shape))
        for kind, c in op.pre:
            if kind in ("Mul", "Div"):
                sign = sign * np.sign(np.asarray(c, dtype=np.float64))
        sign = np.broadcast_to(sign, (x.size // max(1, int(np.prod(op.pre_shape))),) + tuple(op.pre_shape)).reshape(x.shape)
        for _ in range(64):
            bad = quantize_input(op, x) != q
            if not bad.any():
                break
            rising = (preprocess_input(op, x) < y) == (sign > 0)
            step = np.where(rising, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf)))
            x = np.where(bad, step, x).astype(np.float32)
    back = quantize_input(op, x)
    if not np.array_equal(back, q):
        raise A2QError(f"{op.name}: cannot represent these integer inputs as float inputs exactly")
    return x


def to_real(model: Model, tensor: str, q: np.ndarray) -> np.ndarray:
    """Real value ``scale * (q - zero_point) + offset`` of an integer tensor, in float64."""
    info = model.tensors[tensor]
    q = np.asarray(q).astype(np.float64)
    v = info.dtype.values(q) if info.dtype is not None else q  # q - zero_point, or 2q - 1 (bipolar)
    return np.asarray(info.scale, dtype=np.float64) * v + np.asarray(info.offset, dtype=np.float64)


def onnx_layout(model: Model, tensor: str, a: np.ndarray, output: Optional[int] = None) -> np.ndarray:
    """Values of ``tensor`` for ``n`` samples (``[n, ...]``, channels last, as :func:`simulate` gives them)
    in the ONNX graph's layout: ``[n, *model.onnx_shape(tensor)]`` (NCHW for a map), or, as the graph's
    ``output``-th output, ``[n, *model.output_onnx_shape(output)]`` (a map the graph flattens: ``[n, C*H*W]``
    in channels-first order, as QONNX computes it)."""
    shape = tuple(model.tensors[tensor].shape)
    a = np.asarray(a)
    a = a.reshape((len(a),) + shape)
    if len(shape) == 3:
        a = a.transpose(0, 3, 1, 2)
    return a.reshape((len(a),) + (model.onnx_shape(tensor) if output is None else model.output_onnx_shape(output)))


def _kind(bound: int) -> str:
    """Cheapest exact arithmetic for integer sums bounded by ``bound`` in magnitude."""
    if bound < 2**24:
        return "f32"
    if bound < 2**53:
        return "f64"
    if bound < 2**62:
        return "i64"
    return "obj"


_DTYPE = {"i8": np.int8, "i32": np.int32, "f32": np.float32, "f64": np.float64, "i64": np.int64, "obj": object}
_NARROW = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int16))  # stored integers of at most 16 bits


def _values(x, zp: int, kind: str, mul: int = 1) -> np.ndarray:
    """Stored integers ``q`` -> values ``mul * q - zp`` in the compute dtype (exact): ``q - zp``, or
    ``2q - 1`` for a bipolar input (``mul=2, zp=1``, see :func:`_value_map`)."""
    v = np.asarray(x)
    if kind == "obj":
        v = v.astype(object)
        return (v * mul if mul != 1 else v) - zp
    if kind == "f32" and v.dtype.kind in "iu" and v.dtype.itemsize >= 4:
        # stored integers may pass 2^24 where the values do not (a large zero-point): subtract in int64
        return (v.astype(np.int64) * mul - zp).astype(np.float32)
    if kind == "f32":  # exact: |mul * q - zp| < 2^24 (the bound that chose f32), |q| < 2^16 here (or float32 q)
        v = v.astype(np.float32, copy=False)
        v = v * np.float32(mul) if mul != 1 else v
        return v - np.float32(zp) if zp else v
    v = v.astype(np.int64)
    v = v * mul if mul != 1 else v
    v = v - zp if zp else v
    return v.astype(np.float64) if kind == "f64" else v


def _native(q: np.ndarray) -> np.ndarray:
    """An array given to the model in this machine's byte order, float16 as float32 (the same values):
    numba's loops compile for native integer and float32/float64 arrays only."""
    dt = q.dtype
    if dt == object or (dt.isnative and not (dt.kind == "f" and dt.itemsize < 4)):
        return q
    return q.astype(np.float32 if dt.kind == "f" and dt.itemsize < 4 else dt.newbyteorder("="))


def _value_map(t) -> tuple:
    """``(mul, zp)`` with value ``mul * q - zp`` for an :class:`~a2qhls.ir.IntType`: ``(2, 1)`` bipolar."""
    return (2, 1) if t.bipolar else (1, int(t.zero_point))


def _to_int(a: np.ndarray, kind: str) -> np.ndarray:
    return a if kind == "obj" else a.astype(np.int64)


@functools.lru_cache(maxsize=1)
def int8_gemm():
    """torch's integer GEMM ``torch._int_mm`` (int8 x int8 -> int32, exact integer arithmetic; on x86
    oneDNN's VNNI kernels), or ``None`` where torch or the op is missing, or where it fails a check
    against numpy's int64 product on odd shapes and extreme values (it is a private torch function:
    checked once per process, not trusted)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the front end
        return None
    mm = getattr(torch, "_int_mm", None)
    if mm is None:  # pragma: no cover - older torch
        return None
    rng = np.random.default_rng(0)
    try:
        for m, k, n in ((1, 1, 1), (37, 300, 10), (129, 17, 64)):
            a = rng.integers(-128, 128, (m, k), dtype=np.int8)
            b = rng.integers(-128, 128, (k, n), dtype=np.int8)
            a[0], b[:, 0] = -128, -128  # the extreme products
            got = mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()
            if got.dtype != np.int32 or not np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64)):
                return None
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - unsupported on this build
        return None
    return mm


def jit_kernels():
    """The fused loops of :mod:`a2qhls._jit` (numba), or ``None`` where numba is not installed or cannot
    load. Importing numba takes ~0.5 s and compiling a loop ~1 s the first time on a machine (then read
    from numba's cache): :class:`BitSim` uses them for very large batches only, unless told otherwise."""
    return _load_jit()[0]


@functools.lru_cache(maxsize=1)
def _load_jit():
    """``(module, None)``, or ``(None, why)`` with the import error's text (numba missing, or built for
    another numpy)."""
    try:
        from . import _jit
    except ImportError as e:
        return None, str(e)
    return _jit, None


def _usable_cores() -> int:
    """The cores this process may use, at most ``OMP_NUM_THREADS`` where that is set (as Ray sets it to
    a task's CPUs)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(n, int(omp))) if omp.isdigit() and int(omp) > 0 else n


@contextlib.contextmanager
def _single_threaded_kernels(controller):
    """BLAS (``controller``: a threadpoolctl ``ThreadpoolController``) and torch's intra-op pool on one
    thread each while chunks run in parallel threads; restored after."""
    torch = sys.modules.get("torch")  # only if loaded: the int8 GEMM imports it
    before = torch.get_num_threads() if torch is not None else None
    try:
        with controller.limit(limits=1):
            if torch is not None:
                torch.set_num_threads(1)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def _wide(q: np.ndarray) -> np.ndarray:
    """Integers handed back to the caller as int64 (the narrow dtypes inside would wrap the caller's
    arithmetic: uint8 ``q - 5``); object (Python integers) and float inputs kept as given."""
    q = np.asarray(q)
    return q.astype(np.int64) if q.dtype.kind in "iub" and q.dtype != np.int64 else q


def _int8_values(x, off: int, mul: int = 1) -> np.ndarray:
    """Stored integers ``q`` -> ``mul * q - off`` as C-contiguous int8 (the caller checked the range)."""
    v = np.asarray(x)
    if v.dtype == np.int8 and mul == 1 and off == 0:
        return np.ascontiguousarray(v) if v.flags.writeable else v.copy()
    if v.dtype == np.uint8 and mul == 1 and off == 0:  # q = u in [0, 127]: the same bytes as int8
        u = np.ascontiguousarray(v).view(np.int8)
        return u if u.flags.writeable else u.copy()
    if v.dtype in (np.int8, np.uint8) and mul == 1:  # (q - off) mod 256 in int8 arithmetic: exact, as it fits
        u = v.astype(np.int8)  # a copy; uint8 -> int8 wraps
        np.subtract(u, np.int8(((off + 128) % 256) - 128), out=u)
        return u
    if v.dtype.kind == "f":  # integer-valued float32 from the input quantizer: exact below 2^24
        v = v * np.float32(mul) if mul != 1 else v
        v = v - np.float32(off) if off else v
        return v.astype(np.int8)
    v = v.astype(np.int16)
    v = v * mul if mul != 1 else v
    return (v - off if off else v).astype(np.int8)


def _pad(v: np.ndarray, pads, fill=0) -> np.ndarray:
    """``[B, H, W, C]`` padded by ``(top, left, bottom, right)`` with ``fill`` (one allocation, one copy)."""
    t, l, b, r = pads
    if not any(pads):
        return v
    B, H, W, C = v.shape
    out = np.full((B, H + t + b, W + l + r, C), fill, dtype=v.dtype)
    out[:, t : t + H, l : l + W] = v
    return out


def windows(v: np.ndarray, kernel, stride, pads, fill=0) -> np.ndarray:
    """``[B, H, W, C]`` -> a ``[B, OH, OW, C, kh, kw]`` view of the sliding windows (padding = ``fill``)."""
    (kh, kw), (sh, sw) = kernel, stride
    v = _pad(v, pads, fill)
    win = np.lib.stride_tricks.sliding_window_view(v, (kh, kw), axis=(1, 2))
    OH = (v.shape[1] - kh) // sh + 1
    OW = (v.shape[2] - kw) // sw + 1
    return win[:, : (OH - 1) * sh + 1 : sh, : (OW - 1) * sw + 1 : sw]


def im2col(v: np.ndarray, kernel, stride, pads, fill=0, kernels=None) -> np.ndarray:
    """``[B, H, W, C]`` -> a C-contiguous ``[B, OH, OW, kh * kw * C]`` copy of the windows, in
    ``(kh, kw, C)`` order (padding = ``fill``); a 1x1 kernel at stride 1 without padding: ``v`` itself.
    ``kernels``: numba's loops (:func:`jit_kernels`), whose copy is used for numeric dtypes."""
    if tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and not any(pads):
        return np.ascontiguousarray(v)
    if kernels is not None and v.dtype != object:
        (kh, kw), (sh, sw), (t, l, b, r) = kernel, stride, pads
        OH = (v.shape[1] + t + b - kh) // sh + 1
        OW = (v.shape[2] + l + r - kw) // sw + 1
        out = np.empty((v.shape[0], OH, OW, kh * kw * v.shape[3]), dtype=v.dtype)
        kernels.im2col(np.ascontiguousarray(v), v.dtype.type(fill), kh, kw, sh, sw, t, l, b, r, out)
        return out
    win = windows(v, kernel, stride, pads, fill)  # [B, OH, OW, C, kh, kw]
    if v.shape[-1] == 1:  # one channel: kh * kw strided copies beat one transposing copy of 1-element runs
        out = np.empty(win.shape[:3] + (kernel[0] * kernel[1],), dtype=v.dtype)
        for t, (dy, dx) in enumerate(np.ndindex(*kernel)):
            out[..., t] = win[..., 0, dy, dx]
        return out
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(win.shape[:3] + (-1,))


def taps(v: np.ndarray, kernel, stride, pads, fill=0):
    """Yield ``(dy, dx, view)``: for each kernel tap, the ``[B, OH, OW, C]`` strided view of the
    (padded with ``fill``) map that the tap sees at every output pixel."""
    (kh, kw), (sh, sw) = kernel, stride
    v = _pad(v, pads, fill)
    OH = (v.shape[1] - kh) // sh + 1
    OW = (v.shape[2] - kw) // sw + 1
    for dy in range(kh):
        for dx in range(kw):
            yield dy, dx, v[:, dy : dy + (OH - 1) * sh + 1 : sh, dx : dx + (OW - 1) * sw + 1 : sw]


def threshold_lut(T: np.ndarray, lo: np.ndarray, R: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """``lut[start_j + (a - lo[j])] = qmin + #{t : a >= T[j, t]}`` for every accumulator ``a`` of channel
    ``j`` in ``[lo[j], lo[j] + R[j])``, channel after channel (``start_j = R[0] + ... + R[j - 1]``;
    ``T[j, t] >= lo[j]``; a threshold past the channel's last value is never reached): one increment per
    threshold, one running sum, all in the output's narrow dtype (one byte per entry for 8-bit outputs:
    the counts run from ``qmin`` to at most ``qmax``)."""
    C, NT = T.shape
    dt = narrow_int_dtype(qmin, qmax)
    rel = T - lo[:, None]
    if np.all(R == R[0]):  # every channel the same length: one [C, R] table
        r = int(R[0])
        steps = np.zeros((C, r + 1), dtype=dt)
        np.add.at(steps, (np.repeat(np.arange(C), NT), np.minimum(rel, r).reshape(-1)), 1)  # r: never reached
        steps[:, 0] += dt.type(qmin)
        return np.cumsum(steps[:, :r], axis=1, dtype=dt).reshape(-1)
    out = np.empty(int(R.sum()), dtype=dt)
    start = 0
    for j in range(C):
        r = int(R[j])
        steps = np.zeros(r + 1, dtype=dt)
        np.add.at(steps, np.minimum(rel[j], r), 1)
        steps[0] += dt.type(qmin)
        np.cumsum(steps[:r], dtype=dt, out=out[start : start + r])
        start += r
    return out


@dataclass
class _DenseStage:
    op: Dense
    P: int
    zp: int
    w_t: np.ndarray  # [K, C] in the compute dtype
    bias: Optional[np.ndarray]
    kind: str  # "i8" (torch int8 GEMM, int32 sums), "f32", "f64", "i64", "obj"
    bias_f: Optional[np.ndarray] = None  # the bias in the compute dtype (f32/f64; i8: int32, shift correction added)
    mul: int = 1  # value = mul * q - zp (2, 1 for a bipolar input)
    shift: int = 0  # i8: the GEMM reads u = value - shift (int8)


@dataclass
class _ConvStage:
    op: Conv
    P: int
    zp: int
    w: np.ndarray  # [K, C_out] (kh, kw, c_in order) or, depthwise, [C, kh, kw]; compute dtype
    bias: Optional[np.ndarray]
    kind: str
    bias_f: Optional[np.ndarray] = None
    mul: int = 1
    shift: int = 0
    # numba's loop for a conv whose output channels each read one input channel (depthwise, or one
    # input channel): (w_rows, bias, mul, zp) in a float dtype in which every sum is exact
    flat: Optional[tuple] = None


@dataclass
class _PoolStage:
    op: Pool
    P: Optional[int]  # avg only
    zp: int
    kind: str = "i64"  # "obj": window sums of wide accumulators
    mul: int = 1


@dataclass
class _AddStage:
    op: Add
    P: int
    zps: tuple
    kind: str
    mults: tuple  # ([C], [C]) per-channel multipliers in the compute dtype
    muls: tuple = (1, 1)  # value = mul * q - zp per input (2, 1 for a bipolar input)


@dataclass
class _RequantStage:
    op: Requant
    qmin: int
    T_flat: Optional[np.ndarray]  # thresholds + channel offsets, flattened, sorted
    offsets: Optional[np.ndarray]  # [C] channel offsets added to acc
    NT: int
    T: np.ndarray
    lut: Optional[np.ndarray] = None  # [C * R] outputs for every (channel, accumulator value)
    lo: Optional[np.ndarray] = None  # [C]: each channel's values in the table / search: [lo, hi]
    hi: Optional[np.ndarray] = None
    clip: bool = True  # accumulators clipped to [lo, hi] first (False: [lo, hi] is the accumulator's whole width)
    span: Optional[tuple] = None  # (lut, offsets, lo, hi) over each channel's thresholds' span, for numba's loop


def _table_layout(lo: np.ndarray, hi: np.ndarray) -> tuple:
    """``(R, offsets)`` of a table holding channel ``j``'s values ``[lo[j], hi[j]]`` one channel after
    another: ``R[j] = hi[j] - lo[j] + 1`` entries, value ``a`` at ``a + offsets[j]``."""
    R = hi - lo + 1
    starts = np.concatenate([[0], np.cumsum(R)[:-1]])
    return R, starts - lo


class BitSim:
    """A model prepared for simulation: thresholds computed, weights laid out for BLAS.

    Every accumulator wraps at the width the op is built with (``op.acc_bits``, see
    :func:`a2qhls.passes.acc_bits.apply_acc_bits`; the safe width when no decision was made),
    exactly like the generated hardware; thresholds are recomputed for those widths.
    """

    LUT_MAX = 1 << 24  # requantization by table lookup when channels * accumulator range fits
    DW_AS_GEMM = 16  # a depthwise conv of at most this many channels runs as a (block-diagonal) GEMM

    def __init__(self, model: Model, *, blas: bool = True, int_gemm: Optional[bool] = None, jit: Optional[bool] = None):
        """``blas=False``: every sum in int64 (or Python integers), no float path: the plain
        reference the tests compare the BLAS path with. ``int_gemm``: the int8 GEMM of torch where
        exact (``True``), never (``False``: the float32/float64 BLAS path for every layer that fits it),
        or (``None``, the default) only if torch is already imported: importing it takes 2-3 s, more
        than the GEMMs of a build's test vectors or a small model's co-simulation save.
        ``jit`` (ignored with ``blas=False``, which takes no fast path): numba's fused loops
        (:mod:`a2qhls._jit`: the input quantizer, the threshold-table lookup, the convolutions whose
        output channels each read one input channel (depthwise, or a single input channel), max pools
        and im2col; the ``fast`` extra)
        always (``True``; :class:`A2QError` if numba does not load), never (``False``), or (``None``,
        the default) from the first :meth:`run` whose batch holds at least :attr:`JIT_MIN_ELEMENTS`
        input and requantized values, where numba is installed. They save about 1 ns per such value and
        cost about 1 s per process to load (import and numba's cache; more to compile the first time on
        a machine): worth it for large or repeated batches (``jit=True``), not for a build's test
        vectors or a co-simulation."""
        self.model = model
        self.blas = blas
        if int_gemm is None:
            int_gemm = "torch" in sys.modules
        self._int_mm = int8_gemm() if blas and int_gemm else None
        self.jit = jit if blas else False
        self._k = None  # the kernels module once in use
        if self.jit:
            self._k, why = _load_jit()
            if self._k is None:
                raise A2QError(f"BitSim(jit=True) needs numba, which does not load here ({why}); pip install numba")
        self._threadpools = None
        self._pool = self._pool_key = None
        self._lock, self._lock_pid = threading.Lock(), os.getpid()
        self._tiles: dict = {}
        self.acc_bits = built_acc_bits(model)
        compute_thresholds(model)
        # an accumulator whose exact range fits its width never wraps: skip the (no-op) wrap there
        self.wraps = {}
        for op in model.accumulating_ops():
            lo, hi = acc_range(model, op)
            P = self.acc_bits[op.name]
            self.wraps[op.name] = not (-(1 << (P - 1)) <= lo and hi <= (1 << (P - 1)) - 1)
        readers: dict = {}
        for op in model.ops:
            for t in op.inputs:
                readers.setdefault(t, []).append(op)
        self._requant_only = {t for t, rs in readers.items() if t not in model.outputs and all(isinstance(r, Requant) for r in rs)}
        # a Requant whose output only an unpadded max Pool reads: pool the accumulator, then look up the
        # thresholds (a quarter of the lookups for 2x2 windows). The same integers: the lookup, qmin plus
        # the number of thresholds reached, is non-decreasing in the accumulator, so the max of the
        # looked-up values is the lookup of the max (FINN streamlines the same way:
        # MoveMaxPoolPastMultiThreshold)
        self._pool_first = {}
        for op in model.ops:
            if isinstance(op, Pool) and op.mode == "max" and not any(op.pads) and op.inputs[0] not in model.outputs:
                prod = model.producer(op.inputs[0])
                if isinstance(prod, Requant) and len(readers[op.inputs[0]]) == 1:
                    self._pool_first[prod.name] = op
        self.stages: dict = {}
        for op in model.ops:
            if isinstance(op, Dense):
                self.stages[op.name] = self._dense_stage(op)
            elif isinstance(op, Conv):
                self.stages[op.name] = self._conv_stage(op)
            elif isinstance(op, Pool):
                dt = model.tensors[op.inputs[0]].dtype
                mul, zp = _value_map(dt) if dt is not None else (1, 0)  # an accumulator input: no zero-point
                lo, hi = operand_range(model, op.inputs[0], built=True)
                bound = op.K * max(max(abs(int(v)) for v in lo), max(abs(int(v)) for v in hi))
                self.stages[op.name] = _PoolStage(op, self.acc_bits.get(op.name), zp, "i64" if bound < 2**62 else "obj", mul)
            elif isinstance(op, Add):
                zps, muls, mults, bound = [], [], [], 0
                for k, t in enumerate(op.inputs):
                    dt = model.tensors[t].dtype
                    mu, zp = _value_map(dt) if dt is not None else (1, 0)  # an accumulator input: no zero-point
                    zps.append(zp)
                    muls.append(mu)
                    lo, hi = operand_range(model, t, built=True)  # what the input stream can hold
                    m = op.multiplier(k)
                    mults.append(m)
                    bound += max(int(mj) * max(abs(int(a)), abs(int(b))) for mj, a, b in zip(m, lo, hi))
                # int32 where every term and sum fits with room (|mul * q| <= |value| + |zp|)
                kind = "i32" if self.blas and bound < 2**30 and max(abs(z) for z in zps) < 2**20 else "i64" if bound < 2**62 else "obj"
                mults = [m.astype(_DTYPE[kind]) if kind != "obj" else m for m in mults]
                self.stages[op.name] = _AddStage(op, self.acc_bits[op.name], tuple(zps), kind, tuple(mults), tuple(muls))
            elif isinstance(op, Requant):
                self.stages[op.name] = self._requant_stage(op)
            elif not isinstance(op, (InputQuant, DepthToSpace, Upsample, ZeroInsert, Concat)):
                raise A2QError(f"{op.name}: op {op.op} is not supported by the simulator")
        self._per_sample = self._bytes_per_sample()  # sizes the batch chunks of run()
        # values per sample that numba's loops would handle: the float input and every requantized tensor
        self._jit_per_sample = sum(int(np.prod(model.tensors[op.outputs[0]].shape or (1,)))
                                   for op in model.ops if isinstance(op, (InputQuant, Requant)))

    def _weights_kind(self, op, w: np.ndarray) -> str:
        t = self.model.tensors[op.inputs[0]].dtype
        xabs = max(abs(t.vmin), abs(t.vmax))
        pos, neg = channel_sums(w)  # exact (int64 or Python integers)
        wabs = int((pos - neg).max()) if w.size else 0
        bias = 0 if op.bias is None else int(np.abs(np.asarray(op.bias).astype(object)).max())
        kind = _kind(wabs * xabs + bias)
        return kind if self.blas or kind in ("i64", "obj") else "i64"

    def _bias(self, op, kind):
        return None if op.bias is None else np.asarray(op.bias).astype(object if kind == "obj" else np.int64)

    def _bias_f(self, op, kind):
        return None if op.bias is None or kind not in ("f32", "f64") else np.asarray(op.bias).astype(_DTYPE[kind])

    def _int8_shift(self, op, w: np.ndarray) -> Optional[int]:
        """The shift ``s`` with which the int8 GEMM is exact for this layer, or ``None``.

        ``w`` is ``[C_out, K]``. The GEMM reads ``u = value - s`` in int8 (the input's values span at
        most 256 integers; ``s`` as near 0 as that allows: 0 when they fit int8, e.g. 4-bit activations,
        128 for uint8; a padded conv also needs its padding, the value 0, as ``u = -s`` in int8) and
        weights in int8, sums in int32; ``s * sum_i w[j, i]`` is added back with the bias. Exact when
        every partial sum is below ``2^31`` in magnitude: ``max_j sum_i |w[j, i]| * max|u|``, plus the
        correction and the bias."""
        if self._int_mm is None or w.dtype == object or w.size == 0 or w.min() < -128 or w.max() > 127:
            return None
        t = self.model.tensors[op.inputs[0]].dtype
        lo, hi = int(t.vmin), int(t.vmax)
        if hi - lo > 255:
            return None
        s = min(max(0, hi - 127), lo + 128)  # u = value - s in [-128, 127], s as near 0 as that allows
        if isinstance(op, Conv) and any(op.pads) and not -128 <= -s <= 127:  # zero padding enters as u = -s
            return None
        pos, neg = channel_sums(w)
        umax = max(abs(lo - s), abs(hi - s), abs(s))
        bias = 0 if op.bias is None else int(np.abs(np.asarray(op.bias).astype(object)).max())
        corr = abs(s) * int(np.abs(pos + neg).max())
        return s if int((pos - neg).max()) * umax + corr + bias < 2**31 else None

    def _int8_bias(self, op, w: np.ndarray, s: int) -> Optional[np.ndarray]:
        """``[C_out]`` int32: the bias plus the shift's correction ``s * sum_i w[j, i]`` (``None`` if all 0)."""
        pos, neg = channel_sums(w)
        b = s * (pos + neg) + (0 if op.bias is None else np.asarray(op.bias).astype(np.int64))
        return b.astype(np.int32) if np.any(b) else None

    def _dense_stage(self, op: Dense) -> _DenseStage:
        t = self.model.tensors[op.inputs[0]].dtype
        w = np.asarray(op.weight)
        mul, zp = _value_map(t)
        s = self._int8_shift(op, w)
        if s is not None:
            import torch

            wt = torch.from_numpy(np.ascontiguousarray(w.T.astype(np.int8)))
            return _DenseStage(op, self.acc_bits[op.name], zp, wt, self._bias(op, "i64"), "i8", self._int8_bias(op, w, s), mul, s)
        kind = self._weights_kind(op, w)
        wt = np.ascontiguousarray(w.T.astype(_DTYPE[kind]))
        return _DenseStage(op, self.acc_bits[op.name], zp, wt, self._bias(op, kind), kind, self._bias_f(op, kind), mul)

    def _conv_stage(self, op: Conv) -> _ConvStage:
        t = self.model.tensors[op.inputs[0]].dtype
        w = np.asarray(op.weight)
        kind = self._weights_kind(op, w.reshape(op.channels, -1))
        flat = self._flat_weights(op, w, kind)
        s = self._int8_shift(op, w.reshape(op.channels, -1)) if not op.depthwise or op.channels <= self.DW_AS_GEMM else None
        if s is not None:
            kind = "i8"
        if op.depthwise and op.channels <= self.DW_AS_GEMM and kind in ("f32", "f64", "i8"):
            # a few channels: the depthwise conv as one BLAS GEMM with a block-diagonal [kh*kw*C, C] matrix
            # (C times the multiplies, all exact: the off-diagonal zeros add nothing to the bounded sums)
            kh, kw = op.kernel
            C = op.channels
            wc = np.zeros((kh, kw, C, C), dtype=_DTYPE[kind])
            wc[:, :, np.arange(C), np.arange(C)] = w[..., 0].transpose(1, 2, 0)
            wc = wc.reshape(kh * kw * C, C)
        elif op.depthwise:
            wc = np.ascontiguousarray(w[..., 0].astype(_DTYPE[kind]))  # [C, kh, kw]
        else:
            wc = np.ascontiguousarray(w.reshape(op.channels, -1).T.astype(_DTYPE[kind]))
        mul, zp = _value_map(t)
        if kind == "i8":
            import torch

            wc = torch.from_numpy(np.ascontiguousarray(wc))
            return _ConvStage(op, self.acc_bits[op.name], zp, wc, self._bias(op, "i64"), kind,
                              self._int8_bias(op, w.reshape(op.channels, -1), s), mul, s, flat)
        return _ConvStage(op, self.acc_bits[op.name], zp, wc, self._bias(op, kind), kind, self._bias_f(op, kind), mul, flat=flat)

    FLAT_ROW_VALUES = 4096  # numba's depthwise loop: output rows per pass, as many as fit this many values

    def _flat_weights(self, op: Conv, w: np.ndarray, kind: str) -> Optional[tuple]:
        """``(w_rows, bias, mul, zp)`` for :func:`a2qhls._jit.depthwise_conv` (its layout: each tap's
        ``[C]`` weights tiled over ``R`` padded rows), or ``None`` where it does not apply: a conv whose
        output channels do not each read one input channel, or sums not exact in float64 (``kind``)."""
        _, W, C_in = op.in_shape
        if not self.blas or kind not in ("f32", "f64") or not (op.depthwise or (C_in == 1 and op.groups == 1)):
            return None
        dt = _DTYPE[kind]
        kh, kw = op.kernel
        C = op.channels
        Wp = W + op.pads[1] + op.pads[3]
        OH = self.model.tensors[op.outputs[0]].shape[0]
        R = max(1, min(OH, self.FLAT_ROW_VALUES // (Wp * C))) if op.stride[0] == 1 else 1
        taps = w[..., 0].transpose(1, 2, 0).astype(dt)  # [kh, kw, C]
        w_rows = np.ascontiguousarray(np.broadcast_to(taps[:, :, None, :], (kh, kw, R * Wp, C)).reshape(kh, kw, -1))
        bias = np.zeros(C, dtype=dt) if op.bias is None else np.asarray(op.bias).astype(dt)
        mul, zp = _value_map(self.model.tensors[op.inputs[0]].dtype)
        return w_rows, bias, dt(mul), dt(zp)

    def _requant_stage(self, op: Requant) -> _RequantStage:
        T = np.asarray(op.thresholds)
        C, NT = T.shape
        qmin = op.out_type.qmin
        P = self.acc_bits[self.model.producer(op.inputs[0]).name]
        if NT == 0 or not self.blas or P > 62:  # blas=False: the plain count of thresholds (see requant)
            return _RequantStage(op, qmin, None, None, NT, T)
        # every accumulator lies in [amin, amax], its P-bit range (fed tensors are checked, see run_batch);
        # a threshold below amin always counts, one above amax never: clipped to [amin, amax + 1] they count
        # the same. With lo_j = (channel j's smallest clipped threshold) - 1 and hi_j its largest,
        # clip(acc, lo_j, hi_j) counts the same too: the table and the search span only each channel's
        # thresholds, R_j = hi_j - lo_j + 1 values, one channel after another (when the table of every
        # P-bit value fits, it is that table and needs no clip)
        amin, amax = int_range(P, True)
        Tc = np.clip(T.astype(object), amin, amax + 1).astype(np.int64)
        span_lo, span_hi = Tc.min(axis=1) - 1, Tc.max(axis=1)
        full = C * (amax - amin + 1) <= self.LUT_MAX
        if full:
            lo, hi = np.full(C, amin, dtype=np.int64), np.full(C, amax, dtype=np.int64)
        else:
            lo, hi = span_lo, span_hi
        R, offsets = _table_layout(lo, hi)
        T_flat = (Tc + offsets[:, None]).reshape(-1)
        st = _RequantStage(op, qmin, T_flat, offsets, NT, Tc, lo=lo, hi=hi, clip=not full)
        if int(R.sum()) <= self.LUT_MAX:  # a lookup table of every accumulator value: one gather per element
            st.lut = threshold_lut(Tc, lo, R, qmin, op.out_type.qmax)
            st.span = (st.lut, offsets, lo, hi)
            if full:  # numba's loop clips for free: the thresholds' span, a table that stays in cache
                Rs, offs = _table_layout(span_lo, span_hi)
                st.span = (threshold_lut(Tc, span_lo, Rs, qmin, op.out_type.qmax), offs, span_lo, span_hi)
        return st

    # ------------------------------------------------------------------ ops

    def _finish(self, st, acc: np.ndarray, exact: bool, as_float: bool) -> np.ndarray:
        """Bias, then the integer accumulator (wrapped unless ``exact``); ``as_float``: a float
        accumulator stays float (bias added in float, exact: the bound that chose the float type
        includes the bias) when the op does not wrap."""
        if st.kind == "i8":  # int32 sums; the shift's correction comes with the bias
            if st.bias_f is not None:
                acc.reshape(acc.shape[0], -1)[...] += self._row(st.bias_f, acc.shape)
            if as_float and not self.wraps[st.op.name]:
                return acc
            acc = acc.astype(np.int64)
            return acc if exact else self._wrap(st, acc)
        if as_float and st.kind in ("f32", "f64") and not self.wraps[st.op.name]:
            if st.bias is not None:
                acc += st.bias_f
            return acc
        acc = _to_int(acc, st.kind)
        if st.bias is not None:
            acc = acc + st.bias
        return acc if exact else self._wrap(st, acc)

    def dense(self, st: _DenseStage, x: np.ndarray, *, exact: bool = False, as_float: bool = False) -> np.ndarray:
        """The layer's accumulator (``exact``: the unwrapped sum, as an infinitely wide accumulator)."""
        x = np.asarray(x)
        if st.kind == "i8":
            import torch

            u = _int8_values(x.reshape(x.shape[0], -1), st.zp + st.shift, st.mul)
            return self._finish(st, self._int_mm(torch.from_numpy(u), st.w_t).numpy(), exact, as_float)
        v = _values(x.reshape(x.shape[0], -1), st.zp, st.kind, st.mul)
        return self._finish(st, v @ st.w_t if st.kind != "obj" else v.dot(st.w_t), exact, as_float)

    def conv(self, st: _ConvStage, x: np.ndarray, *, exact: bool = False, as_float: bool = False) -> np.ndarray:
        """``[B, H, W, C_in]`` stored integers -> ``[B, OH, OW, C_out]`` accumulators."""
        op = st.op
        x = np.asarray(x)
        if st.flat is not None and self._k is not None and x.dtype != object:
            w_rows, bias, mul, zp = st.flat
            dt = np.int32 if w_rows.dtype == np.float32 else np.int64  # holds every exact sum
            acc = np.empty((x.shape[0],) + tuple(self.model.tensors[op.outputs[0]].shape), dtype=dt)
            self._k.depthwise_conv(np.ascontiguousarray(x), mul, zp, w_rows, bias, *op.stride, *op.pads, acc)
            if as_float and not self.wraps[op.name]:
                return acc
            acc = acc.astype(np.int64)
            return acc if exact else self._wrap(st, acc)
        if st.kind == "i8":  # im2col in int8 (the padding value 0 is u = -shift), one int8 GEMM
            import torch

            cols = im2col(_int8_values(x, st.zp + st.shift, st.mul), op.kernel, op.stride, op.pads, fill=-st.shift,
                          kernels=self._k)
            B, OH, OW = cols.shape[:3]
            cols = cols.reshape(B * OH * OW, -1)
            acc = self._int_mm(torch.from_numpy(cols), st.w).numpy().reshape(B, OH, OW, -1)
            return self._finish(st, acc, exact, as_float)
        v = _values(x, st.zp, st.kind, st.mul)
        if op.depthwise and st.w.ndim == 3:  # kh*kw vectorized multiply-adds, in place
            acc = tmp = None
            for dy, dx, view in taps(v, op.kernel, op.stride, op.pads):
                if acc is None:
                    acc = view * st.w[:, dy, dx]
                elif st.kind == "obj":
                    acc = acc + view * st.w[:, dy, dx]
                else:
                    tmp = np.multiply(view, st.w[:, dy, dx], out=tmp)
                    acc += tmp
        else:
            cols = im2col(v, op.kernel, op.stride, op.pads, kernels=self._k)
            B, OH, OW = cols.shape[:3]
            cols = cols.reshape(B * OH * OW, -1)
            acc = (cols @ st.w if st.kind != "obj" else cols.dot(st.w)).reshape(B, OH, OW, -1)
        return self._finish(st, acc, exact, as_float)

    def pool(self, st: _PoolStage, x: np.ndarray, *, exact: bool = False) -> np.ndarray:
        op = st.op
        x = np.asarray(x)
        acc = None
        if op.mode == "max" and self._k is not None and not any(op.pads) and x.dtype != object:
            out = np.empty((x.shape[0],) + tuple(self.model.tensors[op.outputs[0]].shape), dtype=x.dtype)
            self._k.max_pool(np.ascontiguousarray(x), *op.kernel, *op.stride, out)
            return out
        if op.mode == "max":  # in the stored integers' own dtype (no padding enters a max pool's windows)
            for _, _, view in taps(x, op.kernel, op.stride, op.pads):
                acc = view.copy() if acc is None else np.maximum(acc, view, out=acc)
            return acc
        if self.blas and st.kind != "obj" and not any(op.pads) and x.dtype in _NARROW and op.K < 1 << 15:
            # no padding: every window has K taps, sum(mul * q - zp) = mul * sum(q) - K * zp; the sums of
            # 8- or 16-bit integers over K < 2^15 taps fit int32
            for _, _, view in taps(x, op.kernel, op.stride, op.pads):
                acc = view.astype(np.int32) if acc is None else np.add(acc, view, out=acc)
            acc = acc.astype(np.int64)
            if st.mul != 1:
                acc *= st.mul
            if st.zp:
                acc -= op.K * st.zp
            return acc if exact else self._wrap(st, acc)
        v = (x.astype(object) if st.kind == "obj" else x.astype(np.int64)) * st.mul - st.zp
        for _, _, view in taps(v, op.kernel, op.stride, op.pads):
            acc = view.copy() if acc is None else np.add(acc, view, out=acc)
        return acc if exact else self._wrap(st, acc)

    def add(self, st: _AddStage, a: np.ndarray, b: np.ndarray, *, exact: bool = False) -> np.ndarray:
        dt = _DTYPE[st.kind]
        acc = None
        for x, m, mul, zp in zip((a, b), st.mults, st.muls, st.zps):  # m: [C], over the last (channel) axis
            v = np.asarray(x).astype(dt)  # a fresh array: the steps below work in place
            if mul != 1:
                v *= mul
            if zp:
                v -= zp
            if st.kind == "obj" or np.any(m != 1):
                v = v * m if st.kind == "obj" else np.multiply(v, m, out=v)
            acc = v if acc is None else np.add(acc, v, out=acc) if st.kind != "obj" else acc + v
        return acc if exact else self._wrap(st, acc)

    def _wrap(self, st, acc: np.ndarray) -> np.ndarray:
        return wrap(acc, st.P) if self.wraps[st.op.name] else acc

    def accumulate(self, op, inputs: list, *, exact: bool = False, as_float: bool = False) -> np.ndarray:
        """The accumulator of any accumulating op from its input tensors' stored integers
        (``as_float``: a Dense/Conv accumulator may come back as integer-valued floats, for :meth:`requant`)."""
        st = self.stages[op.name]
        if isinstance(op, Dense):
            return self.dense(st, inputs[0], exact=exact, as_float=as_float)
        if isinstance(op, Conv):
            return self.conv(st, inputs[0], exact=exact, as_float=as_float)
        if isinstance(op, Pool):
            return self.pool(st, inputs[0], exact=exact)
        if isinstance(op, Add):
            return self.add(st, inputs[0], inputs[1], exact=exact)
        raise A2QError(f"{op.name}: {op.op} has no accumulator")

    def requant(self, st: _RequantStage, acc: np.ndarray) -> np.ndarray:
        """Accumulators (integers, or integer-valued floats from ``as_float``) -> stored integers."""
        if st.NT == 0:
            return np.full(np.shape(acc), st.qmin, dtype=np.int64)
        acc = np.asarray(acc)
        if st.lut is not None and self._k is not None and acc.ndim > 1 and acc.dtype != object:
            a2 = np.ascontiguousarray(acc).reshape(-1, acc.shape[-1])
            out = np.empty(a2.shape, dtype=st.lut.dtype)
            # the loop reads [C] vectors: one scale for all channels (a single row of thresholds) repeated
            C = a2.shape[1]
            lut, *vecs = st.span
            vec = [v if len(v) == C else np.repeat(v, C) for v in vecs if len(v) in (1, C)]
            if len(vec) == 3 and self._k.requant_lut(a2, lut, *vec, out) < 0:
                return out.reshape(acc.shape)
        if st.lut is not None:
            # int64 indices (np.take converts any other type first), one flat gather; the per-channel
            # vectors tiled over whole rows (a short innermost axis makes numpy's loops slow)
            shape = acc.shape
            idx = acc.astype(np.int64) if acc.dtype.kind == "f" else acc  # float integers: exact
            idx = idx.reshape(shape[0], -1) if acc.ndim > 1 else idx
            if st.clip:
                idx = np.minimum(idx, self._row(st.hi, shape))  # int64 (as the bounds are), a new array
                np.maximum(idx, self._row(st.lo, shape), out=idx)
                idx += self._row(st.offsets, shape)
            else:
                idx = idx + self._row(st.offsets, shape)
            return np.take(st.lut, idx).reshape(shape)
        if st.T_flat is not None:
            keys = (np.clip(acc, st.lo, st.hi) if st.clip else acc).astype(np.int64) + st.offsets
            cnt = np.searchsorted(st.T_flat, keys.reshape(-1), side="right").reshape(keys.shape)
            if st.T.shape[0] > 1:  # one row of thresholds per channel (else one row for all)
                cnt = cnt - np.arange(keys.shape[-1], dtype=np.int64) * st.NT
            return st.qmin + cnt
        if acc.dtype != object and st.T.dtype != object:  # the plain count of the thresholds each value reaches
            return st.qmin + (acc.astype(np.int64)[..., None] >= st.T).sum(axis=-1)
        a = np.asarray(acc).astype(object)
        out = np.empty(a.shape, dtype=np.int64)
        for j in range(a.shape[-1]):
            col = [int(v) for v in a[..., j].reshape(-1)]
            tj = [int(v) for v in st.T[j]]
            out[..., j] = np.asarray([st.qmin + sum(1 for t in tj if v >= t) for v in col]).reshape(a.shape[:-1])
        return out

    # ------------------------------------------------------------------ running

    JIT_MIN_ELEMENTS = 1 << 30  # jit=None: numba's loops for a batch of this many values (~1 s saved: their cost)
    CHUNK_BYTES = 1 << 23  # ~8 MB for a chunk's largest array (bench/bench_model.py: MLP, digits CNN, ResNet18)

    def run(self, x: np.ndarray, *, start: str | None = None, keep: bool = False, stop: str | None = None,
            threads: int | None = None) -> dict:
        """Like :meth:`run_batch`; large batches go in cache-sized chunks (the same integers either way),
        run by ``threads`` Python threads (default: the cores this process may use, at most
        ``OMP_NUM_THREADS``; numpy and torch release the GIL in their loops), each chunk's GEMMs on one
        BLAS/torch thread meanwhile (process-wide settings, restored after: do not call ``run`` from
        several threads at once while also relying on torch's thread count; concurrent calls on one
        ``BitSim`` take turns)."""
        if isinstance(x, dict):
            return self.run_batch(x, start=start, keep=keep, stop=stop)
        x = np.asarray(x)
        n = x.shape[0] if x.ndim else 0
        if x.ndim and n == 0:  # an empty batch: empty tensors of the right shapes
            names = [o for op in self.model.ops for o in op.outputs] if keep else self.model.outputs
            return {t: np.zeros((0,) + tuple(self.model.tensors[t].shape), dtype=np.int64) for t in names}
        if self._k is None and self.jit is None and n * self._jit_per_sample >= self.JIT_MIN_ELEMENTS:
            self._k = jit_kernels()
        threads = threads or _usable_cores()
        # as many chunks as threads (or a multiple of it, when a thread's share would exceed CHUNK_BYTES)
        k = max(threads, -(-n // max(1, self.CHUNK_BYTES // self._per_sample)))
        chunk = max(1, -(-n // (-(-k // threads) * threads)))
        if n <= chunk:
            return self.run_batch(x, start=start, keep=keep, stop=stop)
        parts = [x[i : i + chunk] for i in range(0, n, chunk)]
        if threads > 1:
            if self._lock_pid != os.getpid():  # a forked child: a lock held by a parent's thread stays held
                self._lock, self._lock_pid = threading.Lock(), os.getpid()
            with self._lock:  # one threaded run at a time per BitSim: the pool and the thread settings are shared
                pool = self._thread_pool(threads)
                with _single_threaded_kernels(self._threadpools):
                    outs = list(pool.map(lambda p: self.run_batch(p, start=start, keep=keep, stop=stop), parts))
        else:
            outs = [self.run_batch(p, start=start, keep=keep, stop=stop) for p in parts]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _thread_pool(self, threads: int):
        """The kept pool of ``threads`` workers (fresh threads cost ~1 ms each time: numpy's and torch's
        per-thread set-up); a new one in a forked child, which inherits the pool but not its threads."""
        if self._threadpools is None:  # introspecting the loaded BLAS libraries takes ~1 ms: once
            from threadpoolctl import ThreadpoolController

            self._threadpools = ThreadpoolController()
        if self._pool is None or self._pool_key != (os.getpid(), threads):
            from concurrent.futures import ThreadPoolExecutor

            if self._pool is not None and self._pool_key[0] == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="a2qhls-sim")
            self._pool_key = (os.getpid(), threads)
        return self._pool

    def __getstate__(self) -> dict:
        """Picklable (for Ray or spawned workers): the thread pool, its lock, the BLAS controller, the
        tiled-vector cache and torch's GEMM function are rebuilt on the other side."""
        state = dict(self.__dict__)
        state.update(_pool=None, _pool_key=None, _lock=None, _threadpools=None, _tiles={}, _int_mm=self._int_mm is not None,
                     _k=self._k is not None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock, self._lock_pid = threading.Lock(), os.getpid()
        self._int_mm = int8_gemm() if state["_int_mm"] else None
        self._k = jit_kernels() if state["_k"] else None

    def _row(self, vec: np.ndarray, shape) -> np.ndarray:
        """A per-channel vector ``[C]`` (the last axis of ``shape``) tiled over a flattened sample
        ``shape[1:]`` (cached): row-wide operands where ``C`` alone would be numpy's innermost loop."""
        n = int(np.prod(shape[1:])) if len(shape) > 1 else len(vec)
        if n == len(vec):
            return vec
        key = (id(vec), n)
        tiled = self._tiles.get(key)
        if tiled is None:
            tiled = self._tiles[key] = np.tile(vec, n // len(vec))
        return tiled

    def _bytes_per_sample(self) -> int:
        """The largest working array per sample, in bytes: a tensor in 4-byte elements (float32 input,
        int32 sums), or a conv's im2col rows (int8 for the int8 GEMM, else 4 or 8 bytes)."""
        sizes = [4 * int(np.prod(t.shape or (1,))) for t in self.model.tensors.values()]
        for op in self.model.ops:
            if isinstance(op, Conv):
                oh, ow = self.model.tensors[op.outputs[0]].shape[:2]
                k = op.kernel[0] * op.kernel[1] * self.model.tensors[op.inputs[0]].shape[-1]
                kind = self.stages[op.name].kind
                sizes.append(oh * ow * k * (1 if kind == "i8" else 4 if kind == "f32" else 8))
        return max(sizes + [1])

    def _fed(self, tensor: str, q) -> np.ndarray:
        """A tensor given to :meth:`run_batch` (``start`` or a dict): shaped, and checked to hold integers
        the tensor can hold (its type's range, or an accumulator's built width), else :class:`A2QError`."""
        q = _native(self._shaped(tensor, q))
        info = self.model.tensors[tensor]
        if info.dtype is not None:
            lo, hi = info.dtype.qmin, info.dtype.qmax
            what = f"its type {info.dtype}"
        else:
            prod = self.model.producer(tensor)
            P = self.acc_bits.get(prod.name) if prod is not None else None
            if P is None:
                return q
            lo, hi = int_range(P, True)
            what = f"a {P}-bit accumulator"
        if q.size and q.dtype != object:
            bad = ~np.isfinite(q) if q.dtype.kind == "f" else np.zeros(q.shape, dtype=bool)
            bad |= (q < lo) | (q > hi)
            if q.dtype.kind == "f":
                bad |= np.not_equal(q, np.round(q))
            if bad.any():
                v = q.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
                raise A2QError(f"tensor '{tensor}' given {v}: it holds integers in [{lo}, {hi}] ({what})")
        return q

    def _shaped(self, tensor: str, q) -> np.ndarray:
        q = np.asarray(q)
        shape = tuple(self.model.tensors[tensor].shape)
        return q.reshape((q.shape[0],) + shape)

    def run_batch(self, x, *, start: str | None = None, keep: bool = False, stop: str | None = None) -> dict:
        """Run the model on a batch.

        ``x`` is the float input ``[B, ...]`` (``start=None``; ``[B, C, H, W]`` or flattened for a
        feature-map input), or the integer tensor ``start`` (``[B, *shape]`` or ``[B, size]``
        of stored integers ``q``, channels-last) to run the graph from that tensor on, or a dict
        ``{tensor: q}`` feeding several tensors (e.g. both inputs of a residual add).
        Every op whose inputs are available runs, in order; ``stop``: the last op to run.
        Returns ``{tensor: int array}`` of the graph outputs (every tensor if ``keep``).
        """
        vals: dict = {}
        ops = self.model.ops
        if isinstance(x, dict):
            for t, q in x.items():
                if t not in self.model.tensors:
                    raise A2QError(f"unknown tensor '{t}'")
                vals[t] = self._fed(t, q)
        elif start is None:
            x = _native(np.asarray(x))
            iq = ops[0]
            fmap = len(self.model.tensors[iq.outputs[0]].shape) == 3
            vals[self.model.input_name] = x.reshape((x.shape[0],) + tuple(self.model.input_shape)) if fmap else x.reshape(x.shape[0], -1)
            # the input quantizer may read a reshaped copy of the graph input (Flatten/Reshape first)
            vals.setdefault(iq.inputs[0], vals[self.model.input_name])
        else:
            if start not in self.model.tensors:
                raise A2QError(f"unknown tensor '{start}'")
            vals[start] = self._fed(start, x)
        for op in ops:
            if op.outputs[0] in vals or not all(t in vals for t in op.inputs):
                continue
            src = vals[op.inputs[0]]
            if isinstance(op, InputQuant):
                fmap = len(self.model.tensors[op.outputs[0]].shape) == 3
                # narrow integers (uint8 for an 8-bit input: a quarter of float32's bytes); int64 when kept
                # and on the plain path (one whole-array pass per step)
                out = quantize_input(op, src, narrow=not keep and self.blas, kernels=self._k)
                if fmap:  # NCHW (or [B, C, L], a map of height 1) -> NHWC
                    H, W, C = self.model.tensors[op.outputs[0]].shape
                    out = np.ascontiguousarray(out.reshape(out.shape[0], C, H, W).transpose(0, 2, 3, 1))
            elif isinstance(op, Requant):
                pool = self._pool_first.get(op.name) if not keep and stop is None else None
                if pool is not None and pool.outputs[0] not in vals:  # the pool's output from the accumulator (a fed one is kept)
                    vals[pool.outputs[0]] = self.requant(self.stages[op.name], self.pool(self.stages[pool.name], src))
                    continue
                out = self.requant(self.stages[op.name], src)
            elif isinstance(op, DepthToSpace):
                out = depth_to_space(op, src)
            elif isinstance(op, Upsample):
                out = upsample(op, src)
            elif isinstance(op, ZeroInsert):
                out = zero_insert(op, src, self.model.tensors[op.inputs[0]].dtype.zero_point)
            elif isinstance(op, Concat):
                out = concat(op, [vals[t] for t in op.inputs], [self.model.tensors[t].dtype for t in op.inputs],
                             self.model.tensors[op.outputs[0]].dtype)
            else:  # an accumulator only a Requant reads may stay float (integer-valued, exact)
                out = self.accumulate(op, [vals[t] for t in op.inputs], as_float=not keep and op.outputs[0] in self._requant_only)
            vals[op.outputs[0]] = out
            if stop is not None and op.name == stop:
                break
        if keep:
            return {t: _wide(v) for t, v in vals.items()}
        missing = [t for t in self.model.outputs if t not in vals]
        if missing:
            raise A2QError(f"the graph output '{missing[0]}' cannot be computed from the given tensors")
        return {t: _wide(vals[t]) for t in self.model.outputs}


def depth_to_space(op: DepthToSpace, q: np.ndarray) -> np.ndarray:
    """``[B, H, W, C]`` -> ``[B, H*r, W*r, C/r^2]`` (channels last): ``out[:, y, x, c] =
    q[:, y // r, x // r, src[y % r, x % r, c]]``, ``src`` from :meth:`DepthToSpace.sources`."""
    B, H, W, _ = q.shape
    r = op.blocksize
    g = q[..., op.sources()]  # [B, H, W, r, r, C']
    return np.ascontiguousarray(g.transpose(0, 1, 3, 2, 4, 5).reshape(B, H * r, W * r, -1))


def upsample(op: Upsample, q: np.ndarray) -> np.ndarray:
    """Nearest-neighbour ``[B, H, W, C]`` -> ``[B, H*sy, W*sx, C]``: ``out[:, y, x] = q[:, y // sy, x // sx]``."""
    sy, sx = op.scale
    return np.repeat(np.repeat(np.asarray(q), sy, axis=1), sx, axis=2)


def zero_insert(op: ZeroInsert, q: np.ndarray, zero_point: int) -> np.ndarray:
    """``[B, H, W, C]`` -> ``[B, (H-1)*zy+1, (W-1)*zx+1, C]``: ``q`` at ``(y*zy, x*zx)``, the stored
    zero-point (the value 0) everywhere else."""
    q = np.asarray(q)
    zy, zx = op.factor
    out = np.full((q.shape[0],) + tuple(op.out_shape), zero_point, dtype=q.dtype)
    out[:, ::zy, ::zx] = q
    return out


def concat(op: Concat, qs: list, types: list, out_type) -> np.ndarray:
    """Channel concatenation: block ``k`` is ``(q_k - zp_k) * 2^shift_k + zp_out`` (exact integers)."""
    parts = [(np.asarray(q).astype(np.int64) - t.zero_point) * (1 << k) + out_type.zero_point
             for q, t, k in zip(qs, types, op.shifts)]
    return np.concatenate(parts, axis=-1)


def simulate(model: Model, x: np.ndarray, **kw) -> dict:
    """One-shot :meth:`BitSim.run`."""
    return BitSim(model).run(x, **kw)
