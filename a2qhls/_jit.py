"""Fused loops of the numpy model's fast path, compiled by numba (imported only by :func:`a2qhls.sim.jit_kernels`).

Each function computes, in one pass over memory, exactly what a sequence of numpy steps in
:mod:`a2qhls.sim` computes in several (the plain path the tests compare them with: same integers, same
float32 arithmetic). They release the GIL (``nogil``) so that :meth:`a2qhls.sim.BitSim.run`'s chunks
run them in parallel threads, and are compiled once per machine where numba finds a writable cache
(beside this file, in the user's cache directory, or ``NUMBA_CACHE_DIR``), else once per process.
Division by zero follows numpy (``error_model="numpy"``: inf or NaN, no exception).

None of them checks bounds: the callers pass arrays of the shapes documented here (per-channel vectors
of the accumulator's channel count), and every index they compute is inside them (a table index out
of range is reported back, not read).
"""
from __future__ import annotations

import numba
import numpy as np


def _njit(f):
    """``numba.njit`` with the GIL released and numba's on-disk cache where it has a writable place
    (it refuses ``cache=True`` at decoration when it has none: then compiled in each process)."""
    opts = dict(nogil=True, boundscheck=False, error_model="numpy")
    try:
        return numba.njit(cache=True, **opts)(f)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(cache=False, **opts)(f)


@_njit
def quantize_round(x, scale, zp, qmin, qmax, out):
    """``out[i] = rint(clip(x[i] / scale + zp, qmin, qmax))`` in float32 (QONNX's ``Quant`` with
    ``ROUND``: half to even), stored into ``out``'s integer dtype.

    ``x``: float32 ``[n]``; ``scale``, ``zp``, ``qmin``, ``qmax``: float32 scalars (``zp`` added only
    when nonzero, as numpy's path does), ``|qmin|, |qmax| <= 2^22``; ``out``: ``[n]`` of an integer dtype
    holding ``[qmin, qmax]``. The rounding adds and subtracts ``1.5 * 2^23``: for ``|y| <= 2^22`` the sum
    lies in ``[2^23, 2^24]``, where float32's spacing is 1, so IEEE round-to-nearest-even rounds ``y``
    itself half to even (the constant is even) and the subtraction is exact. Returns whether some
    ``x[i] / scale + zp`` is NaN (its quantization is undefined and ``out`` holds garbage there).
    """
    magic = np.float32(12582912.0)
    add = zp != 0
    nan = False
    for i in range(x.shape[0]):
        y = x[i] / scale
        if add:
            y = y + zp
        nan |= y != y
        y = min(max(y, qmin), qmax)
        out[i] = np.int32((y + magic) - magic)
    return nan


@_njit
def requant_lut(acc, lut, offsets, lo, hi, out):
    """``out[n, c] = lut[clip(acc[n, c], lo[c], hi[c]) + offsets[c]]``: the per-channel
    threshold table of :func:`a2qhls.sim.threshold_lut` read at each accumulator.

    ``acc``: ``[N, C]`` integers, or floats holding integers (converted exactly); ``offsets``, ``lo``,
    ``hi``: int64 ``[C]``; ``out``: ``[N, C]`` of the table's dtype. Returns ``-1``, or the flat index of
    the first value whose table index falls outside the table (then ``out`` is incomplete; the caller
    takes numpy's path, whose ``np.take`` raises there).
    """
    N, C = acc.shape
    size = lut.shape[0]
    for n in range(N):
        for c in range(C):
            a = min(max(np.int64(acc[n, c]), lo[c]), hi[c])  # selects, not branches: often clipped
            k = a + offsets[c]
            if k < 0 or k >= size:
                return n * C + c
            out[n, c] = lut[k]
    return -1
