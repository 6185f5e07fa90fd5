"""Faults a reviewer found attacking the numba depthwise/max-pool loops and the pool-first rewrite of BitSim:
fed arrays of any byte order and float width, a fed pool output kept, the float32 path exact for stored
integers past 2^24, and QONNX's float64 reference on a Conv graph (onnxruntime has no float64 Conv)."""
from __future__ import annotations

import numpy as np
import pytest

import hand_models
from a2qhls import load_qonnx, size_accumulators
from a2qhls.ir import IntType
from a2qhls.sim import BitSim
from qonnx_graphs import save
from test_import_conv import conv_graph


def test_numpy_float32_path_exact_for_stored_integers_above_2_24():
    m = hand_models.cnn(seed=0, cin=1, in_type=IntType(25, False, True, 2**24 - 1))
    c0 = m.ops[1]
    w = np.zeros_like(c0.weight)
    w[:, 1, 1, 0] = 1  # acc = value at the centre tap
    c0.weight, c0.bias = w, None
    m = size_accumulators(m)
    q = np.full((1, 6, 6, 1), 2**24 + 1, dtype=np.int64)  # value 2
    want = BitSim(m, blas=False).run_batch(q, start="x_q", keep=True)["acc0"]
    fast = BitSim(m, jit=False, int_gemm=False)
    assert fast.stages["conv0"].kind == "f32"
    got = fast.run_batch(q, start="x_q", keep=True)["acc0"]
    assert np.array_equal(got, want)


def test_pool_first_keeps_a_fed_pool_output(tmp_path):
    proto, _, _ = conv_graph(cin=1, cout=3, H=6, W=6, pool="max")
    m = size_accumulators(load_qonnx(save(proto, tmp_path / "m.onnx")))
    conv = next(op for op in m.ops if op.op == "Conv")
    pool = next(op for op in m.ops if op.op == "Pool")
    sim = BitSim(m, blas=False)
    assert sim._pool_first
    x = np.random.default_rng(0).uniform(0, 3, (2, 1, 6, 6)).astype(np.float32)
    acc = sim.run_batch(x, keep=True)[conv.outputs[0]]
    fed = np.zeros((2,) + tuple(m.tensors[pool.outputs[0]].shape), dtype=np.int64)
    feed = {conv.outputs[0]: acc, pool.outputs[0]: fed}
    assert np.array_equal(sim.run_batch(feed, keep=True)[pool.outputs[0]], fed)
    assert np.array_equal(sim.run_batch(feed)[pool.outputs[0]], fed)


def test_float64_reference_runs_a_conv_graph(tmp_path):
    from a2qhls.cosimulation import QonnxReference

    proto, _, _ = conv_graph(cin=1, cout=3, H=6, W=6, pool="max")  # the conv output inside the graph
    path = save(proto, tmp_path / "m.onnx")
    x = np.random.default_rng(0).uniform(0, 3, (2, 1, 6, 6)).astype(np.float32)
    out32 = QonnxReference(path).run(x)
    out64 = QonnxReference(path, float64=True).run(x)
    for k, v in out32.items():
        np.testing.assert_allclose(np.asarray(out64[k], dtype=np.float64), v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype, at", [(">i2", "input"), ("float16", "input"), (">i4", "acc")])
def test_jit_accepts_fed_arrays_of_any_byte_order_and_float_width(tmp_path, dtype, at):
    pytest.importorskip("numba")
    proto, _, _ = conv_graph(cin=1, cout=3, H=6, W=6, pool="max")
    m = size_accumulators(load_qonnx(save(proto, tmp_path / "m.onnx")))
    conv = next(op for op in m.ops if op.op == "Conv")
    x = np.random.default_rng(0).uniform(0, 3, (2, 1, 6, 6)).astype(np.float32)
    ref = BitSim(m, blas=False).run_batch(x, keep=True)
    t = conv.inputs[0] if at == "input" else conv.outputs[0]
    got = BitSim(m, jit=True).run(ref[t].astype(dtype), start=t)
    for o in m.outputs:
        assert np.array_equal(got[o], ref[o])
