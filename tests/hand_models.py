"""Small IR models built by hand (no QONNX file), for the simulator/codegen/cosim tests."""
from __future__ import annotations

import numpy as np

from a2qhls.ir import Dense, InputQuant, IntType, Model, Requant, TensorInfo
from a2qhls.passes.accumulator import size_accumulators


def mlp(
    sizes=(8, 6, 4),
    *,
    seed: int = 0,
    in_type: IntType = IntType(4, False),
    in_scale: float = 0.0625,
    w_bits: int = 4,
    act_type: IntType = IntType(3, False),
    act_rounding: str = "ROUND",
    relu: bool = True,
    bias: bool = True,
    float_bias: bool = False,
    name: str = "hand_mlp",
) -> Model:
    """An MLP ``sizes[0] -> ... -> sizes[-1]``: InputQuant, (Dense, Requant)*, Dense (float output)."""
    rng = np.random.default_rng(seed)
    tensors: dict = {}
    ops: list = []
    x = "x_q"
    tensors[x] = TensorInfo(x, (sizes[0],), in_type, np.full(sizes[0], in_scale), np.zeros(sizes[0]))
    ops.append(
        InputQuant(
            "in_quant", ["x"], [x], np.float32(in_scale), np.float32(in_type.zero_point), in_type, "ROUND"
        )
    )
    wmax = (1 << (w_bits - 1)) - 1
    s_in = in_scale
    for li, (K, C) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.integers(-wmax, wmax + 1, size=(C, K))
        ws = (rng.uniform(0.02, 0.2, size=C)).astype(np.float32).astype(np.float64)
        acc = f"acc{li}"
        b = rng.integers(-20, 21, size=C) if bias else None
        offset = np.zeros(C)
        if float_bias:
            offset = rng.normal(0, 0.3, size=C).astype(np.float32).astype(np.float64)
        ops.append(
            Dense(f"fc{li}", [x], [acc], w, IntType(w_bits, True, True), ws, b)
        )
        tensors[acc] = TensorInfo(acc, (C,), None, np.float32(s_in) * ws, offset)
        if li == len(sizes) - 2:
            out = acc
            break
        a_scale = np.float32(rng.uniform(0.05, 0.3))
        q = f"act{li}"
        ops.append(
            Requant(f"act{li}", [acc], [q], relu, np.float32(a_scale), np.float32(act_type.zero_point), act_type, act_rounding)
        )
        tensors[q] = TensorInfo(q, (C,), act_type, np.full(C, float(a_scale)), np.zeros(C))
        x = q
        s_in = float(a_scale)
    m = Model(name, "x", (sizes[0],), ops, tensors, [out], ["y"])
    return size_accumulators(m)


