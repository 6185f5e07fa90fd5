"""The numpy model's numba path (``BitSim(jit=True)``), its numpy-only fast path (``jit=False``) and its
plain int64 path (``blas=False``) give the same integers (the fast paths with torch's int8 GEMM and with
float BLAS GEMMs), and agree with QONNX's executor, on a Brevitas MLP and a Brevitas CNN (depthwise conv,
max pool, residual add, average pool) exported by each of Brevitas's two QONNX exporters (dynamo and
TorchScript), at the derived accumulator widths and 2 bits narrower (wrapping; paths only), on inputs
that hit the input quantizer's rounding ties (exactly ``k + 0.5`` LSB, even and odd ``k``, negative) and
its clipping (beyond the range, infinities, ``-0.0``)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("numba")  # the jit path under test (the ``fast`` extra)

from a2qhls import load_qonnx, size_accumulators  # noqa: E402
from a2qhls.cosimulation import QonnxReference  # noqa: E402
from a2qhls.ir import InputQuant, Requant  # noqa: E402
from a2qhls.passes.acc_bits import apply_acc_bits  # noqa: E402
from a2qhls.sim import BitSim, jit_kernels, onnx_layout, quantize_input, to_real  # noqa: E402

EXPORTERS = ("dynamo", "torchscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``{("mlp" | "cnn", exporter): path}``: small calibrated Brevitas nets, each exported both ways."""
    from brevitas_calibrated import make_mlp
    from brevitas_cnn import make_cnn
    from cnn_patterns import export_both

    tmp = tmp_path_factory.mktemp("jit_exporters")
    out = {}
    for name, model, example in (("mlp", make_mlp((12, 8, 5)), torch.zeros(1, 12)),
                                 ("cnn", make_cnn(ch=4), torch.zeros(1, 1, 8, 8))):
        for ex, path in export_both(model, example, tmp, name).items():
            out[name, ex] = path
    return out


def _ties(scale: np.float32, ks) -> tuple[np.ndarray, np.ndarray]:
    """Float32 inputs ``x`` with ``x / scale == k + 0.5`` exactly in float32 (as QONNX divides), for
    each ``k`` in ``ks`` where some float32 near ``(k + 0.5) * scale`` gives it; and those ``k``."""
    xs, hit = [], []
    for k in ks:
        x = np.float32((k + 0.5) * np.float64(scale))
        for _ in range(8):  # a few ulps either side
            if np.float32(x / scale) == np.float32(k + 0.5):
                xs.append(x)
                hit.append(k)
                break
            x = np.nextafter(x, np.float32(np.inf if np.float32(x / scale) < k + 0.5 else -np.inf))
    return np.asarray(xs, dtype=np.float32), np.asarray(hit)


