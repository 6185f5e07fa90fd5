"""``a2qhls build MODEL --out DIR [--folding F.json] [--acc-bits LAYER=BITS ...] [--force] [--save-steps]``.

Writes a complete Vitis HLS project for a QONNX model:

    DIR/a2qhls.json            machine-readable summary (layers, widths, folding, files)
    DIR/model.onnx             a copy of the input model (what cosim re-imports)
    DIR/firmware/...           C++: top function, one MVU per layer, weights, thresholds
    DIR/tb/a2q_tb.cpp          C testbench (integer vectors in, integer vectors out)
    DIR/tb_data/               sample inputs and the bit-accurate model's expected outputs
    DIR/build_csim.sh          g++ C-simulation build;  DIR/vitis_hls.tcl  Vitis HLS flow
    DIR/steps/NN_<step>.json   with --save-steps: the IR after each step of the flow

The project is written to a temporary folder next to DIR and renamed into place at
the end, so a failure leaves nothing behind. Same inputs, byte-identical output.
The flow itself is :func:`a2qhls.flow.build`; this module parses arguments and prints.
"""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help="QONNX model file (.onnx)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (must not exist or be empty, unless --force)")
    p.add_argument("--folding", metavar="F.json", help='per-layer folding: {"LAYER": {"PE": p, "SIMD": s}, ...}')
    p.add_argument(
        "--acc-bits",
        action="append",
        default=[],
        metavar="LAYER=BITS",
        help="override a layer's accumulator width (LAYER: its name, 'layerN' or index N); repeatable",
    )
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--save-steps", action="store_true", help="also write steps/NN_<step>.json: the IR after each step of the flow")


def run(args) -> int:
    from ..escape import display

    def warn(msg):
        print(f"a2qhls: warning: {display(msg, 2000)}", file=sys.stderr)

    from ..flow import build

    s = build(args.model, args.out, folding=args.folding, acc_bits=args.acc_bits, force=args.force, save_steps=args.save_steps, warn=warn)
    print(f"wrote {args.out} ({len(s['layers'])} layers, top {s['top']})")
    print(f"{'layer':24s} {'kind':>7s} {'MHxMW':>10s} {'PE':>4s} {'SIMD':>5s} {'cycles':>7s} {'acc':>4s} {'safe':>5s}")
    for ly in s["layers"]:
        flag = "  (override)" if ly["acc_bits_overridden"] else ""
        simd = "-" if ly["SIMD"] is None else str(ly["SIMD"])
        print(
            f"{display(ly['name'])[:24]:24s} {ly['kind']:>7s} {str(ly['MH']) + 'x' + str(ly['MW']):>10s} {ly['PE']:>4d} {simd:>5s} "
            f"{ly['cycles_per_image']:>7d} {ly['acc_bits']:>4d} {ly['safe_acc_bits']:>5d}{flag}"
        )
    print(f"dataflow: {s['cycles_per_image']} cycles per image (slowest unit: {s['bottleneck']})")
    return 0
