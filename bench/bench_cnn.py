"""Benchmark (not a test): a2qhls on the small Brevitas A2Q+ CNN of tests/brevitas_cnn.py (digits 8x8).

    /tmp/venv/bin/python bench/bench_cnn.py [--batch 2000]

Measured in one run on the same exported CNN (conv 3x3 -> A2Q+ depthwise 3x3 -> max pool ->
residual conv + add -> average pool -> dense):
  * Python model (a2qhls.sim.BitSim) throughput vs qonnx execute_onnx (goal >= 100x), both
    per-sample on the batch-1 export (the usual way) and on a batch-resized graph
  * a2qhls build wall time, g++ compile and run time of the generated C simulation
  * cycles per image of the generated dataflow at the default folding: every unit's cycles at
    II=1 computed from its folding (conv: OH*OW * C_out/PE * K/SIMD; depthwise: OH*OW * C/PE *
    kh*kw/SIMD; window generators, pools, add, dup: words in/out); the slowest unit sets the
    pipeline's initiation interval per image.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from timing import best_of  # bench/timing.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()

    import brevitas_cnn
    from a2qhls import load_qonnx, size_accumulators
    from a2qhls import build as build_fn
    from a2qhls.cosimulation import QonnxReference, compile_csim, run_csim
    from a2qhls.sim import BitSim, to_real

    work = Path(tempfile.mkdtemp(prefix="a2qhls-bench-cnn-"))
    onnx_path = work / "cnn.onnx"
    brevitas_cnn.export_cnn(onnx_path)
    model = size_accumulators(load_qonnx(str(onnx_path)))
    sim = BitSim(model)
    digits = brevitas_cnn.digits()
    reps = -(-args.batch // len(digits))
    x = np.concatenate([digits] * reps)[: args.batch]
    out = model.outputs[0]

    sim.run(x[:64])
    t_sim = best_of(lambda: sim.run(x))
    sim_rate = args.batch / t_sim

    # qonnx: per sample on the batch-1 export (how it is usually called) ...
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    mw1 = ModelWrapper(str(onnx_path))
    in1 = mw1.graph.input[0].name
    n1 = 100
    execute_onnx(mw1, {in1: x[:1]})
    t0 = time.perf_counter()
    for i in range(n1):
        execute_onnx(mw1, {in1: x[i : i + 1]})
    q1_rate = n1 / (time.perf_counter() - t0)
    # ... and on a batch-resized copy (a2qhls's cosim reference)
    nq = min(args.batch, 1000)
    ref = QonnxReference(onnx_path)
    ref.run(x[:nq])
    t_q = best_of(lambda: ref.run(x[:nq]), 2)
    q_rate = nq / t_q
    got = to_real(model, out, sim.run(x[:nq])[out])
    want = ref.run(x[:nq])[model.output_names[0]]
    agree = int(np.sum(np.all(np.abs(got - want) <= 0.25 * model.tensors[out].scale, axis=1)))

    prj = work / "prj"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "a2qhls", "build", str(onnx_path), "--out", str(prj)], check=True, stdout=subprocess.DEVNULL)
    t_build = time.perf_counter() - t0
    t_build_inproc = best_of(lambda: build_fn(onnx_path, work / "prj2", force=True), 2)
    summary = json.loads((prj / "a2qhls.json").read_text())
    t_gxx = compile_csim(prj, work / "csim", "-O1")
    t_gxx2 = compile_csim(prj, work / "csim2", "-O2")
    q_in = sim.run(x, keep=True)[model.ops[0].outputs[0]].reshape(len(x), -1).astype(np.int64)
    nc = min(len(x), 1000)
    t0 = time.perf_counter()
    cpp = run_csim(work / "csim2", q_in[:nc], work)
    t_run = time.perf_counter() - t0
    exact = int(np.sum(np.all(cpp == np.asarray(sim.run(x[:nc])[out]), axis=1)))

    print(f"CNN {model.input_shape} digits, widths " + ", ".join(f"{ly['name']}({ly['kind']})={ly['acc_bits']}" for ly in summary["layers"]))
    print(f"  python model      : {sim_rate:12.0f} images/s  ({t_sim * 1e3:.1f} ms / {args.batch})")
    print(f"  qonnx per-sample  : {q1_rate:12.1f} images/s  (execute_onnx on the batch-1 export, {n1} calls)")
    print(f"  qonnx batched     : {q_rate:12.0f} images/s  ({t_q * 1e3:.1f} ms / {nq}); model within 1/4 LSB on {agree}/{nq}")
    print(f"  ratio model/qonnx : {sim_rate / q1_rate:8.0f}x vs per-sample execute_onnx (goal >= 100x); "
          f"{sim_rate / q_rate:.1f}x vs execute_onnx on a resized batch")
    print(f"  a2qhls build      : {t_build:6.2f} s (CLI, fresh process), {t_build_inproc:6.2f} s in-process")
    print(f"  g++ compile       : {t_gxx:6.2f} s at -O1, {t_gxx2:6.2f} s at -O2")
    print(f"  g++ csim run      : {t_run:6.2f} s for {nc} images ({nc / t_run:.0f} images/s, -O2, incl. file I/O); bit-exact {exact}/{nc}")
    print(f"  dataflow          : {summary['cycles_per_image']} cycles per image at II=1 (slowest unit {summary['bottleneck']}); "
          f"{1e9 / (summary['cycles_per_image'] * 5.0):.0f} images/s at 200 MHz")
    for u in summary["units"]:
        extra = f" (window generator {u['swg_cycles_per_image']}, compute {u['compute_cycles_per_image']})" if "swg_cycles_per_image" in u else ""
        fold = summary["folding"].get(u["op"] or "", {})
        print(f"      {u['cname']:8s} {u['kind']:8s} {str(fold):28s} {u['cycles_per_image']:6d} cycles/image{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
