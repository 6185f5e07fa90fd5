"""The numpy model's fast paths (integer sums as torch int8 GEMMs with int32 sums, or as float32/float64
BLAS GEMMs, where exact; accumulators handed to the threshold lookup; a small depthwise conv as a
block-diagonal GEMM; numba's fused input quantizer, threshold-table, depthwise-conv, max-pool and im2col loops,
``jit``) give the same integers as its plain int64 path (``BitSim(blas=False)``), on random MLPs and CNNs at
their safe widths and narrower ones (wrapping), with and without the int8 GEMM and the numba loops."""
from __future__ import annotations

import numpy as np
from hypothesis import assume, example, given, settings, strategies as st

import hand_models
from a2qhls.ir import IntType
from a2qhls.passes.acc_bits import apply_acc_bits
from a2qhls.sim import BitSim


def _same(model, x, int_gemm=True, jit=False):
    plain = BitSim(model, blas=False)
    assert all(st.kind in ("i64", "obj") for st in plain.stages.values() if hasattr(st, "kind"))
    want = plain.run(x, keep=True)
    fast = BitSim(model, int_gemm=int_gemm, jit=jit)
    assert (fast._k is not None) == jit
    assert int_gemm or all(st.kind != "i8" for st in fast.stages.values() if hasattr(st, "kind"))
    got = fast.run(x)  # the fused path: float accumulators straight into the lookup
    for t in model.outputs:
        assert np.array_equal(np.asarray(got[t]).astype(np.int64), np.asarray(want[t]).astype(np.int64)), t
    kept = fast.run(x, keep=True)  # every tensor of the fast path
    for t, v in want.items():
        assert np.array_equal(np.asarray(kept[t]).astype(np.int64), np.asarray(v).astype(np.int64)), t
    return fast


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), narrower=st.integers(0, 4), relu=st.booleans(), float_bias=st.booleans(),
       sizes=st.sampled_from([(7, 5, 3), (30, 12, 12, 4), (64, 9, 2)]), int_gemm=st.booleans(), jit=st.booleans())
def test_mlp_fast_path_equals_plain_integers(seed, narrower, relu, float_bias, sizes, int_gemm, jit):
    model = hand_models.mlp(sizes, seed=seed, act_type=IntType(3, False, False, 0), relu=relu, float_bias=float_bias)
    model = apply_acc_bits(model, {d.name: max(2, d.acc.acc_bits - narrower) for d in model.layers()})
    x = np.random.default_rng(seed).uniform(-0.3, 1.3, size=(9, sizes[0])).astype(np.float32)
    fast = _same(model, x, int_gemm, jit)
    kinds = {st.kind for st in fast.stages.values() if hasattr(st, "kind")}
    assert kinds & ({"i8"} if int_gemm else {"f32", "f64"})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.integers(5, 8), signed=st.booleans(), zp=st.integers(-40, 40),
       narrower=st.integers(0, 3), cnn=st.booleans(), jit=st.booleans())
def test_int8_gemm_shifted_inputs_equal_plain_integers(seed, bits, signed, zp, narrower, cnn, jit):
    """Inputs whose values do not fit int8 (up to 8 bits with any zero-point): the int8 GEMM reads
    ``value - shift`` and adds ``shift * sum(w)`` back (a conv's zero padding enters as ``-shift``)."""
    t = IntType(bits, signed, False, zp)
    if cnn:
        m = hand_models.cnn(seed=seed, in_type=t)
        x = np.random.default_rng(seed).uniform(-3, 3, size=(5, 2, 6, 6)).astype(np.float32)
    else:
        m = hand_models.mlp((20, 7, 3), seed=seed, in_type=t, act_type=IntType(4, False, False, 0))
        x = np.random.default_rng(seed).uniform(-3, 3, size=(9, 20)).astype(np.float32)
    m = apply_acc_bits(m, {op.name: max(2, op.acc.acc_bits - narrower) for op in m.accumulating_ops()})
    fast = _same(m, x, jit=jit)
    first = fast.stages[m.accumulating_ops()[0].name]
    fits = -128 <= t.vmin and t.vmax <= 127
    if first.kind == "i8":
        assert (first.shift == 0) == fits
        assert -128 <= t.vmin - first.shift and t.vmax - first.shift <= 127
    else:  # refused only where a padded conv's zero (u = -shift) cannot be int8: every value above 255
        assert cnn and t.vmin > 0 and t.vmax > 255


