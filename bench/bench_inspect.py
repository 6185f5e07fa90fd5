"""`a2qhls inspect` wall time on MNIST-size MLPs (784-64-64-10) exported by Brevitas, against
qonnx's own load + cleanup of the same file (the peer step a FINN/qonnx user runs first).

    python bench/bench_inspect.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from timing import best_of  # bench/timing.py

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))


def main():
    import torch
    import brevitas_mlp as bm

    tmp = tempfile.mkdtemp()
    torch.manual_seed(0)
    rows = []
    for quant in ("a2q+", "baseline"):  # Brevitas's plain export (A2Q+ layers keep their raw float weights)
        m = bm.make_mlp([784, 64, 64, 10], quant, 4, 4, 12)
        m.eval()
        m(torch.rand(8, 784))
        path = os.path.join(tmp, f"mnist_{quant}.onnx")
        bm.export(m, path, 784, exact=False)

        from a2qhls import load_qonnx, size_accumulators
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.cleanup import cleanup_model

        t_ours = best_of(lambda: size_accumulators(load_qonnx(path)), 5)
        t_qonnx = best_of(lambda: cleanup_model(ModelWrapper(path)), 5)
        t_cli = best_of(lambda: subprocess.run([sys.executable, "-m", "a2qhls", "inspect", path, "--json"],
                                                capture_output=True, check=False), n=3)
        model = size_accumulators(load_qonnx(path))
        widths = [(d.name, d.acc.acc_bits, d.acc.a2qplus_bits, d.acc.datatype_bits) for d in model.layers()]
        rows.append((quant, t_ours, t_qonnx, t_cli, widths))
    print(f"{'model':<10} {'load+size (s)':>14} {'qonnx cleanup (s)':>18} {'ratio':>7} {'inspect CLI (s)':>16}")
    for quant, t_ours, t_qonnx, t_cli, widths in rows:
        print(f"{quant:<10} {t_ours:>14.4f} {t_qonnx:>18.4f} {t_ours / t_qonnx:>7.2f} {t_cli:>16.3f}")
        print("   widths (layer, exact, a2q+, datatype):", widths)


if __name__ == "__main__":
    main()
