"""``a2qhls inspect MODEL``: per-layer accumulator sizing of a QONNX model.

Imports no torch: only onnx, qonnx's helpers and numpy.
"""
from __future__ import annotations

import json
import os
import sys

from ..errors import A2QError
from ..escape import display
from ..flow import inspect


def add_arguments(p) -> None:
    p.add_argument("model", help="QONNX model file (.onnx)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--per-channel", action="store_true", help="also list every output channel's exact range and width")
    p.add_argument("--cost", action="store_true",
                   help="also estimate each layer's LUT/FF/BRAM18/DSP at the build's folding, and with 32-bit accumulators "
                        "(writes nothing)")
    p.add_argument("--part", metavar="PART", help="with --cost: the part whose capacity the estimate is shown against "
                   "(xc7z020, xczu3eg, xczu7ev, xczu9eg, xcu250, xcu280; default xczu3eg)")
    p.add_argument("--folding", metavar="F.json", help="with --cost: per-layer folding, as for build")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw per-layer bars of the data-type, A2Q, A2Q+, exact and target widths (needs matplotlib)")
    p.add_argument("--input-quant", metavar="TYPE:SCALE", default=None,
                   help="integer type of a graph input the model leaves unquantized, e.g. uint8:0.00392 "
                        "(TYPE intN/uintN, optional :ZERO_POINT); inserted as the input quantizer")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_text(doc: dict, per_channel: bool) -> str:
    head = ["layer", "op", "K", "ch", "in", "weight", "dtype", "a2q", "a2q+", "exact", "target", "worst ch"]
    rows = [head]
    records = doc["layers"]
    for r in records:
        tgt = "-" if r["target_acc_bits"] is None else str(r["target_acc_bits"])
        if r["exceeds_target"]:
            tgt += " !"
        rows.append([
            display(r["name"]), r["op"], str(r["K"]), str(r["channels"]), r["input_type"], r["weight_type"],
            str(r["acc_bits_datatype"]), str(r["acc_bits_a2q"]), str(r["acc_bits_a2qplus"]),
            str(r["acc_bits"]), tgt, str(r["worst_channel"]),
        ])
    out = [f"model: {display(doc['model'])}", "accumulator widths in bits (signed); exact = minimal safe width over every input the types allow", "", _table(rows)]
    over = [r["name"] for r in records if r["exceeds_target"]]
    if over:
        out += ["", "! exact width exceeds the model's target accumulator width in: " + ", ".join(display(o) for o in over)]
    aligned = [r for r in records if r.get("alignment")]
    if aligned:
        out += ["", "residual adds: each input times an integer multiplier (odd part << shift) on a common scale; "
                    "the cost is the multiplier and the bits it adds"]
        for r in aligned:
            for a in r["alignment"]:
                extra = a["aligned_bits"] - a["input_bits"]
                out.append(f"  {display(r['name'])}: {display(a['input'])} ({a['input_bits']} bits) x multiplier of up to "
                           f"{a['multiplier_bits']} bits (odd part {a['odd_bits']} bits, shift {a['shift']}) -> "
                           f"{a['aligned_bits']} bits (+{extra})")
    if per_channel:
        for r in records:
            out += ["", f"{display(r['name'])}: per-channel exact range"]
            ch_rows = [["channel", "acc_min", "acc_max", "bits"]]
            for j, (lo, hi, b) in enumerate(zip(r["acc_min_per_channel"], r["acc_max_per_channel"], r["acc_bits_per_channel"])):
                ch_rows.append([str(j), str(lo), str(hi), str(b)])
            out.append(_table(ch_rows))
    return "\n".join(out)


def run(args) -> int:
    from ..flow import check_options, estimate_cost

    check_options(part=args.part)
    if (args.part or args.folding) and not args.cost:
        raise A2QError("--part and --folding need --cost")
    if args.plot is not None:
        if not args.plot.lower().endswith(".png"):
            raise A2QError(f"--plot: '{args.plot}' must name a .png file")
        plot_dir = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(plot_dir):
            raise A2QError(f"--plot: directory does not exist: {plot_dir}")
    doc = inspect(args.model, per_channel=args.per_channel, input_quant=args.input_quant)
    summary = estimate_cost(args.model, folding=args.folding, part=args.part, input_quant=args.input_quant) if args.cost else None
    if args.plot is not None:
        from ..plots import plot_inspect  # matplotlib only when a plot is asked for

        plot_inspect(doc["layers"], args.plot, title=os.path.basename(args.model))
    if summary is not None and args.json:
        doc["cost"] = summary["cost"]
        doc["cycles_per_image"] = summary["cycles_per_image"]
        doc["cost_layers"] = [{k: ly[k] for k in ("name", "kind", "MH", "MW", "PE", "SIMD", "acc_bits", "cycles_per_image",
                                                 "cost", "cost_acc32", "lut_ratio_acc32")} for ly in summary["layers"]]
    if args.json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(render_text(doc, args.per_channel))
        if summary is not None:
            from .build import render_table

            print()
            print(render_table(summary))
    return 1 if any(r["exceeds_target"] for r in doc["layers"]) else 0