spec = st.fixed_dictionaries({
    "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "stride": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "pads": st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 2), st.integers(0, 1)),
})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), hw=st.tuples(st.integers(4, 7), st.integers(4, 7)), conv0=spec, dw=spec,
       in_zp=st.integers(-3, 3), in_signed=st.booleans(), shrink=st.lists(st.integers(0, 3), min_size=6, max_size=6),
       dw_gemm=st.booleans(), int_gemm=st.booleans(), jit=st.booleans(), cin=st.sampled_from([1, 2]),
       in_bits=st.sampled_from([4, 4, 24]), pool=st.sampled_from([(2, 2), (2, 1), (3, 2), (1, 1)]))
def test_cnn_fast_path_equals_plain_integers(seed, hw, conv0, dw, in_zp, in_signed, shrink, dw_gemm, int_gemm, jit, cin, in_bits,
                                             pool):
    """Random CNNs (conv, depthwise conv, max pool, residual add, average pool, dense), at safe and
    narrower (wrapping) widths; the max pool (its window ``pool``: size, stride) pools the accumulator
    before the threshold lookup. With ``jit``, numba's depthwise and max pool loops compute the depthwise
    conv and the pool, and, with one input channel (``cin=1``), the first conv; a 24-bit input puts the
    first conv's sums past float32's exact range (float64 then)."""
    from hypothesis import note

    H0 = (hw[0] + conv0["pads"][0] + conv0["pads"][2] - conv0["kernel"][0]) // conv0["stride"][0] + 1
    W0 = (hw[1] + conv0["pads"][1] + conv0["pads"][3] - conv0["kernel"][1]) // conv0["stride"][1] + 1
    assume(H0 >= 1 and W0 >= 1)
    H1 = (H0 + dw["pads"][0] + dw["pads"][2] - dw["kernel"][0]) // dw["stride"][0] + 1
    W1 = (W0 + dw["pads"][1] + dw["pads"][3] - dw["kernel"][1]) // dw["stride"][1] + 1
    assume(H1 >= pool[0] and W1 >= pool[0])
    m = hand_models.cnn(seed=seed, hw=hw, cin=cin, conv0=conv0, dw=dw, pool={"kernel": (pool[0],) * 2, "stride": (pool[1],) * 2},
                        in_type=IntType(in_bits, in_signed, False, in_zp))
    m = apply_acc_bits(m, {op.name: max(2, op.acc.acc_bits - s) for op, s in zip(m.accumulating_ops(), shrink)})
    x = np.random.default_rng(seed).uniform(-0.6, 1.3, size=(5, cin, *hw)).astype(np.float32)
    if in_bits > 4:
        x *= 2.0 ** (in_bits - 4)
    old = BitSim.DW_AS_GEMM
    BitSim.DW_AS_GEMM = 16 if dw_gemm else 0  # both depthwise paths: block-diagonal GEMM and per-tap
    try:
        note(f"DW_AS_GEMM={BitSim.DW_AS_GEMM}")
        fast = _same(m, x, int_gemm, jit)
    finally:
        BitSim.DW_AS_GEMM = old
    assert list(fast._pool_first) == [m.producer(next(op for op in m.ops if getattr(op, "mode", "") == "max").inputs[0]).name]
    dw_stage = next(fast.stages[op.name] for op in m.ops if getattr(op, "depthwise", False))
    assert dw_stage.flat is not None and dw_stage.flat[0].dtype == np.float32  # 3-bit activations, 4-bit weights
    first = fast.stages[m.accumulating_ops()[0].name]
    assert (first.flat is not None) == (cin == 1)
    if cin == 1:  # float64 once a window's sum can pass 2^24: |value| up to 2^23 (2^24 unsigned) times sum |w| >= 2
        l1 = int(np.abs(np.asarray(first.op.weight)).sum(axis=(1, 2, 3)).max())
        assert first.flat[0].dtype == (np.float64 if in_bits > 4 and l1 >= 2 else np.float32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), B=st.integers(1, 3), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       C=st.integers(1, 6), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), pads=st.tuples(*[st.integers(0, 2)] * 4),
       dtype=st.sampled_from([np.int8, np.int16, np.int64, np.float32, np.float64]), fill=st.integers(-5, 5))
