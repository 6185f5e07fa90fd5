"""Benchmark (not a test): a2qhls's bit-accurate model, build and C++ compile on a 784-64-64-10 MLP.

    /tmp/venv/bin/python bench/bench_sim.py [--batch 10000] [--skip-hls4ml]

Measured in one run on the same Brevitas-exported MLP (random weights, calibrated scales):
  * Python model (a2qhls.sim.BitSim) throughput vs qonnx execute_onnx   (goal >= 100x)
  * Python model throughput vs torch float forward of the same shapes    (goal >= 0.5x)
  * g++ compile time of the generated project vs hls4ml compile()        (goal <= 0.5x)
  * a2qhls build wall time (CLI, fresh process)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from timing import best_of  # bench/timing.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
SIZES = (784, 64, 64, 10)


def hls4ml_compile_seconds(torch_model, work: Path):
    """hls4ml 1.3.0: convert the float torch model of the same shapes (Vitis backend, io_stream) and compile()."""
    import hls4ml
    import torch

    float_model = torch.nn.Sequential(
        torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    cfg = hls4ml.utils.config_from_pytorch_model(float_model, input_shape=(784,), granularity="model",
                                                 default_precision="ap_fixed<16,6>")
    hm = hls4ml.converters.convert_from_pytorch_model(
        float_model, hls_config=cfg, output_dir=str(work / "hls4ml_prj"), backend="Vitis", io_type="io_parallel"
    )
    t0 = time.perf_counter()
    hm.compile()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--skip-hls4ml", action="store_true")
    args = ap.parse_args()

    import torch
    import brevitas_calibrated as brevitas_mlp
    from a2qhls import load_qonnx, size_accumulators
    from a2qhls.cosimulation import QonnxReference, compile_csim
    from a2qhls.sim import BitSim, to_real

    work = Path(tempfile.mkdtemp(prefix="a2qhls-bench-"))
    onnx_path = work / "mlp.onnx"
    tmodel = brevitas_mlp.export_mlp(onnx_path, SIZES, a2qplus=True, acc_bits=12, w_bits=4, a_bits=4)
    model = size_accumulators(load_qonnx(str(onnx_path)))
    sim = BitSim(model)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, size=(args.batch, SIZES[0])).astype(np.float32)
    out = model.outputs[0]

    # Python bit-accurate model
    sim.run(x[:100])
    t_sim = best_of(lambda: sim.run(x))
    sim_rate = args.batch / t_sim

    # qonnx executor (smaller batch, it is slow); check agreement on it as well
    nq = min(args.batch, 2000)
    ref = QonnxReference(onnx_path)
    ref.run(x[:nq])
    t_q = best_of(lambda: ref.run(x[:nq]), 2)
    q_rate = nq / t_q
    got = to_real(model, out, sim.run(x[:nq])[out])
    want = ref.run(x[:nq])[model.output_names[0]]
    agree = int(np.sum(np.all(np.abs(got - want) <= 0.25 * model.tensors[out].scale, axis=1)))

    # qonnx executor the usual way: one sample per call on the exported batch-1 graph
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    mw1 = ModelWrapper(str(onnx_path))
    in1 = mw1.graph.input[0].name
    n1 = 200
    t0 = time.perf_counter()
    for i in range(n1):
        execute_onnx(mw1, {in1: x[i : i + 1]})
    q1_rate = n1 / (time.perf_counter() - t0)

    # torch float forward of the same shapes (Linear/ReLU, float32, no quantization)
    fm = torch.nn.Sequential(
        torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    ).eval()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        fm(xt)
        t_t = best_of(lambda: fm(xt))
    t_rate = args.batch / t_t

    # a2qhls build (CLI, fresh process) and g++ compile of the generated project
    prj = work / "prj"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "a2qhls", "build", str(onnx_path), "--out", str(prj)], check=True,
                   stdout=subprocess.DEVNULL)
    t_build = time.perf_counter() - t0
    from a2qhls import build as build_fn

    t_build_inproc = best_of(lambda: build_fn(onnx_path, work / "prj2", force=True), 2)
    t_gxx = compile_csim(prj, work / "csim", "-O1")
    t_gxx2 = compile_csim(prj, work / "csim2", "-O2")

    hls = None
    hls_note = "skipped"
    if not args.skip_hls4ml:
        try:
            hls = hls4ml_compile_seconds(tmodel, work)
            hls_note = "hls4ml 1.3.0 convert_from_pytorch_model (float model, same shapes, Vitis, io_parallel) + compile()"
        except Exception as e:  # report why, do not fail the benchmark
            hls_note = f"hls4ml compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"

    print(f"MLP {'-'.join(map(str, SIZES))}, layer widths {[d.acc.acc_bits for d in model.layers()]}, batch {args.batch}")
    print(f"  python model  : {sim_rate:12.0f} samples/s  ({t_sim * 1e3:.1f} ms / {args.batch})")
    print(f"  qonnx execute : {q_rate:12.0f} samples/s  ({t_q * 1e3:.1f} ms / {nq}); model within 1/4 LSB on {agree}/{nq} (rest: float32 near-ties, see cosim)")
    print(f"  torch float   : {t_rate:12.0f} samples/s  ({t_t * 1e3:.1f} ms / {args.batch}, {torch.get_num_threads()} threads)")
    print(f"  qonnx per-sample  : {q1_rate:12.0f} samples/s  (execute_onnx on the batch-1 export, {n1} calls)")
    print(f"  ratio model/qonnx : {sim_rate / q1_rate:8.1f}x vs per-sample execute_onnx (goal >= 100x); "
          f"{sim_rate / q_rate:.1f}x vs execute_onnx on a resized batch")
    print(f"  ratio model/torch : {sim_rate / t_rate:8.2f}x   (goal >= 0.5x)")
    print(f"  a2qhls build      : {t_build:6.2f} s (CLI, fresh process), {t_build_inproc:6.2f} s in-process")
    print(f"  g++ compile       : {t_gxx:6.2f} s at -O1, {t_gxx2:6.2f} s at -O2")
    if hls is not None:
        print(f"  hls4ml compile()  : {hls:6.2f} s  -> ratio g++(-O1)/hls4ml = {t_gxx / hls:.2f}x (goal <= 0.5x)")
    print(f"  hls4ml: {hls_note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
