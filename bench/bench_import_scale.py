"""Benchmark (not a test): the importer's time is linear in the graph's size.

    .venv/bin/python bench/bench_import_scale.py [--sizes 1000,10000,100000]

A legal QONNX graph: input Quant -> a chain of N Identity nodes -> a Gemm with quantized weights
(issue 9, section 6: 20,000 Identity nodes took over 90 s when the walk was quadratic). For each
N it prints the wall time of ``a2qhls.load_qonnx`` (read, checks at the door, shape inference,
walk), the time per node, and the ratio to a peer run in the same process on the same file:
``onnx.load`` + ``onnx.checker.check_model`` + ``onnx.shape_inference.infer_shapes`` (linear C++).
Linear import: time per node and the ratio to the peer stay flat as N grows 100x.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def identity_chain(n: int):
    """The ModelProto of the graph above with ``n`` Identity nodes."""
    import qonnx_graphs as qg

    g = qg.GraphBuilder()
    x = g.quant("x", 0.05, 0, 8, True, False, name="iq")
    for _ in range(n):
        x = g.node("Identity", [x])
    w = g.const("w", np.linspace(-0.4, 0.4, 32, dtype=np.float32).reshape(4, 8))
    wq = g.quant(w, 0.1, 0, 4, True, True, name="wq")
    y = g.node("Gemm", [x, wq], {"transB": 1}, name="fc")
    return g.model("x", y, [8], 4)


def main() -> None:
    import onnx

    from timing import best_of
    from a2qhls import load_qonnx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    def peer(path):
        m = onnx.load(path)
        onnx.checker.check_model(m)
        onnx.shape_inference.infer_shapes(m)

    print(f"{'nodes':>8s} {'import s':>9s} {'us/node':>8s} {'peer s':>8s} {'import/peer':>12s}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            path = os.path.join(d, f"chain{n}.onnx")
            onnx.save(identity_chain(n), path)
            reps = 3 if n <= 10_000 else 1
            t = best_of(lambda: load_qonnx(path), reps)
            tp = best_of(lambda: peer(path), reps)
            rows.append((n, t))
            print(f"{n:8d} {t:9.3f} {1e6 * t / n:8.1f} {tp:8.3f} {t / tp:12.2f}")
    (n0, t0), (n1, t1) = rows[0], rows[-1]
    print(f"time per node at {n1} nodes / at {n0} nodes: {(t1 / n1) / (t0 / n0):.2f} (1.0 = linear)")


if __name__ == "__main__":
    main()