def test_numba_im2col_equals_numpy_windows(seed, B, hw, C, kernel, stride, pads, dtype, fill):
    """numba's im2col copy equals numpy's strided one (:func:`a2qhls.sim.im2col`) for any window, stride,
    padding and fill."""
    import pytest

    from a2qhls.sim import im2col

    _jit = pytest.importorskip("a2qhls._jit")
    (H, W), (kh, kw), (t, l, b, r) = hw, kernel, pads
    assume(H + t + b >= kh and W + l + r >= kw)
    x = np.random.default_rng(seed).integers(-100, 100, size=(B, H, W, C)).astype(dtype)
    want = im2col(x, kernel, stride, pads, fill=fill)
    got = im2col(x, kernel, stride, pads, fill=fill, kernels=_jit)
    assert got.dtype == want.dtype and np.array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), B=st.integers(0, 3), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       C=st.integers(1, 6), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.int64, np.float32, np.float64]))
def test_numba_max_pool_equals_window_max(seed, B, hw, C, kernel, stride, dtype):
    """numba's max pool loop (:func:`a2qhls._jit.max_pool`) against numpy's max over each window."""
    import pytest

    _jit = pytest.importorskip("a2qhls._jit")
    (H, W), (kh, kw), (sh, sw) = hw, kernel, stride
    assume(H >= kh and W >= kw)
    OH, OW = (H - kh) // sh + 1, (W - kw) // sw + 1
    x = np.random.default_rng(seed).integers(-1000, 1000, size=(B, H, W, C)).astype(dtype)
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw][:, :OH, :OW]
    out = np.zeros((B, OH, OW, C), dtype=dtype)
    _jit.max_pool(x, kh, kw, sh, sw, out)
    assert np.array_equal(out, win.max(axis=(-2, -1)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), B=st.integers(0, 3), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       C=st.integers(1, 6), one_input=st.booleans(), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), pads=st.tuples(*[st.integers(0, 2)] * 4),
       rows=st.integers(1, 5), dtype=st.sampled_from([np.float32, np.float64]),
       xdtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int64]), bipolar=st.booleans(), zp=st.integers(-5, 5),
       int_out=st.booleans())
def test_numba_depthwise_loop_equals_direct_sum(seed, B, hw, C, one_input, kernel, stride, pads, rows, dtype, xdtype,
                                                 bipolar, zp, int_out):
    """numba's depthwise loop (:func:`a2qhls._jit.depthwise_conv`) against the direct int64 sum over each
    window, for any kernel, stride and padding, ``R`` padded rows per pass (the last pass partial), one
    input channel read by every output channel or one each, float32 and float64 sums, every stored dtype,
    integer or float output."""
    import pytest

    _jit = pytest.importorskip("a2qhls._jit")
    rng = np.random.default_rng(seed)
    (H, W), (kh, kw), (sh, sw), (pt, pl, pb, pr) = hw, kernel, stride, pads
    Hp, Wp = H + pt + pb, W + pl + pr
    assume(Hp >= kh and Wp >= kw)
    OH, OW = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    Cx = 1 if one_input else C
    info = np.iinfo(xdtype)
    x = rng.integers(max(info.min, -300), min(info.max, 300) + 1, size=(B, H, W, Cx)).astype(xdtype)
    mul, zp = (2, 1) if bipolar else (1, zp)
    w = rng.integers(-7, 8, size=(kh, kw, C))
    bias = rng.integers(-1000, 1001, size=C)
    v = np.zeros((B, Hp, Wp, C), dtype=np.int64)  # values, 0 in the padding; one input channel: broadcast
    v[:, pt : pt + H, pl : pl + W] = mul * x.astype(np.int64) - zp
    want = np.zeros((B, OH, OW, C), dtype=np.int64) + bias
    for ky in range(kh):
        for kx in range(kw):
            want += v[:, ky : ky + (OH - 1) * sh + 1 : sh, kx : kx + (OW - 1) * sw + 1 : sw] * w[ky, kx]
    R = rows if sh == 1 else 1
    w_rows = np.ascontiguousarray(np.broadcast_to(w[:, :, None, :], (kh, kw, R * Wp, C)).reshape(kh, kw, -1)).astype(dtype)
    out = np.full((B, OH, OW, C), -1, dtype=(np.int32 if dtype == np.float32 else np.int64) if int_out else dtype)
    _jit.depthwise_conv(x, dtype(mul), dtype(zp), w_rows, bias.astype(dtype), sh, sw, pt, pl, pb, pr, out)
    assert np.array_equal(out.astype(np.int64), want)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), narrower=st.integers(0, 3), float_bias=st.booleans(), binary=st.booleans(),
       sizes=st.sampled_from([(7, 5, 3), (30, 12, 12, 4), (64, 9, 2)]), int_gemm=st.booleans(), jit=st.booleans())
