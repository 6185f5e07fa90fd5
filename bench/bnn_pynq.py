"""FINN's BNN-PYNQ networks (Brevitas 0.13.4 ``brevitas_examples/bnn_pynq``: TFC, SFC, LFC, CNV at
w1a1 / w1a2 / w2a2), full size, seeded random weights: export (a2qhls's ``export_brevitas_qonnx``, on
Brevitas's TorchScript exporter, or ``--dynamo``), inspect, build and cosim (random and adversarial
inputs); prints each layer's exact accumulator width, input type, and the cosim mismatches (expected 0).
Not run in CI (full-size CNV compiles for a minute or more).

    .venv/bin/python bench/bnn_pynq.py [--nets tfc_1w1a,cnv_2w2a,...] [--random N] [--no-cosim] [--dynamo]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

DEFAULT = ("tfc_1w1a", "tfc_2w2a", "sfc_1w1a", "sfc_2w2a", "lfc_1w1a", "cnv_1w1a", "cnv_2w2a")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(DEFAULT))
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--no-cosim", action="store_true")
    ap.add_argument("--dynamo", action="store_true", help="Brevitas's dynamo exporter (default: TorchScript)")
    ap.add_argument("--out", default=None, help="keep exports and projects here (default: a temporary folder)")
    args = ap.parse_args(argv)
    import torch

    import a2qhls
    from a2qhls.frontend.brevitas import export_brevitas_qonnx
    from bnn_pynq_models import bnn_pynq

    print(f"load: {os.getloadavg()[0]:.1f} (uptime 1 min)")
    tmp = args.out or tempfile.mkdtemp(prefix="a2qhls-bnn-")
    os.makedirs(tmp, exist_ok=True)
    failed = 0
    for name in args.nets.split(","):
        t0, c0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
        model, shape = bnn_pynq(name)
        path = os.path.join(tmp, f"{name}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_brevitas_qonnx(model, torch.rand(1, *shape), path, dynamo=args.dynamo)
        rep = a2qhls.inspect(path)
        print(f"\n{name}: exact accumulator widths (bits) per layer")
        print(f"  {'layer':<28} {'op':<7} {'K':>5} {'ch':>4} {'in':>8} {'weight':>6} {'range':>16} {'exact':>5} {'dtype':>5}")
        for ly in rep["layers"]:
            print(f"  {ly['name'][:28]:<28} {ly['op']:<7} {ly['K']:>5} {ly['channels']:>4} {ly['input_type']:>8} "
                  f"{ly['weight_type']:>6} {'[' + str(ly['acc_min']) + ', ' + str(ly['acc_max']) + ']':>16} "
                  f"{ly['acc_bits']:>5} {ly['acc_bits_datatype']:>5}")
        if not args.no_cosim:
            out = os.path.join(tmp, f"{name}_prj")
            summary = a2qhls.build(path, out, force=True)
            xnor = sum(1 for u in summary["layers"] if u.get("weight_bits") == 1)
            cost = summary["cost"]
            print(f"  build: {xnor} of {len(summary['layers'])} layers in XNOR-popcount form (1-bit weights); estimate "
                  f"{cost['total']['LUT']} LUT, {cost['total']['BRAM18']} BRAM18 ({cost['lut_ratio_acc32']:.2f}x the LUTs "
                  f"with 32-bit accumulators)")
            cs = a2qhls.cosim(out, random=args.random, adversarial=True)
            bad = cs["mismatches_cpp_vs_model"] + cs["mismatches_model_vs_qonnx"]
            failed += bad != 0
            print(f"  cosim: {cs['samples']} samples, C++ vs model {cs['mismatches_cpp_vs_model']}, "
                  f"model vs QONNX {cs['mismatches_model_vs_qonnx']} mismatches")
        c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = c1[0].ru_utime + c1[0].ru_stime - c0.ru_utime - c0.ru_stime
        print(f"  {time.time() - t0:.1f} s wall, {cpu:.1f} s CPU (this process; g++ not counted), load {os.getloadavg()[0]:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
