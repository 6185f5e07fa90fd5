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