def test_bipolar_mlp_fast_path_equals_plain_integers(seed, narrower, float_bias, binary, sizes, int_gemm, jit):
    """Bipolar input and activations (stored bit q, value 2q - 1): the float fast path equals the int64 one."""
    bp = IntType.bipolar_type()
    model = hand_models.mlp(sizes, seed=seed, in_type=bp, in_scale=0.5, w_bits=2 if binary else 4, act_type=bp,
                            relu=False, float_bias=float_bias)
    if binary:  # +-1 weights (BNN-PYNQ's layers)
        for d in model.layers():
            d.weight = np.where(np.random.default_rng(seed).random(d.weight.shape) < 0.5, -1, 1)
        model = hand_models.size_accumulators(model)
    model = apply_acc_bits(model, {d.name: max(2, d.acc.acc_bits - narrower) for d in model.layers()})
    x = np.random.default_rng(seed).uniform(-1, 1, size=(9, sizes[0])).astype(np.float32)
    fast = _same(model, x, int_gemm, jit)
    assert any(st.kind in (("i8",) if int_gemm else ("f32", "f64")) for st in fast.stages.values() if hasattr(st, "kind"))
    assert any(getattr(st, "mul", 1) == 2 for st in fast.stages.values())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), shrink=st.lists(st.integers(0, 2), min_size=6, max_size=6), dw_gemm=st.booleans(),
       int_gemm=st.booleans(), jit=st.booleans())
def test_bipolar_cnn_fast_path_equals_plain_integers(seed, shrink, dw_gemm, int_gemm, jit):
    """A CNN whose input and activations are bipolar (convolutions incl. padding and depthwise, max pool of
    bits, residual add and average pool of 2q - 1 values): fast path == int64 path."""
    bp = IntType.bipolar_type()
    m = hand_models.cnn(seed=seed, in_type=bp, act_type=bp)
    for op in m.ops:  # the sign of the value, not of its relu (which is always +1)
        if op.op == "Requant":
            op.relu = False
    m = apply_acc_bits(m, {op.name: max(2, op.acc.acc_bits - s) for op, s in zip(m.accumulating_ops(), shrink)})
    x = np.random.default_rng(seed).uniform(-1, 1, size=(5, 2, 6, 6)).astype(np.float32)
    old = BitSim.DW_AS_GEMM
    BitSim.DW_AS_GEMM = 16 if dw_gemm else 0
    try:
        _same(m, x, int_gemm, jit)
    finally:
        BitSim.DW_AS_GEMM = old


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), shrink=st.lists(st.integers(0, 3), min_size=6, max_size=6),
       mode=st.sampled_from(["search", "span", "full"]), jit=st.booleans())