def _inputs(model, n_random: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch ``[B, *input_shape]``: random values, then every reachable tie ``k + 0.5`` from below
    the range to above it, then clipping (far beyond the range both ways, infinities, -0.0), laid out
    sample after sample; the tie inputs; and their ``k``."""
    iq = model.ops[0]
    assert isinstance(iq, InputQuant) and str(iq.rounding_mode).upper() == "ROUND" and np.size(iq.scale) == 1
    t = iq.out_type
    scale = np.float32(np.asarray(iq.scale).reshape(()))
    size = int(np.prod(model.input_shape))
    ties, ks = _ties(scale, range(t.qmin - 3, t.qmax + 3))
    # reachable ties on both sides of zero, even and odd k, and beyond both ends of the range
    assert {k % 2 for k in ks if t.qmin <= k < t.qmax} == {0, 1} and ks.min() < t.qmin and ks.max() >= t.qmax
    assert (ks < -1).any()
    lo, hi = float(t.qmin) * scale, float(t.qmax) * scale
    clip = np.asarray([lo - scale, hi + scale, lo * 1e3, hi * 1e3, -np.inf, np.inf, -0.0, 0.0,
                       (t.qmin - 0.49) * scale, (t.qmax + 0.49) * scale], dtype=np.float32)
    special = np.concatenate([ties, -ties, clip])
    special = np.resize(special, -(-special.size // size) * size)  # whole samples (wrapping around)
    rand = rng.uniform(lo * 1.3, hi * 1.3, size=n_random * size).astype(np.float32)
    x = np.concatenate([rand, special]).reshape((-1,) + tuple(model.input_shape))
    return x, ties, ks


def _eq(a, b) -> bool:
    """Same values (integers compared as int64 whatever their dtype; floats, e.g. the kept graph input, as given)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return a.dtype == b.dtype and np.array_equal(a, b)
    return np.array_equal(a.astype(np.int64), b.astype(np.int64))


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_jit_numpy_and_plain_paths_agree_with_qonnx_per_exporter(exported, net, exporter):
    path = exported[net, exporter]
    model = size_accumulators(load_qonnx(str(path)))
    if net == "cnn":  # the CNN the brief names: depthwise conv, max pool, residual add, average pool
        kinds = {(op.op, getattr(op, "mode", None), bool(getattr(op, "depthwise", False))) for op in model.ops}
        assert {("Conv", None, True), ("Pool", "max", False), ("Pool", "avg", False), ("Add", None, False)} <= kinds
    x, ties, ks = _inputs(model, 6, np.random.default_rng(0))
    iq = model.ops[0]

    # the fused input quantizer (numba, one pass) == numpy's blocks == the plain int64 path, ties
    # half to even, clipped to the type's range
    flat = x.reshape(-1)
    plain_q = quantize_input(iq, flat)
    assert _eq(quantize_input(iq, flat, narrow=True, kernels=jit_kernels()), plain_q)
    assert _eq(quantize_input(iq, flat, narrow=True), plain_q)
    t = iq.out_type
    tq = quantize_input(iq, ties)
    assert _eq(tq, np.clip(np.where(ks % 2 == 0, ks, ks + 1), t.qmin, t.qmax))
    assert _eq(quantize_input(iq, -ties), np.clip(np.where(ks % 2 == 0, -ks, -ks - 1), t.qmin, t.qmax))

    ref = QonnxReference(path)
    ctx = ref.run(x, full=True)
    for narrower in (0, 2):  # the derived widths, then every accumulator 2 bits narrower (wrapping)
        m = model if not narrower else apply_acc_bits(
            size_accumulators(load_qonnx(str(path))), {op.name: max(2, op.acc.acc_bits - narrower) for op in model.accumulating_ops()})
        plain_sim = BitSim(m, blas=False)
        assert any(plain_sim.wraps.values()) == bool(narrower)
        plain = plain_sim.run_batch(x, keep=True)
        # each with torch's int8 GEMM and with the float BLAS GEMMs
        sims = {(jit, gemm): BitSim(m, jit=jit, int_gemm=gemm) for jit in (True, False) for gemm in (True, False)}
        assert all((sim._k is not None) == jit for (jit, _), sim in sims.items())
        # numba's threshold loop is taken: the requantizers read tables
        assert all(sims[True, True].stages[op.name].lut is not None for op in m.ops if isinstance(op, Requant))
        for kind, sim in sims.items():
            got = sim.run(x)  # fused: narrow input integers, float accumulators straight into the tables
            for o in m.outputs:
                assert _eq(got[o], plain[o]), (kind, narrower, o)
            kept = sim.run(x, keep=True)  # every tensor (int64 input integers and accumulators)
            assert set(kept) == set(plain)
            for name, v in plain.items():
                assert _eq(kept[name], v), (kind, narrower, name)
        if narrower:
            continue
        # QONNX: the input quantizer's and every requantizer's integers exactly, the output within a
        # quarter of its scale (QONNX sums in float32; these sums are small integers: exact)
        checked = 0
        for op in m.ops:
            out = op.outputs[0]
            if isinstance(op, (InputQuant, Requant)) and out in ctx:
                info = m.tensors[out]
                q = onnx_layout(m, out, plain[out])
                sc = onnx_layout(m, out, np.broadcast_to(np.asarray(info.scale, dtype=np.float64), plain[out].shape))
                q_ref = np.rint(np.asarray(ctx[out], dtype=np.float64).reshape(q.shape) / sc).astype(np.int64) + info.dtype.zero_point
                assert _eq(q_ref, q), out
                checked += 1
        assert checked == sum(isinstance(op, (InputQuant, Requant)) for op in m.ops)
        for k, o in enumerate(m.outputs):
            onnx_name = m.output_names[k] if m.output_names else o
            want = onnx_layout(m, o, to_real(m, o, plain[o]), output=k)
            r = np.asarray(ctx[onnx_name], dtype=np.float64).reshape(want.shape)
            tol = 0.25 * np.abs(np.asarray(m.tensors[o].scale, dtype=np.float64))
            assert np.all(np.abs(r - want) <= tol), (o, float(np.max(np.abs(r - want))))
