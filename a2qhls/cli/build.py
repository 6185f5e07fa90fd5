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
the end, so a failure leaves nothing behind. Where DIR may be, and what ``--force`` may
replace: :func:`a2qhls.files.check_out_dir`. Same inputs, byte-identical output.
The flow itself is :func:`a2qhls.flow.build`; this module parses arguments and prints.
"""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help="QONNX model file (.onnx)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (new or empty; with --force an a2qhls project it replaces)")
    p.add_argument("--folding", metavar="F.json", help='per-layer folding: {"LAYER": {"PE": p, "SIMD": s}, ...}')
    p.add_argument(
        "--acc-bits",
        action="append",
        default=[],
        metavar="LAYER=BITS",
        help="override a layer's accumulator width (LAYER: its name, 'layerN' or index N); repeatable",
    )
    p.add_argument(
        "--bus-bits",
        type=int,
        metavar="BITS",
        help="AXI-stream data width of the input and output ports (a multiple of 8, e.g. 32, 64, 128); the "
        "design repacks inside. Default: each port as wide as its first/last unit's word in whole bytes",
    )
    p.add_argument("--force", action="store_true", help="replace an existing a2qhls project in --out (never a folder holding other files)")
    p.add_argument("--input-quant", metavar="TYPE:SCALE", default=None,
                   help="integer type of a graph input the model leaves unquantized, e.g. uint8:0.00392 "
                        "(TYPE intN/uintN, optional :ZERO_POINT); inserted as the input quantizer")
    p.add_argument("--save-steps", action="store_true", help="also write steps/NN_<step>.json: the IR after each step of the flow")
    p.add_argument("--target-fps", type=float, metavar="F",
                   help="fold every layer to the cheapest PE/SIMD (by the resource estimate) that reaches F images/s at --clock-mhz")
    p.add_argument("--clock-mhz", type=float, metavar="C",
                   help="clock for --target-fps (default 200); also sets the Vitis HLS clock period")
    p.add_argument("--lut-budget", type=int, metavar="L", help="choose the fastest folding whose estimate fits L LUTs")
    p.add_argument("--bram-budget", type=int, metavar="B", help="... that fits B BRAM18 blocks")
    p.add_argument("--dsp-budget", type=int, metavar="D", help="... that fits D DSP slices")
    p.add_argument("--control", choices=("none", "axilite"), default="none",
                   help="block control of the top: none (ap_ctrl_none, free-running; default) or axilite (an AXI4-Lite "
                        "slave with ap_start/ap_done/ap_idle/auto_restart at offset 0x00: write 0x81 once to run free)")
    p.add_argument("--stream-weights", metavar="LAYERS", default=None,
                   help="layers (layerN or names, comma separated) whose weights stream in over an extra AXI-stream "
                        "port instead of on-chip ROMs, or 'auto': those that make the estimate exceed the part's memories "
                        "(a2qhls.json interface.weights gives each port's beat layout)")
    p.add_argument(
        "--part",
        metavar="PART",
        help="FPGA part whose capacity the resource estimate is shown against (a2qhls.json 'cost'); one of "
        "xc7z020, xczu3eg, xczu7ev, xczu9eg, xcu250, xcu280, or a full part name starting with one "
        "(default xczu3eg; the Vitis HLS script keeps its default part)",
    )


def run(args) -> int:
    from ..escape import display

    def warn(msg):
        print(f"a2qhls: warning: {display(msg, 2000)}", file=sys.stderr)

    from ..flow import build

    budget = {"LUT": args.lut_budget, "BRAM18": args.bram_budget, "DSP": args.dsp_budget}
    s = build(args.model, args.out, folding=args.folding, acc_bits=args.acc_bits, force=args.force, save_steps=args.save_steps,
              warn=warn, part=args.part, target_fps=args.target_fps, clock_mhz=args.clock_mhz, budget=budget,
              bus_bits=args.bus_bits, input_quant=args.input_quant, control=args.control, stream_weights=args.stream_weights)
    print(f"wrote {args.out} ({len(s['layers'])} layers, top {s['top']})")
    print(render_table(s))
    return 0


def render_table(s: dict) -> str:
    """The per-layer table of a build summary: folding, cycles, accumulator widths and the
    resource estimate, with the LUTs the same layer would need with a 32-bit accumulator."""
    from ..escape import display

    lines = [
        f"{'layer':24s} {'kind':>7s} {'MHxMW':>10s} {'PE':>4s} {'SIMD':>5s} {'cycles':>7s} {'acc':>4s} {'safe':>5s} "
        f"{'LUT':>7s} {'FF':>7s} {'BRAM18':>6s} {'DSP':>4s} {'LUT@32b':>8s} {'x':>5s}"
    ]
    for ly in s["layers"]:
        flag = "  (override)" if ly["acc_bits_overridden"] else ""
        simd = "-" if ly["SIMD"] is None else str(ly["SIMD"])
        c, c32 = ly["cost"], ly["cost_acc32"]
        ratio = "-" if ly["lut_ratio_acc32"] is None else f"{ly['lut_ratio_acc32']:.2f}"
        lines.append(
            f"{display(ly['name'])[:24]:24s} {ly['kind']:>7s} {str(ly['MH']) + 'x' + str(ly['MW']):>10s} {ly['PE']:>4d} {simd:>5s} "
            f"{ly['cycles_per_image']:>7d} {ly['acc_bits']:>4d} {ly['safe_acc_bits']:>5d} "
            f"{c['LUT']:>7d} {c['FF']:>7d} {c['BRAM18']:>6d} {c['DSP']:>4d} {c32['LUT']:>8d} {ratio:>5s}{flag}"
        )
    cost = s["cost"]
    t, t32, pct = cost["total"], cost["total_acc32"], cost["utilization_percent"]
    lines.append(f"dataflow: {s['cycles_per_image']} cycles per image (slowest unit: {s['bottleneck']})")
    used = ", ".join(f"{k} {t[k]} ({pct[k]:.1f}%)" for k in ("LUT", "FF", "BRAM18", "URAM", "DSP") if k in pct)
    lines.append(f"estimate (all units and FIFOs) on {cost['part']}: {used}")
    lines.append(f"with 32-bit accumulators: {t32['LUT']} LUT, {t32['FF']} FF, {t32['BRAM18']} BRAM18 "
                 f"({cost['lut_ratio_acc32']:.2f}x the LUTs)")
    return "\n".join(lines)