def test_threshold_tables_and_search_equal_plain_count(seed, shrink, mode, jit):
    """Requantization by a table of every reachable accumulator value (``full``), by a table of each
    channel's thresholds' span with accumulators clipped to it first (``span``), or by a search (no table):
    the same integers as the plain count of the thresholds each accumulator reaches, on CNNs whose layers,
    add and pool may wrap."""
    m = hand_models.cnn(seed=seed)
    m = apply_acc_bits(m, {op.name: max(2, op.acc.acc_bits - s) for op, s in zip(m.accumulating_ops(), shrink)})
    x = np.random.default_rng(seed).uniform(-0.6, 1.3, size=(7, 2, 6, 6)).astype(np.float32)
    full = BitSim(m)
    req = {n: st for n, st in full.stages.items() if hasattr(st, "lut") and st.NT}
    assert all(st.lut is not None and not st.clip for st in req.values())  # small layers: full tables
    span = {n: int((st.T.max(axis=1) - st.T.min(axis=1) + 2).sum()) for n, st in req.items()}
    size = {n: len(st.lut) for n, st in req.items()}
    old = BitSim.LUT_MAX
    if mode == "span":  # a table size that one requantization's span fits and its full table does not
        assume(any(span[n] < size[n] for n in req))
        name = min((n for n in req if span[n] < size[n]), key=lambda n: span[n])
        BitSim.LUT_MAX = span[name]
    BitSim.LUT_MAX = {"search": 0, "span": BitSim.LUT_MAX, "full": old}[mode]
    try:
        fast = _same(m, x, jit=jit)
    finally:
        BitSim.LUT_MAX = old
    if mode == "search":
        assert all(fast.stages[n].lut is None for n in req)
    elif mode == "span":
        assert fast.stages[name].lut is not None and fast.stages[name].clip
    assert any(st.kind == "i32" for st in fast.stages.values() if hasattr(st, "mults"))  # the residual add in int32


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), threads=st.integers(1, 3), cnn=st.booleans(), jit=st.booleans())
def test_chunks_in_threads_equal_one_batch(seed, n, threads, cnn, jit):
    """A batch split into chunks (forced small here) run by 1-3 threads: the same integers as the
    plain path on the whole batch, every tensor kept; the thread settings of torch are restored."""
    import torch

    m = hand_models.cnn(seed=seed) if cnn else hand_models.mlp((30, 12, 12, 4), seed=seed, act_type=IntType(3, False, False, 0))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.6, 1.3, size=(n, 2, 6, 6) if cnn else (n, 30)).astype(np.float32)
    want = BitSim(m, blas=False).run_batch(x, keep=True)
    sim = BitSim(m, int_gemm=True, jit=jit)  # numba's loops release the GIL: they run in the threads too
    sim.CHUNK_BYTES = 1  # one sample per chunk
    before = torch.get_num_threads()
    for keep in (False, True):
        got = sim.run(x, threads=threads, keep=keep)
        for t in (want if keep else m.outputs):
            assert np.array_equal(np.asarray(got[t]).astype(np.int64), np.asarray(want[t]).astype(np.int64)), t
    assert torch.get_num_threads() == before


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.integers(1, 16), signed=st.booleans(), zp=st.integers(-3, 3),
       scale=st.sampled_from([0.5383791, 0.25, 1.0, 3.0, 1e-3]), n=st.integers(1, 700_000),
       rounding=st.sampled_from(["ROUND", "HALF_EVEN", "FLOOR", "CEIL", "DOWN", "HALF_UP"]), jit=st.booleans())
@example(seed=1, bits=8, signed=False, zp=2, scale=0.5383791, n=600_001, rounding="ROUND", jit=False)  # three blocks
@example(seed=1, bits=16, signed=True, zp=3, scale=1e-3, n=100_000, rounding="ROUND", jit=True)
def test_narrow_blocked_input_quantizer_equals_whole_array(seed, bits, signed, zp, scale, n, rounding, jit):
    """The input quantizer in cache-sized blocks, rounded straight into the narrowest integer dtype, or in
    numba's one fused loop (``jit``): the same integers as the whole-array float32 steps, on inputs with
    exact ties (k + 1/2), far out of range, and infinite."""
    from a2qhls.ir import InputQuant
    from a2qhls.sim import jit_kernels, quantize_input

    t = IntType(bits, signed, False, zp)
    op = InputQuant("iq", ["x"], ["q"], np.float32(scale), np.float32(zp), t, rounding)
    rng = np.random.default_rng(seed)
    k = rng.integers(t.qmin - 3, t.qmax + 3, size=n)
    x = np.where(rng.random(n) < 0.3, (k + 0.5) * np.float32(scale), rng.normal(0, 2 ** bits * scale, n)).astype(np.float32)
    x[rng.random(n) < 0.01] = np.inf
    x[rng.random(n) < 0.01] = -np.inf
    got = quantize_input(op, x, narrow=True, kernels=jit_kernels() if jit else None)
    assert got.dtype.itemsize <= np.dtype(np.int64).itemsize and got.dtype.kind in "iu"
    assert np.array_equal(got.astype(np.int64), quantize_input(op, x))


