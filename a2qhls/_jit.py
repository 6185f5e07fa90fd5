"""Fused loops of the numpy model's fast path, compiled by numba (imported only by :func:`a2qhls.sim.jit_kernels`).

Each function computes exactly what numpy steps in :mod:`a2qhls.sim` compute (the path the tests compare
them with: the same integers; the input quantizer in the same float32 arithmetic), in fewer passes over
memory or in loops numba vectorizes where numpy's short innermost axes are slow: the input quantizer, the
threshold-table lookup, convolutions whose output channels each read one input channel, unpadded max
pools, and im2col. They release the GIL (``nogil``) so that :meth:`a2qhls.sim.BitSim.run`'s chunks
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
    takes numpy's path, whose ``np.take`` raises there). When every channel's ``[lo, hi] + offsets`` lies
    inside the table (always, for the tables :mod:`a2qhls.sim` builds), no index can fall outside: one
    loop over rows of tiled vectors without that check (``acc`` and ``out`` C-contiguous).
    """
    N, C = acc.shape
    size = lut.shape[0]
    inside = True  # every clipped index inside the table: one loop without the check, over whole rows
    for c in range(C):
        inside &= lo[c] <= hi[c] and lo[c] + offsets[c] >= 0 and hi[c] + offsets[c] < size
    if inside and N * C > 0:
        L = max(1, 256 // C) * C  # the vectors tiled over rows of L values (C's multiple near 256)
        lr, hr, orow = np.empty(L, dtype=np.int64), np.empty(L, dtype=np.int64), np.empty(L, dtype=np.int64)
        for i in range(L):
            lr[i], hr[i], orow[i] = lo[i % C], hi[i % C], offsets[i % C]
        af = acc.reshape(N * C)
        of = out.reshape(N * C)
        for b0 in range(0, N * C, L):
            base = np.uint64(b0)
            for i in range(min(L, N * C - b0)):
                u = np.uint64(i)
                a = min(max(np.int64(af[base + u]), lr[u]), hr[u])
                of[base + u] = lut[np.uint64(a + orow[u])]
        return -1
    for n in range(N):
        for c in range(C):
            a = min(max(np.int64(acc[n, c]), lo[c]), hi[c])  # selects, not branches: often clipped
            k = a + offsets[c]
            if k < 0 or k >= size:
                return n * C + c
            out[n, c] = lut[k]
    return -1


@_njit
def depthwise_conv(x, mul, zp, w_rows, bias, sh, sw, pt, pl, pb, pr, out):
    """A convolution in which each output channel reads one input channel (depthwise, ``groups ==
    C_in == C_out``; or one input channel read by every output channel, ``C_in == 1``): ``out[b, oy,
    ox, c] = bias[c] + sum_{ky, kx} v[b, oy * sh + ky - pt, ox * sw + kx - pl, c // m] * w[ky, kx, c]``
    with ``v = mul * x - zp`` (0 in the padding) and ``m = C // C_in``.

    ``x``: C-contiguous ``[B, H, W, C_in]`` stored integers; ``w_rows``: ``[kh, kw, R * Wp * C]``, tap
    ``(ky, kx)``'s weights ``w[ky, kx, :]`` tiled over ``R >= 1`` rows of the padded map (``Wp = W + pl +
    pr`` columns); ``bias``: ``[C]``; ``mul``, ``zp``, ``w_rows`` and ``bias`` in one float dtype in
    which every partial sum is exact (the caller's bound: ``|sum| < 2^24`` for float32, ``2^53`` for
    float64; then any order of the additions gives the same sum); ``out``: C-contiguous ``[B, OH, OW,
    C]`` of an integer dtype that holds the sums (int32 for float32 sums: the threshold lookup reads
    integers faster than floats), or of the float dtype.

    Per image, the padded map is laid out flat (``v``; the padding stays 0), and the window at padded
    position ``p`` reads ``p + (ky * Wp + kx) * C`` for each tap: ``R`` consecutive output rows (stride 1;
    one row at a time otherwise) are one loop over ``R * Wp * C`` contiguous values that vectorizes (the
    columns past the last window read into the next row: computed, never stored). A 3x3 kernel sums
    its 9 taps in registers. Indices are unsigned: numba then skips its negative-index wraparound,
    which would keep the loops scalar.
    """
    B, H, W, Cx = x.shape
    OH, OW, C = out.shape[1], out.shape[2], out.shape[3]
    kh, kw, n = w_rows.shape
    Wp = W + pl + pr
    row = Wp * C
    R = n // row if sh == 1 else 1
    m = C // Cx
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    v = np.zeros(((H + pt + pb) * Wp + kw) * C, dtype=w_rows.dtype)  # the padding stays 0 across images
    acc = np.empty(R * row, dtype=w_rows.dtype)
    brow = np.empty(OW * C, dtype=w_rows.dtype)  # the bias tiled over an output row
    for i in range(OW * C):
        brow[i] = bias[i % C]
    c1, c2 = np.uint64(C), np.uint64(2 * C)
    r1, r2 = np.uint64(row), np.uint64(2 * row)
    for b in range(B):
        for y in range(H):
            o = np.uint64(((y + pt) * Wp + pl) * C)
            xb = np.uint64((b * H + y) * W * Cx)
            if m == 1:
                for i in range(W * C):
                    u = np.uint64(i)
                    v[o + u] = xf[xb + u] * mul - zp
            else:  # C_in == 1
                for xx in range(W):
                    q = xf[xb + np.uint64(xx)] * mul - zp
                    ob = o + np.uint64(xx * C)
                    for c in range(C):
                        v[ob + np.uint64(c)] = q
        for oy0 in range(0, OH, R):
            r = min(R, OH - oy0)
            cnt = r * row
            d0 = np.uint64(oy0 * sh * row)
            if kh == 3 and kw == 3:
                w0, w1, w2 = w_rows[0, 0], w_rows[0, 1], w_rows[0, 2]
                w3, w4, w5 = w_rows[1, 0], w_rows[1, 1], w_rows[1, 2]
                w6, w7, w8 = w_rows[2, 0], w_rows[2, 1], w_rows[2, 2]
                for i in range(cnt):
                    u = np.uint64(i)
                    p = d0 + u
                    acc[u] = (v[p] * w0[u] + v[p + c1] * w1[u] + v[p + c2] * w2[u]
                              + v[p + r1] * w3[u] + v[p + r1 + c1] * w4[u] + v[p + r1 + c2] * w5[u]
                              + v[p + r2] * w6[u] + v[p + r2 + c1] * w7[u] + v[p + r2 + c2] * w8[u])
            else:
                for i in range(cnt):
                    acc[np.uint64(i)] = 0
                for ky in range(kh):
                    for kx in range(kw):
                        d = d0 + np.uint64((ky * Wp + kx) * C)
                        wt = w_rows[ky, kx]
                        for i in range(cnt):
                            u = np.uint64(i)
                            acc[u] += v[d + u] * wt[u]
            for j in range(r):
                ob = np.uint64((b * OH + oy0 + j) * OW * C)
                s = np.uint64(j * row)
                if sw == 1:
                    for i in range(OW * C):
                        u = np.uint64(i)
                        of[ob + u] = acc[s + u] + brow[u]  # exact integers: converted exactly
                else:
                    for ox in range(OW):
                        so = s + np.uint64(ox * sw * C)
                        oo = ob + np.uint64(ox * C)
                        for c in range(C):
                            u = np.uint64(c)
                            of[oo + u] = acc[so + u] + brow[u]


@_njit
def max_pool(x, kh, kw, sh, sw, out):
    """``out[b, oy, ox, c] = max_{ky, kx} x[b, oy * sh + ky, ox * sw + kx, c]``: an unpadded max pool.

    ``x``: C-contiguous ``[B, H, W, C]`` (any dtype); ``out``: C-contiguous ``[B, OH, OW, C]`` of the same
    dtype, ``OH = (H - kh) // sh + 1``, ``OW = (W - kw) // sw + 1``. The ``kh`` input rows of an output
    row are reduced first (contiguous ``W * C`` loops that vectorize), then each window's ``kw`` columns.
    Indices are unsigned, as in :func:`depthwise_conv`.
    """
    B, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    n = W * C
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    rows = np.empty(n, dtype=x.dtype)
    for b in range(B):
        for oy in range(OH):
            r0 = np.uint64((b * H + oy * sh) * n)
            for i in range(n):
                u = np.uint64(i)
                rows[u] = xf[r0 + u]
            for ky in range(1, kh):
                rk = r0 + np.uint64(ky * n)
                for i in range(n):
                    u = np.uint64(i)
                    rows[u] = max(rows[u], xf[rk + u])
            ob = np.uint64((b * OH + oy) * OW * C)
            for ox in range(OW):
                s = np.uint64(ox * sw * C)
                o = ob + np.uint64(ox * C)
                for c in range(C):
                    u = np.uint64(c)
                    of[o + u] = rows[s + u]
                for kx in range(1, kw):
                    sk = s + np.uint64(kx * C)
                    for c in range(C):
                        u = np.uint64(c)
                        of[o + u] = max(of[o + u], rows[sk + u])


@_njit
def im2col(x, fill, kh, kw, sh, sw, pt, pl, pb, pr, out):
    """``out[b, oy, ox, (ky * kw + kx) * C + c] = x[b, oy * sh + ky - pt, ox * sw + kx - pl, c]``, ``fill``
    in the padding: :func:`a2qhls.sim.im2col`'s rows.

    ``x``: C-contiguous ``[B, H, W, C]``; ``fill``: a scalar of its dtype; ``out``: C-contiguous ``[B, OH,
    OW, kh * kw * C]`` of the same dtype. Per image the padded map is laid out flat once (the padding
    written once per call), then each window row is one contiguous copy of ``kw * C`` values. Indices
    are unsigned, as in :func:`depthwise_conv`.
    """
    B, H, W, C = x.shape
    OH, OW, K = out.shape[1], out.shape[2], out.shape[3]
    Wp = W + pl + pr
    n = kw * C
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    v = np.empty((H + pt + pb) * Wp * C, dtype=x.dtype)
    v[:] = fill
    for b in range(B):
        for y in range(H):
            o = np.uint64(((y + pt) * Wp + pl) * C)
            xb = np.uint64((b * H + y) * W * C)
            for i in range(W * C):
                u = np.uint64(i)
                v[o + u] = xf[xb + u]
        for oy in range(OH):
            for ox in range(OW):
                ob = np.uint64(((b * OH + oy) * OW + ox) * K)
                for ky in range(kh):
                    s = np.uint64(((oy * sh + ky) * Wp + ox * sw) * C)
                    d = ob + np.uint64(ky * n)
                    for i in range(n):
                        u = np.uint64(i)
                        of[d + u] = v[s + u]
