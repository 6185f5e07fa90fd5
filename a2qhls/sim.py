"""Bit-accurate numpy model of the generated hardware: THE definition of a2qhls's semantics.

What it computes, per op of the IR, on a batch (first axis) of samples:

* :class:`~a2qhls.ir.InputQuant`: the float input quantized exactly as QONNX's
  ``Quant`` does it in float32 (``x / scale + zero_point``, clip, the node's rounding
  function). The hardware's input stream carries these integers ``q``.
* :class:`~a2qhls.ir.Dense`: ``acc[j] = bias[j] + sum_i w[j, i] * (x[i] - zp_in)``,
  wrapped modulo ``2^P`` into a signed ``P``-bit value, exactly like an ``ap_int<P>``
  accumulator (with wraparound only the final sum matters, so it is wrapped once).
* :class:`~a2qhls.ir.Requant`: ``q = qmin + #{t : acc >= T[j, t]}`` with the exact
  thresholds of :mod:`a2qhls.passes.thresholds`.

Graph outputs are integer tensors (an accumulator, or a requantized activation);
:func:`to_real` gives their real value ``scale * (q - zero_point) + offset``.

The dot products run on BLAS in float32 or float64 when that is exact: every
partial sum is an integer bounded by ``max_j sum_i |w[j, i]| * max|x|``, and a float
holds such integers exactly below ``2^24`` (float32) or ``2^53`` (float64); wider
layers fall back to int64 or Python integers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import A2QError
from .ir import Dense, InputQuant, Model, Requant
from .passes.thresholds import compute_thresholds, effective_acc_bits

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


def round_like_qonnx(y: np.ndarray, mode: str) -> np.ndarray:
    """The numpy rounding functions QONNX's ``Quant`` uses, by mode name."""
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


def quantize_input(op: InputQuant, x: np.ndarray, *, as_float: bool = False) -> np.ndarray:
    """Float input -> integer ``q`` (int64; ``as_float``: the same integers as float32), as QONNX
    computes it in float32 (``x / scale + zp``, clip, round; clipping before rounding to the
    integer bounds is the same as after)."""
    x = np.asarray(x, dtype=np.float32)
    scale = np.asarray(op.scale, dtype=np.float32)
    zp = np.asarray(op.zero_point, dtype=np.float32)
    y = np.divide(x, scale)
    if zp != 0:
        y += zp
    lo, hi = op.out_type.qmin, op.out_type.qmax
    np.clip(y, np.float32(lo), np.float32(hi), out=y)
    m = str(op.rounding_mode).upper()
    if m in ("ROUND", "HALF_EVEN"):
        np.round(y, out=y)
    else:
        y = round_like_qonnx(y, m).astype(np.float32)
    return y if as_float else y.astype(np.int64)


def dequantize_input(op: InputQuant, q: np.ndarray) -> np.ndarray:
    """Integers ``q`` -> float32 inputs that :func:`quantize_input` maps back to ``q``."""
    scale = np.asarray(op.scale, dtype=np.float32)
    zp = np.asarray(op.zero_point, dtype=np.float32)
    x = ((np.asarray(q).astype(np.float32) - zp) * scale).astype(np.float32)
    back = quantize_input(op, x)
    if not np.array_equal(back, np.asarray(q)):
        raise A2QError(f"{op.name}: cannot represent these integer inputs as float inputs exactly")
    return x


def to_real(model: Model, tensor: str, q: np.ndarray) -> np.ndarray:
    """Real value ``scale * (q - zero_point) + offset`` of an integer tensor, in float64."""
    info = model.tensors[tensor]
    zp = info.dtype.zero_point if info.dtype is not None else 0
    q = np.asarray(q)
    return np.asarray(info.scale, dtype=np.float64) * (q.astype(np.float64) - zp) + np.asarray(info.offset, dtype=np.float64)


@dataclass
class _DenseStage:
    op: Dense
    P: int
    zp: int
    w_t: np.ndarray  # [K, C] in the compute dtype
    bias: Optional[np.ndarray]
    kind: str  # "f32", "f64", "i64", "obj"


@dataclass
class _RequantStage:
    op: Requant
    qmin: int
    T_flat: Optional[np.ndarray]  # thresholds + channel offsets, flattened, sorted
    offsets: Optional[np.ndarray]  # [C] channel offsets added to acc
    NT: int
    T: np.ndarray