def test_torch_and_numba_not_imported_unless_loaded_or_asked():
    """By default the model uses torch's int8 GEMM only when torch is already imported, and numba's loops
    from the first batch of at least ``JIT_MIN_ELEMENTS`` values: a fresh process running a few samples
    (as `a2qhls build` runs the test vectors) pays neither import; with torch loaded, or a batch that
    large (here the bar lowered to one value), they are used."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import numpy as np, hand_models\n"
        "from a2qhls.sim import BitSim\n"
        "m = hand_models.cnn(seed=1)\n"
        "x = np.random.default_rng(0).uniform(-0.6, 1.3, size=(9, 2, 6, 6)).astype(np.float32)\n"
        "sim = BitSim(m); sim.run(x)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'numba' not in sys.modules and sim._k is None, 'numba imported'\n"
        "assert not any(getattr(st, 'kind', '') == 'i8' for st in sim.stages.values())\n"
        "sim.JIT_MIN_ELEMENTS = 1; y = sim.run(x)\n"
        "assert 'numba' in sys.modules and sim._k is not None, 'numba not used'\n"
        "assert all((y[t] == BitSim(m, blas=False).run(x)[t]).all() for t in y)\n"
        "import torch\n"
        "assert any(getattr(st, 'kind', '') == 'i8' for st in BitSim(m).stages.values())\n"
    ) % str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_fed_accumulators_anywhere_in_their_width_equal_plain_and_beyond_it_are_refused():
    """Accumulators given to ``run(start=...)`` anywhere in their built width (beyond what any input
    reaches) requantize as the plain count does; a value the width cannot hold, or a non-integer, is a
    one-line error naming the tensor."""
    import pytest

    from a2qhls.errors import A2QError

    m = hand_models.cnn(seed=2)
    plain = BitSim(m, blas=False)
    for fast in (BitSim(m), BitSim(m, jit=True)):
        P = fast.acc_bits["avgpool"]
        q = np.arange(-(1 << (P - 1)), 1 << (P - 1)).reshape(-1, 1, 1, 1).repeat(4, axis=3)
        got, want = fast.run(q, start="acc_avg", keep=True), plain.run(q, start="acc_avg", keep=True)
        assert np.array_equal(got["act4"], want["act4"])
        P0 = fast.acc_bits[m.producer("acc0").name]
        q0 = np.full((2, 6, 6, 4), (1 << (P0 - 1)) - 1)  # the largest value of the width, above the reachable range
        assert np.array_equal(fast.run(q0, start="acc0")["out"], plain.run(q0, start="acc0")["out"])
        for bad in ((1 << (P0 - 1)), -(1 << (P0 - 1)) - 1, 0.5, np.nan):
            with pytest.raises(A2QError, match="acc0"):
                fast.run(np.full((2, 6, 6, 4), bad), start="acc0")
    # numba's table loop itself never reads outside the table: it reports the first such value
    from a2qhls.sim import jit_kernels

    lut, out = np.arange(8, dtype=np.uint8), np.zeros((2, 2), dtype=np.uint8)
    lo, hi, off = np.array([0, 0]), np.array([9, 3]), np.array([0, 4])  # channel 0 unclipped up to 9 > 7
    assert jit_kernels().requant_lut(np.array([[1, 2], [8, 3]], dtype=np.int32), lut, off, lo, hi, out) == 2
    assert jit_kernels().requant_lut(np.array([[1, 9], [7, -5]], dtype=np.int32), lut, off, lo, hi, out) == -1
    assert out.tolist() == [[1, 7], [7, 4]]
    # a table that holds every clipped index (as BitSim's do): the loop without the check, clipping both ends
    big = np.zeros((600, 2), dtype=np.uint8)
    acc = np.array([[1, 9], [8, -5]] * 300, dtype=np.int32)
    assert jit_kernels().requant_lut(acc, lut, off, lo, np.array([7, 3]), big) == -1
    assert big.tolist() == [[1, 7], [7, 4]] * 300


def test_per_tensor_threshold_row_on_table_and_search():
    """One scale for all channels (thresholds ``[1, NT]``, a hand-built IR): table (numpy's gather or
    numba's loop) and search give the plain count."""
    m = hand_models.mlp((20, 6, 3), seed=1)
    acc = m.tensors["acc0"]
    acc.scale, acc.offset = np.asarray(acc.scale[:1]), np.asarray(acc.offset[:1])
    x = np.random.default_rng(0).uniform(-1, 2, (9, 20)).astype(np.float32)
    old = BitSim.LUT_MAX
    try:
        for lut_max in (0, old):
            BitSim.LUT_MAX = lut_max
            assert BitSim(m).stages["act0"].T.shape[0] == 1
            _same(m, x)
            _same(m, x, jit=True)
    finally:
        BitSim.LUT_MAX = old


def test_outputs_int64_nan_refused_empty_batch_and_no_torch_warning():
    """What a caller gets back: int64 integers (narrow dtypes would wrap the caller's arithmetic), a one-line
    error for a NaN input, empty outputs for an empty batch, and no warning from a 1x1 conv's int8 GEMM."""
    import warnings

    import pytest

    from a2qhls.errors import A2QError

    m = hand_models.cnn(seed=3, conv0={"kernel": (1, 1), "stride": (1, 1), "pads": (0, 0, 0, 0)})
    sim = BitSim(m, int_gemm=True)
    assert sim.stages[m.accumulating_ops()[0].name].kind == "i8"  # the 1x1 conv: its input itself is the GEMM's
    x = np.random.default_rng(0).uniform(-0.6, 1.3, size=(5, 2, 6, 6)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sim.run(x, keep=True)
    assert all(v.dtype == np.int64 for t, v in out.items() if t != m.input_name)
    x[2, 1, 3, 3] = np.nan
    with pytest.raises(A2QError, match="NaN") as plain:
        sim.run(x)
    with pytest.raises(A2QError, match="NaN") as fused:  # numba's quantizer loop: the same message
        BitSim(m, jit=True).run(x)
    assert str(fused.value) == str(plain.value)
    empty = sim.run(x[:0])
    assert [v.shape for v in empty.values()] == [(0,) + tuple(m.tensors[t].shape) for t in m.outputs]
    mlp = hand_models.mlp((30, 12, 4), seed=0, act_type=IntType(4, False, False, 0))
    w = BitSim(mlp, int_gemm=True)
    assert w.stages[mlp.layers()[1].name].kind == "i8"
    assert w.run(np.random.default_rng(1).uniform(0, 1, (6, 30)).astype(np.float32))[mlp.outputs[0]].dtype == np.int64


def _child_run(sim, x, q):
    q.put(np.asarray(sim.run(x, threads=2)[sim.model.outputs[0]]).tolist())


def test_threaded_model_after_fork_pickle_and_concurrent_calls():
    """The kept thread pool: a forked child (which inherits no threads) runs; a pickled copy runs; two
    Python threads calling run with different thread counts both finish; all exact, torch's count restored."""
    import multiprocessing
    import pickle
    import threading

    import torch

    m = hand_models.cnn(seed=4)
    x = np.random.default_rng(0).uniform(-0.6, 1.3, size=(24, 2, 6, 6)).astype(np.float32)
    want = BitSim(m, blas=False).run(x)[m.outputs[0]]
    sim = BitSim(m, int_gemm=True)
    sim.CHUNK_BYTES = 1
    assert np.array_equal(sim.run(x, threads=2)[m.outputs[0]], want)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_run, args=(sim, x, q))
    p.start()
    got = q.get(timeout=120)
    p.join(timeout=60)
    assert p.exitcode == 0 and np.array_equal(np.asarray(got), want)
    copy = pickle.loads(pickle.dumps(sim))
    assert np.array_equal(copy.run(x, threads=2)[m.outputs[0]], want)
    before = torch.get_num_threads()
    results, errors = {}, []

    def call(k):
        try:
            for _ in range(5):
                results[k] = sim.run(x, threads=k)[m.outputs[0]]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=call, args=(k,)) for k in (2, 3)]
    [t.start() for t in ts]
    [t.join(timeout=120) for t in ts]
    assert not errors and all(np.array_equal(v, want) for v in results.values()) and len(results) == 2
    assert torch.get_num_threads() == before