def cnn(
    *,
    seed: int = 0,
    hw: tuple = (6, 6),
    cin: int = 2,
    ch: int = 4,
    in_type: IntType = IntType(4, False, False, 0),
    in_scale: float = 0.0625,
    w_bits: int = 4,
    act_type: IntType = IntType(3, False),
    conv0: dict | None = None,  # kernel/stride/pads of the first convolution
    dw: dict | None = None,  # of the depthwise convolution
    pool: dict | None = None,  # of the max pool
    conv2: dict | None = None,  # of the residual branch's convolution (must keep the shape)
    add_ratio: float = 2.0,  # residual branch scale / bypass scale (1, 2 or 1/2)
    avg: dict | None = None,  # of the average pool; None: global
    n_out: int = 5,
    act_rounding: str = "ROUND",
    name: str = "hand_cnn",
) -> Model:
    """InputQuant [C,H,W] -> Conv -> Requant -> depthwise Conv -> Requant -> MaxPool -> fork:
    (Conv -> Requant) + bypass -> Add -> Requant -> AvgPool -> Requant -> Dense (graph output)."""
    from fractions import Fraction

    from a2qhls.ir import Add, Conv, Pool

    rng = np.random.default_rng(seed)
    wmax = (1 << (w_bits - 1)) - 1
    conv0 = {"kernel": (3, 3), "stride": (1, 1), "pads": (1, 1, 1, 1)} | (conv0 or {})
    dw = {"kernel": (3, 3), "stride": (1, 1), "pads": (1, 1, 1, 1)} | (dw or {})
    pool = {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0)} | (pool or {})
    conv2 = {"kernel": (1, 3), "stride": (1, 1), "pads": (0, 1, 0, 1)} | (conv2 or {})
    tensors: dict = {}
    ops: list = []

    def tinfo(name, shape, dtype, scale, offset=None):
        C = shape[-1]
        tensors[name] = TensorInfo(name, tuple(shape), dtype, np.broadcast_to(np.asarray(scale, dtype=np.float64), (C,)).copy(),
                                   np.zeros(C) if offset is None else offset)

    H, W = hw
    tinfo("x_q", (H, W, cin), in_type, in_scale)
    ops.append(InputQuant("in_quant", ["x"], ["x_q"], np.float32(in_scale), np.float32(in_type.zero_point), in_type, "ROUND"))

    def requant(i, src, shape, scale, t=act_type, relu=True):
        q = f"act{i}"
        ops.append(Requant(f"act{i}", [src], [q], relu, np.float32(scale), np.float32(t.zero_point), t, act_rounding))
        tinfo(q, shape, t, float(np.float32(scale)))
        return q

    def conv(i, src, cout, spec, depthwise=False, bias=True):
        in_info = tensors[src]
        cin_ = in_info.shape[2]
        groups = cin_ if depthwise else 1
        w = rng.integers(-wmax, wmax + 1, size=(cout, *spec["kernel"], cin_ // groups))
        ws = rng.uniform(0.02, 0.2, size=cout).astype(np.float32).astype(np.float64)
        b = rng.integers(-20, 21, size=cout) if bias else None
        op = Conv(f"conv{i}", [src], [f"acc{i}"], w, IntType(w_bits, True, True), ws, b, spec["kernel"], spec["stride"],
                  spec["pads"], groups, tuple(in_info.shape))
        ops.append(op)
        tinfo(f"acc{i}", op.out_shape, None, float(in_info.scale[0]) * ws)
        return op

    c0 = conv(0, "x_q", ch, conv0)
    a0 = requant(0, "acc0", c0.out_shape, rng.uniform(0.05, 0.3))
    c1 = conv(1, a0, ch, dw, depthwise=True, bias=False)
    s1 = float(np.float32(rng.uniform(0.05, 0.3)))
    a1 = requant(1, "acc1", c1.out_shape, s1)
    p = Pool("maxpool", [a1], ["pooled"], "max", pool["kernel"], pool["stride"], pool["pads"], c1.out_shape)
    ops.append(p)
    tinfo("pooled", p.out_shape, act_type, s1)
    c2 = conv(2, "pooled", ch, conv2)
    assert c2.out_shape == p.out_shape, "conv2 must keep the shape for the residual add"
    s2 = s1 * add_ratio
    a2 = requant(2, "acc2", c2.out_shape, s2)
    r = Fraction(s1) / Fraction(s2)
    ma, mb = r.numerator, r.denominator
    add = Add("add", ["pooled", a2], ["acc_add"], (ma, mb), p.out_shape)
    ops.append(add)
    tinfo("acc_add", p.out_shape, None, s1 / ma)
    a3 = requant(3, "acc_add", p.out_shape, rng.uniform(0.1, 0.4))
    ph, pw = p.out_shape[:2]
    avg = {"kernel": (ph, pw), "stride": (1, 1), "pads": (0, 0, 0, 0)} | (avg or {})
    ap = Pool("avgpool", [a3], ["acc_avg"], "avg", avg["kernel"], avg["stride"], avg["pads"], p.out_shape, source_op="AveragePool")
    ops.append(ap)
    tinfo("acc_avg", ap.out_shape, None, float(tensors[a3].scale[0]) / ap.K)
    a4 = requant(4, "acc_avg", ap.out_shape, rng.uniform(0.05, 0.2), t=IntType(act_type.bits, True), relu=False)
    K = int(np.prod(ap.out_shape))
    w = rng.integers(-wmax, wmax + 1, size=(n_out, K))
    ws = rng.uniform(0.02, 0.2, size=n_out).astype(np.float32).astype(np.float64)
    ops.append(Dense("fc", [a4], ["out"], w, IntType(w_bits, True, True), ws, rng.integers(-20, 21, size=n_out)))
    tinfo("out", (n_out,), None, float(tensors[a4].scale[0]) * ws)
    m = Model(name, "x", (cin, H, W), ops, tensors, ["out"], ["y"])
    return size_accumulators(m)