class BitSim:
    """A model prepared for simulation: thresholds computed, weights laid out for BLAS.

    ``acc_bits`` overrides layer widths (layer name -> bits), exactly like
    ``a2qhls build --acc-bits``; thresholds are recomputed for those widths.
    """

    def __init__(self, model: Model, acc_bits: dict | None = None):
        self.model = model
        self.acc_bits = effective_acc_bits(model, acc_bits)
        compute_thresholds(model, self.acc_bits)
        self.stages: dict = {}
        for op in model.ops:
            if isinstance(op, Dense):
                self.stages[op.name] = self._dense_stage(op)
            elif isinstance(op, Requant):
                self.stages[op.name] = self._requant_stage(op)
            elif not isinstance(op, InputQuant):
                raise A2QError(f"{op.name}: op {op.op} is not supported by the simulator")

    def _dense_stage(self, op: Dense) -> _DenseStage:
        t = self.model.tensors[op.inputs[0]].dtype
        xabs = max(abs(t.vmin), abs(t.vmax))
        w = np.asarray(op.weight)
        wabs = int(np.abs(w.astype(object)).sum(axis=1).max()) if w.size else 0
        bound = wabs * xabs
        if bound < 2**24:
            kind, wt = "f32", w.T.astype(np.float32)
        elif bound < 2**53:
            kind, wt = "f64", w.T.astype(np.float64)
        elif bound < 2**62:
            kind, wt = "i64", w.T.astype(np.int64)
        else:
            kind, wt = "obj", w.T.astype(object)
        wt = np.ascontiguousarray(wt)
        bias = None if op.bias is None else np.asarray(op.bias).astype(object if kind == "obj" else np.int64)
        return _DenseStage(op, self.acc_bits[op.name], int(t.zero_point), wt, bias, kind)

    def _requant_stage(self, op: Requant) -> _RequantStage:
        T = np.asarray(op.thresholds)
        C, NT = T.shape
        qmin = op.out_type.qmin
        if T.dtype == object or NT == 0:
            return _RequantStage(op, qmin, None, None, NT, T)
        lo, hi = int(T.min()), int(T.max())
        P = self.acc_bits[self.model.producer(op.inputs[0]).name]
        lo = min(lo, -(1 << (P - 1)))
        hi = max(hi, 1 << (P - 1))
        R = hi - lo + 1
        if C * R >= 2**62:
            return _RequantStage(op, qmin, None, None, NT, T)
        offsets = (np.arange(C, dtype=np.int64) * R) - lo
        T_flat = (T + offsets[:, None]).reshape(-1)
        return _RequantStage(op, qmin, T_flat, offsets, NT, T)

    # ------------------------------------------------------------------ ops

    def dense(self, st: _DenseStage, x: np.ndarray, *, exact: bool = False) -> np.ndarray:
        """The layer's accumulator (``exact``: the unwrapped sum, as an infinitely wide accumulator)."""
        v = np.asarray(x)
        if st.kind == "obj":
            v = v.astype(object) - st.zp
            acc = v.dot(st.w_t)
        else:
            if st.kind == "f32":
                v = v.astype(np.float32, copy=False)
                if st.zp:
                    v = v - np.float32(st.zp)  # exact: small integers
                acc = (v @ st.w_t).astype(np.int64)
            else:
                v = v.astype(np.int64) - st.zp if st.zp else v.astype(np.int64)
                if st.kind == "f64":
                    acc = (v.astype(np.float64) @ st.w_t).astype(np.int64)
                else:
                    acc = v @ st.w_t
        if st.bias is not None:
            acc = acc + st.bias
        return acc if exact else wrap(acc, st.P)

    def requant(self, st: _RequantStage, acc: np.ndarray) -> np.ndarray:
        if st.NT == 0:
            return np.full(np.shape(acc), st.qmin, dtype=np.int64)
        if st.T_flat is not None:
            keys = np.asarray(acc).astype(np.int64) + st.offsets
            cnt = np.searchsorted(st.T_flat, keys.reshape(-1), side="right").reshape(keys.shape)
            cnt = cnt - np.arange(keys.shape[-1], dtype=np.int64) * st.NT
            return st.qmin + cnt
        a = np.asarray(acc).astype(object)
        out = np.empty(a.shape, dtype=np.int64)
        for j in range(a.shape[-1]):
            col = [int(v) for v in a[..., j].reshape(-1)]
            tj = [int(v) for v in st.T[j]]
            out[..., j] = np.asarray([st.qmin + sum(1 for t in tj if v >= t) for v in col]).reshape(a.shape[:-1])
        return out

    # ------------------------------------------------------------------ running

    CHUNK = 4096

    def run(self, x: np.ndarray, *, start: str | None = None, keep: bool = False) -> dict:
        """Like :meth:`run_batch`; large batches go in cache-sized chunks (the same integers either way)."""
        x = np.asarray(x)
        n = x.shape[0] if x.ndim else 0
        if n <= self.CHUNK:
            return self.run_batch(x, start=start, keep=keep)
        outs = [self.run_batch(x[i : i + self.CHUNK], start=start, keep=keep) for i in range(0, n, self.CHUNK)]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def run_batch(self, x: np.ndarray, *, start: str | None = None, keep: bool = False) -> dict:
        """Run the model on a batch.

        ``x`` is the float input ``[B, ...]`` (``start=None``), or the integer tensor
        ``start`` (``[B, C]`` of stored integers ``q``) to run the graph from that tensor on.
        Returns ``{tensor: int array}`` of the graph outputs (every tensor if ``keep``).
        """
        vals: dict = {}
        ops = self.model.ops
        if start is None:
            x = np.asarray(x)
            vals[self.model.input_name] = x.reshape(x.shape[0], -1)
            begin = 0
        else:
            if start not in self.model.tensors:
                raise A2QError(f"unknown tensor '{start}'")
            vals[start] = np.asarray(x)
            prod = self.model.producer(start)
            begin = ops.index(prod) + 1 if prod is not None else 0
        for op in ops[begin:]:
            src = vals[op.inputs[0]]
            if isinstance(op, InputQuant):
                # integer-valued float32 feeds the BLAS path directly; int64 when kept or exotic
                out = quantize_input(op, src, as_float=not keep and op.out_type.bits <= 24)
            elif isinstance(op, Dense):
                out = self.dense(self.stages[op.name], src)
            else:
                out = self.requant(self.stages[op.name], src)
            vals[op.outputs[0]] = out
        if keep:
            return vals
        return {t: vals[t] for t in self.model.outputs}


def simulate(model: Model, x: np.ndarray, acc_bits: dict | None = None, **kw) -> dict:
    """One-shot :meth:`BitSim.run`."""
    return BitSim(model, acc_bits).run(x, **kw)