def test_quantizer_loop_divides_by_zero_as_numpy_does():
    """A zero scale (only a hand-built IR has one; the importer refuses it): numba's loop gives numpy's
    float32 answers (x / 0 is +-inf, clipped), and 0 / 0 the same one-line NaN error."""
    import pytest

    from a2qhls.errors import A2QError
    from a2qhls.ir import InputQuant
    from a2qhls.sim import jit_kernels, quantize_input

    op = InputQuant("iq", ["x"], ["q"], np.float32(0), np.float32(0), IntType(8, True, False, 0), "ROUND")
    x = np.array([1.5, -2.0, np.inf], dtype=np.float32)
    with np.errstate(divide="ignore"):
        assert quantize_input(op, x, narrow=True, kernels=jit_kernels()).tolist() == quantize_input(op, x).tolist() == [127, -128, 127]
    x[1] = 0
    with pytest.raises(A2QError, match="NaN at flat index 1") as plain, np.errstate(invalid="ignore", divide="ignore"):
        quantize_input(op, x)
    with pytest.raises(A2QError, match="NaN at flat index 1") as fused, np.errstate(invalid="ignore", divide="ignore"):
        quantize_input(op, x, narrow=True, kernels=jit_kernels())
    assert str(fused.value) == str(plain.value)


def test_numba_without_a_writable_cache_compiles_per_process(tmp_path_factory):
    """a2qhls installed read-only and run by a user with no writable cache directory (containers, Ray
    workers): numba refuses its on-disk cache, and the loops compile in the process instead (the model's
    default and ``jit=True`` both run, exact). Needs root (to run as ``nobody``) and ``setpriv``."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import pytest

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run as an unprivileged user")
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    root = Path(tempfile.mkdtemp(prefix="a2q-ro-"))  # /tmp itself: readable by nobody, unlike pytest's tmp
    try:
        repo = Path(__file__).resolve().parent.parent
        shutil.copytree(repo / "a2qhls", root / "a2qhls", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(repo / "tests" / "hand_models.py", root)
        (root / "home").mkdir()
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env.update(HOME=str(root / "home"), XDG_CACHE_HOME=str(root / "home"), PYTHONDONTWRITEBYTECODE="1")
        if subprocess.run(as_nobody + [sys.executable, "-c", "pass"], env=env).returncode != 0:
            pytest.skip("this Python is not readable by an unprivileged user")
        for p in sorted(root.rglob("*"), reverse=True) + [root]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        code = (
            "import sys; sys.path.insert(0, %r)\n"
            "import numpy as np, hand_models\n"
            "from a2qhls.sim import BitSim\n"
            "m = hand_models.mlp((64, 32, 10))\n"
            "x = np.random.default_rng(0).uniform(-1, 2, (2000, 64)).astype(np.float32)\n"
            "want = BitSim(m, blas=False).run(x)\n"
            "for jit in (None, True):\n"
            "    sim = BitSim(m, jit=jit); sim.JIT_MIN_ELEMENTS = 1; got = sim.run(x)\n"
            "    assert sim._k is not None and all((got[t] == want[t]).all() for t in want), jit\n"
        ) % str(root)
        r = subprocess.run(as_nobody + [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        for p in [root] + list(root.rglob("*")):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(root)
